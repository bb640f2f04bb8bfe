// Identity: principals as the IC's own libraries derive them, PEM as dfx and the Python
// client write it, and signatures byte-for-byte the Python client's.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { Ed25519KeyIdentity } from "@dfinity/identity";
import { Principal } from "@dfinity/principal";
import { Identity, IdentityError, hasWebCryptoEd25519 } from "../dist/index.js";

const PYTHON = process.env.PYTHON ?? "python3";

/** Ask the Python client (canistry.client) about a key and a request. */
function python(request) {
  const script = `
import json, sys
from canistry.client import Identity
req = json.load(sys.stdin)
me = Identity.from_pem(req["pem"])
print(json.dumps({
    "principal": me.principal,
    "pem": me.to_pem(),
    "authorization": me.authorization(req["method"], req["path"], req["body"].encode(),
                                      ts_ms=req["ts_ms"], nonce=bytes.fromhex(req["nonce_hex"])),
    "generated": Identity.generate().to_pem(),
}))`;
  const out = execFileSync(PYTHON, ["-c", script], { input: JSON.stringify(request), encoding: "utf8" });
  return JSON.parse(out);
}

test("principal equals what @dfinity/principal derives, for many keys", async () => {
  for (let i = 0; i < 20; i++) {
    const me = await Identity.generate();
    const der = new Uint8Array([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, ...me.publicKey]);
    assert.equal(me.principal, Principal.selfAuthenticating(der).toText());
  }
});

test("an Ed25519KeyIdentity from @dfinity/identity is the same key and principal", async () => {
  const dfx = Ed25519KeyIdentity.generate();
  const me = await Identity.fromDfinity(dfx);
  assert.equal(me.principal, dfx.getPrincipal().toText());
  assert.deepEqual(me.publicKey, new Uint8Array(dfx.getPublicKey().toRaw()));
  const message = new TextEncoder().encode("hello");
  assert.deepEqual(await me.sign(message), new Uint8Array(await dfx.sign(message)));
});

test("the Python and TypeScript clients make the same principal, PEM and signature", async () => {
  const me = await Identity.generate();
  const request = {
    pem: me.toPem(),
    method: "POST",
    path: "/v1/units/intro-1/submissions?x=1",
    body: JSON.stringify({ answers: { q1: "a" } }),
    ts_ms: 1_760_000_000_123,
    nonce_hex: "00112233445566778899aabbccddeeff",
  };
  const py = python(request);
  assert.equal(py.principal, me.principal);
  assert.equal(py.pem, me.toPem());
  const nonce = Uint8Array.from(Buffer.from(request.nonce_hex, "hex"));
  const ours = await me.authorization(request.method, request.path, new TextEncoder().encode(request.body), {
    tsMs: request.ts_ms,
    nonce,
  });
  assert.equal(ours, py.authorization);
  // And a key Python made loads here with the principal Python gives it.
  const fromPython = await Identity.fromPem(py.generated);
  assert.equal(fromPython.toPem(), py.generated);
});

test("PEM: v2 with the public key embedded loads; a wrong embedded key or a non-Ed25519 block does not", async () => {
  const me = await Identity.generate();
  const seed = Buffer.from(me.toPem().split("\n")[1], "base64").subarray(16);
  const v2 = Buffer.concat([
    Buffer.from("3053020101300506032b657004220420", "hex"),
    seed,
    Buffer.from("a123032100", "hex"),
    Buffer.from(me.publicKey),
  ]);
  const pem = `-----BEGIN PRIVATE KEY-----\n${v2.toString("base64")}\n-----END PRIVATE KEY-----\n`;
  assert.equal((await Identity.fromPem(pem)).principal, me.principal);
  const other = await Identity.generate();
  const wrong = Buffer.concat([v2.subarray(0, v2.length - 32), Buffer.from(other.publicKey)]);
  await assert.rejects(
    Identity.fromPem(`-----BEGIN PRIVATE KEY-----\n${wrong.toString("base64")}\n-----END PRIVATE KEY-----\n`),
    IdentityError,
  );
  await assert.rejects(Identity.fromPem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"), /Ed25519/);
  await assert.rejects(Identity.fromPem("nothing here"), /no PEM block/);
});

test("a non-extractable key signs but does not export", async () => {
  assert.equal(await hasWebCryptoEd25519(), true, "Node 20+ has WebCrypto Ed25519");
  const me = await Identity.generate({ extractable: false });
  assert.equal(me.extractable, false);
  assert.throws(() => me.toPem(), /not extractable/);
  assert.equal((await me.sign(new Uint8Array([1]))).length, 64);
});

test("the @noble/ed25519 fallback signs the same bytes as WebCrypto", async () => {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const web = await Identity.fromSeed(seed);
  const noble = await Identity.fromSeed(seed, { webCrypto: false });
  assert.equal(noble.principal, web.principal);
  const opts = { tsMs: 1, nonce: new Uint8Array(16) };
  const body = new TextEncoder().encode("{}");
  assert.equal(await noble.authorization("GET", "/v1/me", body, opts), await web.authorization("GET", "/v1/me", body, opts));
});
