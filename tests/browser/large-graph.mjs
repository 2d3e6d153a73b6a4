// Opens runs of many nodes in headless Chromium and prints, as one JSON line, what it
// measured for each: first paint (from the start of the page's load to the first frame
// of the graph), the longest task that held the page's thread, the time of a frame of
// the whole graph, and how soon a zoom is drawn. It also checks the canvas shows a node
// in its state's colour and that clicking the node opens it. From the environment:
//   BATON_URL, TOKEN, OUT, CHROMIUM, PLAYWRIGHT_HOME as for dashboard.mjs
//   RUNS   JSON: [{"run": id, "nodes": count, "probes": [{"name": a node, "state": its state}]}]
// Every wait is bounded; a step that times out fails the script with its reason.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.PLAYWRIGHT_HOME}/package.json`);
const { chromium } = require("playwright-core");

const { BATON_URL, OUT } = process.env;
const runs = JSON.parse(process.env.RUNS);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const seen = { runs: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  seen.console = [];
  page.on("console", (m) => m.type() === "error" && seen.console.push(m.text()));
  page.on("pageerror", (e) => seen.console.push(String(e)));
  // Long tasks (50 ms or more on the page's thread) are kept from the start of each load.
  await page.addInitScript(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => {
      for (const t of list.getEntries()) window.longTasks.push(t.duration);
    }).observe({ type: "longtask", buffered: true });
  });
  await page.goto(`${BATON_URL}/ui/`);
  await page.waitForSelector("#login[open]", { timeout: 10000 });
  await page.fill("#token", process.env.TOKEN);
  await page.click("#login button");
  await page.waitForSelector("#runs tr[data-run]", { timeout: 20000 });
  for (const { run, nodes, probes } of runs) {
    // A fresh load (the query differs), so that first paint counts the page's own loading.
    await page.goto(`${BATON_URL}/ui/?load=${run}#/runs/${run}`);
    await page.waitForFunction(() => window.batonGraph?.paintedAt, null, { timeout: 120000 });
    const figures = await page.evaluate(() => ({
      firstPaintMs: Math.round(window.batonGraph.paintedAt),
      afterOpenMs: Math.round(window.batonGraph.firstPaintMs),
      nodes: window.batonGraph.graph.nodes.length,
      renderer: window.batonGraph.renderer.constructor.name,
      firstFrameMs: Math.round(window.batonGraph.renderer.lastFrameMs),
    }));
    // Each probe node is drawn in its state's colour (a pixel inside its box, off its
    // label), and a click on it opens it.
    figures.probes = [];
    for (const { name, state } of probes) {
      const seenColour = await page.evaluate((name) => {
        const { renderer } = window.batonGraph;
        const at = renderer.position(name);
        const canvas = document.getElementById("dag-canvas");
        const box = canvas.getBoundingClientRect();
        const ratio = canvas.width / box.width;
        const x = at.x - box.left + 75 * renderer.view.sx, y = at.y - box.top - 12 * renderer.view.sy;
        const [r, g, b] = canvas.getContext("2d").getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data;
        return `#${[r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("")}`;
      }, name);
      const expected = await page.evaluate(async (s) => (await import("/ui/graph/layout.js")).FILL[s], state);
      const at = await page.evaluate((name) => window.batonGraph.renderer.position(name), name);
      await page.mouse.click(at.x, at.y);
      await page.waitForFunction((name) => document.querySelector("#detail h2")?.textContent === name, name, { timeout: 10000 });
      const shownState = await page.evaluate(() => document.querySelector("#detail dd")?.textContent);
      figures.probes.push({ name, state, shownState, colour: seenColour, expected });
    }
    await page.screenshot({ path: `${OUT}/graph-${nodes}.png` });
    // The whole graph in one frame: every column as strips of its nodes' states.
    const before = await page.evaluate(() => window.batonGraph.renderer.frames);
    await page.click("#graph-fit");
    await page.waitForFunction((n) => window.batonGraph.renderer.frames > n, before, { timeout: 10000 });
    figures.wholeGraphFrameMs = Math.round(await page.evaluate(() => window.batonGraph.renderer.lastFrameMs));
    await page.screenshot({ path: `${OUT}/graph-${nodes}-whole.png` });
    // A zoom (ctrl and wheel) from the event to its frame drawn.
    const canvas = await page.$("#dag-canvas");
    const box = await canvas.boundingBox();
    await page.evaluate(() => {
      const canvas = document.getElementById("dag-canvas");
      canvas.addEventListener("wheel", () => { window.wheelAt = performance.now(); }, { once: true, capture: true });
      window.framesBeforeWheel = window.batonGraph.renderer.frames;
    });
    await page.mouse.move(box.x + box.width / 3, box.y + box.height / 3);
    await page.keyboard.down("Control");
    await page.mouse.wheel(0, -400);
    await page.keyboard.up("Control");
    await page.waitForFunction(() => window.wheelAt && window.batonGraph.renderer.frames > window.framesBeforeWheel, null, { timeout: 10000 });
    figures.zoomToFrameMs = Math.round(await page.evaluate(() => window.batonGraph.renderer.lastFrameAt - window.wheelAt));
    figures.longestTaskMs = Math.round(await page.evaluate(() => Math.max(0, ...window.longTasks)));
    seen.runs.push({ run, ...figures });
  }
  console.log(JSON.stringify({ ok: true, ...seen }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), ...seen }));
} finally {
  await browser.close();
}
