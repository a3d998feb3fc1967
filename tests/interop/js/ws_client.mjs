// Node's ws package as a client of the interoperability suite.
//
// node ws_client.mjs deflate|plain
// Then operations of client_ops.js, one JSON line each, on stdin.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import WebSocket from "ws";
import { serve } from "./rpc.mjs";
import "./client_ops.js";

const deflate = process.argv[2] === "deflate";
const { interop } = globalThis;

interop.canFragment = true;
interop.createSocket = (url) => {
  const socket = new WebSocket(url, { perMessageDeflate: deflate, maxPayload: 64 * 1024 * 1024 });
  socket.on("upgrade", (response) => {
    socket.upgradeExtensions = response.headers["sec-websocket-extensions"] ?? "";
  });
  return socket;
};

const version = JSON.parse(readFileSync(createRequire(import.meta.url).resolve("ws/package.json"))).version;

await serve({ ...interop, version: () => ({ name: "ws", version }) });
