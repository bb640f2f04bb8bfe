/**
 * `@canistry/client`: the Canistry gateway's API, signed (docs/design.md §5, §7).
 *
 * ```ts
 * import { Client, Identity } from "@canistry/client";
 * const me = await Identity.generate();
 * const api = new Client("http://127.0.0.1:8080", me);
 * await api.register({ name: "Ada", email: "ada@example.org" });
 * ```
 */

export { ApiError, type ProblemDocument } from "./errors.js";
export { Client, type ClientOptions, type WriteOptions } from "./client.js";
export {
  DOMAIN,
  Identity,
  IdentityError,
  SCHEME,
  canonicalMessage,
  hasWebCryptoEd25519,
  type DfinityEd25519Identity,
  type SignOptions,
} from "./identity.js";
export { principalOfKey } from "./principal.js";
export type * from "./types.js";
