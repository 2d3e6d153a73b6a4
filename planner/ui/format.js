// Times and names as the pages show them. Every function returns text, never HTML.

import { el } from "./api.js";

/// An RFC 3339 time as the local clock shows it ("14:03:07", with the date when not today).
export function clock(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const today = new Date().toDateString() === t.toDateString();
  return today ? t.toLocaleTimeString() : t.toLocaleString();
}

/// How far `iso` is from now, in words: "3 min ago", "in 2 h".
export function relative(iso) {
  if (!iso) return "";
  const ms = new Date(iso).getTime() - Date.now();
  if (Number.isNaN(ms)) return "";
  const s = Math.round(Math.abs(ms) / 1000);
  const span = s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min`
    : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return ms < 0 ? `${span} ago` : `in ${span}`;
}

/// A <time> element: the local clock and how far it is, the exact time on hover.
export function time(iso) {
  if (!iso) return el("span", { class: "none" }, "—");
  const words = relative(iso);
  return el("time", { datetime: iso, title: iso }, words ? `${clock(iso)} (${words})` : clock(iso));
}

/// A link to a run's page, or a dash.
export function runLink(run) {
  if (!run) return el("span", { class: "none" }, "—");
  return el("a", { href: `#/runs/${encodeURIComponent(run)}` }, run);
}

/// A condition's status as a badge: "Ready: True", coloured, its reason and message on hover.
export function conditionBadge(c) {
  const tone = c.status === "True" ? "true" : c.status === "False" ? "false" : "unknown";
  const why = [c.reason, c.message].filter(Boolean).join(": ");
  return el("span", { class: `condition ${tone}`, title: why, "data-type": c.type },
    `${c.type}: ${c.status}`);
}
