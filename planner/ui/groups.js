// Application groups: the list (`#/groups`, read again every few seconds) and one group
// (`#/groups/<name>`, live through its watch stream): its applications and their subcharts
// as a tree with their conditions, its runs, and delete (confirmed first).

import { el, isShown, main, newPage, onLeave, poll, statusLine } from "./api.js";
import { follow } from "./watch.js";
import { act, outcomeLine } from "./confirm.js";
import { conditionBadge, runLink } from "./format.js";

/// Shows the group `name`, or every group without one.
export function show(name) {
  const page = newPage();
  if (name === undefined) list(page);
  else one(page, name);
}

function text(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

function badges(conditions) {
  if (!conditions?.length) return el("span", { class: "none" }, "—");
  return el("span", { class: "conditions" }, ...conditions.map(conditionBadge));
}

function list(page) {
  const rows = el("tbody");
  main.replaceChildren(
    el("h1", {}, "Application groups"),
    el("table", { id: "groups" },
      el("thead", {}, el("tr", {}, ...["Group", "Phase", "Revision", "Applications", "Run", "Conditions"]
        .map((h) => el("th", {}, h)))),
      rows),
  );
  // No stream lists every group; a list a person glances at is fine read every 5 s.
  poll(page, "/v1/groups", 5000, (groups) => {
    rows.replaceChildren(...groups.map((g) => el("tr", { "data-group": g.name },
      el("td", {}, el("a", { href: `#/groups/${encodeURIComponent(g.name)}` }, g.name)),
      el("td", {}, el("span", { class: `phase ${g.phase.toLowerCase()}`, "data-phase": g.phase }, g.phase)),
      el("td", {}, String(g.revision)),
      el("td", {}, String(g.applications.length)),
      el("td", {}, runLink(g.run)),
      el("td", {}, badges(g.conditions)))));
    if (!groups.length) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "none" }, "No application groups are registered.")));
    }
  });
}

/// One release of the tree: its name, namespace, chart version, conditions and error.
function release(label, r, kind) {
  const item = el("li", { class: `release ${kind}`, "data-name": label },
    el("span", { class: "name" }, label));
  if (!r) {
    item.append(el("span", { class: "none" }, " (no release of its own)"));
    return item;
  }
  item.append(
    el("span", { class: "where" }, ` ${r.namespace}/${r.release}`),
    el("span", { class: "version" }, r.version ? ` ${r.version}` : ""),
    " ", badges(r.conditions));
  if (r.error) item.append(el("pre", { class: "error" }, r.error));
  return item;
}

/// The applications as a tree: each application's own release, its subcharts under it.
function tree(applications) {
  if (!applications.length) return el("p", { class: "none" }, "No applications.");
  return el("ul", { class: "tree", id: "group-tree" }, ...applications.map((a) => {
    const item = release(a.name, a.release ? a : null, "application");
    const subcharts = Object.entries(a.subcharts || {});
    if (subcharts.length) {
      item.append(el("ul", {}, ...subcharts.map(([name, r]) => release(name, r, "subchart"))));
    }
    return item;
  }));
}

function one(page, name) {
  const path = `/v1/groups/${encodeURIComponent(name)}`;
  const phase = el("span", { id: "group-phase", class: "phase" });
  const outcome = outcomeLine("group-outcome");
  const remove = el("button", { id: "group-delete", type: "button", class: "danger" }, "Delete");
  const force = el("button", { id: "group-force-delete", type: "button", class: "danger",
    title: "Delete, and let the group go even if an uninstall fails" }, "Force delete");
  const facts = el("dl", { id: "group-facts" });
  const conditions = el("div", { id: "group-conditions" });
  const applications = el("div", { id: "group-applications" });
  main.replaceChildren(
    el("div", { class: "run-head" }, el("h1", {}, `Group ${name}`), phase),
    el("div", { class: "actions" }, remove, force),
    outcome,
    facts,
    el("h2", {}, "Conditions"),
    conditions,
    el("h2", {}, "Applications"),
    applications,
  );
  remove.addEventListener("click", () => act({
    question: `Delete group ${name}? Its releases are uninstalled in reverse order.`,
    yes: "Delete",
    what: "delete this group",
    method: "DELETE",
    path,
    out: outcome,
    done: "delete: accepted; the releases are being uninstalled",
  }));
  force.addEventListener("click", () => act({
    question: `Force delete group ${name}? Its releases are uninstalled, and Baton lets the group go `
      + "even if some stay installed: those are left for you to remove.",
    yes: "Force delete",
    what: "force delete this group",
    method: "DELETE",
    path: `${path}?force=true`,
    out: outcome,
    done: "force delete: accepted",
  }));

  const draw = (g) => {
    phase.textContent = g.phase;
    phase.className = `phase ${g.phase.toLowerCase()}`;
    phase.dataset.phase = g.phase;
    const fact = (label, value) => [el("dt", {}, label), el("dd", {}, value)];
    facts.replaceChildren(
      ...fact("API version", g.apiVersion),
      ...fact("Revision", `${g.revision}${g.lastSucceededRevision != null ? ` (last released in full: ${g.lastSucceededRevision})` : ""}`),
      ...fact("Generation", `${text(g.observedGeneration)} (last released in full: ${text(g.lastSucceededGeneration)})`),
      ...fact("Run", runLink(g.run)),
      ...fact("Forward run", runLink(g.runs.forward)),
      ...fact("Remediation run", runLink(g.runs.remediation)),
      ...fact("Delete run", runLink(g.runs.delete)),
      ...fact("Remediation", text(g.remediation)),
      ...fact("Waiting", text(g.pending)),
      ...fact("Settled", g.settled ? "yes" : "no"),
      ...fact("Left installed", g.leftInstalled.join(", ") || "—"));
    conditions.replaceChildren(g.conditions.length
      ? el("table", {},
        el("thead", {}, el("tr", {}, ...["Type", "Status", "Reason", "Message", "Since"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...g.conditions.map((c) => el("tr", { "data-type": c.type },
          el("td", {}, c.type), el("td", {}, conditionBadge(c)), el("td", {}, c.reason),
          el("td", { class: "message" }, c.message), el("td", {}, text(c.lastTransitionTime))))))
      : el("p", { class: "none" }, "None yet."));
    applications.replaceChildren(tree(g.applications));
  };
  const controller = new AbortController();
  onLeave(() => controller.abort());
  follow(`${path}/watch`, controller.signal, (kind, data) => {
    if (!isShown(page)) return;
    if (kind === "group") draw(data);
    if (kind === "deleted") {
      controller.abort();
      phase.textContent = "deleted";
      phase.dataset.phase = "deleted";
      remove.disabled = true;
      force.disabled = true;
    }
  }, (why, status) => {
    if (isShown(page)) statusLine.textContent = `${status}: ${why}`;
  });
}
