// The sample web app (examples/web) in headless Chromium, served from an origin other than
// the gateway's so that every call is a real cross-origin (CORS) request.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { REPO, samplePack, startCluster } from "../cluster.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.CANISTRY_ARTIFACTS ?? join(REPO, "clients/typescript/test-artifacts");
const WEB = join(REPO, "examples/web");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png" };
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium)`;

/** A static file server for examples/web on a loopback port of its own. */
async function serveWeb() {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(WEB, path.endsWith("/") ? `${path}index.html` : path);
    if (!file.startsWith(WEB) || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

let web, cluster, browser, app, stranger;
const unitAnswers = Object.fromEntries(samplePack().map((u) => [u.id, u.quiz.questions.map((q) => [q.id, q.answer, q.choices])]));

before(async () => {
  if (skip) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  web = await serveWeb();
  const port = web.address().port;
  app = `http://127.0.0.1:${port}`; // the granted origin
  stranger = `http://localhost:${port}`; // same files, an origin the gateway does not grant
  cluster = await startCluster({ corsOrigins: [app], extraArgs: ["--daily-attempt-limit", "3"] });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
  web?.close();
});

async function answer(page, unitId, right) {
  await page.click(`button[data-unit="${unitId}"]`);
  await page.waitForSelector("#lesson:not(.hidden)");
  for (const [question, correct, choices] of unitAnswers[unitId]) {
    const choice = right ? correct : choices.find((c) => c.id !== correct).id;
    await page.check(`#quiz input[name="${question}"][value="${choice}"]`);
  }
  await page.click("#quiz button[type=submit]");
}

test("a learner registers, takes a quiz, sees what it earned, and hits the daily limit", { skip }, async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(`${app}/index.html?gateway=${encodeURIComponent(cluster.url)}`);
  await page.waitForSelector("#register:not(.hidden)");
  assert.match(await page.textContent("#key-kind"), /non-extractable/);
  const principal = await page.textContent("#principal");
  assert.match(principal, /^[a-z2-7]{5}(-[a-z2-7]{1,5})+$/);

  await page.fill("input[name=name]", "Ada");
  await page.fill("input[name=email]", "ada@example.org");
  await page.click("#register-form button");
  await page.waitForSelector("#account:not(.hidden)");
  assert.equal(await page.textContent("#hello"), "Hello, Ada");

  const [first, second] = samplePack();
  await answer(page, first.id, true);
  await page.waitForSelector("#result:not(.hidden)");
  const result = await page.textContent("#result");
  assert.match(result, new RegExp(`Passed: score 3/3\\. You earned ${first.reward} tokens`));
  assert.match(result, /Attempts left today: 2/);
  await page.waitForFunction(() => document.querySelector("#attempts-left").textContent === "2");
  assert.equal(Number(await page.textContent("#balance")) + Number(await page.textContent("#pending")), first.reward);
  await page.screenshot({ path: join(ARTIFACTS, "learner.png"), fullPage: true });

  // Two more attempts are allowed (--daily-attempt-limit 3); the next is a readable 429.
  // Opening the same unit again revalidates it: a cross-origin If-None-Match, answered 304.
  const unitReads = [];
  page.on("response", (r) => r.url().endsWith(`/v1/units/${second.id}`) && unitReads.push(r.status()));
  await answer(page, second.id, false);
  await page.waitForFunction(() => /Not passed/.test(document.querySelector("#result").textContent));
  await answer(page, second.id, false);
  await page.waitForFunction(() => /Attempts left today: 0/.test(document.querySelector("#result").textContent));
  await answer(page, second.id, true);
  await page.waitForSelector("#message:not(.hidden)");
  assert.deepEqual(unitReads, [200, 304, 304]);
  assert.match(await page.textContent("#message"), /You have reached today's limit: .*Try again in \d+ (h|min)/);

  // A 503 with Retry-After reads as a wait, not as a crash (the gateway's answer is stood
  // in for here: a real one needs a service down at the right moment).
  await page.route("**/v1/units/*/submissions", (route) =>
    route.request().method() === "OPTIONS"
      ? route.continue()
      : route.fulfill({
          status: 503,
          headers: { "Retry-After": "7", "Access-Control-Allow-Origin": app, "Access-Control-Expose-Headers": "Retry-After" },
          contentType: "application/problem+json",
          body: JSON.stringify({ type: "https://canistry.dev/problems/unavailable", title: "Service unavailable", status: 503, detail: "content is down", instance: "/" }),
        }),
  );
  await answer(page, first.id, true);
  await page.waitForFunction(() => /busy or partly down.*Try again in 7 s/.test(document.querySelector("#message").textContent));
  await page.unroute("**/v1/units/*/submissions");

  // The key stays in IndexedDB, non-extractable: a reload is the same learner.
  await page.reload();
  await page.waitForSelector("#account:not(.hidden)");
  assert.equal(await page.textContent("#principal"), principal);
  const stored = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("canistry", 1);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction("keys").objectStore("keys").get("learner");
          get.onsuccess = () => resolve({ type: get.result.keyPair.privateKey.type, extractable: get.result.keyPair.privateKey.extractable });
        };
      }),
  );
  assert.deepEqual(stored, { type: "private", extractable: false });
  assert.deepEqual(problems, []);
  await context.close();
});

test("a page on an origin the gateway does not grant cannot read its answers", { skip }, async () => {
  const page = await browser.newPage();
  await page.goto(`${stranger}/index.html?gateway=${encodeURIComponent(cluster.url)}`);
  await page.waitForFunction(() => document.body.dataset.state === "ready");
  assert.match(await page.textContent("#message"), /Cannot reach the gateway .*--cors-origin/);
  await page.close();
});

test("the operator view draws shard fill and the treasury from /v1/cluster", { skip }, async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 620 } });
  await page.goto(`${app}/operator.html?gateway=${encodeURIComponent(cluster.url)}`);
  await page.waitForFunction(() => document.body.dataset.state === "drawn");
  const shards = await page.$$eval("#shards g.shard", (gs) => gs.map((g) => ({ id: g.dataset.shard, users: Number(g.dataset.users), capacity: Number(g.dataset.capacity) })));
  const view = await (await fetch(`${cluster.url}/v1/cluster`)).json();
  assert.deepEqual(shards.map((s) => s.id).sort(), view.shards.map((s) => s.id).sort());
  assert.ok(shards.some((s) => s.users >= 1), JSON.stringify(shards));
  assert.ok(Number(await page.getAttribute("#granted", "width")) > 0);
  assert.match(await page.textContent("#treasury"), /granted by the treasury, of the cap: [\d,]+ of 4,200,000,000/);
  await page.screenshot({ path: join(ARTIFACTS, "operator.png"), fullPage: true });
  await page.close();
});

test("canistry up serves the app itself at /app/", { skip }, async () => {
  const page = await browser.newPage();
  await page.goto(`${cluster.url}/app/operator.html`);
  await page.waitForFunction(() => document.body.dataset.state === "drawn");
  await page.close();
});
