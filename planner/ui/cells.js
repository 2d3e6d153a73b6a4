// Cells: the list (`#/cells`) and one Cell (`#/cells/<name>`), both live through the watch
// streams. A Cell's page shows its versions, rollout step, weights over time and blocked
// versions, and takes a person's resume / abort / promote / delete, each confirmed first.

import { el, isShown, main, newPage, onLeave, statusLine } from "./api.js";
import { follow } from "./watch.js";
import { act, outcomeLine } from "./confirm.js";
import { runLink, time } from "./format.js";
import { weightsChart } from "./weights-chart.js";

/// Shows the Cell `name`, or every Cell without one.
export function show(name) {
  const page = newPage();
  if (name === undefined) list(page);
  else one(page, name);
}

/// Follows a watch stream for as long as page `page` is shown.
function watch(page, path, onEvent) {
  const controller = new AbortController();
  onLeave(() => controller.abort());
  follow(path, controller.signal, (kind, data) => {
    if (isShown(page)) onEvent(kind, data, controller);
  }, (why, status) => {
    if (isShown(page)) statusLine.textContent = `${status}: ${why}`;
  });
}

function text(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

/// A Cell's weights in one line: "web-1 (1.0.0) 80 · web-2 (2.0.0) 20".
function weightsLine(weights) {
  if (!weights?.length) return "—";
  return weights.map((w) => `${w.name || w.arn}${w.version ? ` (${w.version})` : ""} ${w.weight}`)
    .join(" · ");
}

function phaseBadge(phase, id) {
  const attributes = { class: `phase ${phase.toLowerCase()}`, "data-phase": phase };
  if (id) attributes.id = id;
  return el("span", attributes, phase);
}

function list(page) {
  const rows = el("tbody");
  main.replaceChildren(
    el("h1", {}, "Cells"),
    el("table", { id: "cells" },
      el("thead", {}, el("tr", {}, ...["Cell", "Phase", "Serving", "Desired", "Step", "Weights", "Blocked", "Message"]
        .map((h) => el("th", {}, h)))),
      rows),
  );
  watch(page, "/v1/watch/cells", (kind, cells) => {
    if (kind !== "cells") return;
    const sorted = [...cells].sort((a, b) => a.name.localeCompare(b.name));
    rows.replaceChildren(...sorted.map((c) => el("tr", { "data-cell": c.name },
      el("td", {}, el("a", { href: `#/cells/${encodeURIComponent(c.name)}` }, c.name)),
      el("td", {}, phaseBadge(c.phase)),
      el("td", {}, text(c.servingVersion)),
      el("td", {}, text(c.desiredVersion)),
      el("td", {}, text(c.step)),
      el("td", {}, weightsLine(c.weights)),
      el("td", {}, c.blocked.map((b) => b.version).join(", ") || "—"),
      el("td", { class: "message" }, text(c.message)))));
    if (!cells.length) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "none" }, "No Cells are registered.")));
    }
  });
}

/// The questions each command asks, from the Cell as the person sees it.
const QUESTIONS = {
  resume: (c) => `Resume the rollout of ${text(c.desiredVersion)} on Cell ${c.name}, now at step ${text(c.step)}?`,
  abort: (c) => `Abort the rollout of ${text(c.desiredVersion)} on Cell ${c.name}? `
    + `${text(c.servingVersion)} gets all the traffic back and ${text(c.desiredVersion)} is blocked until promoted.`,
  promote: (c) => (c.run
    ? `Promote ${text(c.desiredVersion)} on Cell ${c.name}? It gets all the traffic now; the remaining steps are skipped.`
    : `Promote on Cell ${c.name}? A blocked version is unblocked and gets all the traffic at once.`),
};

function one(page, name) {
  const path = `/v1/cells/${encodeURIComponent(name)}`;
  // The Cell as last shown: commands name its run and step, so that one sent after the
  // rollout moved on is refused (409) instead of acting on what the person did not see.
  let shown = null;
  const phase = el("span", { id: "cell-phase", class: "phase" });
  const facts = {};
  const fact = (label, id) => {
    facts[id] = el("dd", { id });
    return [el("dt", {}, label), facts[id]];
  };
  const outcome = outcomeLine("cell-outcome");
  const button = (command, label, hint) => el("button", { id: `cell-${command}`, title: hint, type: "button" }, label);
  const buttons = {
    resume: button("resume", "Resume", "Go on past a pause, an inconclusive analysis or a failed step"),
    abort: button("abort", "Abort", "Give the serving version all traffic back and block the new one"),
    promote: button("promote", "Promote", "Skip the remaining steps, or unblock a blocked version"),
    delete: button("delete", "Delete", "Forget the Cell (its rule goes too with deletionPolicy: Delete)"),
  };
  buttons.delete.classList.add("danger");
  const chart = el("div", { id: "cell-chart" });
  const weights = el("tbody");
  const blocked = el("tbody");
  main.replaceChildren(
    el("div", { class: "run-head" }, el("h1", {}, `Cell ${name}`), phase),
    el("div", { class: "actions" }, ...Object.values(buttons)),
    outcome,
    el("dl", { id: "cell-facts" },
      ...fact("Serving version", "cell-serving"),
      ...fact("Desired version", "cell-desired"),
      ...fact("Step", "cell-step"),
      ...fact("Rollout run", "cell-run"),
      ...fact("Message", "cell-message"),
      ...fact("Last discovery", "cell-sync"),
      ...fact("Target groups from", "cell-source")),
    el("h2", {}, "Weights over time"),
    chart,
    el("h2", {}, "Weights now"),
    el("table", { id: "cell-weights" },
      el("thead", {}, el("tr", {}, ...["Target group", "Version", "Weight", "ARN"].map((h) => el("th", {}, h)))),
      weights),
    el("h2", {}, "Blocked versions"),
    el("table", { id: "cell-blocked" },
      el("thead", {}, el("tr", {}, ...["Version", "Why", "Since"].map((h) => el("th", {}, h)))),
      blocked),
  );

  for (const command of ["resume", "abort", "promote"]) {
    buttons[command].addEventListener("click", () => {
      if (!shown) return;
      // What the person saw: this rollout at this step, or no rollout at all; the API
      // refuses (409) a command whose Cell has moved on since.
      const body = shown.run ? { run: shown.run, step: shown.step ?? undefined } : { idle: true };
      act({
        question: QUESTIONS[command](shown),
        yes: command[0].toUpperCase() + command.slice(1),
        what: `${command} this Cell's rollout`,
        path: `${path}/${command}`,
        body,
        out: outcome,
        done: `${command}: sent; the page follows the Cell`,
      });
    });
  }
  buttons.delete.addEventListener("click", async () => {
    const deleted = await act({
      question: `Delete Cell ${name}? Baton forgets it; with deletionPolicy: Delete its listener rule is removed too.`,
      yes: "Delete",
      what: "delete this Cell",
      method: "DELETE",
      path,
      out: outcome,
    });
    if (deleted && isShown(page)) location.hash = "#/cells";
  });

  const draw = (cell) => {
    shown = cell;
    phase.textContent = cell.phase;
    phase.className = `phase ${cell.phase.toLowerCase()}`;
    phase.dataset.phase = cell.phase;
    facts["cell-serving"].textContent = text(cell.servingVersion);
    facts["cell-desired"].textContent = text(cell.desiredVersion);
    facts["cell-step"].textContent = text(cell.step);
    facts["cell-run"].replaceChildren(runLink(cell.run));
    facts["cell-message"].textContent = text(cell.message);
    facts["cell-sync"].replaceChildren(time(cell.lastSyncTime));
    facts["cell-source"].textContent = text(cell.targetGroupSource);
    // Without a rollout there is nothing to resume or abort: the API would say so (409).
    buttons.resume.disabled = !cell.run;
    buttons.abort.disabled = !cell.run;
    buttons.promote.disabled = !cell.run && !cell.blocked.length;
    chart.replaceChildren(weightsChart(cell));
    weights.replaceChildren(...cell.weights.map((w) => el("tr", { "data-arn": w.arn, "data-weight": w.weight },
      el("td", {}, text(w.name)), el("td", {}, text(w.version)),
      el("td", { class: "weight" }, String(w.weight)), el("td", { class: "arn" }, w.arn))));
    if (!cell.weights.length) weights.append(el("tr", {}, el("td", { colspan: 4, class: "none" }, "No rule seen yet.")));
    blocked.replaceChildren(...cell.blocked.map((b) => el("tr", { "data-version": b.version },
      el("td", {}, b.version), el("td", {}, b.cause), el("td", {}, time(b.at)))));
    if (!cell.blocked.length) blocked.append(el("tr", {}, el("td", { colspan: 3, class: "none" }, "None.")));
  };
  watch(page, `${path}/watch`, (kind, data, controller) => {
    if (kind === "cell") draw(data);
    if (kind === "deleted") {
      controller.abort();
      shown = null;
      for (const b of Object.values(buttons)) b.disabled = true;
      phase.textContent = "deleted";
      phase.dataset.phase = "deleted";
    }
  });
}
