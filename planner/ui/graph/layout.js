// A run's graph as the renderers draw it: nodes by index, their columns (longest path
// from the roots) and rows, and a grid from place to node, so that what is in view and
// what is under the pointer are found without looking at every node.

export const W = 170, H = 36, GAP_X = 60, GAP_Y = 18;
export const STEP_X = W + GAP_X, STEP_Y = H + GAP_Y;

export class RunGraph {
  /// `nodes`: the run status's nodes, each with `name`, `state` and `needs`.
  constructor(nodes) {
    this.nodes = nodes;
    this.index = new Map();
    nodes.forEach((n, i) => this.index.set(n.name, i));
    this.place();
  }

  /// Puts every node in a column and row. Columns by longest path from the roots, in
  /// topological order without recursion (a long chain cannot overflow the stack); rows in
  /// spec order within a column. Nodes in a cycle or behind one stay in column 0.
  place() {
    const count = this.nodes.length;
    const column = new Int32Array(count);
    const waiting = new Int32Array(count);
    this.needs = this.nodes.map((n) => {
      const found = [];
      for (const need of n.needs || []) {
        const j = this.index.get(need);
        if (j !== undefined) found.push(j);
      }
      return found;
    });
    const next = this.nodes.map(() => []);
    this.needs.forEach((needs, i) => {
      waiting[i] = needs.length;
      for (const j of needs) next[j].push(i);
    });
    const ready = [];
    for (let i = 0; i < count; i++) if (waiting[i] === 0) ready.push(i);
    for (let k = 0; k < ready.length; k++) {
      const i = ready[k];
      for (const j of next[i]) {
        if (column[i] + 1 > column[j]) column[j] = column[i] + 1;
        if (--waiting[j] === 0) ready.push(j);
      }
    }
    this.column = column;
    this.row = new Int32Array(count);
    this.grid = [];
    for (let i = 0; i < count; i++) {
      const c = column[i];
      while (this.grid.length <= c) this.grid.push([]);
      this.row[i] = this.grid[c].length;
      this.grid[c].push(i);
    }
    this.columns = this.grid.length;
    this.rows = 0;
    for (const nodes of this.grid) if (nodes.length > this.rows) this.rows = nodes.length;
    this.bands = bands(this);
  }

  get width() { return Math.max(1, this.columns * STEP_X - GAP_X); }
  get height() { return Math.max(1, this.rows * STEP_Y - GAP_Y); }
  x(i) { return this.column[i] * STEP_X; }
  y(i) { return this.row[i] * STEP_Y; }

  /// The node at a point of the graph's plane, if any.
  at(x, y) {
    const c = Math.floor(x / STEP_X), r = Math.floor(y / STEP_Y);
    if (c < 0 || c >= this.columns || x - c * STEP_X > W || y - r * STEP_Y > H) return undefined;
    return this.grid[c][r];
  }

  /// Takes a node's new status. Returns false when the node is new to the graph: the
  /// caller places everything again (a chain's nodes arrive one by one).
  update(node) {
    const i = this.index.get(node.name);
    if (i !== undefined && i >= this.column.length) {
      // Arrived since the last placing: not drawn yet, so only its status changes.
      this.nodes[i] = node;
      return false;
    }
    if (i === undefined) {
      this.index.set(node.name, this.nodes.length);
      this.nodes.push(node);
      return false;
    }
    this.nodes[i] = node;
    return true;
  }
}

/// The edges between two columns as one band: from the rows they leave to the rows they
/// reach. A graph too large to draw edge by edge shows its edges as these.
function bands(graph) {
  const byPair = new Map();
  const stride = graph.columns + 1;
  graph.needs.forEach((needs, i) => {
    for (const j of needs) {
      const key = graph.column[j] * stride + graph.column[i];
      let band = byPair.get(key);
      if (!band) {
        band = { from: graph.column[j], to: graph.column[i], fromTop: Infinity, fromBottom: -1, toTop: Infinity, toBottom: -1 };
        byPair.set(key, band);
      }
      band.fromTop = Math.min(band.fromTop, graph.row[j]);
      band.fromBottom = Math.max(band.fromBottom, graph.row[j]);
      band.toTop = Math.min(band.toTop, graph.row[i]);
      band.toBottom = Math.max(band.toBottom, graph.row[i]);
    }
  });
  return [...byPair.values()];
}

/// Colours by state, shared by both renderers (the stylesheet's for SVG).
export const FILL = {
  pending: "#eaeef2", running: "#ddf4ff", succeeded: "#dafbe1", failed: "#ffebe9",
  skipped: "#f6f8fa", cancelled: "#f6f8fa",
};
export const STROKE = {
  pending: "#8c959f", running: "#0969da", succeeded: "#1a7f37", failed: "#cf222e",
  skipped: "#d0d7de", cancelled: "#d0d7de",
};
/// When many nodes share one pixel, the one shown is the one a person most needs to see.
export const NOTICE = { failed: 5, running: 4, pending: 3, cancelled: 2, skipped: 1, succeeded: 0 };
