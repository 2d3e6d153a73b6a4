// A Cell's target-group weights over time as a step chart: a weight holds until the next
// change, so steps, not slopes, say what the load balancer did. One line per target group.

import { el, svg } from "./api.js";
import { clock } from "./format.js";

const WIDTH = 760;
const HEIGHT = 260;
const PAD = { left: 44, right: 16, top: 14, bottom: 34 };
const COLOURS = ["#0969da", "#1a7f37", "#cf222e", "#8250df", "#9a6700", "#1b7c83", "#bc4c00", "#6e7781"];

/// The changes to draw: the view's history, or, from a planner that keeps none, the
/// weights it shows now.
function changesOf(cell) {
  const history = cell.weightHistory || [];
  if (history.length) return history;
  if (!cell.weights?.length) return [];
  return [{ at: cell.lastSyncTime || new Date().toISOString(), weights: cell.weights }];
}

/// A target group's label: its name and version, as the last discovery saw them.
function label(w) {
  const name = w.name || w.arn.split("/").slice(-2, -1)[0] || w.arn;
  return w.version ? `${name} (${w.version})` : name;
}

/// Returns the chart (`#weight-chart`) and its legend for `cell` (a CellView).
export function weightsChart(cell) {
  const changes = changesOf(cell)
    .map((c) => ({ t: new Date(c.at).getTime(), at: c.at, weights: c.weights }))
    .filter((c) => !Number.isNaN(c.t));
  // Series in the order target groups first appear; the newest label of each wins.
  const series = new Map();
  for (const c of changes) {
    for (const w of c.weights) series.set(w.arn, { arn: w.arn, label: label(w) });
  }
  const chart = svg("svg", {
    id: "weight-chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT,
    role: "img", "aria-label": "target-group weights over time", "data-changes": changes.length,
  });
  const legend = el("ul", { class: "legend" });
  if (!changes.length) {
    const empty = svg("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "axis" });
    empty.textContent = "no weights seen yet";
    chart.append(empty);
    return el("figure", { class: "chart" }, chart, legend);
  }
  // The last step lasts until now: the chart's right edge is the present.
  const t0 = changes[0].t;
  const t1 = Math.max(Date.now(), changes[changes.length - 1].t + 1000);
  const top = Math.max(100, ...changes.flatMap((c) => c.weights.map((w) => w.weight)));
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right);
  const y = (w) => HEIGHT - PAD.bottom - (w / top) * (HEIGHT - PAD.top - PAD.bottom);
  axes(chart, x, y, top, t0, t1);
  let index = 0;
  for (const s of series.values()) {
    const colour = COLOURS[index++ % COLOURS.length];
    const weightAt = (c) => c.weights.find((w) => w.arn === s.arn)?.weight ?? 0;
    let d = "";
    changes.forEach((c, i) => {
      const px = x(c.t);
      const py = y(weightAt(c));
      d += i === 0 ? `M${px},${py}` : `V${py}`;
      d += `H${i + 1 < changes.length ? x(changes[i + 1].t) : x(t1)}`;
    });
    chart.append(svg("path", { d, class: "weight-line", stroke: colour, "data-arn": s.arn }));
    for (const c of changes) {
      if (!c.weights.some((w) => w.arn === s.arn)) continue;
      const point = svg("circle", {
        cx: x(c.t), cy: y(weightAt(c)), r: 3.5, fill: colour,
        class: "weight-point", "data-arn": s.arn, "data-weight": weightAt(c),
      });
      const tip = svg("title");
      tip.textContent = `${s.label}: ${weightAt(c)} at ${clock(c.at)}`;
      point.append(tip);
      chart.append(point);
    }
    // Through the CSSOM: the page's policy refuses inline style attributes.
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    legend.append(el("li", {}, swatch, s.label));
  }
  return el("figure", { class: "chart" }, chart, legend);
}

/// Grid lines, the weight scale and the first and last times.
function axes(chart, x, y, top, t0, t1) {
  for (const w of [0, top / 2, top]) {
    chart.append(svg("line", { x1: x(t0), x2: x(t1), y1: y(w), y2: y(w), class: "grid" }));
    const tick = svg("text", { x: PAD.left - 6, y: y(w) + 4, "text-anchor": "end", class: "axis" });
    tick.textContent = String(Math.round(w));
    chart.append(tick);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const tick = svg("text", { x: x(t), y: HEIGHT - 10, "text-anchor": anchor, class: "axis" });
    tick.textContent = clock(new Date(t).toISOString());
    chart.append(tick);
  }
}
