// The runs page: newest first, filtered by workflow, state and start time, a page at a
// time (`GET /v1/run-summaries`: a summary per run, never its nodes, so that a list holding
// runs of 100,000 nodes stays small). The page shown is read again every 2 s.

import { main, el, newPage, poll } from "./api.js";
import { clock, runLink } from "./format.js";

const STATES = ["pending", "running", "succeeded", "failed", "skipped", "cancelled"];
const PER_PAGE = 50;

export function show() {
  const page = newPage();
  const workflow = el("input", { id: "filter-workflow", placeholder: "workflow", type: "search" });
  const state = el("select", { id: "filter-state" }, el("option", { value: "" }, "any state"));
  for (const s of STATES) state.append(el("option", { value: s }, s));
  const since = el("input", { id: "filter-since", type: "datetime-local", title: "started at or after" });
  const until = el("input", { id: "filter-until", type: "datetime-local", title: "started before" });
  const newer = el("button", { id: "page-newer", type: "button" }, "← newer");
  const older = el("button", { id: "page-older", type: "button" }, "older →");
  const table = el("table", { id: "runs" });
  main.replaceChildren(el("h1", {}, "Runs"),
    el("div", { class: "filters" }, workflow, state, el("label", {}, "from ", since), el("label", {}, "to ", until)),
    table, el("div", { class: "pager" }, newer, older));
  // The cursors of the pages before this one; the last one read says where the next starts.
  let cursors = [];
  let next = null;
  const query = () => {
    const q = new URLSearchParams({ limit: String(PER_PAGE) });
    if (workflow.value) q.set("workflow", workflow.value);
    if (state.value) q.set("state", state.value);
    // The inputs hold local time; the API takes RFC 3339.
    if (since.value) q.set("since", new Date(since.value).toISOString());
    if (until.value) q.set("until", new Date(until.value).toISOString());
    const from = cursors[cursors.length - 1];
    if (from) q.set("continue", from);
    return `/v1/run-summaries?${q}`;
  };
  const draw = (read) => {
    next = read.continue || null;
    newer.disabled = cursors.length === 0;
    older.disabled = !next;
    table.replaceChildren(el("tr", {}, ...["run", "workflow", "state", "started", "finished", "nodes"].map((h) => el("th", {}, h))));
    for (const r of read.runs) {
      const done = r.counts.succeeded || 0;
      const failed = r.counts.failed ? `, ${r.counts.failed} failed` : "";
      table.append(el("tr", { "data-run": r.run, "data-state": r.state },
        el("td", {}, runLink(r.run)),
        el("td", {}, r.workflow), el("td", { class: `state ${r.state}` }, r.state),
        el("td", {}, clock(r.createdAt)), el("td", {}, clock(r.finishedAt)),
        el("td", {}, `${done.toLocaleString()}/${r.nodes.toLocaleString()}${failed}`)));
    }
    if (!read.runs.length) table.append(el("tr", {}, el("td", { colspan: "6" }, "No runs match.")));
  };
  // A changed filter starts again from the newest page.
  const again = () => { cursors = []; reread(); };
  let reread = () => {};
  for (const input of [workflow, since, until]) input.addEventListener("input", again);
  state.addEventListener("change", again);
  // The button is off until the next page is read: two quick clicks move one page.
  older.addEventListener("click", () => {
    if (!next) return;
    cursors.push(next);
    next = null;
    older.disabled = true;
    reread();
  });
  newer.addEventListener("click", () => {
    cursors.pop();
    newer.disabled = cursors.length === 0;
    reread();
  });
  poll(page, query, 2000, draw, (now) => { reread = now; });
}

