// JSON lines on stdin and stdout: one request {"op", ...arguments} a line,
// one answer {"ok": true, "result"} or {"ok": false, "error"} a line, in order.
import { createInterface } from "node:readline";

export async function serve(handlers) {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let answer;
    try {
      const { op, ...args } = JSON.parse(line);
      const handler = handlers[op];
      if (!handler) throw new Error(`unknown operation ${op}`);
      answer = { ok: true, result: (await handler(args)) ?? null };
    } catch (error) {
      answer = { ok: false, error: String(error?.stack ?? error) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
}
