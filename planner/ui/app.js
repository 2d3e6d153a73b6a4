// Baton's dashboard: plain ES modules, no build step. The route table maps the address's
// hash to a page; each page module exports `show(params)`.

import { newPage } from "./api.js";
import * as runs from "./runs.js";
import * as run from "./run.js";
import * as cells from "./cells.js";
import * as groups from "./groups.js";
import * as schedules from "./schedules.js";

const routes = [
  [/^#\/runs\/(.+)$/, (id) => run.show(id)],
  [/^#\/runs\/?$/, () => runs.show()],
  [/^#\/cells\/(.+)$/, (name) => cells.show(name)],
  [/^#\/cells\/?$/, () => cells.show()],
  [/^#\/groups\/(.+)$/, (name) => groups.show(name)],
  [/^#\/groups\/?$/, () => groups.show()],
  [/^#\/tasks\/?$/, () => schedules.show()],
];

function route() {
  newPage();
  const hash = location.hash || "#/runs";
  for (const [pattern, show] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    let params;
    try {
      params = match.slice(1).map(decodeURIComponent);
    } catch {
      break;
    }
    show(...params);
    return;
  }
  runs.show();
}

window.addEventListener("hashchange", route);
route();
