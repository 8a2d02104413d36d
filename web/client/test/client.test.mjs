// Tests of @savesync/client's retry, idempotency, error and stream rules,
// against a scripted fetch and EventSource (no network, no real waiting:
// sleep and jitter are injected). Run with `npm --prefix web test`.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = mkdtempSync(join(tmpdir(), "savesync-client-test-"));
after(() => rmSync(out, { recursive: true, force: true }));
await build({ entryPoints: [join(here, "..", "src", "index.ts")], bundle: true, format: "esm", platform: "neutral", outfile: join(out, "client.mjs"), logLevel: "warning" });
const { ApiError, SavesyncClient } = await import(pathToFileURL(join(out, "client.mjs")).href);

/** A JSON response as the service sends it. */
function answer(status, body, headers = {}) {
  return new Response(body === undefined ? "" : JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

function errorBody(code, message = code.toLowerCase(), details = {}) {
  return { error: { code, message, details } };
}

/**
 * A client whose fetch answers from a script: each step is a Response or
 * an Error to throw. It records every request and every wait.
 */
function scripted(steps, opts = {}) {
  const calls = [];
  const sleeps = [];
  const tokens = [];
  const client = new SavesyncClient({
    baseUrl: "https://api.example.test/",
    getIdToken: async (force) => {
      tokens.push(force === true);
      return force ? "fresh-token" : "cached-token";
    },
    fetch: async (url, init) => {
      calls.push({ url, method: init.method, headers: init.headers, body: init.body });
      const step = steps.shift();
      if (step === undefined) throw new Error("unexpected request");
      if (step instanceof Error) throw step;
      return step;
    },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...opts,
  });
  return { client, calls, sleeps, tokens };
}

const outcome = { userId: 42, entryId: "e1", versionBefore: 1, version: 2, changedPaths: [], changes: [] };

describe("writes", () => {
  test("retries after a 503, a network error and a 429 under the same Idempotency-Key", async () => {
    const { client, calls, sleeps } = scripted([
      answer(503, errorBody("UNAVAILABLE")),
      new TypeError("Failed to fetch"),
      answer(200, outcome, { "Idempotent-Replayed": "true", "X-Request-Id": "r-3" }),
    ]);
    const w = await client.purchase("starterPack");
    assert.equal(calls.length, 3);
    const keys = calls.map((c) => c.headers["Idempotency-Key"]);
    assert.equal(new Set(keys).size, 1, `one key for the intent, got ${keys}`);
    assert.match(keys[0], /^[0-9a-f-]{36}$/);
    assert.deepEqual(w, { body: outcome, replayed: true, idempotencyKey: keys[0], requestId: "r-3" });
    assert.equal(sleeps.length, 2);
    assert.deepEqual(calls.map((c) => [c.method, c.url, c.body]), Array(3).fill(["POST", "https://api.example.test/v1/me/purchases", '{"sku":"starterPack"}']));
  });

  test("a caller's key is sent as it is", async () => {
    const { client, calls } = scripted([answer(200, outcome)]);
    const w = await client.setSetting("music", false, { idempotencyKey: "intent-7" });
    assert.equal(calls[0].headers["Idempotency-Key"], "intent-7");
    assert.equal(w.replayed, false);
    assert.equal(calls[0].method, "PUT");
    assert.equal(calls[0].url, "https://api.example.test/v1/me/settings/music");
  });

  test("two intents get two keys", async () => {
    const { client, calls } = scripted([answer(200, outcome), answer(200, outcome)]);
    await client.purchase("starterPack");
    await client.purchase("starterPack");
    assert.notEqual(calls[0].headers["Idempotency-Key"], calls[1].headers["Idempotency-Key"]);
  });

  test("waits as long as Retry-After asks", async () => {
    const { client, sleeps } = scripted([answer(429, errorBody("RATE_LIMITED"), { "Retry-After": "3" }), answer(200, outcome)]);
    await client.addToCollection("wishlist", "hat");
    assert.deepEqual(sleeps, [3000]);
  });

  test("a Retry-After longer than the client waits for is thrown at once", async () => {
    const { client, calls } = scripted([answer(429, errorBody("RATE_LIMITED", "slow down", { limit: "LINK_CODES_PER_ACCOUNT" }), { "Retry-After": "30" })]);
    const err = await client.createLinkCode().catch((e) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(calls.length, 1);
    assert.equal(err.code, "RATE_LIMITED");
    assert.equal(err.retryAfterSeconds, 30);
    assert.deepEqual(err.details, { limit: "LINK_CODES_PER_ACCOUNT" });
  });

  test("refusals are thrown without a retry, as typed errors", async () => {
    const details = { currency: "gems", balance: 10, price: 50 };
    const { client, calls } = scripted([answer(422, errorBody("INSUFFICIENT_FUNDS", "not enough gems", details), { "X-Request-Id": "r-1" })]);
    const err = await client.purchase("starterPack").catch((e) => e);
    assert.ok(err instanceof ApiError);
    assert.deepEqual(
      { status: err.status, code: err.code, message: err.message, details: err.details, requestId: err.requestId },
      { status: 422, code: "INSUFFICIENT_FUNDS", message: "not enough gems", details, requestId: "r-1" },
    );
    assert.equal(calls.length, 1);
  });

  test("gives up after three attempts with NETWORK_ERROR", async () => {
    const { client, calls, sleeps } = scripted([new TypeError("Failed to fetch"), new TypeError("Failed to fetch"), new TypeError("Failed to fetch")]);
    const err = await client.purchase("starterPack").catch((e) => e);
    assert.equal(err.code, "NETWORK_ERROR");
    assert.equal(err.status, 0);
    assert.equal(calls.length, 3);
    assert.equal(sleeps.length, 2);
    assert.ok(sleeps[1] > sleeps[0], `backoff grows: ${sleeps}`);
  });

  test("a 401 is retried once with a force-refreshed token", async () => {
    const { client, calls, tokens } = scripted([answer(401, errorBody("UNAUTHENTICATED")), answer(200, { linked: false })]);
    assert.deepEqual(await client.getLink(), { linked: false });
    assert.deepEqual(tokens, [false, true]);
    assert.deepEqual(calls.map((c) => c.headers.Authorization), ["Bearer cached-token", "Bearer fresh-token"]);
  });

  test("a second 401 is thrown", async () => {
    const { client, calls } = scripted([answer(401, errorBody("UNAUTHENTICATED")), answer(401, errorBody("UNAUTHENTICATED", "revoked"))]);
    const err = await client.getSave().catch((e) => e);
    assert.equal(err.code, "UNAUTHENTICATED");
    assert.equal(calls.length, 2);
  });

  test("an answer without the service's error body gets a code from its status", async () => {
    const { client } = scripted([new Response("<html>bad gateway</html>", { status: 502 }), new Response("", { status: 502 }), new Response("", { status: 502 })]);
    const err = await client.getCatalog().catch((e) => e);
    assert.equal(err.code, "UNAVAILABLE");
    assert.equal(err.status, 502);
  });

  test("an element that cannot travel in a path is removed through /v1/me/mutations", async () => {
    const { client, calls } = scripted([answer(200, outcome), answer(200, outcome)]);
    await client.removeFromCollection("wishlist", "big hat", 7);
    await client.removeFromCollection("wishlist", "crate/large", 7);
    assert.equal(calls[0].method, "DELETE");
    assert.equal(calls[0].url, "https://api.example.test/v1/me/collections/wishlist/big%20hat?observedVersion=7");
    assert.equal(calls[1].url, "https://api.example.test/v1/me/mutations");
    assert.deepEqual(JSON.parse(calls[1].body), { ops: [{ op: "collection.remove", collection: "wishlist", element: "crate/large", observedVersion: 7 }] });
  });
});

/** An EventSource stand-in the test drives by hand. */
class FakeEventSource {
  static opened = [];
  constructor(url) {
    this.url = url;
    this.listeners = new Map();
    this.closed = false;
    FakeEventSource.opened.push(this);
  }
  addEventListener(name, fn) {
    this.listeners.set(name, [...(this.listeners.get(name) ?? []), fn]);
  }
  close() {
    this.closed = true;
  }
  emit(name, data, lastEventId = "") {
    const ev = data === undefined ? new Event(name) : new MessageEvent(name, { data: JSON.stringify(data), lastEventId });
    for (const fn of this.listeners.get(name) ?? []) fn(ev);
  }
}

/** Lets queued timers and promise callbacks run until cond holds (or fails after many turns). */
async function until(cond, what) {
  for (let i = 0; i < 10000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), `never happened: ${what}`);
}

describe("support calls", () => {
  test("the ledger search sends its filters, and the CSV export drops cursor and limit and keeps the text", async () => {
    const csv = "committedAt,version\n2026-12-02T00:00:00Z,2\n";
    const { client, calls } = scripted([
      answer(200, { entries: [], nextCursor: "c2" }),
      new Response(csv, { status: 200, headers: { "Content-Type": "text/csv" } }),
    ]);
    const page = await client.adminLedger(42, { actorKind: "server", op: "purchase", cursor: "c1", limit: 20 });
    assert.deepEqual(page, { entries: [], nextCursor: "c2" });
    const text = await client.adminLedgerCsv(42, { actorKind: "server", op: "purchase", cursor: "c1", limit: 20 });
    assert.equal(text, csv);
    assert.deepEqual(calls.map((c) => [c.method, c.url]), [
      ["GET", "https://api.example.test/v1/admin/players/42/ledger?actorKind=server&op=purchase&cursor=c1&limit=20"],
      ["GET", "https://api.example.test/v1/admin/players/42/ledger?actorKind=server&op=purchase&format=csv"],
    ]);
  });

  test("a refund, a restore and an erasure go under one key each, kept across a retry", async () => {
    const { client, calls } = scripted([
      new TypeError("Failed to fetch"),
      answer(200, { mutation: outcome, unrecovered: [{ path: "items.wood", granted: 200, recovered: 50 }] }),
      answer(200, outcome),
      answer(200, { recordId: "r", erasedAt: "2026-12-02T00:00:00Z", alreadyErased: false, deleted: {} }),
    ]);
    const r = await client.refund(42, "e7", "mistake", "T-1");
    assert.deepEqual(r.body.unrecovered, [{ path: "items.wood", granted: 200, recovered: 50 }]);
    await client.restore(42, 3, "wrong", "T-2", { idempotencyKey: "restore-1" });
    await client.erase(42);
    assert.deepEqual(calls.map((c) => [c.method, c.url.replace("https://api.example.test", ""), c.body]), [
      ["POST", "/v1/admin/players/42/compensations", '{"refundEntryId":"e7","reason":"mistake","ticket":"T-1"}'],
      ["POST", "/v1/admin/players/42/compensations", '{"refundEntryId":"e7","reason":"mistake","ticket":"T-1"}'],
      ["POST", "/v1/admin/players/42/restore", '{"version":3,"reason":"wrong","ticket":"T-2"}'],
      ["DELETE", "/v1/admin/players/42", undefined],
    ]);
    const keys = calls.map((c) => c.headers["Idempotency-Key"]);
    assert.equal(keys[0], keys[1], "the retry keeps the refund's key");
    assert.equal(keys[2], "restore-1");
    assert.equal(new Set(keys).size, 3);
  });
});

describe("event stream", () => {
  test("opens with a ticket, reports events, and reopens with a fresh ticket after an error", async () => {
    FakeEventSource.opened = [];
    const timers = [];
    const realSetTimeout = globalThis.setTimeout;
    // Reconnect delays (at most 5 s) are recorded and run at once; the
    // client's 15 s request time limit keeps its real timer.
    globalThis.setTimeout = (fn, ms) => {
      if (ms > 5000) return realSetTimeout(fn, ms);
      timers.push(ms);
      return realSetTimeout(fn, 0);
    };
    try {
      const ticket = (n) => answer(201, { ticket: `evt_${n}`, expiresAt: "2030-01-01T00:00:00Z", expiresInSeconds: 60 });
      const { client, calls } = scripted([ticket(1), ticket(2), new TypeError("Failed to fetch"), ticket(3)]);
      const seen = [];
      const stream = client.openEvents(
        {
          state: (s) => seen.push(`state:${s}`),
          save: (p, id) => seen.push(`save:${p.version}:${id}`),
          pending: () => seen.push("pending"),
          linked: (d) => seen.push(`linked:${d.userId}`),
          error: (e) => seen.push(`error:${e.code}`),
        },
        { EventSource: FakeEventSource, random: () => 0.5 },
      );
      await until(() => FakeEventSource.opened.length === 1, "first EventSource");
      const first = FakeEventSource.opened[0];
      assert.equal(first.url, "https://api.example.test/v1/me/events?ticket=evt_1");
      first.emit("open");
      first.emit("pending", { linked: false });
      first.emit("linked", { linked: true, userId: 42, linkedAt: "2030-01-01T00:00:00Z" });
      first.emit("save", { userId: 42, version: 3 }, "3");
      first.emit("error", errorBody("INTERNAL", "the save cannot be read"));
      assert.ok(first.closed, "the stream closes its EventSource on error");
      await until(() => FakeEventSource.opened.length === 2, "second EventSource");
      // Ticket 2 opens the second EventSource; its connection fails.
      const second = FakeEventSource.opened[1];
      assert.equal(second.url, "https://api.example.test/v1/me/events?ticket=evt_2");
      second.emit("error");
      // The ticket request fails once (network), then ticket 3 opens the third.
      await until(() => FakeEventSource.opened.length === 3, "third EventSource");
      const third = FakeEventSource.opened[2];
      assert.equal(third.url, "https://api.example.test/v1/me/events?ticket=evt_3");
      third.emit("open");
      third.emit("save", { userId: 42, version: 4 }, "4");
      stream.close();
      third.emit("save", { userId: 42, version: 5 }, "5");
      assert.ok(third.closed);
      assert.deepEqual(seen, [
        "state:connecting",
        "state:open",
        "pending",
        "linked:42",
        "save:3:3",
        "error:INTERNAL",
        "state:reconnecting",
        "state:open",
        "save:4:4",
        "state:closed",
      ]);
      assert.equal(calls.filter((c) => c.url.endsWith("/v1/me/events/tickets")).length, 4);
      // 250 ms, then doubled after each failure in a row (jitter 0.5 → ×1).
      assert.deepEqual(timers, [250, 500, 1000]);
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
  });
});
