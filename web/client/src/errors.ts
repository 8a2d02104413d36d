import type { ErrorCode } from "./types";

/**
 * The code of an ApiError: one of the service's codes, or one the client
 * gives when no answer came: NETWORK_ERROR when fetch itself failed (the
 * service is down, the connection dropped, the attempt timed out, or the
 * browser refused the answer, e.g. CORS), TOKEN_UNAVAILABLE when no ID
 * token could be had from getIdToken.
 */
export type ApiErrorCode = ErrorCode | "NETWORK_ERROR" | "TOKEN_UNAVAILABLE";

/** Codes the client answers itself, without a response from the service. */
const clientCodes = new Set<string>(["NETWORK_ERROR", "TOKEN_UNAVAILABLE"]);

/**
 * ApiError is every failure of a SavesyncClient call: the service's error
 * body `{"error":{"code","message","details"}}` with the HTTP status and the
 * request id, or a client-side failure (status 0).
 */
export class ApiError extends Error {
  /** The HTTP status, or 0 when no answer came. */
  readonly status: number;
  /** The stable error code; switch on this, never on the message. */
  readonly code: ApiErrorCode;
  /** Details the service adds (field, limit, currentVersion, …). */
  readonly details: Record<string, unknown>;
  /** The service's X-Request-Id, to quote to support. */
  readonly requestId: string | undefined;
  /** Seconds the service asked to wait (Retry-After), when it did. */
  readonly retryAfterSeconds: number | undefined;

  constructor(init: {
    status: number;
    code: ApiErrorCode;
    message: string;
    details?: Record<string, unknown>;
    requestId?: string;
    retryAfterSeconds?: number;
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "ApiError";
    this.status = init.status;
    this.code = init.code;
    this.details = init.details ?? {};
    this.requestId = init.requestId;
    this.retryAfterSeconds = init.retryAfterSeconds;
  }

  /** Whether the error came from the client rather than from the service. */
  get local(): boolean {
    return clientCodes.has(this.code);
  }

  /** An ApiError for a response that is not 2xx, read from its body and headers. */
  static async fromResponse(res: Response): Promise<ApiError> {
    const requestId = res.headers.get("X-Request-Id") ?? undefined;
    const retryAfterSeconds = parseRetryAfter(res.headers.get("Retry-After"));
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      body = undefined;
    }
    const e = isObject(body) && isObject(body.error) ? body.error : undefined;
    if (e && typeof e.code === "string") {
      return new ApiError({
        status: res.status,
        code: e.code as ErrorCode,
        message: typeof e.message === "string" ? e.message : `HTTP ${res.status}`,
        details: isObject(e.details) ? e.details : {},
        requestId,
        retryAfterSeconds,
      });
    }
    // Not the service's own body: a proxy or load balancer answered.
    return new ApiError({
      status: res.status,
      code: codeForStatus(res.status),
      message: `the service answered HTTP ${res.status} ${res.statusText}`.trim(),
      requestId,
      retryAfterSeconds,
    });
  }

  /** An ApiError for a fetch that failed without an answer. */
  static network(cause: unknown, url: string): ApiError {
    const why = cause instanceof Error && cause.message ? `: ${cause.message}` : "";
    return new ApiError({
      status: 0,
      code: "NETWORK_ERROR",
      message: `no answer from ${url}${why}`,
      cause,
    });
  }
}

/** Reads Retry-After in seconds (the service sends whole seconds; HTTP dates are read too). */
export function parseRetryAfter(v: string | null): number | undefined {
  if (v === null || v.trim() === "") return undefined;
  const n = Number(v);
  if (Number.isFinite(n) && n >= 0) return n;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

/** The service's code for an HTTP status, for answers without an error body. */
function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return "INVALID_ARGUMENT";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
      return "NOT_FOUND";
    case 405:
      return "METHOD_NOT_ALLOWED";
    case 408:
      return "REQUEST_TIMEOUT";
    case 413:
      return "REQUEST_TOO_LARGE";
    case 429:
      return "RATE_LIMITED";
    case 431:
      return "HEADERS_TOO_LARGE";
    case 500:
      return "INTERNAL";
    default:
      return status >= 500 ? "UNAVAILABLE" : "INVALID_ARGUMENT";
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
