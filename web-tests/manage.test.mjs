// The dashboard as a workplace, in Debian's Chromium, against a fresh server started by
// agent/tests/e2e/web.rs (the_workplace_works_in_a_real_browser), which passes what this needs
// in CYGNET_* variables: a platform administrator creates the first customer, invites members
// who accept, creates a registration token and starts a real agent with the appsettings.json
// the page shows, and sees it come online; a developer creates and runs a pipeline; a secret
// is set and shown only as set; a developer deploys a release that the administrator approves,
// and the deploy log masks the secret; an administrator adds a webhook and a signed push runs
// the pipeline; a viewer finds the controls disabled with the reason. Screenshots of the pages at desktop and phone widths go to CYGNET_SCREENSHOTS.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through cargo test)`);
  return value;
};
const base = env("CYGNET_WEB_URL");
const work = env("CYGNET_WORK");
const shots = env("CYGNET_SCREENSHOTS");
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: env("CYGNET_CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const step = (what) => console.log(`- ${what}`);

async function signIn(token, landing) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/signin`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(landing);
  return page;
}

/** Desktop and phone screenshots of the current page. */
async function screenshots(page, name) {
  await page.screenshot({ path: join(shots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() =>
    document.documentElement.scrollWidth - document.documentElement.clientWidth);
  const culprits = await page.evaluate(() => [...document.querySelectorAll("body *")]
    .filter((element) => !element.closest(".scroll, pre")
      && element.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
    .slice(0, 5)
    .map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className}`));
  assert.ok(overflow <= 1, `${name} is ${overflow}px too wide at 375px: ${culprits.join(", ")}`);
  await page.screenshot({ path: join(shots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** A member accepts their invitation on the welcome page and lands in the customer. */
async function accept(token, customerId) {
  const page = await signIn(token, `${base}/`);
  assert.match(await page.locator("main").innerText(), /not a member of any/);
  await page.getByRole("button", { name: "Accept" }).click();
  await page.waitForURL(`${base}/c/${customerId}`);
  return page;
}

let agent;
try {
  step("a fresh server leads its administrator to create the first customer");
  const admin = await signIn(env("CYGNET_ADMIN_TOKEN"), `${base}/`);
  assert.match(await admin.locator("h1").innerText(), /Welcome/);
  await screenshots(admin, "welcome");
  await admin.getByLabel(/^Name/).fill("Acme Corp!");
  await admin.getByLabel("Display name").fill("Acme Corporation");
  await admin.getByRole("button", { name: "Create customer" }).click();
  const nameError = admin.locator("#customer-name-error");
  assert.match(await nameError.innerText(), /name/);
  assert.equal(await admin.getByLabel(/^Name/).getAttribute("aria-invalid"), "true");
  assert.equal(await admin.getByLabel("Display name").inputValue(), "Acme Corporation");
  await admin.getByLabel(/^Name/).fill("acme");
  await admin.getByRole("button", { name: "Create customer" }).click();
  await admin.waitForURL(/\/c\/\d+$/);
  const customerId = admin.url().split("/").pop();
  assert.equal(await admin.locator("h1").innerText(), "Acme Corporation");

  step("members: the administrator invites a developer and a viewer; both accept");
  await admin.getByRole("link", { name: "Members" }).click();
  for (const [username, role] of [["dev1", "developer"], ["viewer1", "viewer"]]) {
    await admin.getByLabel(/^Username/).fill(username);
    await admin.locator("#invite-role").selectOption(role);
    await admin.getByRole("button", { name: "Invite" }).click();
    await admin.waitForURL(`${base}/c/${customerId}/members`);
    assert.match(await admin.locator("main").innerText(), new RegExp(`${username} as ${role}`));
  }
  await screenshots(admin, "members");
  const dev = await accept(env("CYGNET_DEV_TOKEN"), customerId);
  const viewer = await accept(env("CYGNET_VIEWER_TOKEN"), customerId);
  await admin.reload();
  const members = await admin.locator("table").innerText();
  assert.match(members, /dev1/);
  assert.match(members, /viewer1/);

  step("a registration token, shown once with its appsettings.json, brings a real agent online");
  await admin.goto(`${base}/c/${customerId}/agents`);
  assert.match(await admin.locator("main").innerText(), /create a registration token/);
  await admin.getByRole("link", { name: "create a registration token" }).click();
  await admin.getByLabel(/^Description/).fill("build farm");
  await admin.getByRole("button", { name: "Create token" }).click();
  const secret = (await admin.locator("#token-secret").innerText()).trim();
  const settings = JSON.parse(await admin.locator("#appsettings").innerText());
  await screenshots(admin, "token");
  const config = settings.AgentConfiguration;
  assert.equal(String(config.CustomerId), customerId);
  // What a build-host admin changes: the host's own names, paths and user.
  config.AgentUuid = "farm-001";
  config.Name = "farm-001";
  config.RegistrationTokenFile = join(work, "registration-token");
  config.WorkDirectory = join(work, "work");
  config.StateDirectory = join(work, "state");
  delete config.RunStepsAs;
  writeFileSync(config.RegistrationTokenFile, secret, { mode: 0o600 });
  const file = join(work, "appsettings.json");
  writeFileSync(file, JSON.stringify(settings), { mode: 0o600 });
  agent = spawn(env("CYGNET_AGENT_BIN"), ["run", "--config", file], { stdio: "inherit" });
  await admin.goto(`${base}/c/${customerId}/agents`);
  const deadline = Date.now() + 30_000;
  while (!/farm-001\s+online/.test(await admin.locator("main").innerText())) {
    assert.ok(Date.now() < deadline, "the agent did not come online within 30 s");
    await admin.waitForTimeout(250);
    await admin.reload();
  }
  await screenshots(admin, "agents");
  await admin.goto(`${base}/c/${customerId}/agents/tokens`);
  assert.doesNotMatch(await admin.locator("main").innerText(), new RegExp(secret));
  assert.match(await admin.locator("table").innerText(), /build farm\s+1/);

  step("a developer creates a pipeline, runs it on that agent and downloads its artifact");
  await dev.goto(`${base}/c/${customerId}/pipelines`);
  await dev.getByRole("link", { name: "New pipeline" }).first().click();
  await dev.locator("#pipeline-name").fill("Build API");
  await dev.getByLabel(/^Steps/).fill(
    "build: mkdir -p dist && echo \"api {{VERSION}}\" > dist/api.txt\ncheck: cat dist/api.txt");
  await dev.getByLabel(/^Artifacts/).fill("dist/api.txt");
  await dev.getByLabel(/^Parameters/).fill("VERSION=1.0.0");
  await dev.getByLabel(/^Timeout/).fill("-5");
  await dev.getByRole("button", { name: "Create pipeline" }).click();
  // A refused value comes back at its input, with everything typed kept.
  assert.match(await dev.locator("#pipeline-timeout-error").innerText(), /timeout_seconds/);
  assert.equal(await dev.getByLabel(/^Artifacts/).inputValue(), "dist/api.txt");
  await dev.getByLabel(/^Timeout/).fill("600");
  await dev.getByRole("button", { name: "Create pipeline" }).click();
  await dev.waitForURL(`${base}/c/${customerId}/pipelines`);
  await dev.getByLabel("VERSION").fill("2.0.0");
  await dev.getByRole("button", { name: "Run Build API" }).click();
  await dev.waitForURL(/\/executions\/\d+$/);
  const runDeadline = Date.now() + 30_000;
  while ((await dev.locator("#execution-status").innerText()) !== "succeeded") {
    assert.ok(Date.now() < runDeadline, "the run did not succeed within 30 s");
    await dev.waitForTimeout(250);
    await dev.reload();
  }
  // The status may have turned live (app.js); the page as rendered now lists the artifacts.
  await dev.reload();
  await screenshots(dev, "execution");
  // The link is a download of the artifact itself (fetched with the page's session).
  const link = dev.getByRole("link", { name: "dist/api.txt" });
  assert.equal(await link.getAttribute("download"), "");
  const download = await dev.request.get(new URL(await link.getAttribute("href"), base).href);
  assert.equal(download.status(), 200);
  assert.equal(download.headers()["content-disposition"], 'attachment; filename="api.txt"');
  assert.equal(await download.text(), "api 2.0.0\n");

  step("an administrator sets a secret: shown only as set, never again as its value");
  const password = "s3cret-Database-Passw0rd";
  await admin.goto(`${base}/c/${customerId}/variables`);
  await admin.locator("#group-name").fill("production");
  await admin.getByRole("button", { name: "Create group" }).click();
  const group = admin.locator("section.group", { hasText: "production" });
  await group.waitFor();
  await group.getByLabel("Key").fill("DB_PASSWORD");
  await group.getByLabel("Value").fill(password);
  await group.locator('input[name="secret"]').check();
  await group.getByRole("button", { name: "Set variable" }).click();
  await group.locator("table").waitFor();
  assert.match(await admin.locator("main").innerText(), /DB_PASSWORD\s+••••••• \(secret\)/);
  assert.doesNotMatch(await admin.content(), new RegExp(password));
  await screenshots(admin, "variables");

  step("a release: the developer deploys it, another user approves, the deploy log masks the secret");
  // A pipeline using a group that holds a secret is for administrators and devops.
  await admin.goto(`${base}/c/${customerId}/pipelines/new`);
  await admin.locator("#pipeline-name").fill("Deploy API");
  await admin.getByLabel(/^Steps/).fill("deploy: echo \"deploying {{VERSION}} with $DB_PASSWORD\"");
  await admin.getByLabel(/^Parameters/).fill("VERSION=0");
  await admin.getByLabel("production").check();
  await admin.getByRole("button", { name: "Create pipeline" }).click();
  await admin.waitForURL(`${base}/c/${customerId}/pipelines`);
  await admin.goto(`${base}/c/${customerId}/releases`);
  await admin.locator("#environment-name").fill("Live");
  await admin.getByRole("button", { name: "Create environment" }).click();
  await admin.waitForURL(/\/releases#environments$/);
  await admin.locator("#release-name").fill("API");
  await admin.getByLabel("Build API").check();
  await admin.getByLabel(/^Stages/).fill("Live: Deploy APY");
  await admin.getByRole("button", { name: "Create release" }).click();
  // A stage naming no pipeline comes back at its input, the rest as typed.
  assert.match(await admin.locator("#release-stages-error").innerText(), /no pipeline is named "Deploy APY"/);
  assert.ok(await admin.getByLabel("Build API").isChecked());
  await admin.getByLabel(/^Stages/).fill("Live: Deploy API");
  await admin.getByRole("button", { name: "Create release" }).click();
  await admin.waitForURL(`${base}/c/${customerId}/releases`);
  await dev.goto(`${base}/c/${customerId}/releases`);
  await dev.getByLabel("Version").fill("2.0.0");
  await dev.getByLabel(/^Parameters/).fill("VERSION=2.0.0");
  await dev.getByRole("button", { name: "Deploy API" }).click();
  await dev.waitForURL(/\/deployments\/\d+$/);
  const deployment = dev.url();
  assert.match(await dev.locator("main").innerText(), /Live: awaiting approval/);
  // The developer deployed it and is no approver: the page says why there is no Approve.
  assert.equal(await dev.getByRole("button", { name: "Approve" }).count(), 0);
  assert.match(await dev.locator(".stage-detail .reason").innerText(), /your role: developer/);
  await screenshots(dev, "deployment-waiting");
  await admin.goto(deployment);
  assert.match(await admin.locator(".stage-detail").innerText(), /An approval binds\s+pipeline version 1/);
  await admin.getByLabel("Comment").fill("change log read");
  await admin.getByRole("button", { name: "Approve" }).click();
  await admin.waitForURL(deployment);
  const deployDeadline = Date.now() + 30_000;
  while ((await admin.locator("#deployment-status").innerText()) !== "succeeded") {
    assert.ok(Date.now() < deployDeadline, "the deployment did not succeed within 30 s");
    await admin.waitForTimeout(250);
    await admin.reload();
  }
  const decided = await admin.locator(".stage-detail").innerText();
  assert.match(decided, /approved by admin/);
  assert.match(decided, /change log read/);
  await screenshots(admin, "deployment");
  await admin.getByRole("link", { name: /^execution \d+$/ }).last().click();
  await admin.waitForURL(/\/executions\/\d+$/);
  const log = await admin.locator("#log").innerText();
  assert.match(log, /deploying 2\.0\.0 with \*\*\*/);
  assert.doesNotMatch(await admin.content(), new RegExp(password));
  await admin.goto(`${base}/c/${customerId}/releases`);
  await screenshots(admin, "releases");

  step("an administrator adds a GitHub webhook, sees its secret once; a signed push runs the pipeline");
  await admin.goto(`${base}/c/${customerId}/pipelines`);
  await admin.getByRole("link", { name: "Build API" }).first().click();
  await admin.waitForURL(/\/pipelines\/\d+$/);
  const pipelinePage = admin.url();
  await admin.locator("#webhook-format").selectOption("github");
  await admin.locator("#webhook-branches").fill("main");
  await admin.locator("#webhook-parameters").fill("VERSION=commit");
  await admin.getByRole("button", { name: "Add webhook" }).click();
  const hookSecret = await admin.locator("#webhook-secret").innerText();
  const hookPath = await admin.locator("#webhook-path").innerText();
  assert.match(hookSecret, /^whsec_/);
  await screenshots(admin, "webhook-created");
  // A push as GitHub delivers it: the body signed with the secret (HMAC-SHA256).
  const commit = "9fceb02d0ae598e95dc970b74767f19372d61af8";
  const push = JSON.stringify({ ref: "refs/heads/main", after: commit, pusher: { name: "dev1" } });
  const delivered = await fetch(`${base}${hookPath}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "push",
      "x-github-delivery": "browser-test-1",
      "x-hub-signature-256": `sha256=${createHmac("sha256", hookSecret).update(push).digest("hex")}`,
    },
    body: push,
  });
  assert.equal(delivered.status, 202);
  const hookRun = (await delivered.json()).execution_id;
  await admin.goto(pipelinePage);
  assert.doesNotMatch(await admin.content(), new RegExp(hookSecret));
  await admin.getByRole("link", { name: /deliveries/ }).click();
  assert.match(await admin.locator("#deliveries").innerText(), /queued\s+push\s+main/);
  await screenshots(admin, "webhook-deliveries");
  await admin.goto(`${base}/c/${customerId}/executions/${hookRun}`);
  assert.match(await admin.locator("#trigger").innerText(),
    new RegExp(`Started by a push delivery to webhook \\d+ of admin on branch main at ${commit}`));

  step("a viewer sees the controls disabled, with the reason");
  await viewer.goto(`${base}/c/${customerId}/members`);
  assert.ok(await viewer.getByRole("button", { name: "Invite" }).isDisabled());
  assert.match(await viewer.locator("#invite-reason").innerText(), /your role: viewer/);
  await viewer.goto(`${base}/c/${customerId}/agents/tokens`);
  assert.ok(await viewer.getByRole("button", { name: "Create token" }).isDisabled());
  assert.match(await viewer.locator("#token-reason").innerText(), /your role: viewer/);
  await screenshots(viewer, "viewer-tokens");
  await viewer.goto(`${base}/c/${customerId}/variables`);
  assert.ok(await viewer.getByRole("button", { name: "Create group" }).isDisabled());
  assert.match(await viewer.locator("#groups-reason").innerText(), /your role: viewer/);
  await screenshots(viewer, "viewer-variables");
  await viewer.goto(`${base}/c/${customerId}/releases`);
  assert.ok(await viewer.getByRole("button", { name: "Deploy API" }).isDisabled());
  assert.match(await viewer.locator("main").innerText(), /deploy releases \(your role: viewer\)/);
  await dev.goto(`${base}/c/${customerId}`);
  assert.equal(await dev.locator("#current-user").innerText(), "dev1");

  step("platform administrators manage customers");
  await admin.getByRole("link", { name: "Customers" }).click();
  assert.match(await admin.locator("table").innerText(), /Acme Corporation/);
  await screenshots(admin, "customers");

  console.log("ok");
} finally {
  if (agent) agent.kill("SIGTERM");
  await browser.close();
}
