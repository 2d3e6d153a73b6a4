// What every page uses: the API with this tab's token, the status line, building elements,
// and the page lifecycle (work of a page no longer shown stops).

export const main = document.getElementById("main");
export const statusLine = document.getElementById("status");

// Each page shown gets a number; work of a page no longer shown stops at its next step.
let shownPage = 0;
let leaving = [];

/// Starts a new page: stops what the last one left running (streams, pollers) and returns
/// the new page's number.
export function newPage() {
  for (const stop of leaving) stop();
  leaving = [];
  statusLine.textContent = "";
  shownPage += 1;
  return shownPage;
}

/// Returns whether page `page` is still the one shown.
export function isShown(page) {
  return page === shownPage;
}

/// Runs `stop` when the page shown changes.
export function onLeave(stop) {
  leaving.push(stop);
}

/// Waits `ms` milliseconds.
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/// Calls the API; asks for a token when it answers 401, then tries again once.
export async function api(path, options = {}) {
  const token = sessionStorage.getItem("baton-token");
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !options.retried) {
    await askToken();
    return api(path, { ...options, retried: true });
  }
  return response;
}

/// The reasons the API gave for an answer that is not 2xx, as one line.
export async function reasons(response) {
  const body = await response.json().catch(() => ({}));
  return (body.errors || [response.statusText || `HTTP ${response.status}`]).join("; ");
}

/// GETs `path` and returns its JSON; throws the API's reasons otherwise.
export async function json(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await reasons(response));
  return response.json();
}

function askToken() {
  const dialog = document.getElementById("login");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      sessionStorage.setItem("baton-token", document.getElementById("token").value.trim());
      resolve();
    }, { once: true });
    dialog.showModal();
  });
}

/// An HTML element. Children are nodes or text: nothing is ever parsed as HTML.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

/// An SVG element.
export function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  return node;
}

/// Reads `path` (or what `path()` returns) again every `ms` while page `page` is shown,
/// handing each answer to `draw`; a failure is shown in the status line and the next read
/// tries again. `onReady`, if given, receives a function that reads at once (after a
/// filter changed), and a read already under way is not drawn.
export async function poll(page, path, ms, draw, onReady) {
  let wake = () => {};
  let generation = 0;
  onReady?.(() => { generation += 1; wake(); });
  while (isShown(page)) {
    const reading = generation;
    try {
      const read = await json(typeof path === "function" ? path() : path);
      if (!isShown(page)) return;
      if (reading === generation) {
        draw(read);
        statusLine.textContent = "";
      }
    } catch (e) {
      if (isShown(page)) statusLine.textContent = `${e.message}`;
    }
    if (reading !== generation) continue;
    await new Promise((r) => { wake = r; setTimeout(r, ms); });
  }
}
