// The graph on a canvas, for runs too large for one element per node (Argo's page stops
// answering at a few thousand). Each frame draws only what is in view: nodes found by
// column and row range through the layout's grid, so a frame costs what the screen
// shows, not what the run holds. Far out, where a node is under three pixels tall, a
// column is drawn as a strip coloured per pixel by its most notable node (a failure shows
// through a hundred thousand successes) and edges as one band per pair of columns.

import { el } from "../api.js";
import { W, H, GAP_X as GAP, STEP_X, STEP_Y, FILL, STROKE, NOTICE } from "./layout.js";

const MOST_EDGES = 20000;
const PAD = 20;

export class CanvasRenderer {
  constructor(container, graph, onSelect) {
    this.graph = graph;
    this.onSelect = onSelect;
    this.selected = -1;
    this.frames = 0;
    this.lastFrameMs = 0;
    this.canvas = el("canvas", { id: "dag-canvas", tabindex: "0", role: "img",
      "aria-label": `graph of ${graph.nodes.length} nodes; drag or scroll to move, ctrl and scroll to zoom, click a node to see it` });
    const fit = el("button", { id: "graph-fit", type: "button" }, "whole graph");
    const actual = el("button", { id: "graph-actual", type: "button" }, "100 %");
    fit.addEventListener("click", () => { this.fitAll(); this.schedule(); });
    actual.addEventListener("click", () => { this.zoomAt(this.cssWidth / 2, this.cssHeight / 2, 1 / this.view.zoom); });
    this.legend = el("span", { class: "graph-legend" });
    container.replaceChildren(el("div", { class: "graph-tools" }, fit, actual, this.legend), this.canvas);
    this.context = this.canvas.getContext("2d", { alpha: false });
    this.resize();
    this.fitWidth();
    this.listen();
    this.resizing = new ResizeObserver(() => { this.resize(); this.schedule(); });
    this.resizing.observe(this.canvas);
    this.schedule();
  }

  destroy() {
    this.resizing.disconnect();
    this.destroyed = true;
  }

  /// Placed again by the caller (a chain's new nodes): draw again.
  draw() { this.schedule(); }

  /// One node changed state: the next frame shows it (many changes, one frame).
  paint() { this.schedule(); }

  select(i) { this.selected = i; this.schedule(); }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    this.cssWidth = Math.max(1, this.canvas.clientWidth);
    this.cssHeight = Math.max(1, this.canvas.clientHeight);
    this.canvas.width = Math.round(this.cssWidth * ratio);
    this.canvas.height = Math.round(this.cssHeight * ratio);
    this.ratio = ratio;
  }

  /// The scales at which the whole graph's width and height fit, at most full size.
  fits() {
    return {
      x: Math.min(1, this.cssWidth / (this.graph.width + 2 * PAD)),
      y: Math.min(1, this.cssHeight / (this.graph.height + 2 * PAD)),
    };
  }

  /// Sets the zoom. A direction never shrinks below the scale at which it already fits:
  /// zoomed out, a fan-out of 100,000 nodes stays as wide as it is and only its columns
  /// shorten, and a long chain only narrows.
  setZoom(zoom) {
    const fit = this.fits();
    this.view.zoom = zoom;
    this.view.sx = Math.max(zoom, fit.x);
    this.view.sy = Math.max(zoom, fit.y);
  }

  /// The first view, from the top left: the graph's width on screen (at most full size),
  /// so that a fan-out opens readable and scrolls down; a graph too wide for that (a long
  /// chain) opens at full size and scrolls right.
  fitWidth() {
    this.view = { x: -PAD, y: -PAD };
    const fit = this.fits().x;
    this.setZoom(W * fit >= 60 ? fit : 1);
  }

  fitAll() {
    const fit = this.fits();
    this.view = { x: -PAD, y: -PAD };
    this.setZoom(Math.min(fit.x, fit.y));
  }

  /// Zooms by `factor` keeping the graph's point under (`px`, `py`) where it is.
  zoomAt(px, py, factor) {
    const fit = this.fits();
    const { sx, sy, zoom } = this.view;
    this.setZoom(Math.min(2, Math.max(Math.min(fit.x, fit.y) / 2, zoom * factor)));
    this.view.x += px / sx - px / this.view.sx;
    this.view.y += py / sy - py / this.view.sy;
    this.schedule();
  }

  panBy(dx, dy) {
    this.view.x += dx / this.view.sx;
    this.view.y += dy / this.view.sy;
    this.schedule();
  }

  listen() {
    const canvas = this.canvas;
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = canvas.getBoundingClientRect();
      // A pinch arrives as a wheel with ctrl held.
      if (e.ctrlKey || e.metaKey) this.zoomAt(e.clientX - box.left, e.clientY - box.top, Math.exp(-e.deltaY * 0.002));
      else if (e.shiftKey) this.panBy(e.deltaY, e.deltaX);
      else this.panBy(e.deltaX, e.deltaY);
    }, { passive: false });
    let drag = null;
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, moved: 0 };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointercancel", () => { drag = null; });
    canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      drag.moved += Math.abs(dx) + Math.abs(dy);
      drag.x = e.clientX;
      drag.y = e.clientY;
      this.panBy(-dx, -dy);
    });
    canvas.addEventListener("pointerup", (e) => {
      const click = drag && drag.moved < 4;
      drag = null;
      if (!click) return;
      const box = canvas.getBoundingClientRect();
      this.clickAt(e.clientX - box.left, e.clientY - box.top);
    });
    canvas.addEventListener("keydown", (e) => {
      const step = 60;
      const keys = {
        ArrowLeft: () => this.panBy(-step, 0), ArrowRight: () => this.panBy(step, 0),
        ArrowUp: () => this.panBy(0, -step), ArrowDown: () => this.panBy(0, step),
        "+": () => this.zoomAt(this.cssWidth / 2, this.cssHeight / 2, 1.25),
        "-": () => this.zoomAt(this.cssWidth / 2, this.cssHeight / 2, 0.8),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
  }

  /// A click on a node opens it; where nodes are too small to aim at, it zooms in there.
  clickAt(px, py) {
    const { sx, sy, x, y, zoom } = this.view;
    if (H * sy < 8 || W * sx < 8) {
      this.zoomAt(px, py, 0.75 / zoom);
      return;
    }
    const i = this.graph.at(x + px / sx, y + py / sy);
    if (i !== undefined) this.onSelect(i);
  }

  /// The centre of node `name` on the page, if it is placed (for automation and tests).
  position(name) {
    const i = this.graph.index.get(name);
    if (i === undefined) return null;
    const box = this.canvas.getBoundingClientRect();
    return { x: box.left + this.sx(this.graph.x(i) + W / 2), y: box.top + this.sy(this.graph.y(i) + H / 2) };
  }

  /// Where a point of the graph's plane is on the canvas, in CSS pixels.
  sx(x) { return (x - this.view.x) * this.view.sx; }
  sy(y) { return (y - this.view.y) * this.view.sy; }

  schedule() {
    if (this.scheduled || this.destroyed) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      if (!this.destroyed) this.render();
    });
  }

  render() {
    const started = performance.now();
    const { context: c, graph } = this;
    const { sx, sy, x, y } = this.view;
    // Everything is drawn in CSS pixels, mapped by hand: the two directions may have
    // different scales, which a canvas transform would apply to text and lines too.
    c.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    c.fillStyle = "#ffffff";
    c.fillRect(0, 0, this.cssWidth, this.cssHeight);
    const columnFirst = Math.max(0, Math.floor(x / STEP_X));
    const columnLast = Math.min(graph.columns - 1, Math.floor((x + this.cssWidth / sx) / STEP_X));
    const rowFirst = Math.max(0, Math.floor(y / STEP_Y));
    const rowLast = Math.floor((y + this.cssHeight / sy) / STEP_Y);
    this.legend.textContent = `${graph.nodes.length.toLocaleString()} nodes`;
    if (STEP_X * sx < 2) {
      // Columns thinner than two pixels (a long chain far out): one dot per pixel.
      this.drawDots(columnFirst, columnLast, rowFirst, rowLast);
    } else {
      const apart = H * sy >= 3;
      if (!apart || !this.drawEdges(columnFirst, columnLast, rowFirst, rowLast)) this.drawBands(columnFirst, columnLast);
      for (let column = columnFirst; column <= columnLast; column++) {
        const nodes = graph.grid[column];
        const last = Math.min(nodes.length - 1, rowLast);
        if (apart) this.drawNodes(nodes, rowFirst, last);
        else this.drawStrip(column, nodes, rowFirst, last);
      }
    }
    this.frames += 1;
    this.lastFrameAt = performance.now();
    this.lastFrameMs = this.lastFrameAt - started;
  }

  /// The edges into the nodes in view, one by one; false if there are too many to draw.
  drawEdges(columnFirst, columnLast, rowFirst, rowLast) {
    const { context: c, graph } = this;
    const columns = [];
    let count = 0;
    for (let column = columnFirst; column <= columnLast + 1 && column < graph.columns; column++) {
      const nodes = graph.grid[column];
      const last = Math.min(nodes.length - 1, rowLast);
      columns.push([nodes, last]);
      for (let r = rowFirst; r <= last; r++) {
        count += graph.needs[nodes[r]].length;
        if (count > MOST_EDGES) return false;
      }
    }
    const bend = (GAP / 2) * this.view.sx;
    c.beginPath();
    for (const [nodes, last] of columns) {
      for (let r = rowFirst; r <= last; r++) {
        const i = nodes[r];
        const x2 = this.sx(graph.x(i)), y2 = this.sy(graph.y(i) + H / 2);
        for (const j of graph.needs[i]) {
          const x1 = this.sx(graph.x(j) + W), y1 = this.sy(graph.y(j) + H / 2);
          c.moveTo(x1, y1);
          c.bezierCurveTo(x1 + bend, y1, x2 - bend, y2, x2, y2);
        }
      }
    }
    c.strokeStyle = "#8c959f";
    c.lineWidth = 1;
    c.stroke();
    return true;
  }

  /// The bands between columns, those that cross the view.
  drawBands(columnFirst, columnLast) {
    const c = this.context;
    c.fillStyle = "rgba(140, 149, 159, 0.25)";
    for (const band of this.graph.bands) {
      if (Math.max(band.from, band.to) < columnFirst || Math.min(band.from, band.to) > columnLast) continue;
      const x1 = this.sx(band.from * STEP_X + W), x2 = this.sx(band.to * STEP_X);
      c.beginPath();
      c.moveTo(x1, this.sy(band.fromTop * STEP_Y));
      c.lineTo(x2, this.sy(band.toTop * STEP_Y));
      c.lineTo(x2, this.sy(band.toBottom * STEP_Y + H));
      c.lineTo(x1, this.sy(band.fromBottom * STEP_Y + H));
      c.closePath();
      c.fill();
    }
  }

  drawNodes(nodes, first, last) {
    const { context: c, graph } = this;
    const { sx, sy } = this.view;
    const w = W * sx, h = H * sy;
    const labels = h >= 12 && w >= 40;
    if (labels) c.font = `${Math.round(13 * Math.min(1, sy, sx) * 10) / 10}px system-ui, sans-serif`;
    for (let r = first; r <= last; r++) {
      const i = nodes[r];
      const n = graph.nodes[i];
      const x = this.sx(graph.x(i)), y = this.sy(graph.y(i));
      c.fillStyle = FILL[n.state] || FILL.pending;
      c.fillRect(x, y, w, h);
      c.strokeStyle = STROKE[n.state] || STROKE.pending;
      c.lineWidth = i === this.selected ? 3 : 1;
      c.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
      if (labels) {
        c.fillStyle = "#1d2330";
        c.fillText(n.name, x + 10 * sx, y + h / 2 + 5 * Math.min(1, sy), w - 20 * sx);
      }
    }
  }

  /// Far out in both directions: per pixel, the colour of its most notable node.
  drawDots(columnFirst, columnLast, rowFirst, rowLast) {
    const { context: c, graph } = this;
    const notable = new Map();
    for (let column = columnFirst; column <= columnLast; column++) {
      const nodes = graph.grid[column];
      const px = Math.floor(this.sx(column * STEP_X));
      if (px < 0) continue;
      for (let r = rowFirst; r <= Math.min(nodes.length - 1, rowLast); r++) {
        const state = graph.nodes[nodes[r]].state;
        const py = Math.floor(this.sy(r * STEP_Y));
        // Off the top (a row half in view): not drawn, and the key stays whole.
        if (py < 0 || py >= 100000) continue;
        const key = px * 100000 + py;
        const shown = notable.get(key);
        if (shown === undefined || NOTICE[state] > NOTICE[shown]) notable.set(key, state);
      }
    }
    const h = Math.max(1, H * this.view.sy);
    for (const [key, state] of notable) {
      c.fillStyle = STROKE[state] || STROKE.pending;
      c.fillRect(Math.floor(key / 100000), key % 100000, 1, h);
    }
  }

  /// A column far out: per pixel row, the colour of its most notable node.
  drawStrip(column, nodes, first, last) {
    const { context: c, graph } = this;
    const notable = new Map();
    for (let r = first; r <= last; r++) {
      const state = graph.nodes[nodes[r]].state;
      const pixel = Math.floor(this.sy(r * STEP_Y));
      const shown = notable.get(pixel);
      if (shown === undefined || NOTICE[state] > NOTICE[shown]) notable.set(pixel, state);
    }
    const x = this.sx(column * STEP_X), w = W * this.view.sx;
    const h = Math.max(1, H * this.view.sy);
    for (const [pixel, state] of notable) {
      c.fillStyle = STROKE[state] || STROKE.pending;
      c.fillRect(x, pixel, w, h);
    }
  }
}
