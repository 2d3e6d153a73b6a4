// Baton's dashboard: the runs, and one run's graph live. Plain modules, no build step.
// Every request goes to the planner's API with the token this tab was given, if any.

const main = document.getElementById("main");
const statusLine = document.getElementById("status");
// Each page shown gets a number; work of a page no longer shown stops at its next step.
let shownPage = 0;
let closeStream = () => {};

/// Calls the API; asks for a token when it answers 401, then tries again once.
async function api(path, options = {}) {
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

async function json(path) {
  const response = await api(path);
  const body = await response.json();
  if (!response.ok) throw new Error((body.errors || [response.statusText]).join("; "));
  return body;
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

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  return node;
}

// --- The runs page -----------------------------------------------------------------------

async function showRuns() {
  const workflow = el("input", { id: "filter-workflow", placeholder: "workflow" });
  const state = el("select", { id: "filter-state" }, el("option", { value: "" }, "any state"));
  for (const s of ["pending", "running", "succeeded", "failed", "skipped", "cancelled"]) {
    state.append(el("option", { value: s }, s));
  }
  const table = el("table", { id: "runs" });
  main.replaceChildren(el("h1", {}, "Runs"), el("div", { class: "filters" }, workflow, state), table);
  const draw = (runs) => {
    const shown = runs.filter((r) =>
      (!workflow.value || r.workflow.includes(workflow.value)) && (!state.value || r.state === state.value));
    table.replaceChildren(el("tr", {}, el("th", {}, "run"), el("th", {}, "workflow"),
      el("th", {}, "state"), el("th", {}, "nodes")));
    for (const r of shown) {
      const done = r.nodes.filter((n) => n.state === "succeeded").length;
      table.append(el("tr", { "data-run": r.run, "data-state": r.state },
        el("td", {}, el("a", { href: `#/runs/${encodeURIComponent(r.run)}` }, r.run)),
        el("td", {}, r.workflow), el("td", { class: `state ${r.state}` }, r.state),
        el("td", {}, `${done}/${r.nodes.length}`)));
    }
  };
  let runs = [];
  workflow.addEventListener("input", () => draw(runs));
  state.addEventListener("change", () => draw(runs));
  // The list is read again every 2 s while the page is shown.
  const page = shownPage;
  while (page === shownPage) {
    try {
      const read = await json("/v1/runs");
      if (page !== shownPage) return;
      runs = read;
      draw(runs);
      statusLine.textContent = "";
    } catch (e) {
      statusLine.textContent = `runs: ${e.message}`;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// --- One run's graph ---------------------------------------------------------------------

/// Columns by longest path from the roots (in topological order, without recursion, so a
/// long chain cannot overflow the stack); rows in spec order within a column. Nodes in a
/// cycle or behind one stay in column 0.
export function layout(nodes) {
  const index = new Map(nodes.map((n, i) => [n.name, i]));
  const level = new Array(nodes.length).fill(0);
  const waiting = new Array(nodes.length).fill(0);
  const next = nodes.map(() => []);
  nodes.forEach((n, i) => {
    for (const need of n.needs || []) {
      const j = index.get(need);
      if (j === undefined) continue;
      waiting[i] += 1;
      next[j].push(i);
    }
  });
  const ready = [];
  waiting.forEach((w, i) => { if (w === 0) ready.push(i); });
  for (let k = 0; k < ready.length; k++) {
    const i = ready[k];
    for (const j of next[i]) {
      level[j] = Math.max(level[j], level[i] + 1);
      if (--waiting[j] === 0) ready.push(j);
    }
  }
  const rows = [];
  return nodes.map((n, i) => {
    const column = level[i];
    rows[column] = (rows[column] || 0) + 1;
    return { column, row: rows[column] - 1 };
  });
}

function largest(values) {
  let most = 0;
  for (const v of values) if (v > most) most = v;
  return most;
}

const W = 170, H = 36, GAP_X = 60, GAP_Y = 18;

async function showRun(run) {
  const page = shownPage;
  const controller = new AbortController();
  closeStream = () => controller.abort();
  const title = el("h1", {}, run);
  const state = el("span", { id: "run-state", class: "state" });
  const picture = svg("svg", { id: "dag" });
  const detail = el("aside", { id: "detail" }, "Click a node to see it.");
  main.replaceChildren(el("div", { class: "run-head" }, title, state), el("div", { class: "run-body" }, picture, detail));
  let status;
  try {
    status = await json(`/v1/runs/${encodeURIComponent(run)}`);
  } catch (e) {
    if (page === shownPage) main.replaceChildren(el("p", { class: "error" }, `run ${run}: ${e.message}`));
    return;
  }
  if (page !== shownPage) return;
  const byName = new Map();
  const draw = () => {
    const places = layout(status.nodes);
    const columns = largest(places.map((p) => p.column)) + 1;
    const rows = largest(places.map((p) => p.row)) + 1;
    picture.setAttribute("viewBox", `0 0 ${columns * (W + GAP_X)} ${rows * (H + GAP_Y)}`);
    picture.setAttribute("width", columns * (W + GAP_X));
    picture.setAttribute("height", rows * (H + GAP_Y));
    picture.replaceChildren();
    const at = new Map(status.nodes.map((n, i) => [n.name, places[i]]));
    const x = (p) => p.column * (W + GAP_X), y = (p) => p.row * (H + GAP_Y);
    for (const n of status.nodes) {
      for (const need of n.needs || []) {
        const from = at.get(need), to = at.get(n.name);
        if (!from) continue;
        const x1 = x(from) + W, y1 = y(from) + H / 2, x2 = x(to), y2 = y(to) + H / 2;
        picture.append(svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}` }));
      }
    }
    byName.clear();
    for (const n of status.nodes) {
      const p = at.get(n.name);
      const g = svg("g", { class: "node", "data-node": n.name, transform: `translate(${x(p)},${y(p)})` });
      const box = svg("rect", { width: W, height: H, rx: 6 });
      const label = svg("text", { x: 10, y: H / 2 + 5 });
      label.textContent = n.name;
      g.append(box, label);
      g.addEventListener("click", () => showNode(detail, status.nodes.find((m) => m.name === n.name)));
      picture.append(g);
      byName.set(n.name, g);
      paint(n);
    }
  };
  // A node new to the graph redraws it once per frame, however many arrive.
  let redraw = false;
  const drawSoon = () => {
    if (redraw) return;
    redraw = true;
    requestAnimationFrame(() => { redraw = false; draw(); });
  };
  const paint = (n) => {
    const g = byName.get(n.name);
    if (!g) return drawSoon();
    g.setAttribute("data-state", n.state);
    g.setAttribute("class", `node ${n.state}`);
  };
  const head = (h) => {
    state.textContent = h.state;
    state.className = `state ${h.state}`;
    state.setAttribute("data-state", h.state);
  };
  head(status);
  draw();
  follow(run, controller, (kind, data) => {
    if (kind === "snapshot") { status = data; head(status); draw(); }
    if (kind === "node") {
      const i = status.nodes.findIndex((m) => m.name === data.name);
      if (i >= 0) { status.nodes[i] = data; paint(data); } else { status.nodes.push(data); drawSoon(); }
      if (detail.dataset.node === data.name) showNode(detail, data);
    }
    if (kind === "run" || kind === "end") head(data);
  });
}

function showNode(detail, n) {
  detail.dataset.node = n.name;
  const rows = [["state", n.state], ["attempts", n.attempts], ["started", n.startedAt || "-"],
    ["finished", n.finishedAt || "-"]];
  detail.replaceChildren(el("h2", {}, n.name),
    el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])));
  if (n.error) detail.append(el("h3", {}, "error"), el("pre", { class: "error", id: "node-error" }, n.error));
  if (n.output) detail.append(el("h3", {}, "output"), el("pre", { id: "node-output" }, n.output));
}

/// Reads the run's watch stream (server-sent events through fetch, which can send the token),
/// opening it again when it is cut (waiting 1 s, doubling to 30 s), until the page changes,
/// the run ends, or the API refuses it.
function follow(run, controller, onEvent) {
  (async () => {
    let wait = 1000;
    while (!controller.signal.aborted) {
      try {
        const response = await api(`/v1/runs/${encodeURIComponent(run)}/watch`, { signal: controller.signal });
        if (response.status >= 400 && response.status < 500) {
          const body = await response.json().catch(() => ({}));
          statusLine.textContent = `watch: ${(body.errors || [response.statusText]).join("; ")}`;
          return;
        }
        if (!response.ok) throw new Error(response.statusText);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          wait = 1000;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let kind = "message";
            const data = [];
            for (const line of block.split("\n")) {
              const field = line.slice(0, line.indexOf(":") < 0 ? line.length : line.indexOf(":"));
              let value = line.slice(field.length + 1);
              if (value.startsWith(" ")) value = value.slice(1);
              if (field === "event") kind = value;
              if (field === "data") data.push(value);
            }
            if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
            if (kind === "end") return;
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
        statusLine.textContent = `watch: ${e.message}`;
      }
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 30000);
    }
  })();
}

function route() {
  closeStream();
  closeStream = () => {};
  shownPage += 1;
  const hash = location.hash || "#/runs";
  const run = hash.match(/^#\/runs\/(.+)$/);
  let id = null;
  try {
    id = run && decodeURIComponent(run[1]);
  } catch {
    id = null;
  }
  if (id) showRun(id);
  else showRuns();
}

window.addEventListener("hashchange", route);
route();
