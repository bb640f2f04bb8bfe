// The client's retry rules, against a scripted fetch (the real gateway is in client.test.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, Client, Identity } from "../dist/index.js";

const problem = (status, code, retryAfter) =>
  new Response(JSON.stringify({ type: `https://canistry.dev/problems/${code}`, title: code, status, detail: `${code}!` }), {
    status,
    headers: { "Content-Type": "application/problem+json", ...(retryAfter ? { "Retry-After": String(retryAfter) } : {}) },
  });
const ok = () => new Response(JSON.stringify({ passed: true }), { status: 200 });

function scripted(...steps) {
  const seen = [];
  const fetch = async (input, init) => {
    seen.push({ key: new Headers(init.headers).get("Idempotency-Key"), auth: new Headers(init.headers).get("Authorization") });
    const step = steps.shift();
    if (step instanceof Error) throw step;
    return step();
  };
  return { fetch, seen };
}

test("after a network failure, a 409 in flight for the same key is waited out", async () => {
  const { fetch, seen } = scripted(new TypeError("reset"), () => problem(409, "idempotency-key-in-flight", 0.05), ok);
  const api = new Client("http://gw.test", await Identity.generate(), { fetch, networkRetryDelayMs: 1 });
  assert.deepEqual(await api.submit("u", { q: "a" }), { passed: true });
  assert.equal(seen.length, 3);
  assert.ok(seen.every((s) => s.key === seen[0].key), "one key throughout");
  assert.equal(new Set(seen.map((s) => s.auth)).size, 3, "each send is signed anew (fresh nonce)");
});

test("without a network failure, 409 and 503 throw at once unless the caller allows waiting", async () => {
  const identity = await Identity.generate();
  let { fetch } = scripted(() => problem(409, "idempotency-key-in-flight", 1));
  await assert.rejects(new Client("http://gw.test", identity, { fetch }).submit("u", {}), (e) => e instanceof ApiError && e.status === 409);
  ({ fetch } = scripted(() => problem(503, "unavailable", 7)));
  const error = await new Client("http://gw.test", identity, { fetch }).submit("u", {}).catch((e) => e);
  assert.equal(error.status, 503);
  assert.equal(error.retryAfter, 7);
  assert.equal(error.detail, "unavailable!");
  ({ fetch } = scripted(() => problem(503, "unavailable", 0.05), ok));
  assert.deepEqual(await new Client("http://gw.test", identity, { fetch, retryUnavailableMs: 5000 }).submit("u", {}), { passed: true });
});

test("network failures are resent a bounded number of times, and reads are not resent", async () => {
  const identity = await Identity.generate();
  const { fetch, seen } = scripted(...Array.from({ length: 5 }, () => new TypeError("down")));
  await assert.rejects(new Client("http://gw.test", identity, { fetch, networkRetries: 2, networkRetryDelayMs: 1 }).submit("u", {}), TypeError);
  assert.equal(seen.length, 3);
  const read = scripted(new TypeError("down"));
  await assert.rejects(new Client("http://gw.test", identity, { fetch: read.fetch }).me(), TypeError);
  assert.equal(read.seen.length, 1);
});

test("the built module is one browser-ready file: no imports, no Node-only APIs", async () => {
  const { readFileSync } = await import("node:fs");
  const code = readFileSync(new URL("../dist/index.js", import.meta.url), "utf8");
  assert.doesNotMatch(code, /^\s*import\s|\bfrom\s*["']|\brequire\(|\bprocess\.|\bBuffer\b/m);
  for (const name of ["Client", "Identity", "ApiError"]) assert.match(code, new RegExp(`export \\{[^}]*\\b${name}\\b`));
});
