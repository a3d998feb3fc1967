// The client side of the interoperability suite, shared by Node's ws package
// and Chromium: the same operations on a WebSocket with the browser's API.
// A classic script (no import or export), so a page can load it as is; it
// defines globalThis.interop. Node sets interop.createSocket to use ws.
//
// Messages are described by length and SHA-256, never shipped back whole,
// so the suite can compare 16 MiB messages without moving them around.
(() => {
  "use strict";

  // One- to four-byte UTF-8 characters, as in payloads.py.
  const ALPHABET = [..."abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789éßøΩжא€✓中あ𝄞😀🦆"];
  const BLOCK = 1 << 20;
  const SMALL = 64 * 1024; // received text up to this size is returned whole
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const sockets = new Map();
  let nextId = 1;
  let blocks = null;

  function randomBlocks() {
    if (blocks) return blocks;
    const binary = new Uint8Array(BLOCK);
    for (let i = 0; i < BLOCK; i += 65536) crypto.getRandomValues(binary.subarray(i, i + 65536));
    const picks = new Uint32Array(BLOCK / 2);
    for (let i = 0; i < picks.length; i += 16384) crypto.getRandomValues(picks.subarray(i, i + 16384));
    const text = encoder.encode(Array.from(picks, (n) => ALPHABET[n % ALPHABET.length]).join(""));
    blocks = { binary, text };
    return blocks;
  }

  // size random bytes; for text, valid UTF-8 of exactly size bytes.
  function makePayload(kind, size) {
    const block = randomBlocks()[kind === "text" ? "text" : "binary"];
    const data = new Uint8Array(size);
    for (let at = 0; at < size; at += block.length) data.set(block.subarray(0, Math.min(block.length, size - at)), at);
    if (kind === "text" && size) {
      let end = size;
      while (end && (data[end - 1] & 0xc0) === 0x80) end -= 1;
      if (end && data[end - 1] >= 0xc0) end -= 1;
      data.fill(0x78, end); // "x"
    }
    return data;
  }

  async function describe(bytes) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return { length: bytes.length, sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("") };
  }

  function connection(id) {
    const conn = sockets.get(id);
    if (!conn) throw new Error(`no connection ${id}`);
    return conn;
  }

  // Events in arrival order, handed out one receive() at a time.
  function watch(socket) {
    const conn = { socket, events: [], waiters: [], extensions: "" };
    const push = (event) => {
      const waiter = conn.waiters.shift();
      if (waiter) waiter(event);
      else conn.events.push(event);
    };
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (event) => push({ type: "message", data: event.data }));
    socket.addEventListener("close", (event) => push({ type: "close", code: event.code, reason: event.reason }));
    socket.addEventListener("error", () => push({ type: "error" }));
    return conn;
  }

  function nextEvent(conn) {
    if (conn.events.length) return Promise.resolve(conn.events.shift());
    return new Promise((resolve) => conn.waiters.push(resolve));
  }

  const interop = {
    createSocket: (url) => new WebSocket(url),
    canFragment: false,

    // Open a connection; resolves once it is open, with its id and extensions.
    async open({ url }) {
      const socket = interop.createSocket(url);
      const conn = watch(socket);
      await new Promise((resolve, reject) => {
        socket.addEventListener("open", resolve, { once: true });
        socket.addEventListener("close", (e) => reject(new Error(`closed before opening: ${e.code}`)), { once: true });
      });
      const id = nextId++;
      sockets.set(id, conn);
      return { id, extensions: socket.upgradeExtensions ?? socket.extensions };
    },

    // Send a random message of size bytes, in that many fragments; describe it.
    async send({ id, kind, size, fragments = 1 }) {
      const { socket } = connection(id);
      const data = makePayload(kind, size);
      if (fragments > 1) {
        if (!interop.canFragment) throw new Error("this client cannot send fragments");
        const step = Math.ceil(size / fragments);
        for (let i = 0; i < fragments; i++) {
          const part = data.subarray(i * step, Math.min(size, (i + 1) * step));
          socket.send(part, { binary: kind === "binary", fin: i === fragments - 1 });
        }
      } else {
        socket.send(kind === "text" ? decoder.decode(data) : data);
      }
      return describe(data);
    },

    async sendText({ id, text }) {
      connection(id).socket.send(text);
    },

    // The next message (described) or the close (code and reason).
    async receive({ id }) {
      const event = await nextEvent(connection(id));
      if (event.type === "close") return { type: "close", code: event.code, reason: event.reason };
      if (event.type === "error") return { type: "error" };
      if (typeof event.data === "string") {
        const bytes = encoder.encode(event.data);
        return { type: "text", ...(await describe(bytes)), text: bytes.length <= SMALL ? event.data : null };
      }
      return { type: "binary", ...(await describe(new Uint8Array(event.data))) };
    },

    // Close with code and reason; resolves with the close the client then saw.
    async close({ id, code, reason }) {
      const conn = connection(id);
      conn.socket.close(code, reason);
      for (;;) {
        const event = await nextEvent(conn);
        if (event.type === "close") {
          sockets.delete(id);
          return { type: "close", code: event.code, reason: event.reason };
        }
      }
    },
  };

  globalThis.interop = interop;
})();
