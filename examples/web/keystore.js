// The learner's key lives in IndexedDB. Where WebCrypto has Ed25519 the private key is a
// non-extractable CryptoKey: the page can sign with it but no script can read it out.
import { Identity } from "./vendor/canistry-client.js";

const DB = "canistry";
const STORE = "keys";
const NAME = "learner";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function store(mode) {
  const open = indexedDB.open(DB, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  const db = await request(open);
  return db.transaction(STORE, mode).objectStore(STORE);
}

/** The stored identity, or a new one (stored before it is returned). */
export async function loadOrCreateIdentity() {
  const saved = await request((await store("readonly")).get(NAME));
  if (saved?.keyPair) return Identity.fromCryptoKeyPair(saved.keyPair);
  if (saved?.pem) return Identity.fromPem(saved.pem);
  const identity = await Identity.generate({ extractable: false });
  // Without WebCrypto Ed25519 there is no CryptoKey to keep: the PEM is stored instead.
  const record = identity.keyPair ? { keyPair: identity.keyPair } : { pem: identity.toPem() };
  await request((await store("readwrite")).put(record, NAME));
  return identity;
}
