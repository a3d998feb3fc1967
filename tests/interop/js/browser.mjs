// Headless Chromium (the system's, driven by playwright-core) as a client of
// the interoperability suite.
//
// node browser.mjs [path to chromium]
// Then one JSON line per operation on stdin: pages are opened with
// openPage({url}) and named by the id it returns; client_ops.js runs inside
// them through call({page, name, args}); the chat test types, clicks and reads
// the page like a user.
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./rpc.mjs";

const CLIENT_OPS = fileURLToPath(new URL("./client_ops.js", import.meta.url));

const browser = await chromium.launch({
  executablePath: process.argv[2] || "/usr/bin/chromium",
  headless: true,
  // Nothing leaves loopback: no background, update or sync traffic.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 800, height: 700 } });
const pages = new Map();
let nextPage = 1;

function page(id) {
  const entry = pages.get(id);
  if (!entry) throw new Error(`no page ${id}`);
  return entry;
}

await serve({
  version: () => ({ name: "Chromium", version: browser.version() }),

  // Open a page and load client_ops.js into it; page errors are kept for errors().
  async openPage({ url }) {
    const tab = await context.newPage();
    const entry = { tab, errors: [] };
    tab.on("pageerror", (error) => entry.errors.push(String(error)));
    tab.on("console", (message) => {
      if (message.type() === "error") entry.errors.push(message.text());
    });
    const response = await tab.goto(url);
    if (!response || !response.ok()) throw new Error(`${url} answered ${response && response.status()}`);
    await tab.addScriptTag({ path: CLIENT_OPS });
    const id = nextPage++;
    pages.set(id, entry);
    return id;
  },

  // Run an operation of client_ops.js in the page.
  call: ({ page: id, name, args }) =>
    page(id).tab.evaluate(([name, args]) => globalThis.interop[name](args), [name, args]),

  // The chat, as a user: wait until the form is enabled, type and send, read the list.
  waitEnabled: ({ page: id, selector, timeout }) =>
    page(id).tab.locator(`${selector}:enabled`).waitFor({ timeout }),
  type: async ({ page: id, selector, text }) => {
    await page(id).tab.fill(selector, text);
    await page(id).tab.press(selector, "Enter");
  },
  waitText: ({ page: id, selector, text, timeout }) =>
    page(id).tab.locator(selector, { hasText: text }).first().waitFor({ timeout }),
  texts: ({ page: id, selector }) => page(id).tab.locator(selector).allInnerTexts(),
  screenshot: ({ page: id, path }) => page(id).tab.screenshot({ path, fullPage: true }).then(() => path),
  errors: ({ page: id }) => page(id).errors,
  closePage: async ({ page: id }) => {
    await page(id).tab.close();
    pages.delete(id);
  },
});
await browser.close();
