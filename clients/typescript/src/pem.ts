/**
 * Ed25519 private keys as PKCS#8 PEM, the format dfx and the Python client write:
 * PKCS#8 v1 on the way out; v1 or v2 (public key embedded, as ring-based dfx writes) in.
 */

import { base64, concat, fromBase64 } from "./bytes.js";

export class IdentityError extends Error {
  override name = "IdentityError";
}

/** `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }`. */
const PKCS8_V1_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);
const ED25519_OID = Uint8Array.from([0x06, 0x03, 0x2b, 0x65, 0x70]);

export function pkcs8(seed: Uint8Array): Uint8Array {
  return concat(PKCS8_V1_PREFIX, seed);
}

export function toPem(seed: Uint8Array): string {
  const body = base64(pkcs8(seed)).match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
}

/** The seed and the embedded public key (v2), or an IdentityError saying what is wrong. */
export function parsePem(pem: string): { seed: Uint8Array; publicKey: Uint8Array | null } {
  const match = /-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (match === null) throw new IdentityError("no PEM block found");
  if (match[1] !== "PRIVATE KEY") {
    throw new IdentityError(
      `expected an Ed25519 'PRIVATE KEY' (PKCS#8), got '${match[1]}'; only Ed25519 identities sign Canistry requests`,
    );
  }
  let der: Uint8Array;
  try {
    der = fromBase64(match[2]!.replace(/\s+/g, ""));
  } catch {
    throw new IdentityError("the PEM body is not base64");
  }
  return parsePkcs8(der);
}

function parsePkcs8(der: Uint8Array): { seed: Uint8Array; publicKey: Uint8Array | null } {
  let [body, rest] = tlv(der, 0x30);
  if (rest.length) throw new IdentityError("trailing data after the key");
  let version: Uint8Array;
  [version, body] = tlv(body, 0x02);
  if (version.length !== 1 || version[0]! > 1) throw new IdentityError("unknown PKCS#8 version");
  let algorithm: Uint8Array;
  [algorithm, body] = tlv(body, 0x30);
  if (!ED25519_OID.every((b, i) => algorithm[i] === b)) throw new IdentityError("not an Ed25519 key");
  let octets: Uint8Array;
  [octets, body] = tlv(body, 0x04);
  const [seed, extra] = tlv(octets, 0x04);
  if (extra.length || seed.length !== 32) throw new IdentityError("an Ed25519 private key has 32 bytes");
  let publicKey: Uint8Array | null = null;
  while (body.length) {
    const tag = body[0]!;
    let value: Uint8Array;
    [value, body] = tlv(body, tag);
    if (tag === 0xa1) {
      const [bits] = tlv(value, 0x03);
      if (bits.length !== 33 || bits[0] !== 0) throw new IdentityError("malformed embedded public key");
      publicKey = bits.slice(1);
    } else if (tag !== 0xa0) {
      throw new IdentityError("unexpected field in the key");
    }
  }
  return { seed: seed.slice(), publicKey };
}

function tlv(data: Uint8Array, tag: number): [Uint8Array, Uint8Array] {
  if (data.length < 2) throw new IdentityError("truncated DER");
  if (data[0] !== tag) throw new IdentityError(`expected DER tag 0x${tag.toString(16)}`);
  let length = data[1]!;
  let i = 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n < 1 || n > 2) throw new IdentityError("unsupported DER length");
    length = 0;
    for (let k = 0; k < n; k++) length = (length << 8) | (data[2 + k] ?? 0);
    i = 2 + n;
  }
  if (i + length > data.length) throw new IdentityError("truncated DER");
  return [data.subarray(i, i + length), data.subarray(i + length)];
}
