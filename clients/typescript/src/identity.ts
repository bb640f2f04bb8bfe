/**
 * A user's identity: an Ed25519 key, its IC principal, and request signing (docs/design.md §5).
 *
 * Signing goes through WebCrypto's Ed25519 where the platform has it (current browsers,
 * Node 20+), which also lets a browser keep the private key non-extractable; elsewhere
 * @noble/ed25519 signs. Ed25519 signatures are deterministic, so both give the same bytes.
 */

import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2";
import { b64url, equal, hex, randomBytes, sha256, utf8 } from "./bytes.js";
import { IdentityError, parsePem, pkcs8, toPem } from "./pem.js";
import { principalOfKey } from "./principal.js";

export { IdentityError };

/** The signing domain of docs/design.md §5. */
export const DOMAIN = "canistry-v1";
export const SCHEME = "Canistry";

// The fallback must work where crypto.subtle is missing too (pages outside a secure context).
ed.hashes.sha512 = (message) => sha512(message) as Uint8Array<ArrayBuffer>;

type Signer = (message: Uint8Array) => Promise<Uint8Array>;

/** What this class takes from @dfinity/identity's `Ed25519KeyIdentity` (structurally). */
export interface DfinityEd25519Identity {
  getKeyPair(): { secretKey: Uint8Array | ArrayBuffer };
}

let webCryptoEd25519: Promise<boolean> | undefined;

/** Whether this platform's WebCrypto signs with Ed25519 (asked once). */
export function hasWebCryptoEd25519(): Promise<boolean> {
  webCryptoEd25519 ??= (async () => {
    if (globalThis.crypto?.subtle === undefined) return false;
    try {
      await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
      return true;
    } catch {
      return false;
    }
  })();
  return webCryptoEd25519;
}

/** The exact bytes `sig` signs; `path` includes the query as sent. */
export async function canonicalMessage(
  method: string,
  path: string,
  ts: string,
  nonce: string,
  body: Uint8Array,
): Promise<Uint8Array> {
  const digest = hex(await sha256(body));
  return utf8(`${DOMAIN}\n${method.toUpperCase()}\n${path}\n${ts}\n${nonce}\n${digest}`);
}

export interface SignOptions {
  /** Unix milliseconds; now if omitted. */
  tsMs?: number;
  /** The nonce's bytes (8 to 64); 16 random bytes if omitted. */
  nonce?: Uint8Array;
}

export class Identity {
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** The IC principal text of the key, as dfx and @dfinity/principal show it. */
  readonly principal: string;
  /** The WebCrypto key pair, when WebCrypto signs (storable in IndexedDB as is). */
  readonly keyPair: CryptoKeyPair | null;
  readonly #seed: Uint8Array | null;
  readonly #sign: Signer;

  private constructor(publicKey: Uint8Array, sign: Signer, seed: Uint8Array | null, keyPair: CryptoKeyPair | null) {
    this.publicKey = publicKey;
    this.principal = principalOfKey(publicKey);
    this.keyPair = keyPair;
    this.#seed = seed;
    this.#sign = sign;
  }

  /**
   * A new key. `extractable: false` keeps the private key inside WebCrypto, where
   * the platform has Ed25519 (then {@link toPem} throws); without WebCrypto Ed25519
   * the key is an ordinary, exportable one.
   */
  static async generate(options: { extractable?: boolean } = {}): Promise<Identity> {
    const extractable = options.extractable ?? true;
    if (await hasWebCryptoEd25519()) {
      const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, extractable, [
        "sign",
        "verify",
      ])) as CryptoKeyPair;
      return Identity.fromCryptoKeyPair(pair);
    }
    return Identity.fromSeed(randomBytes(32));
  }

  /**
   * From the 32-byte private key (the RFC 8032 seed). `webCrypto: false` signs with
   * @noble/ed25519 even where WebCrypto could (the fallback, testable anywhere).
   */
  static async fromSeed(seed: Uint8Array, options: { webCrypto?: boolean } = {}): Promise<Identity> {
    if (seed.length !== 32) throw new IdentityError("an Ed25519 seed has 32 bytes");
    const kept = Uint8Array.from(seed);
    const publicKey = ed.getPublicKey(kept);
    if ((options.webCrypto ?? true) && (await hasWebCryptoEd25519())) {
      const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8(kept) as BufferSource, { name: "Ed25519" }, false, [
        "sign",
      ]);
      return new Identity(publicKey, webCryptoSigner(privateKey), kept, null);
    }
    return new Identity(publicKey, async (m) => ed.sign(m, kept), kept, null);
  }

  /** From a WebCrypto Ed25519 key pair, extractable or not (e.g. read back from IndexedDB). */
  static async fromCryptoKeyPair(pair: CryptoKeyPair): Promise<Identity> {
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    let seed: Uint8Array | null = null;
    if (pair.privateKey.extractable) {
      const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
      seed = der.slice(der.length - 32);
    }
    return new Identity(publicKey, webCryptoSigner(pair.privateKey), seed, pair);
  }

  /** From a PKCS#8 PEM private key, v1 or v2 (dfx's `identity.pem`, the Python client's). */
  static async fromPem(pem: string): Promise<Identity> {
    const { seed, publicKey } = parsePem(pem);
    const identity = await Identity.fromSeed(seed);
    if (publicKey !== null && !equal(publicKey, identity.publicKey)) {
      throw new IdentityError("the PEM's public key does not belong to its private key");
    }
    return identity;
  }

  /** From @dfinity/identity's `Ed25519KeyIdentity`: the same key, so the same principal. */
  static async fromDfinity(identity: DfinityEd25519Identity): Promise<Identity> {
    const secret = new Uint8Array(identity.getKeyPair().secretKey);
    // agent-js keeps the 32-byte seed (older versions: seed + public key, 64 bytes).
    return Identity.fromSeed(secret.slice(0, 32));
  }

  /** Whether {@link toPem} can write the private key. */
  get extractable(): boolean {
    return this.#seed !== null;
  }

  /** PKCS#8 v1 PEM, which dfx, the Python client and OpenSSL all read. */
  toPem(): string {
    if (this.#seed === null) throw new IdentityError("this key is not extractable");
    return toPem(this.#seed);
  }

  /** A raw Ed25519 signature of `message`. */
  sign(message: Uint8Array): Promise<Uint8Array> {
    return this.#sign(message);
  }

  /** The `Authorization` header for one request; `path` includes the query as sent. */
  async authorization(method: string, path: string, body: Uint8Array, options: SignOptions = {}): Promise<string> {
    const ts = String(options.tsMs ?? Date.now());
    const nonce = b64url(options.nonce ?? randomBytes(16));
    const sig = await this.sign(await canonicalMessage(method, path, ts, nonce, body));
    return `${SCHEME} key=${b64url(this.publicKey)}, ts=${ts}, nonce=${nonce}, sig=${b64url(sig)}`;
  }

  toString(): string {
    return `Identity(${this.principal})`;
  }
}

function webCryptoSigner(privateKey: CryptoKey): Signer {
  return async (message) =>
    new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, privateKey, message as BufferSource));
}
