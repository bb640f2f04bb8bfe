/**
 * Internet Computer principals of Ed25519 keys (docs/design.md §5), as @dfinity/principal
 * derives them: SHA-224 of the key's DER SubjectPublicKeyInfo, then the byte 0x02; the text
 * is lower-case base32 of CRC32 (big-endian) + bytes, in dash-separated groups of five.
 */

import { sha224 } from "@noble/hashes/sha2";
import { concat } from "./bytes.js";

/** DER of `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }` up to the 32 key bytes. */
export const ED25519_SPKI_PREFIX = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

export function derPublicKey(rawKey: Uint8Array): Uint8Array {
  if (rawKey.length !== 32) throw new Error(`an Ed25519 public key has 32 bytes, got ${rawKey.length}`);
  return concat(ED25519_SPKI_PREFIX, rawKey);
}

export function principalBytes(rawKey: Uint8Array): Uint8Array {
  return concat(sha224(derPublicKey(rawKey)), Uint8Array.of(0x02));
}

export function principalText(data: Uint8Array): string {
  const crc = crc32(data);
  const checked = concat(Uint8Array.of(crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff), data);
  const text = base32(checked);
  return text.match(/.{1,5}/g)!.join("-");
}

export function principalOfKey(rawKey: Uint8Array): string {
  return principalText(principalBytes(rawKey));
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

function base32(data: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

let table: Uint32Array | undefined;

function crc32(data: Uint8Array): number {
  if (table === undefined) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = table[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
