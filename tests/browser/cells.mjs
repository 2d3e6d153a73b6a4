// Drives the Cells, groups and tasks pages in headless Chromium (Debian's, through
// playwright-core) and prints what it saw as one JSON line. Arguments come from the
// environment:
//   BATON_URL        the planner's API, e.g. http://127.0.0.1:8080
//   CELL             a Cell whose rollout waits in a pause without duration
//   OPERATOR_TOKEN   a token that may command Cells
//   VIEWER_TOKEN     a token that may only read
//   GROUP            an application group to open (empty: the list only)
//   TASK, IGNITOR    a task and an ignitor the tasks page lists
//   OUT              where screenshots go
//   CHROMIUM         the browser (default /usr/bin/chromium)
//   PLAYWRIGHT_HOME  the folder whose node_modules holds playwright-core (.tools/node)
// Every wait is bounded; a step that times out fails the script with its reason.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.PLAYWRIGHT_HOME}/package.json`);
const { chromium } = require("playwright-core");

const { BATON_URL, CELL, GROUP, TASK, IGNITOR, OUT } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const seen = { console: [] };

/// A tab of its own (its own sessionStorage, so its own token) on `hash`, logged in.
async function tab(token, hash) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // A refusal the page shows in words (401 before the token, the viewer's 403) is also
  // logged by the browser as a failed load: not a script error.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource")
    && seen.console.push(m.text()));
  page.on("pageerror", (e) => seen.console.push(String(e)));
  await page.goto(`${BATON_URL}/ui/${hash}`);
  await page.waitForSelector("#login[open]", { timeout: 10000 });
  await page.fill("#token", token);
  await page.click("#login button");
  return page;
}

/// Clicks `button`, then yes in the confirmation dialog.
async function confirmClick(page, button) {
  await page.click(button);
  await page.waitForSelector("#confirm[open]", { timeout: 5000 });
  seen.question = await page.textContent("#confirm-text");
  await page.click("#confirm-yes");
}

try {
  const cellHash = `#/cells/${encodeURIComponent(CELL)}`;
  // A viewer may look, not act: the API's 403 is shown in words.
  const viewer = await tab(process.env.VIEWER_TOKEN, cellHash);
  await viewer.waitForSelector('#cell-phase[data-phase="Paused"]', { timeout: 60000 });
  await confirmClick(viewer, "#cell-resume");
  await viewer.waitForSelector('#cell-outcome[data-status="403"]', { timeout: 10000 });
  seen.viewerRefusal = await viewer.textContent("#cell-outcome");
  seen.viewerPhaseAfter = await viewer.getAttribute("#cell-phase", "data-phase");
  await viewer.context().close();

  // An operator resumes the paused rollout and watches it go on without a reload.
  const page = await tab(process.env.OPERATOR_TOKEN, cellHash);
  await page.waitForSelector('#cell-phase[data-phase="Paused"]', { timeout: 60000 });
  seen.stepPaused = await page.textContent("#cell-step");
  seen.weightsPaused = await page.$$eval("#cell-weights tr[data-arn]", (rows) =>
    rows.map((r) => [r.children[0].textContent, Number(r.dataset.weight)]));
  seen.pointsPaused = await page.$$eval("#weight-chart .weight-point", (p) => p.length);
  await page.screenshot({ path: `${OUT}/cell-paused.png`, fullPage: true });
  await page.evaluate(() => { window.batonTestMark = 1; });
  // Saying no sends nothing.
  await page.click("#cell-resume");
  await page.waitForSelector("#confirm[open]", { timeout: 5000 });
  await page.click("#confirm-no");
  seen.afterNo = await page.textContent("#cell-outcome");
  await confirmClick(page, "#cell-resume");
  seen.resumeQuestion = seen.question;
  // Accepted: the command named step 1, so the Cell was still paused there.
  await page.waitForSelector("#cell-outcome[data-status]", { timeout: 10000 });
  seen.resumeStatus = await page.getAttribute("#cell-outcome", "data-status");
  await page.waitForSelector('#cell-phase[data-phase="Serving"]', { timeout: 60000 });
  seen.stepServing = await page.textContent("#cell-step");
  seen.weightsServing = await page.$$eval("#cell-weights tr[data-arn]", (rows) =>
    rows.map((r) => [r.children[0].textContent, Number(r.dataset.weight)]));
  seen.pointsServing = await page.$$eval("#weight-chart .weight-point", (p) => p.length);
  seen.resumeOutcome = await page.textContent("#cell-outcome");
  seen.notReloaded = await page.evaluate(() => window.batonTestMark === 1);
  await page.screenshot({ path: `${OUT}/cells.png`, fullPage: true });

  // The list of Cells.
  await page.click('header nav a[href="#/cells"]');
  await page.waitForSelector(`#cells tr[data-cell="${CELL}"]`, { timeout: 10000 });
  seen.listedPhase = await page.textContent(`#cells tr[data-cell="${CELL}"] .phase`);

  // Application groups: the list, and the group's tree when there is one.
  await page.click('header nav a[href="#/groups"]');
  await page.waitForSelector("#groups tbody tr", { timeout: 10000 });
  if (GROUP) {
    await page.click(`#groups tr[data-group="${GROUP}"] a`);
    await page.waitForSelector("#group-tree li.release", { timeout: 10000 });
    seen.groupTree = await page.$$eval("#group-tree li.release", (items) =>
      items.map((i) => `${i.classList.contains("subchart") ? "  " : ""}${i.dataset.name}`));
    seen.groupPhase = await page.getAttribute("#group-phase", "data-phase");
  }
  await page.screenshot({ path: `${OUT}/groups.png`, fullPage: true });

  // Tasks and ignitors, with the ignitor's next fire.
  await page.click('header nav a[href="#/tasks"]');
  await page.waitForSelector(`#tasks tr[data-task="${TASK}"]`, { timeout: 10000 });
  await page.waitForSelector(`#ignitors tr[data-ignitor="${IGNITOR}"] td.next-fire time`, { timeout: 10000 });
  seen.nextFire = await page.getAttribute(`#ignitors tr[data-ignitor="${IGNITOR}"] td.next-fire time`, "datetime");
  await page.screenshot({ path: `${OUT}/tasks.png`, fullPage: true });
  console.log(JSON.stringify({ ok: true, ...seen }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), ...seen }));
} finally {
  await browser.close();
}
