import { ApiError } from "./errors";
import { EventStream, type EventHandlers, type EventStreamOptions } from "./events";
import type {
  BulkAction,
  BulkJob,
  BulkJobCreated,
  BulkJobPage,
  BulkJobRequest,
  Catalog,
  EventTicket,
  AdminLedgerQuery,
  Compensation,
  Erasure,
  LedgerPage,
  LedgerQuery,
  LinkCode,
  LinkStatus,
  Mutation,
  Outcome,
  Player,
  RefundResult,
  SaveAtVersion,
  SettingValue,
  Unlinked,
  VersionDiff,
} from "./types";

/** Options of a SavesyncClient. */
export interface ClientOptions {
  /** The service's origin, e.g. "https://api.example.com" (no trailing slash needed). */
  baseUrl: string;
  /**
   * The signed-in user's Firebase ID token, e.g. `(f) => auth.currentUser!.getIdToken(f)`.
   * Asked for on every attempt; with forceRefresh true after a 401.
   */
  getIdToken: (forceRefresh?: boolean) => Promise<string>;
  /** Attempts per call on a network error, a 5xx, a 408 or a 429 (3). */
  maxAttempts?: number;
  /** The first retry's delay in ms (250), doubled on each further one, up to maxBackoffMs (4000). */
  backoffMs?: number;
  /** The longest retry delay in ms (4000). */
  maxBackoffMs?: number;
  /**
   * The longest Retry-After, in seconds, the client waits for by itself
   * (10). A 429 asking for longer is thrown at once, with retryAfterSeconds.
   */
  maxRetryAfterSeconds?: number;
  /** Time limit of one attempt in ms (15000); a timed-out attempt is a network error. */
  timeoutMs?: number;
  /** The fetch to use (globalThis.fetch). */
  fetch?: typeof fetch;
  /** Random numbers in [0, 1) for jitter (Math.random). */
  random?: () => number;
  /** Waits ms milliseconds (setTimeout). */
  sleep?: (ms: number) => Promise<void>;
}

/** Options of one call. */
export interface CallOptions {
  /** Cancels the call, and its retries, with an AbortError. */
  signal?: AbortSignal;
  /** Overrides the client's maxAttempts for this call. */
  maxAttempts?: number;
}

/** Options of one write. */
export interface WriteOptions extends CallOptions {
  /**
   * The Idempotency-Key of this user intent. Generated (crypto.randomUUID)
   * when absent; pass your own to retry an intent whose outcome you did not
   * learn (a NETWORK_ERROR after every attempt), so it applies at most once.
   */
  idempotencyKey?: string;
}

/** The answer to a write and how it was answered. */
export interface Written<T> {
  /** The response body. */
  body: T;
  /** True when the service answered the stored outcome of an earlier attempt (Idempotent-Replayed). */
  replayed: boolean;
  /** The Idempotency-Key the write went under. */
  idempotencyKey: string;
  /** The service's X-Request-Id. */
  requestId: string | undefined;
}

/** What send needs to make a request. */
interface Request {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  idempotencyKey?: string;
  /** The body is handed back as text, not parsed as JSON. */
  text?: boolean;
}

/** What send answers. */
interface Response<T> {
  body: T;
  headers: Headers;
}

/**
 * SavesyncClient calls the companion routes (`/v1/me/…`) and the support
 * routes (`/v1/admin/…`) of savesync with the signed-in user's Firebase ID
 * token.
 *
 * Every write runs under one Idempotency-Key for the whole user intent:
 * retries after a network error, a 5xx, a 408 or a 429 (after Retry-After)
 * send the same key, so the service applies it once. A 401 is retried once
 * with a force-refreshed ID token. Failures are thrown as ApiError.
 */
export class SavesyncClient {
  readonly baseUrl: string;
  private readonly getIdToken: (forceRefresh?: boolean) => Promise<string>;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxRetryAfterSeconds: number;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.getIdToken = opts.getIdToken;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
    this.backoffMs = opts.backoffMs ?? 250;
    this.maxBackoffMs = opts.maxBackoffMs ?? 4000;
    this.maxRetryAfterSeconds = opts.maxRetryAfterSeconds ?? 10;
    this.timeoutMs = opts.timeoutMs ?? 15000;
    this.fetchFn = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.random = opts.random ?? Math.random;
    this.sleep = opts.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** GET /v1/me/link: whether the account is linked, and to which Roblox user. */
  async getLink(opts?: CallOptions): Promise<LinkStatus> {
    return (await this.send<LinkStatus>({ method: "GET", path: "/v1/me/link" }, opts)).body;
  }

  /** POST /v1/me/link-codes: a new code (valid 10 minutes) for the player to type in game. */
  async createLinkCode(opts?: CallOptions): Promise<LinkCode> {
    return (await this.send<LinkCode>({ method: "POST", path: "/v1/me/link-codes" }, opts)).body;
  }

  /** DELETE /v1/me/link: unlinks the account (idempotent; `unlinked` false when there was no link). */
  async unlink(opts?: CallOptions): Promise<Unlinked> {
    return (await this.send<Unlinked>({ method: "DELETE", path: "/v1/me/link" }, opts)).body;
  }

  /** GET /v1/me/catalog: what can be bought, at which price, granting what. */
  async getCatalog(opts?: CallOptions): Promise<Catalog> {
    return (await this.send<Catalog>({ method: "GET", path: "/v1/me/catalog" }, opts)).body;
  }

  /** GET /v1/me/save: the linked player's save and version (403 PERMISSION_DENIED when not linked). */
  async getSave(opts?: CallOptions): Promise<Player> {
    return (await this.send<Player>({ method: "GET", path: "/v1/me/save" }, opts)).body;
  }

  /** POST /v1/me/purchases: buys a SKU at the catalog's price (422 INSUFFICIENT_FUNDS, LIMIT_EXCEEDED, …). */
  purchase(sku: string, opts?: WriteOptions): Promise<Written<Outcome>> {
    return this.write<Outcome>({ method: "POST", path: "/v1/me/purchases", body: { sku } }, opts);
  }

  /** PUT /v1/me/settings/{key}: sets a setting (last writer wins). */
  setSetting(key: string, value: SettingValue, opts?: WriteOptions): Promise<Written<Outcome>> {
    return this.write<Outcome>({ method: "PUT", path: `/v1/me/settings/${seg(key)}`, body: { value } }, opts);
  }

  /** POST /v1/me/collections/{collection}: adds an element (add wins over a concurrent remove). */
  addToCollection(collection: string, element: string, opts?: WriteOptions): Promise<Written<Outcome>> {
    return this.write<Outcome>({ method: "POST", path: `/v1/me/collections/${seg(collection)}`, body: { element } }, opts);
  }

  /**
   * DELETE /v1/me/collections/{collection}/{element}: removes the element's
   * adds up to observedVersion, the save version the user saw when choosing
   * to remove it; later adds, by the game or another device, survive.
   */
  removeFromCollection(collection: string, element: string, observedVersion: number, opts?: WriteOptions): Promise<Written<Outcome>> {
    if (!fitsPathSegment(element)) {
      // The service routes on the decoded path, so an element holding "/"
      // cannot travel in it, and URL parsing drops "." and ".." segments:
      // the same op goes through POST /v1/me/mutations instead.
      return this.mutate({ ops: [{ op: "collection.remove", collection, element, observedVersion }] }, opts);
    }
    return this.write<Outcome>(
      { method: "DELETE", path: `/v1/me/collections/${seg(collection)}/${seg(element)}`, query: { observedVersion } },
      opts,
    );
  }

  /** POST /v1/me/mutations: a mutation of companion-allowed ops (purchase, settings.set, collection.add/remove, loadout.set). */
  mutate(mutation: Mutation, opts?: WriteOptions): Promise<Written<Outcome>> {
    return this.write<Outcome>({ method: "POST", path: "/v1/me/mutations", body: mutation }, opts);
  }

  /** GET /v1/me/ledger: one page of the player's own history, newest first. */
  async getLedger(query: LedgerQuery = {}, opts?: CallOptions): Promise<LedgerPage> {
    return (await this.send<LedgerPage>({ method: "GET", path: "/v1/me/ledger", query }, opts)).body;
  }

  /** POST /v1/me/events/tickets: a single-use ticket that opens the event stream within 60 s. */
  async createEventTicket(opts?: CallOptions): Promise<EventTicket> {
    return (await this.send<EventTicket>({ method: "POST", path: "/v1/me/events/tickets" }, opts)).body;
  }

  /** The URL of the event stream opened with a ticket. */
  eventsUrl(ticket: string): string {
    return `${this.baseUrl}/v1/me/events?ticket=${encodeURIComponent(ticket)}`;
  }

  /**
   * Opens the live event stream (GET /v1/me/events with a ticket) and keeps
   * it open: on an error it closes the EventSource and opens a new one with
   * a fresh ID token and ticket, after a growing delay. Call close() on the
   * result when done.
   */
  openEvents(handlers: EventHandlers, opts?: EventStreamOptions): EventStream {
    return new EventStream(this, handlers, opts);
  }

  /** GET /v1/admin/players/{userId}/ledger: one page of a player's ledger search, newest first (support, admin). */
  async adminLedger(userId: number, query: AdminLedgerQuery = {}, opts?: CallOptions): Promise<LedgerPage> {
    const { format: _format, ...q } = query;
    return (await this.send<LedgerPage>({ method: "GET", path: `/v1/admin/players/${userId}/ledger`, query: q }, opts)).body;
  }

  /** GET /v1/admin/players/{userId}/ledger?format=csv: the whole search as CSV text (cursor and limit ignored). */
  async adminLedgerCsv(userId: number, query: AdminLedgerQuery = {}, opts?: CallOptions): Promise<string> {
    const { cursor: _cursor, limit: _limit, ...q } = query;
    return (await this.send<string>({ method: "GET", path: `/v1/admin/players/${userId}/ledger`, query: { ...q, format: "csv" }, text: true }, opts)).body;
  }

  /** GET /v1/admin/players/{userId}/versions/{version}: the save after a version (0 = the starting save). */
  async adminVersion(userId: number, version: number, opts?: CallOptions): Promise<SaveAtVersion> {
    return (await this.send<SaveAtVersion>({ method: "GET", path: `/v1/admin/players/${userId}/versions/${version}` }, opts)).body;
  }

  /** GET /v1/admin/players/{userId}/diff: the field changes from one version to another. */
  async adminDiff(userId: number, from: number, to: number, opts?: CallOptions): Promise<VersionDiff> {
    return (await this.send<VersionDiff>({ method: "GET", path: `/v1/admin/players/${userId}/diff`, query: { from, to } }, opts)).body;
  }

  /** POST /v1/admin/players/{userId}/compensations with ops: a compensating mutation (support, admin). */
  compensate(userId: number, c: Compensation, opts?: WriteOptions): Promise<Written<Outcome>> {
    return this.write<Outcome>({ method: "POST", path: `/v1/admin/players/${userId}/compensations`, body: c }, opts);
  }

  /** POST /v1/admin/players/{userId}/compensations with refundEntryId: refunds a recorded purchase. */
  refund(userId: number, entryId: string, reason: string, ticket: string, opts?: WriteOptions): Promise<Written<RefundResult>> {
    return this.write<RefundResult>(
      { method: "POST", path: `/v1/admin/players/${userId}/compensations`, body: { refundEntryId: entryId, reason, ticket } },
      opts,
    );
  }

  /** POST /v1/admin/players/{userId}/restore: sets the save back to a version (admin). */
  restore(userId: number, version: number, reason: string, ticket: string, opts?: WriteOptions): Promise<Written<Outcome>> {
    return this.write<Outcome>({ method: "POST", path: `/v1/admin/players/${userId}/restore`, body: { version, reason, ticket } }, opts);
  }

  /** DELETE /v1/admin/players/{userId}: erases a player's save and personal data (admin). */
  erase(userId: number, opts?: WriteOptions): Promise<Written<Erasure>> {
    return this.write<Erasure>({ method: "DELETE", path: `/v1/admin/players/${userId}` }, opts);
  }

  /** POST /v1/admin/bulk-jobs with dryRun: what a bulk job would do, with nothing written (admin). */
  async previewBulkJob(req: BulkJobRequest, opts?: CallOptions): Promise<BulkJobCreated> {
    return (await this.send<BulkJobCreated>({ method: "POST", path: "/v1/admin/bulk-jobs", body: { ...req, dryRun: true } }, opts)).body;
  }

  /** POST /v1/admin/bulk-jobs: creates a bulk job as a draft, with its preview (admin). */
  createBulkJob(req: BulkJobRequest, opts?: WriteOptions): Promise<Written<BulkJobCreated>> {
    return this.write<BulkJobCreated>({ method: "POST", path: "/v1/admin/bulk-jobs", body: req }, opts);
  }

  /** GET /v1/admin/bulk-jobs: a page of bulk jobs, newest first (admin). */
  async listBulkJobs(query: { cursor?: string; limit?: number } = {}, opts?: CallOptions): Promise<BulkJobPage> {
    return (await this.send<BulkJobPage>({ method: "GET", path: "/v1/admin/bulk-jobs", query }, opts)).body;
  }

  /** GET /v1/admin/bulk-jobs/{bulkJobId}: a bulk job's progress (admin). */
  async getBulkJob(jobId: string, opts?: CallOptions): Promise<BulkJob> {
    return (await this.send<BulkJob>({ method: "GET", path: `/v1/admin/bulk-jobs/${encodeURIComponent(jobId)}` }, opts)).body;
  }

  /** POST /v1/admin/bulk-jobs/{bulkJobId}/{action}: starts, pauses, resumes or cancels a bulk job (admin). */
  async changeBulkJob(jobId: string, action: BulkAction, opts?: CallOptions): Promise<BulkJob> {
    return (await this.send<BulkJob>({ method: "POST", path: `/v1/admin/bulk-jobs/${encodeURIComponent(jobId)}/${action}` }, opts)).body;
  }

  /** GET /v1/admin/bulk-jobs/{bulkJobId}/results: the per-player outcomes as CSV text (admin). */
  async bulkJobResultsCsv(jobId: string, opts?: CallOptions): Promise<string> {
    return (await this.send<string>({ method: "GET", path: `/v1/admin/bulk-jobs/${encodeURIComponent(jobId)}/results`, text: true }, opts)).body;
  }

  /** Sends a write under its idempotency key and reads Idempotent-Replayed. */
  private async write<T>(req: Request, opts?: WriteOptions): Promise<Written<T>> {
    const idempotencyKey = opts?.idempotencyKey ?? newIdempotencyKey();
    const res = await this.send<T>({ ...req, idempotencyKey }, opts);
    return {
      body: res.body,
      replayed: res.headers.get("Idempotent-Replayed") === "true",
      idempotencyKey,
      requestId: res.headers.get("X-Request-Id") ?? undefined,
    };
  }

  /** Sends a request with retries; see the class comment for which and how. */
  private async send<T>(req: Request, opts?: CallOptions): Promise<Response<T>> {
    const url = this.url(req);
    const maxAttempts = Math.max(1, opts?.maxAttempts ?? this.maxAttempts);
    let forceRefresh = false;
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      opts?.signal?.throwIfAborted();
      const token = await this.token(forceRefresh);
      forceRefresh = false;
      let res: globalThis.Response;
      let text = "";
      try {
        res = await this.fetchOnce(url, req, token, opts?.signal);
        if (res.ok) text = await res.text();
      } catch (cause) {
        opts?.signal?.throwIfAborted();
        const err = ApiError.network(cause, url);
        if (attempt >= maxAttempts) throw err;
        await this.sleep(this.backoff(attempt));
        continue;
      }
      if (res.ok) return { body: req.text ? (text as T) : parseBody<T>(text, res), headers: res.headers };
      const err = await ApiError.fromResponse(res);
      if (res.status === 401 && !refreshed) {
        // The token may have expired or been revoked since it was cached.
        refreshed = true;
        forceRefresh = true;
        attempt--;
        continue;
      }
      if (!retryable(res.status) || attempt >= maxAttempts) throw err;
      const wait = err.retryAfterSeconds;
      if (wait !== undefined && wait > this.maxRetryAfterSeconds) throw err;
      await this.sleep(Math.max(this.backoff(attempt), (wait ?? 0) * 1000));
    }
  }

  /** One attempt, cut off after timeoutMs. */
  private async fetchOnce(url: string, req: Request, token: string, signal?: AbortSignal): Promise<globalThis.Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (req.body !== undefined) headers["Content-Type"] = "application/json";
    if (req.idempotencyKey !== undefined) headers["Idempotency-Key"] = req.idempotencyKey;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
    const onAbort = () => ctl.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return await this.fetchFn(url, {
        method: req.method,
        headers,
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        signal: ctl.signal,
        cache: "no-store",
      });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** The ID token, as an ApiError when it cannot be had. */
  private async token(forceRefresh: boolean): Promise<string> {
    try {
      return await this.getIdToken(forceRefresh);
    } catch (cause) {
      const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : undefined;
      throw new ApiError({
        status: 0,
        code: "TOKEN_UNAVAILABLE",
        message: `no ID token for the signed-in user${cause instanceof Error ? `: ${cause.message}` : ""}`,
        details: code === undefined ? {} : { cause: code },
        cause,
      });
    }
  }

  /** The delay before retry number attempt (1 = the first retry), with jitter. */
  private backoff(attempt: number): number {
    const d = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
    return d / 2 + (this.random() * d) / 2;
  }

  private url(req: Request): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(req.query ?? {})) {
      if (v !== undefined) q.set(k, String(v));
    }
    const s = q.toString();
    return `${this.baseUrl}${req.path}${s === "" ? "" : `?${s}`}`;
  }
}

/** A new Idempotency-Key: a random UUID. */
export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

/** A success body as JSON; one that is not JSON is the service's fault, not the caller's. */
function parseBody<T>(text: string, res: globalThis.Response): T {
  if (text === "") return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch (cause) {
    throw new ApiError({
      status: res.status,
      code: "INTERNAL",
      message: `the service answered HTTP ${res.status} with a body that is not JSON`,
      requestId: res.headers.get("X-Request-Id") ?? undefined,
      cause,
    });
  }
}

/** Statuses worth retrying under the same key: the request may not have been applied, or may be applied later. */
function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Whether s survives as one path segment of a URL the service routes. */
function fitsPathSegment(s: string): boolean {
  return s !== "" && s !== "." && s !== ".." && !s.includes("/");
}

/** A path segment, escaped. */
function seg(s: string): string {
  return encodeURIComponent(s);
}
