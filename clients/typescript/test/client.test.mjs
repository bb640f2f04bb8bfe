// The client against a real cluster (`canistry up`): every operation, signed as §5 says.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Ed25519KeyIdentity } from "@dfinity/identity";
import { ApiError, Client, Identity } from "../dist/index.js";
import { samplePack, startCluster } from "./cluster.mjs";

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  await cluster?.stop();
});

const answersOf = (unit, right = true) =>
  Object.fromEntries(
    unit.quiz.questions.map((q) => [q.id, right ? q.answer : q.choices.find((c) => c.id !== q.answer).id]),
  );

async function newUser(name = "Ada", identity) {
  const api = new Client(cluster.url, identity ?? (await Identity.generate()), { retryUnavailableMs: 60_000 });
  const reg = await api.register({ name, email: `${name.toLowerCase()}-${Date.now()}@example.org` });
  return { api, reg };
}

test("register, me, updateMe and balance, signed", async () => {
  const identity = await Identity.generate();
  const { api, reg } = await newUser("Ada", identity);
  assert.equal(reg.created, true);
  assert.equal(reg.principal, identity.principal);
  const again = await api.register({ name: "Ada", email: "ada@example.org" });
  assert.equal(again.created, false);
  const me = await api.me();
  assert.equal(me.principal, identity.principal);
  assert.equal(me.today.attempts, 0);
  const changed = await api.updateMe({ education: "university" });
  assert.equal(changed.profile.education, "university");
  assert.deepEqual(await api.balance(), { staked: 0, pending: 0 });
});

test("problem documents become ApiError with status, type and detail", async () => {
  const stranger = new Client(cluster.url, await Identity.generate());
  const error = await stranger.me().catch((e) => e);
  assert.ok(error instanceof ApiError, String(error));
  assert.equal(error.status, 404);
  assert.equal(error.type, "https://canistry.dev/problems/not-registered");
  assert.ok(error.detail.length > 0);
  const missing = await stranger.unit("no-such-unit").catch((e) => e);
  assert.equal(missing.status, 404);
  assert.equal(missing.code, "unknown-unit");
  const unsigned = await new Client(cluster.url).me().catch((e) => e);
  assert.match(unsigned.message, /signed/);
});

test("units page through, and unit reads are cached by ETag (304 on the second read)", async () => {
  const statuses = [];
  const recording = async (input, init) => {
    const response = await fetch(input, init);
    statuses.push([new Headers(init.headers).get("If-None-Match"), response.status]);
    return response;
  };
  const api = new Client(cluster.url, null, { fetch: recording });
  const first = await api.units({ limit: 5 });
  assert.equal(first.units.length, 5);
  const second = await api.units({ limit: 5, cursor: first.next_cursor });
  assert.notEqual(second.units[0].id, first.units[0].id);
  const id = first.units[0].id;
  statuses.length = 0;
  const a = await api.unit(id);
  const b = await api.unit(id);
  assert.deepEqual(b, a);
  assert.equal(statuses[0][0], null);
  assert.equal(statuses[0][1], 200);
  assert.ok(statuses[1][0], "the second read sends If-None-Match");
  assert.equal(statuses[1][1], 304);
  assert.equal(a.quiz.questions[0].answer, undefined, "no answers are sent");
});

test("a submission lost on the way back is sent again with the same key and counts once", async () => {
  const { api: plain } = await newUser("Grace");
  const identity = await plain.identity();
  const keys = [];
  let dropped = 0;
  const flaky = async (input, init) => {
    const response = await fetch(input, init);
    if (String(input).includes("/submissions")) {
      keys.push(new Headers(init.headers).get("Idempotency-Key"));
      if (dropped++ === 0) throw new TypeError("network connection lost"); // the gateway did it
    }
    return response;
  };
  const api = new Client(cluster.url, identity, { fetch: flaky, networkRetryDelayMs: 10 });
  const unit = samplePack()[0];
  const result = await api.submit(unit.id, answersOf(unit));
  assert.equal(keys.length, 2);
  assert.ok(keys[0] && keys[0] === keys[1], "the resend keeps the key");
  assert.equal(result.passed, true);
  assert.equal(result.reward, unit.reward);
  const me = await api.me();
  assert.equal(me.today.attempts, 1, "the resend did not count twice");
  assert.equal(me.balance.staked + me.balance.pending, unit.reward);
  const wrong = await api.submit(samplePack()[1].id, answersOf(samplePack()[1], false));
  assert.equal(wrong.passed, false);
  assert.equal(wrong.attempts_today, 2);
});

test("an Ed25519KeyIdentity from @dfinity/identity signs requests as the same principal", async () => {
  const dfx = Ed25519KeyIdentity.generate();
  const api = new Client(cluster.url, dfx, { retryUnavailableMs: 60_000 });
  const reg = await api.register({ name: "Dfx", email: "dfx@example.org" });
  assert.equal(reg.principal, dfx.getPrincipal().toText());
});

test("cluster shows shards and the treasury", async () => {
  const view = await new Client(cluster.url).cluster();
  assert.ok(view.shards.length >= 1);
  assert.ok(view.cap > 0 && view.total_granted <= view.cap);
  assert.ok(view.shards.some((s) => s.users > 0));
});

test("a resend that overtakes its own first try waits for it and counts once", async () => {
  const { api: plain } = await newUser("Linus");
  const identity = await plain.identity();
  const first = [];
  const resends = [];
  let sent = 0;
  const impatient = async (input, init) => {
    if (String(input).includes("/submissions") && sent++ === 0) {
      first.push(fetch(input, init).then((r) => r.status)); // still on its way...
      throw new TypeError("connection reset"); // ...when the client is told it failed
    }
    const response = await fetch(input, init);
    if (String(input).includes("/submissions")) resends.push(response.status);
    return response;
  };
  const api = new Client(cluster.url, identity, { fetch: impatient, networkRetryDelayMs: 1 });
  const unit = samplePack()[2];
  const result = await api.submit(unit.id, answersOf(unit));
  assert.equal(result.passed, true);
  assert.equal(await first[0], 200);
  assert.equal(resends.at(-1), 200, `resends answered ${resends}`);
  const me = await api.me();
  assert.equal(me.today.attempts, 1);
  assert.equal(me.balance.staked + me.balance.pending, unit.reward);
});
