// Server-sent events through fetch (which, unlike EventSource, can send the token).

import { api, reasons, statusLine } from "./api.js";

/// Reads the watch stream at `path`, handing each event to `onEvent(kind, data)`. A cut
/// stream is opened again (waiting 1 s, doubling to 30 s) until `signal` aborts, an `end`
/// event comes, or the API refuses the stream (4xx: `onRefused(reasons, status)`).
export function follow(path, signal, onEvent, onRefused = () => {}) {
  (async () => {
    let wait = 1000;
    while (!signal.aborted) {
      try {
        const response = await api(path, { signal });
        if (response.status >= 400 && response.status < 500) {
          onRefused(await reasons(response), response.status);
          return;
        }
        if (!response.ok) throw new Error(await reasons(response));
        if (await read(response, onEvent, () => { wait = 1000; })) return;
      } catch (e) {
        if (signal.aborted) return;
        statusLine.textContent = `watch: ${e.message}`;
      }
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 30000);
    }
  })();
}

/// Parses one response's events; returns true after an `end` event. A large event (a
/// snapshot of a 100,000-node run is megabytes) arrives in many chunks: the search for the
/// blank line that ends it starts where the last one stopped, so reading it stays linear.
async function read(response, onEvent, onData) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let chunks = [];
  let pending = "";
  let carriageReturn = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    onData();
    // Line ends are \n, \r\n or \r; a \r\n may be split across two chunks.
    let text = value;
    if (carriageReturn && text.startsWith("\n")) text = text.slice(1);
    carriageReturn = text.endsWith("\r");
    text = text.replace(/\r\n?/g, "\n");
    // Only the unfinished tail of the last chunk is searched again with the new one.
    let from = 0;
    let scan = pending + text;
    for (;;) {
      const end = scan.indexOf("\n\n", from);
      if (end < 0) break;
      const block = chunks.join("") + scan.slice(0, end);
      chunks = [];
      scan = scan.slice(end + 2);
      if (dispatch(block, onEvent)) return true;
    }
    // Keep the last character apart: it may be the first half of the next "\n\n".
    if (scan.length > 1) {
      chunks.push(scan.slice(0, -1));
      pending = scan.slice(-1);
    } else {
      pending = scan;
    }
  }
}

function dispatch(block, onEvent) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") kind = value;
    if (field === "data") data.push(value);
  }
  if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
  return kind === "end";
}
