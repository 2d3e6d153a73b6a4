// The graph as SVG: a group per node, crisp at any zoom and in the document, where a
// screen reader and the browser's find reach it. Used up to a thousand nodes; larger
// graphs go to the canvas renderer.

import { svg } from "../api.js";
import { W, H, GAP_X } from "./layout.js";

export class SvgRenderer {
  constructor(container, graph, onSelect) {
    this.graph = graph;
    this.onSelect = onSelect;
    this.picture = svg("svg", { id: "dag" });
    this.groups = [];
    container.replaceChildren(this.picture);
    this.draw();
  }

  draw() {
    const { graph, picture } = this;
    picture.setAttribute("viewBox", `0 0 ${graph.width} ${graph.height}`);
    picture.setAttribute("width", graph.width);
    picture.setAttribute("height", graph.height);
    const edges = [];
    graph.needs.forEach((needs, i) => {
      for (const j of needs) {
        const x1 = graph.x(j) + W, y1 = graph.y(j) + H / 2, x2 = graph.x(i), y2 = graph.y(i) + H / 2;
        edges.push(svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}` }));
      }
    });
    this.groups = graph.nodes.map((n, i) => {
      const g = svg("g", { class: "node", "data-node": n.name, transform: `translate(${graph.x(i)},${graph.y(i)})` });
      const label = svg("text", { x: 10, y: H / 2 + 5 });
      label.textContent = n.name;
      g.append(svg("rect", { width: W, height: H, rx: 6 }), label);
      g.addEventListener("click", () => this.onSelect(i));
      return g;
    });
    picture.replaceChildren(...edges, ...this.groups);
    graph.nodes.forEach((_, i) => this.paint(i));
  }

  paint(i) {
    const state = this.graph.nodes[i].state;
    const g = this.groups[i];
    g.setAttribute("data-state", state);
    g.setAttribute("class", `node ${state}`);
  }

  destroy() {}
}
