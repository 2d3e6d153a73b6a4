// One run: its graph, live. Every node is drawn from the start, pending ones included; the
// run's watch stream (a snapshot, then each node as it changes) recolours them in place.
// Up to a thousand nodes the graph is SVG; beyond, a canvas that draws only what is in view.

import { main, el, newPage, isShown, onLeave, statusLine } from "./api.js";
import { follow } from "./watch.js";
import { RunGraph } from "./graph/layout.js";
import { SvgRenderer } from "./graph/svg.js";
import { CanvasRenderer } from "./graph/canvas.js";
import { act, outcomeLine } from "./confirm.js";

/// The most nodes drawn as SVG.
const SVG_MOST = 1000;

export function show(run) {
  const page = newPage();
  const controller = new AbortController();
  let graph = null;
  let renderer = null;
  onLeave(() => {
    controller.abort();
    renderer?.destroy();
    window.batonGraph = undefined;
  });
  const opened = performance.now();
  const state = el("span", { id: "run-state", class: "state" });
  const counts = el("span", { id: "run-counts", class: "counts" });
  const picture = el("div", { id: "graph", class: "graph" }, "Reading the run…");
  const detail = el("aside", { id: "detail" }, "Click a node to see it.");
  const cancel = el("button", { id: "run-cancel", type: "button", class: "danger", hidden: "" }, "Cancel run");
  const outcome = outcomeLine("run-outcome");
  cancel.addEventListener("click", () => act({
    question: `Cancel run ${run}? Running nodes are stopped and nothing new starts.`,
    yes: "Cancel the run",
    what: "cancel this run",
    path: `/v1/runs/${encodeURIComponent(run)}/cancel`,
    out: outcome,
    done: "Cancel sent: the run's nodes stop.",
  }));
  main.replaceChildren(
    el("div", { class: "run-head" }, el("h1", {}, run), state, counts, el("span", { class: "actions" }, cancel)),
    outcome,
    el("div", { class: "run-body" }, picture, detail),
  );
  const select = (i) => {
    renderer.select?.(i);
    showNode(detail, graph.nodes[i]);
  };
  const build = () => {
    renderer?.destroy();
    const large = graph.nodes.length > SVG_MOST;
    picture.classList.toggle("large", large);
    renderer = large ? new CanvasRenderer(picture, graph, select) : new SvgRenderer(picture, graph, select);
    // For automation: what is drawn and how long it took (see tests/browser/).
    window.batonGraph = { renderer, graph, openedAt: opened };
    requestAnimationFrame(() => {
      // Since the page was opened, and since the browser began to load it.
      window.batonGraph.firstPaintMs ??= performance.now() - opened;
      window.batonGraph.paintedAt ??= performance.now();
    });
  };
  // A node new to the graph places everything again, once per frame however many arrive.
  let replace = false;
  const replaceSoon = () => {
    if (replace) return;
    replace = true;
    requestAnimationFrame(() => {
      replace = false;
      if (!isShown(page)) return;
      graph.place();
      if ((graph.nodes.length > SVG_MOST) !== picture.classList.contains("large")) build();
      else renderer.draw();
    });
  };
  const head = (h) => {
    state.textContent = h.state;
    state.className = `state ${h.state}`;
    state.setAttribute("data-state", h.state);
    // Only a run under way can be cancelled.
    cancel.hidden = h.state !== "running" && h.state !== "pending";
  };
  let counting = false;
  const countSoon = () => {
    if (counting) return;
    counting = true;
    setTimeout(() => {
      counting = false;
      const by = {};
      for (const n of graph.nodes) by[n.state] = (by[n.state] || 0) + 1;
      counts.textContent = Object.entries(by).map(([s, k]) => `${k.toLocaleString()} ${s}`).join(" · ");
    }, 250);
  };
  follow(`/v1/runs/${encodeURIComponent(run)}/watch`, controller.signal, (kind, data) => {
    if (!isShown(page)) return;
    if (kind === "snapshot") {
      head(data);
      graph = new RunGraph(data.nodes);
      build();
      countSoon();
    }
    if (kind === "node" && graph) {
      if (graph.update(data)) renderer.paint(graph.index.get(data.name));
      else replaceSoon();
      countSoon();
      if (detail.dataset.node === data.name) showNode(detail, data);
    }
    if (kind === "run" || kind === "end") head(data);
  }, (reasons) => {
    if (isShown(page)) main.replaceChildren(el("p", { class: "error" }, `run ${run}: ${reasons}`));
  });
  statusLine.textContent = "";
}

function showNode(detail, n) {
  detail.dataset.node = n.name;
  const rows = [["state", n.state], ["attempts", n.attempts], ["started", n.startedAt || "-"],
    ["finished", n.finishedAt || "-"], ["took", took(n)]];
  if (n.touches) rows.push(["touched", n.touches]);
  if (n.needs?.length) rows.push(["needs", n.needs.length > 5 ? `${n.needs.slice(0, 5).join(", ")} and ${n.needs.length - 5} more` : n.needs.join(", ")]);
  detail.replaceChildren(el("h2", {}, n.name),
    el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])));
  if (n.error) detail.append(el("h3", {}, "error"), el("pre", { class: "error", id: "node-error" }, n.error));
  if (n.output) detail.append(el("h3", {}, "output"), el("pre", { id: "node-output" }, n.output));
}

function took(n) {
  if (!n.startedAt || !n.finishedAt) return "-";
  const ms = Date.parse(n.finishedAt) - Date.parse(n.startedAt);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
