// Tasks and ignitors (`#/tasks`): Orca's chains, with each task's last success and failure
// and each ignitor's last and next fire. Read again every few seconds: fires are minutes
// apart, and no stream lists them.

import { el, main, newPage, poll } from "./api.js";
import { act, outcomeLine } from "./confirm.js";
import { time } from "./format.js";

/// Shows the tasks and the ignitors.
export function show() {
  const page = newPage();
  const tasks = el("tbody");
  const ignitors = el("tbody");
  const outcome = outcomeLine("schedules-outcome");
  main.replaceChildren(
    el("h1", {}, "Tasks"),
    outcome,
    el("table", { id: "tasks" },
      el("thead", {}, el("tr", {}, ...["Task", "State", "Last success", "Last failure", "Failures in a row",
        "Started by ignitors", "After success of", "After failure of", ""].map((h) => el("th", {}, h)))),
      tasks),
    el("h1", {}, "Ignitors"),
    el("table", { id: "ignitors" },
      el("thead", {}, el("tr", {}, ...["Ignitor", "Schedule", "Last fire", "Next fire", "Problem", ""]
        .map((h) => el("th", {}, h)))),
      ignitors),
  );
  // A delete confirmed here removes the row at the next read.
  const remove = (kind, name) => {
    const button = el("button", { type: "button", class: "danger small", "data-delete": name }, "Delete");
    button.addEventListener("click", () => act({
      question: `Delete ${kind} ${name}? Baton forgets it: ${kind === "Task"
        ? "no ignitor or task starts it any more" : "it fires no more"}; runs under way finish.`,
      yes: "Delete",
      what: `delete this ${kind}`,
      method: "DELETE",
      path: `/v1/${kind === "Task" ? "tasks" : "ignitors"}/${encodeURIComponent(name)}`,
      out: outcome,
      done: `${kind} ${name} deleted`,
    }));
    return button;
  };
  const names = (list) => list.join(", ") || "—";
  poll(page, "/v1/tasks", 5000, (all) => {
    tasks.replaceChildren(...all.map((t) => el("tr", { "data-task": t.name },
      el("td", {}, t.name),
      el("td", {}, el("span", { class: `state ${t.state.toLowerCase()}` }, t.state)),
      el("td", { class: "last-success" }, time(t.lastSuccess)),
      el("td", { class: "last-failure" }, time(t.lastFailure)),
      el("td", {}, String(t.failuresCount)),
      el("td", {}, names(t.ignitors)),
      el("td", {}, names(t.onSuccessTask)),
      el("td", {}, names(t.onFailureTask)),
      el("td", {}, remove("Task", t.name)))));
    if (!all.length) tasks.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "none" }, "No tasks are registered.")));
  });
  poll(page, "/v1/ignitors", 5000, (all) => {
    ignitors.replaceChildren(...all.map((i) => el("tr", { "data-ignitor": i.name },
      el("td", {}, i.name),
      el("td", {}, el("code", {}, i.scheduled)),
      el("td", { class: "last-fire" }, time(i.lastFire)),
      el("td", { class: "next-fire" }, i.spent ? el("span", { class: "none" }, "spent: fires no more") : time(i.nextFire)),
      el("td", { class: "error" }, i.error || ""),
      el("td", {}, remove("Ignitor", i.name)))));
    if (!all.length) ignitors.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "none" }, "No ignitors are registered.")));
  });
}
