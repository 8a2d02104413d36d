import { ApiError } from "./errors";
import type { EventTicket, ErrorDetail, LinkedEvent, PendingLinkEvent, Player, UnlinkedEvent } from "./types";

/**
 * The state of an EventStream: connecting (first open), open (the service
 * is sending), reconnecting (waiting to open again after an error), closed
 * (close() was called).
 */
export type StreamState = "connecting" | "open" | "reconnecting" | "closed";

/** Callbacks of an EventStream, one per event of GET /v1/me/events (see x-events in openapi.yaml). */
export interface EventHandlers {
  /** The save, first on every (re)connect, then after every committed change by any writer. */
  save?: (player: Player, id: string) => void;
  /** The account is not linked yet; `linked` follows when a game server redeems a code. */
  pending?: (data: PendingLinkEvent) => void;
  /** A link code was redeemed; `save` events of the new player follow. */
  linked?: (data: LinkedEvent) => void;
  /** The account was unlinked. The stream reopens at once and starts with `pending`. */
  unlinked?: (data: UnlinkedEvent) => void;
  /** The service could not read the save and ended the stream; it reopens after a delay. */
  error?: (error: ErrorDetail) => void;
  /** The stream's state changed; cause is why it is reconnecting, when known. */
  state?: (state: StreamState, cause?: ApiError) => void;
}

/** Options of an EventStream. */
export interface EventStreamOptions {
  /** The first reconnect delay in ms (250), doubled on each failure in a row up to maxDelayMs. */
  minDelayMs?: number;
  /** The longest reconnect delay in ms (5000). */
  maxDelayMs?: number;
  /** The EventSource constructor (globalThis.EventSource), for runtimes without one. */
  EventSource?: typeof EventSource;
  /** Random numbers in [0, 1) for jitter (Math.random). */
  random?: () => number;
}

/** What an EventStream needs from the client. */
interface TicketSource {
  createEventTicket(opts?: { maxAttempts?: number }): Promise<EventTicket>;
  eventsUrl(ticket: string): string;
}

/**
 * EventStream keeps the companion's live stream open. A ticket opens one
 * stream only, so EventSource's own reconnect (same URL) cannot work: on
 * every error the stream closes the EventSource, waits (250 ms doubling up
 * to 5 s, with jitter, or the service's Retry-After), then asks for a new
 * ticket, with a fresh ID token, and opens a new EventSource. The first
 * event of each connection is the current save (or `pending`), so nothing
 * is missed.
 */
export class EventStream {
  private readonly source: TicketSource;
  private readonly handlers: EventHandlers;
  private readonly minDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly ES: typeof EventSource;
  private readonly random: () => number;
  private es: EventSource | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private current: StreamState = "connecting";
  private generation = 0;

  constructor(source: TicketSource, handlers: EventHandlers, opts: EventStreamOptions = {}) {
    this.source = source;
    this.handlers = handlers;
    this.minDelayMs = opts.minDelayMs ?? 250;
    this.maxDelayMs = opts.maxDelayMs ?? 5000;
    this.ES = opts.EventSource ?? globalThis.EventSource;
    this.random = opts.random ?? Math.random;
    this.handlers.state?.("connecting");
    void this.connect();
  }

  /** The stream's state now. */
  get state(): StreamState {
    return this.current;
  }

  /** Closes the stream for good; no handler is called after it. */
  close(): void {
    if (this.current === "closed") return;
    this.generation++;
    clearTimeout(this.timer);
    this.es?.close();
    this.es = undefined;
    this.setState("closed");
  }

  /** Opens the stream again now, e.g. when the page comes back online. */
  reconnect(): void {
    if (this.current === "closed") return;
    clearTimeout(this.timer);
    this.es?.close();
    this.es = undefined;
    this.failures = 0;
    this.setState("reconnecting");
    void this.connect();
  }

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    let ticket: EventTicket;
    try {
      // One attempt: the stream's own backoff paces the retries.
      ticket = await this.source.createEventTicket({ maxAttempts: 1 });
    } catch (err) {
      if (gen === this.generation) this.retry(err instanceof ApiError ? err : undefined);
      return;
    }
    if (gen !== this.generation) return;
    if (!ticket.ticket) {
      this.retry();
      return;
    }
    const es = new this.ES(this.source.eventsUrl(ticket.ticket));
    this.es = es;
    const mine = () => this.es === es && gen === this.generation;
    es.addEventListener("open", () => {
      if (mine()) this.setState("open");
    });
    const on = <T>(name: string, fn: (data: T, id: string) => void) => {
      es.addEventListener(name, (ev) => {
        if (!mine() || !(ev instanceof MessageEvent)) return;
        const data = parse<T>(ev.data);
        if (data === undefined) return;
        this.failures = 0;
        if (this.current !== "open") this.setState("open");
        fn(data, ev.lastEventId);
      });
    };
    on<Player>("save", (p, id) => this.handlers.save?.(p, id));
    on<PendingLinkEvent>("pending", (d) => this.handlers.pending?.(d));
    on<LinkedEvent>("linked", (d) => this.handlers.linked?.(d));
    on<UnlinkedEvent>("unlinked", (d) => {
      this.handlers.unlinked?.(d);
      // The service ends this stream; a new one waits for the next link.
      if (mine()) this.reconnect();
    });
    es.addEventListener("error", (ev) => {
      if (!mine()) return;
      // The service's own `error` event is a MessageEvent with a body;
      // a connection failure is a plain Event.
      if (ev instanceof MessageEvent && typeof ev.data === "string" && ev.data !== "") {
        const body = parse<{ error?: ErrorDetail }>(ev.data);
        if (body?.error) this.handlers.error?.(body.error);
      }
      this.retry();
    });
  }

  /** Closes the EventSource and schedules a new connection. */
  private retry(cause?: ApiError): void {
    this.es?.close();
    this.es = undefined;
    this.setState("reconnecting", cause);
    const d = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** this.failures);
    this.failures++;
    let delay = Math.min(this.maxDelayMs, d * (0.75 + this.random() * 0.5));
    if (cause?.retryAfterSeconds !== undefined) delay = Math.max(delay, cause.retryAfterSeconds * 1000);
    const gen = this.generation;
    this.timer = setTimeout(() => {
      if (gen === this.generation) void this.connect();
    }, delay);
  }

  private setState(s: StreamState, cause?: ApiError): void {
    if (s === this.current) return;
    this.current = s;
    this.handlers.state?.(s, cause);
  }
}

function parse<T>(data: unknown): T | undefined {
  if (typeof data !== "string") return undefined;
  try {
    return JSON.parse(data) as T;
  } catch {
    return undefined;
  }
}
