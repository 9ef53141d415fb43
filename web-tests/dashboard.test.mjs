// The dashboard in Debian's Chromium, against the demo started by agent/tests/e2e/web.rs, which
// passes what this needs in CYGNET_* variables. Exits non-zero on the first failed check.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through cargo test)`);
  return value;
};
const base = env("CYGNET_WEB_URL");
const acme = env("CYGNET_ACME");
const techstart = env("CYGNET_TECHSTART");
const slow = env("CYGNET_SLOW_PIPELINE");
const foreignExecution = env("CYGNET_FOREIGN_EXECUTION");

const browser = await chromium.launch({
  executablePath: env("CYGNET_CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const step = (what) => console.log(`- ${what}`);

async function signIn(token) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/signin`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/c\/\d+$/);
  return { context, page };
}

const cardTotal = (page, key) => page.locator(`[data-card="${key}"] .total`).innerText();

try {
  step("pages need a session; a bad token is refused with a message");
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/c/${acme}`);
    assert.match(page.url(), /\/signin$/);
    await page.getByLabel("API token").fill("cyg_not-a-real-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    assert.match(await page.getByRole("alert").innerText(), /not valid/);
    await context.close();
  }

  step("sign in; switch between two customers and see only each one's data");
  const consultant = await signIn(env("CYGNET_CONSULTANT_TOKEN"));
  const page = consultant.page;
  assert.equal(await page.locator("#current-user").innerText(), "consultant");
  await page.locator("#customer-switcher").selectOption(acme);
  await page.waitForURL(`${base}/c/${acme}`);
  assert.equal(await page.locator("h1").innerText(), "Acme Corporation");
  assert.equal(await cardTotal(page, "agents"), "3");
  const acmeActivity = await page.locator("#activity").innerText();
  assert.doesNotMatch(acmeActivity, /tech-00|Mobile App|global-001/);
  await page.locator("#customer-switcher").selectOption(techstart);
  await page.waitForURL(`${base}/c/${techstart}`);
  assert.equal(await page.locator("h1").innerText(), "TechStart Inc");
  assert.equal(await cardTotal(page, "agents"), "2");
  assert.doesNotMatch(await page.locator("#activity").innerText(), /acme-|Build API Service/);
  await page.goto(`${base}/c/${techstart}/pipelines`);
  const techPipelines = await page.locator(".pipelines").innerText();
  assert.match(techPipelines, /Mobile App/);
  assert.doesNotMatch(techPipelines, /Build API Service|Slow Build/);

  step("run a pipeline and watch its log lines arrive; a new activity event shows live within a second");
  await page.goto(`${base}/c/${acme}`);
  await page.locator("#activity li").first().waitFor();
  const runsBefore = Number(await cardTotal(page, "executions"));
  const watcher = await consultant.context.newPage();
  await watcher.goto(`${base}/c/${acme}/pipelines`);
  const run = watcher.locator(`[data-pipeline="${slow}"] form.run`);
  await run.getByLabel(/PAUSE/).fill("3");
  await run.getByRole("button", { name: "Run Slow Build" }).click();
  await watcher.waitForURL(/\/executions\/\d+$/);
  const log = watcher.locator("#log");
  await log.getByText("first line").waitFor({ timeout: 20000 });
  assert.equal(await watcher.evaluate(() => window.pwned), undefined, "log text ran as script");
  assert.match(await log.innerText(), /<script>window\.pwned=1<\/script>/);
  await log.getByText("second line").waitFor({ timeout: 20000 });
  await watcher.locator("#execution-status", { hasText: "succeeded" }).waitFor({ timeout: 20000 });
  // The event was stored before the status changed; the dashboard must show it within 1 s.
  const arrived = page.locator("#activity li.kind-execution\\.succeeded", { hasText: "Slow Build" })
    .first();
  await arrived.waitFor({ timeout: 1000 });
  // The live row links to its execution, and the cards follow the feed without a reload.
  assert.equal(await arrived.locator("a.message").getAttribute("href"),
    new URL(watcher.url()).pathname);
  await page.locator('[data-card="executions"] .total', { hasText: String(runsBefore + 1) })
    .waitFor({ timeout: 5000 });

  step("cancel a running execution");
  await watcher.goto(`${base}/c/${acme}/pipelines`);
  await run.getByLabel(/PAUSE/).fill("120");
  await run.getByRole("button", { name: "Run Slow Build" }).click();
  await watcher.waitForURL(/\/executions\/\d+$/);
  await watcher.locator("#log").getByText("first line").waitFor({ timeout: 20000 });
  await watcher.getByRole("button", { name: "Cancel" }).click();
  await watcher.locator("#execution-status", { hasText: "cancelled" }).waitFor({ timeout: 20000 });

  step("the dashboard screenshot");
  await page.goto(`${base}/c/${acme}`);
  await page.screenshot({ path: env("CYGNET_SCREENSHOT"), fullPage: true });

  step("narrow screens: no page scrolls sideways (wide tables scroll inside their box)");
  await page.setViewportSize({ width: 375, height: 800 });
  for (const path of ["", "/agents", "/pipelines", "/releases", "/monitors"]) {
    await page.goto(`${base}/c/${acme}${path}`);
    const overflow = await page.evaluate(() =>
      document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `/c/${acme}${path} is ${overflow}px too wide at 375px`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  step("keyboard: the switcher and the navigation are reachable with Tab");
  await page.goto(`${base}/c/${acme}`);
  const focused = [];
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press("Tab");
    focused.push(await page.evaluate(() =>
      document.activeElement.id || document.activeElement.textContent.trim()));
  }
  assert.ok(focused.includes("customer-switcher"), focused.join(", "));
  assert.ok(focused.includes("Agents"), focused.join(", "));

  step("a viewer cannot approve a stage; an approver can");
  const viewer = await signIn(env("CYGNET_VIEWER_TOKEN"));
  await viewer.page.goto(`${base}/c/${acme}/releases`);
  // A waiting stage's pill links to its place on the deployment's page.
  await viewer.page.locator(".pill.status-awaiting-approval").first().click();
  await viewer.page.waitForURL(/\/deployments\/\d+#stage-\d+$/);
  const deployment = viewer.page.url().split("#")[0];
  const waiting = viewer.page.locator(".stage-detail", {
    has: viewer.page.locator(".status-awaiting-approval") }).first();
  const stageId = await waiting.getAttribute("data-stage");
  assert.ok(stageId, "a stage awaiting approval");
  assert.equal(await waiting.getByRole("button", { name: "Approve" }).count(), 0);
  assert.match(await waiting.locator(".reason").innerText(), /your role: viewer/);
  const csrf = await viewer.page.locator('form.signout input[name="csrf"]').inputValue();
  const forged = await viewer.page.request.post(`${base}/c/${acme}/stages/${stageId}/approve`, {
    form: { csrf, comment: "not mine to approve" },
    maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  assert.match(await forged.text(), /may not/);
  const ops = await signIn(env("CYGNET_OPS_TOKEN"));
  await ops.page.goto(deployment);
  const stage = ops.page.locator(`[data-stage="${stageId}"]`);
  await stage.getByLabel("Comment").fill("checked in the browser");
  await stage.getByRole("button", { name: "Approve" }).click();
  await ops.page.waitForURL(deployment);
  assert.doesNotMatch(await ops.page.locator(`[data-stage="${stageId}"] h3 .status`).getAttribute("class"),
    /awaiting-approval/);
  assert.match(await ops.page.locator(`[data-stage="${stageId}"]`).innerText(), /approved by ops/);

  step("another customer's URLs, and ids from another customer, are 404 like unknown ones");
  const unknown = await viewer.page.request.get(`${base}/c/999999`);
  assert.equal(unknown.status(), 404);
  for (const path of [`/c/${techstart}`, `/c/${techstart}/pipelines`,
    `/c/${acme}/executions/${foreignExecution}`, `/c/${techstart}/executions/${foreignExecution}`,
    `/c/${acme}/executions/not-a-number`]) {
    const response = await viewer.page.request.get(`${base}${path}`);
    assert.equal(response.status(), 404, path);
    assert.equal(await response.text(), await unknown.text(), path);
  }
  const forgedCancel = await viewer.page.request.post(
    `${base}/c/${techstart}/executions/${foreignExecution}/cancel`,
    { form: { csrf }, maxRedirects: 0 });
  assert.equal(forgedCancel.status(), 404);

  step("a form without the session's CSRF token is refused");
  const noCsrf = await ops.page.request.post(`${base}/c/${acme}/executions/1/cancel`, {
    form: { csrf: "forged" }, maxRedirects: 0,
  });
  assert.equal(noCsrf.status(), 403);

  step("sign out ends the session");
  await ops.page.getByRole("button", { name: "Sign out" }).click();
  await ops.page.waitForURL(/\/signin$/);
  await ops.page.goto(`${base}/c/${acme}`);
  assert.match(ops.page.url(), /\/signin$/);

  console.log("ok");
} finally {
  await browser.close();
}
