/**
 * The Canistry gateway's HTTP API (docs/design.md §7) with signed requests (§5).
 *
 * The operations are the Python client's (`canistry.client`) in camelCase. Answers keep
 * the API's field names. A non-2xx answer throws {@link ApiError}. Submissions always carry
 * an `Idempotency-Key` and are sent again, with the same key and a fresh signature, after a
 * network failure, so a lost answer never costs a second attempt. Unit reads are cached by
 * `ETag` and revalidated with `If-None-Match`.
 */

import { hex, randomBytes, utf8 } from "./bytes.js";
import { ApiError } from "./errors.js";
import { type DfinityEd25519Identity, Identity } from "./identity.js";
import type {
  Balance,
  ClusterView,
  Me,
  NewUser,
  ProfileChanges,
  Registration,
  SubmissionResult,
  Unit,
  UnitPage,
} from "./types.js";

export interface ClientOptions {
  /** The `fetch` to use (the global one by default). */
  fetch?: typeof fetch;
  /** Per request; the request is aborted after this long (a network failure). */
  timeoutMs?: number;
  /** How many times a keyed write is sent again after a network failure (default 3). */
  networkRetries?: number;
  /** First pause before such a resend; it doubles each time (default 200 ms). */
  networkRetryDelayMs?: number;
  /**
   * How long, in all, one call keeps retrying answers that say "try again" (503, or 409
   * while the same idempotency key is in flight) after their `Retry-After`; 0 (the
   * default) throws the {@link ApiError} at once, so a page can show it.
   */
  retryUnavailableMs?: number;
}

export interface WriteOptions {
  /** Replays within 24 h return the first answer and change nothing; one is made if omitted. */
  idempotencyKey?: string;
}

interface Call {
  method: "GET" | "POST" | "PATCH";
  path: string;
  signed: boolean;
  json?: unknown;
  headers?: Record<string, string>;
  ok?: number[];
}

export class Client {
  readonly baseUrl: string;
  readonly #identity: Promise<Identity> | null;
  readonly #fetch: typeof fetch;
  readonly #options: Required<Omit<ClientOptions, "fetch">>;
  readonly #units = new Map<string, { etag: string; unit: Unit }>();

  /** `identity` may be an {@link Identity} or @dfinity/identity's `Ed25519KeyIdentity`. */
  constructor(baseUrl: string, identity?: Identity | DfinityEd25519Identity | null, options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#identity =
      identity == null
        ? null
        : identity instanceof Identity
          ? Promise.resolve(identity)
          : Identity.fromDfinity(identity);
    this.#identity?.catch(() => undefined); // reported by the first signed call
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#options = {
      timeoutMs: options.timeoutMs ?? 10_000,
      networkRetries: options.networkRetries ?? 3,
      networkRetryDelayMs: options.networkRetryDelayMs ?? 200,
      retryUnavailableMs: options.retryUnavailableMs ?? 0,
    };
  }

  /** The signing identity (resolved), or null for a client of public routes only. */
  async identity(): Promise<Identity | null> {
    return this.#identity === null ? null : this.#identity;
  }

  /** `POST /v1/users`: register the signing principal (`created` false if it already was). */
  async register(user: NewUser, options: WriteOptions = {}): Promise<Registration> {
    const body = { name: user.name, email: user.email, education: user.education ?? "", gender: user.gender ?? "" };
    const response = await this.#run({
      method: "POST",
      path: "/v1/users",
      signed: true,
      json: body,
      headers: { "Idempotency-Key": options.idempotencyKey ?? newKey() },
      ok: [200, 201],
    });
    return { ...(await response.json()), created: response.status === 201 };
  }

  /** `GET /v1/me`: profile, completed units, today's stats and balance. */
  async me(): Promise<Me> {
    return (await this.#run({ method: "GET", path: "/v1/me", signed: true })).json();
  }

  /** `PATCH /v1/me`: change profile fields (those given). */
  async updateMe(changes: ProfileChanges, options: WriteOptions = {}): Promise<Me> {
    const json = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined));
    const headers = { "Idempotency-Key": options.idempotencyKey ?? newKey() };
    return (await this.#run({ method: "PATCH", path: "/v1/me", signed: true, json, headers })).json();
  }

  /** `GET /v1/me/balance`. */
  async balance(): Promise<Balance> {
    return (await this.#run({ method: "GET", path: "/v1/me/balance", signed: true })).json();
  }

  /** `GET /v1/units`: unit summaries, a page at a time (pass `next_cursor` back as `cursor`). */
  async units(query: { subject?: string; cursor?: string; limit?: number } = {}): Promise<UnitPage> {
    const params = new URLSearchParams();
    if (query.subject !== undefined) params.set("subject", query.subject);
    if (query.cursor !== undefined) params.set("cursor", query.cursor);
    if (query.limit !== undefined) params.set("limit", String(query.limit));
    const search = params.toString();
    const path = "/v1/units" + (search ? `?${search}` : "");
    return (await this.#run({ method: "GET", path, signed: false })).json();
  }

  /** `GET /v1/units/{id}`: the unit and its quiz; served from this client's cache on 304. */
  async unit(unitId: string): Promise<Unit> {
    const cached = this.#units.get(unitId);
    const response = await this.#run({
      method: "GET",
      path: `/v1/units/${encodeURIComponent(unitId)}`,
      signed: false,
      headers: cached ? { "If-None-Match": cached.etag } : {},
      ok: [200, 304],
    });
    if (response.status === 304 && cached) return cached.unit;
    const unit: Unit = await response.json();
    const etag = response.headers.get("ETag");
    if (etag !== null) this.#units.set(unitId, { etag, unit });
    return unit;
  }

  /** `POST /v1/units/{id}/submissions`: answers are question id → choice id. */
  async submit(unitId: string, answers: Record<string, string>, options: WriteOptions = {}): Promise<SubmissionResult> {
    const response = await this.#run({
      method: "POST",
      path: `/v1/units/${encodeURIComponent(unitId)}/submissions`,
      signed: true,
      json: { answers },
      headers: { "Idempotency-Key": options.idempotencyKey ?? newKey() },
    });
    return response.json();
  }

  /** `GET /v1/cluster`: shards, treasury and cap. */
  async cluster(): Promise<ClusterView> {
    return (await this.#run({ method: "GET", path: "/v1/cluster", signed: false })).json();
  }

  async #run(call: Call): Promise<Response> {
    const started = Date.now();
    const deadline = started + this.#options.retryUnavailableMs;
    const keyed = call.headers !== undefined && "Idempotency-Key" in call.headers;
    let failures = 0;
    for (;;) {
      let response: Response;
      try {
        response = await this.#send(call);
      } catch (error) {
        if (!keyed || !isNetworkFailure(error) || failures >= this.#options.networkRetries) throw error;
        await sleep(this.#options.networkRetryDelayMs * 2 ** failures++);
        continue;
      }
      if ((call.ok ?? [200]).includes(response.status)) return response;
      const error = await ApiError.fromResponse(response);
      const inFlight = error.status === 409 && error.code === "idempotency-key-in-flight";
      const retryable = error.status === 503 || inFlight;
      const wait = Math.min(Math.max(error.retryAfter ?? 0, 0.05), 5) * 1000;
      // A resend after a network failure may overtake its own first try: wait for that one.
      const until = inFlight && failures > 0 ? Math.max(deadline, started + IN_FLIGHT_WAIT_MS) : deadline;
      if (!retryable || error.retryAfter === null || Date.now() + wait > until) throw error;
      await sleep(wait);
    }
  }

  async #send(call: Call): Promise<Response> {
    const url = new URL(this.baseUrl + call.path);
    const body = call.json === undefined ? new Uint8Array() : utf8(JSON.stringify(call.json));
    const headers: Record<string, string> = { ...call.headers };
    if (call.json !== undefined) headers["Content-Type"] = "application/json";
    if (call.signed) {
      if (this.#identity === null) throw new Error(`${call.method} ${call.path} is signed: give the client an identity`);
      const identity = await this.#identity;
      headers.Authorization = await identity.authorization(call.method, url.pathname + url.search, body);
    }
    return this.#fetch(url, {
      method: call.method,
      headers,
      body: call.json === undefined ? undefined : (body as BodyInit),
      signal: AbortSignal.timeout(this.#options.timeoutMs),
      // Unit reads revalidate with our own If-None-Match; the page's HTTP cache stays out.
      cache: "no-store",
    });
  }
}

/** How long a resend waits out its own first try still in progress (409 in flight). */
const IN_FLIGHT_WAIT_MS = 30_000;

function newKey(): string {
  return hex(randomBytes(16));
}

/** fetch rejects with a TypeError when no answer came (and a timeout aborts with one of these). */
function isNetworkFailure(error: unknown): boolean {
  return error instanceof TypeError || (error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError"));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
