// Drives the dashboard in headless Chromium (Debian's, through playwright-core) and prints
// what it saw as one JSON line. Arguments come from the environment:
//   BATON_URL      the planner's API, e.g. http://127.0.0.1:8080
//   RUN_OK         a run that is under way and succeeds (the diamond example)
//   RUN_FAILED     a run whose node FAILED_NODE failed (the retry example)
//   TOKEN          a viewer's API token, typed into the page when it asks
//   RUN_CANCEL     a run under way for a long time, cancelled through the page
//   OPERATOR_TOKEN an operator's token, which may cancel it
//   GATE           a file the diamond's first node waits for: created once the graph is
//                  drawn, so that the browser sees it before the run goes on
//   OUT            where screenshots go
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   PLAYWRIGHT_HOME  the folder whose node_modules holds playwright-core (.tools/node)
// Every wait is bounded; a step that times out fails the script with its reason.
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";

const require = createRequire(`${process.env.PLAYWRIGHT_HOME}/package.json`);
const { chromium } = require("playwright-core");

const { BATON_URL, RUN_OK, RUN_FAILED, FAILED_NODE, OUT } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  seen.console = [];
  page.on("console", (m) => m.type() === "error" && seen.console.push(m.text()));
  page.on("pageerror", (e) => seen.console.push(String(e)));
  // The API asks for a token: the page asks the person, once for the tab.
  await page.goto(`${BATON_URL}/`);
  await page.waitForSelector("#login[open]", { timeout: 10000 });
  await page.fill("#token", process.env.TOKEN);
  await page.click("#login button");
  // The runs page lists the run.
  await page.waitForSelector(`tr[data-run="${RUN_OK}"]`, { timeout: 20000 });
  await page.screenshot({ path: `${OUT}/runs.png`, fullPage: true });
  // Its graph: every node drawn at once, pending ones included, then turning green
  // without a reload.
  await page.click(`tr[data-run="${RUN_OK}"] a`);
  await page.waitForSelector("#dag g.node", { timeout: 10000 });
  seen.nodesAtFirst = await page.$$eval("#dag g.node", (g) => g.length);
  seen.edges = await page.$$eval("#dag path.edge", (p) => p.length);
  seen.statesAtFirst = await page.$$eval("#dag g.node", (g) => g.map((n) => n.dataset.state));
  // A mark a reload would lose; then the run may go on.
  await page.evaluate(() => { window.batonTestMark = 1; });
  writeFileSync(process.env.GATE, "go");
  await page.waitForFunction(
    () => [...document.querySelectorAll("#dag g.node")].every((n) => n.dataset.state === "succeeded"),
    null,
    { timeout: 60000 },
  );
  seen.statesAtEnd = await page.$$eval("#dag g.node", (g) => g.map((n) => n.dataset.state));
  await page.waitForSelector('#run-state[data-state="succeeded"]', { timeout: 10000 });
  seen.runState = await page.textContent("#run-state");
  seen.notReloaded = await page.evaluate(() => window.batonTestMark === 1);
  await page.screenshot({ path: `${OUT}/dag.png`, fullPage: true });
  // A failed node's error, one click away.
  await page.goto(`${BATON_URL}/ui/#/runs/${encodeURIComponent(RUN_FAILED)}`);
  await page.waitForSelector(`#dag g.node[data-node="${FAILED_NODE}"][data-state="failed"]`, { timeout: 60000 });
  await page.click(`#dag g.node[data-node="${FAILED_NODE}"]`);
  seen.error = await page.textContent("#node-error", { timeout: 10000 });
  await page.screenshot({ path: `${OUT}/failed-node.png`, fullPage: true });
  // Cancelling a run asks first; a viewer's cancel is refused in words, an operator's
  // ends the run.
  await page.goto(`${BATON_URL}/ui/#/runs/${encodeURIComponent(process.env.RUN_CANCEL)}`);
  await page.waitForSelector("#run-cancel:not([hidden])", { timeout: 20000 });
  await page.click("#run-cancel");
  await page.click("#confirm-yes");
  await page.waitForSelector('#run-outcome[data-status="403"]', { timeout: 10000 });
  seen.viewerCancel = await page.textContent("#run-outcome");
  await page.evaluate((token) => sessionStorage.setItem("baton-token", token), process.env.OPERATOR_TOKEN);
  await page.click("#run-cancel");
  await page.click("#confirm-yes");
  await page.waitForSelector('#run-state[data-state="cancelled"]', { timeout: 30000 });
  seen.cancelledState = await page.textContent("#run-state");
  await page.screenshot({ path: `${OUT}/cancelled.png`, fullPage: true });
  console.log(JSON.stringify({ ok: true, ...seen }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), ...seen }));
} finally {
  await browser.close();
}
