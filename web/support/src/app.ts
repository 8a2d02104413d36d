// The support console: sign in as staff, find a player, read, filter and
// chart the ledger, compare versions, and fix (compensate, refund, restore,
// erase). The service decides who may do what; the page shows its answers.
import {
  ApiError,
  SavesyncClient,
  newIdempotencyKey,
  type AdminLedgerQuery,
  type BulkAction,
  type BulkJob,
  type BulkJobRequest,
  type BulkPreview,
  type BulkSelection,
  type Change,
  type LedgerEntry,
  type Op,
  type Outcome,
  type RefundResult,
  type Save,
} from "@savesync/client";
import { onAuthStateChanged, signInWithEmailAndPassword, signOut, type Auth, type User } from "firebase/auth";
import type { Config } from "@savesync/page";
import { byId, formatTime, h } from "@savesync/page";

type View = "loading" | "signed-out" | "refused" | "console" | "error";

/** What each role may do, as the service's routes allow it. */
const roleHelp: Record<string, string> = {
  support: "Signed in as support: find players, read and export history, compare versions, compensate and refund. Restore and erasure need the admin role.",
  admin: "Signed in as admin: everything support may do, plus restore to a version, erasure and bulk jobs.",
};

/** The page size of the history. */
const pageSize = 20;

/** SupportApp is the whole console. */
export class SupportApp {
  private readonly client: SavesyncClient;
  private user: User | null = null;
  private role = "";
  private userId: number | null = null;
  private currentVersion = 0;
  private query: AdminLedgerQuery = {};
  private cursor: string | undefined;
  private entries: LedgerEntry[] = [];
  private compOps: Op[] = [];
  /** One idempotency key per intent: per form, until the intent changes or succeeds. */
  private readonly keys = new Map<string, string>();
  private busy = 0;
  /** Counts searches, so a page answered for an older one is dropped. */
  private searchSeq = 0;
  /** The bulk job shown, and the timer that follows its progress. */
  private bulkJobId: string | undefined;
  private bulkTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    config: Config,
    private readonly auth: Auth,
  ) {
    this.client = new SavesyncClient({
      baseUrl: config.apiBase,
      getIdToken: (force) => {
        if (!this.user) return Promise.reject(new Error("signed out"));
        return this.user.getIdToken(force);
      },
    });
  }

  /** Wires the page and follows the sign-in state. */
  start(): void {
    byId("signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.signIn();
    });
    byId("signout").addEventListener("click", () => void signOut(this.auth));
    byId("find-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.find();
    });
    byId("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.search();
    });
    byId("clear-filters").addEventListener("click", () => {
      byId<HTMLFormElement>("filters").reset();
      void this.search();
    });
    byId("export-csv").addEventListener("click", () => void this.exportCsv());
    byId("history-more").addEventListener("click", () => void this.more());
    byId("history").addEventListener("click", (e) => this.onHistoryClick(e));
    byId("chart-path").addEventListener("change", () => this.renderChart());
    byId("travel-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.travel();
    });
    byId("add-op").addEventListener("click", () => this.addOp());
    this.onSubmit("refund-form", () => this.refund());
    this.onSubmit("compensate-form", () => this.compensate());
    this.onSubmit("restore-form", () => this.restore());
    this.onSubmit("erase-form", () => this.erase());
    const eraseForm = byId<HTMLFormElement>("erase-form");
    eraseForm.addEventListener("input", () => {
      byId<HTMLButtonElement>("erase").disabled = field(eraseForm, "confirm").value.trim() !== this.erasePhrase();
    });
    this.wireBulk();
    onAuthStateChanged(this.auth, (u) => void this.onUser(u));
  }

  /** Wires the bulk jobs panel. */
  private wireBulk(): void {
    const form = byId<HTMLFormElement>("bulk-form");
    form.addEventListener("input", () => this.keys.delete("bulk-form"));
    form.addEventListener("change", () => this.showBulkKind());
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.bulkDryRun();
    });
    field(form, "idsFile").addEventListener("change", () => void this.readIdsFile());
    byId("bulk-create").addEventListener("click", () => void this.bulkCreate());
    for (const b of document.querySelectorAll<HTMLButtonElement>("[data-bulk-action]")) {
      b.addEventListener("click", () => void this.bulkAction(b.dataset.bulkAction as BulkAction));
    }
    byId("bulk-results").addEventListener("click", () => void this.bulkResults());
    byId("bulk-jobs").addEventListener("click", (e) => {
      const b = (e.target as HTMLElement).closest<HTMLButtonElement>("button[data-job]");
      if (b?.dataset.job) void this.openBulkJob(b.dataset.job);
    });
    this.showBulkKind();
  }

  /** Shows the selection fields of the chosen kind only. */
  private showBulkKind(): void {
    const kind = field(byId<HTMLFormElement>("bulk-form"), "kind").value;
    for (const el of document.querySelectorAll<HTMLElement>("[data-bulk-kind]")) el.hidden = el.dataset.bulkKind !== kind;
  }

  /** Reads an uploaded list of user ids into the ids field. */
  private async readIdsFile(): Promise<void> {
    const form = byId<HTMLFormElement>("bulk-form");
    const file = field(form, "idsFile").files?.[0];
    if (!file) return;
    const text = await file.text();
    field(form, "userIds").value = text.trim();
    this.keys.delete("bulk-form");
    this.say("info", "IDS_READ", `Read ${parseIds(text).length} user ids from ${file.name}.`);
  }

  /** The job the form describes, or undefined after saying what to fix. */
  private bulkRequest(): BulkJobRequest | undefined {
    const f = byId<HTMLFormElement>("bulk-form");
    const kind = field(f, "kind").value as BulkSelection["kind"];
    const selection: BulkSelection = { kind };
    if (kind === "ids") {
      const ids = parseIds(field(f, "userIds").value);
      if (ids.length === 0) {
        this.say("error", "INVALID_USER_ID", "List at least one Roblox user id (positive whole numbers).");
        return undefined;
      }
      selection.userIds = ids;
    } else if (kind === "save") {
      selection.field = field(f, "field").value.trim();
      selection.cmp = field(f, "cmp").value as NonNullable<BulkSelection["cmp"]>;
      selection.value = Number(field(f, "value").value.trim());
    } else if (kind === "ledger") {
      selection.op = field(f, "op").value.trim();
      const target = field(f, "target").value.trim();
      if (target !== "") selection.target = target;
      const actorKind = field(f, "actorKind").value;
      if (actorKind !== "") selection.actorKind = actorKind as NonNullable<BulkSelection["actorKind"]>;
      const actorId = field(f, "actorId").value.trim();
      if (actorId !== "") selection.actorId = actorId;
      for (const name of ["from", "to"] as const) {
        const v = field(f, name).value;
        if (v !== "") selection[name] = new Date(v).toISOString();
      }
    }
    let ops: BulkJobRequest["ops"];
    try {
      ops = JSON.parse(field(f, "ops").value) as BulkJobRequest["ops"];
    } catch {
      this.say("error", "INVALID_OPS", "The ops are not valid JSON: write a list such as [{\"op\":\"currency.add\",\"currency\":\"gems\",\"amount\":10}].");
      return undefined;
    }
    const rate = Number(field(f, "rate").value);
    return { selection, ops, reason: field(f, "reason").value, ticket: field(f, "ticket").value, rate: Number.isFinite(rate) && rate > 0 ? rate : undefined };
  }

  private async bulkDryRun(): Promise<void> {
    const req = this.bulkRequest();
    if (!req) return;
    await this.run(async () => {
      const res = await this.client.previewBulkJob(req);
      this.renderBulkPreview(res.preview);
      this.say("info", "DRY_RUN", `Dry run: ${previewText(res.preview)} Nothing was written.`);
    });
  }

  private async bulkCreate(): Promise<void> {
    const form = byId<HTMLFormElement>("bulk-form");
    if (!form.reportValidity()) return;
    const req = this.bulkRequest();
    if (!req) return;
    await this.run(async () => {
      const res = await this.client.createBulkJob(req, { idempotencyKey: this.keyFor("bulk-form") });
      this.renderBulkPreview(res.body.preview);
      if (res.body.job) this.renderBulkJob(res.body.job);
      this.say("info", "BULK_CREATED", `Draft job ${res.body.job?.jobId ?? ""} created${res.replayed ? " (already, under this form's key)" : ""}: ${previewText(res.body.preview)} Start it when ready.`);
      await this.loadBulkJobs();
    });
  }

  private async bulkAction(action: BulkAction): Promise<void> {
    const id = this.bulkJobId;
    if (id === undefined) return;
    if (action === "start" && !(await confirmAction(`Start job ${id}? Each matching player is changed once, with a ledger entry naming the job.`))) return;
    if (action === "cancel" && !(await confirmAction(`Cancel job ${id} for good? Players already changed stay changed.`))) return;
    await this.run(async () => {
      const job = await this.client.changeBulkJob(id, action);
      this.renderBulkJob(job);
      this.say("info", `BULK_${action.toUpperCase()}`, `Job ${id} is ${job.state}.`);
      await this.loadBulkJobs();
    });
  }

  private async bulkResults(): Promise<void> {
    const id = this.bulkJobId;
    if (id === undefined) return;
    await this.run(async () => {
      const text = await this.client.bulkJobResultsCsv(id);
      const a = byId<HTMLAnchorElement>("bulk-results-link");
      if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
      a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      a.download = `bulk-${id}.csv`;
      const rows = Math.max(0, text.trimEnd().split("\n").length - 1);
      a.dataset.rows = String(rows);
      a.textContent = `bulk-${id}.csv (${rows} players)`;
      a.hidden = false;
      a.click();
    });
  }

  private async openBulkJob(id: string): Promise<void> {
    await this.run(async () => this.renderBulkJob(await this.client.getBulkJob(id)));
  }

  private async loadBulkJobs(): Promise<void> {
    await this.run(async () => {
      const page = await this.client.listBulkJobs({ limit: 10 });
      byId("bulk-jobs").replaceChildren(...page.jobs.map(bulkJobItem));
    });
  }

  private renderBulkPreview(p: BulkPreview): void {
    byId("bulk-preview").hidden = false;
    const summary = byId("bulk-preview-summary");
    summary.textContent = previewText(p);
    summary.dataset.matched = String(p.matched);
    const effect = byId("bulk-effect").querySelector("tbody");
    effect?.replaceChildren(
      ...Object.entries(p.effect).map(([path, n]) => h("tr", { "data-path": path }, h("td", {}, h("code", {}, path)), h("td", {}, n > 0 ? `+${n}` : String(n)))),
    );
    const sample = byId("bulk-sample").querySelector("tbody");
    sample?.replaceChildren(
      ...p.sample.map((r) =>
        h(
          "tr",
          { "data-user-id": r.userId, "data-outcome": r.outcome },
          h("td", {}, String(r.userId)),
          h("td", {}, r.code ? `${previewOutcome(r.outcome)} (${r.code})` : previewOutcome(r.outcome)),
          h("td", {}, r.changes.length > 0 ? r.changes.map((c) => `${c.path}: ${valueText(c.old)} → ${valueText(c.new)}`).join("; ") : (r.message ?? "")),
        ),
      ),
    );
  }

  /** Shows a job's progress, and follows it every second while it runs. */
  private renderBulkJob(j: BulkJob): void {
    if (this.bulkJobId !== j.jobId) {
      // The results link belongs to the job shown before.
      const link = byId<HTMLAnchorElement>("bulk-results-link");
      if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
      link.removeAttribute("href");
      link.hidden = true;
    }
    this.bulkJobId = j.jobId;
    // The recent-jobs list shows the job as it is now, not as last listed.
    byId("bulk-jobs").querySelector(`li[data-job-id="${j.jobId}"]`)?.replaceWith(bulkJobItem(j));
    const box = byId("bulk-job");
    box.hidden = false;
    box.dataset.state = j.state;
    box.dataset.jobId = j.jobId;
    byId("bulk-job-id").textContent = j.jobId;
    byId("bulk-state").textContent = j.state;
    const total = Math.max(j.estimate, j.matched, 1);
    const bar = byId<HTMLProgressElement>("bulk-progress");
    bar.max = total;
    bar.value = j.state === "done" ? total : j.matched;
    bar.setAttribute("aria-valuetext", `${j.matched} of ${total} players`);
    const counts = byId("bulk-counts");
    counts.dataset.matched = String(j.matched);
    counts.dataset.done = String(j.done);
    counts.dataset.failed = String(j.failed);
    counts.dataset.skipped = String(j.skipped);
    counts.textContent =
      `${j.matched} of ${j.estimateExact ? "" : "about "}${j.estimate} players: ${j.done} done, ${j.failed} failed, ${j.skipped} skipped` +
      (j.state === "running" ? ` · ${j.measuredRate.toFixed(0)} players/s` : "");
    const can: Record<BulkAction, boolean> = {
      start: j.state === "draft",
      pause: j.state === "running",
      resume: j.state === "paused",
      cancel: j.state === "draft" || j.state === "running" || j.state === "paused",
    };
    for (const b of document.querySelectorAll<HTMLButtonElement>("[data-bulk-action]")) b.disabled = !can[b.dataset.bulkAction as BulkAction];
    if (this.bulkTimer !== undefined) clearTimeout(this.bulkTimer);
    this.bulkTimer = undefined;
    if (j.state === "running") {
      this.bulkTimer = setTimeout(() => {
        if (this.bulkJobId !== j.jobId) return;
        void this.client.getBulkJob(j.jobId).then(
          (next) => {
            if (this.bulkJobId !== j.jobId) return;
            this.renderBulkJob(next);
            if (next.state !== "running") {
              this.say("info", `BULK_${next.state.toUpperCase()}`, `Job ${next.jobId} is ${next.state}: ${next.done} done, ${next.failed} failed, ${next.skipped} skipped.`);
              void this.loadBulkJobs();
            }
          },
          (err: unknown) => this.fail(err),
        );
      }, 1000);
    }
  }

  /** A form whose submit is an intent: editing the form starts a new one. */
  private onSubmit(id: string, run: () => Promise<void>): void {
    const form = byId<HTMLFormElement>(id);
    form.addEventListener("input", () => this.keys.delete(id));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void run();
    });
  }

  private keyFor(id: string): string {
    let k = this.keys.get(id);
    if (k === undefined) {
      k = newIdempotencyKey();
      this.keys.set(id, k);
    }
    return k;
  }

  private async signIn(): Promise<void> {
    const email = byId<HTMLInputElement>("email").value.trim();
    const password = byId<HTMLInputElement>("password").value;
    await this.run(async () => {
      try {
        await signInWithEmailAndPassword(this.auth, email, password);
      } catch (err) {
        const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : "SIGN_IN_FAILED";
        this.say("error", "SIGN_IN_FAILED", `Sign-in failed (${code}): check the email and password.`);
      }
    });
  }

  private async onUser(u: User | null): Promise<void> {
    this.user = u;
    this.reset();
    if (!u) {
      this.role = "";
      document.body.dataset.role = "";
      byId("session").hidden = true;
      this.show("signed-out");
      return;
    }
    byId("account").textContent = u.email ?? u.uid;
    byId("session").hidden = false;
    this.show("loading");
    const claims = (await u.getIdTokenResult()).claims;
    this.role = typeof claims.role === "string" ? claims.role : "";
    // The service is the authority: a search it refuses keeps the account out.
    try {
      await this.client.adminLedger(1, { limit: 1 });
    } catch (err) {
      this.fail(err);
      if (err instanceof ApiError && (err.status === 403 || err.status === 401)) {
        document.body.dataset.role = "";
        this.show("refused");
      } else {
        this.show("error");
      }
      return;
    }
    document.body.dataset.role = this.role;
    byId("role-badge").textContent = this.role || "staff";
    byId("role-help").textContent = roleHelp[this.role] ?? "";
    for (const el of document.querySelectorAll<HTMLElement>("[data-admin-only]")) el.hidden = this.role !== "admin";
    this.clearMessage();
    this.show("console");
    if (this.role === "admin") void this.loadBulkJobs();
    byId("player-id").focus();
  }

  private reset(): void {
    this.userId = null;
    this.entries = [];
    this.compOps = [];
    this.keys.clear();
    byId("player").hidden = true;
    byId("result").hidden = true;
    byId("sides").hidden = true;
    byId("diff").hidden = true;
  }

  private async find(): Promise<void> {
    const raw = byId<HTMLInputElement>("player-id").value.trim();
    if (!/^[1-9][0-9]{0,18}$/.test(raw)) {
      this.say("error", "INVALID_USER_ID", "A Roblox user id is a positive whole number, e.g. 42.");
      return;
    }
    this.reset();
    this.userId = Number(raw);
    byId("player-title").textContent = raw;
    byId("erase-phrase").textContent = this.erasePhrase();
    byId<HTMLButtonElement>("erase").disabled = true;
    byId<HTMLFormElement>("erase-form").reset();
    byId("player").hidden = false;
    document.body.dataset.player = raw;
    window.savesyncMetrics.findAt = performance.now();
    window.savesyncMetrics.firstPageAt = undefined;
    this.clearMessage();
    await Promise.all([this.loadCurrent(), this.search()]);
  }

  private erasePhrase(): string {
    return `erase ${this.userId ?? ""}`;
  }

  /** The player's current version and save. */
  private async loadCurrent(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    await this.run(async () => {
      const first = await this.client.adminVersion(id, 0);
      this.currentVersion = first.currentVersion;
      const now = first.currentVersion === 0 ? first : await this.client.adminVersion(id, first.currentVersion);
      const v = byId("current-version");
      v.textContent = String(now.currentVersion);
      v.dataset.value = String(now.currentVersion);
      renderSave(byId("current-save"), now.save);
      const travel = byId<HTMLFormElement>("travel-form");
      field(travel, "a").value = String(Math.max(0, now.currentVersion - 1));
      field(travel, "b").value = String(now.currentVersion);
    });
  }

  /** A new search with the filters' values, from the newest entry. */
  private async search(): Promise<void> {
    if (this.userId === null) return;
    const f = byId<HTMLFormElement>("filters");
    const q: AdminLedgerQuery = { limit: pageSize };
    for (const name of ["from", "to"] as const) {
      const v = field(f, name).value;
      if (v !== "") q[name] = new Date(v).toISOString();
    }
    const kind = field(f, "actorKind").value;
    if (kind !== "") q.actorKind = kind as NonNullable<AdminLedgerQuery["actorKind"]>;
    for (const name of ["actorId", "op", "idempotencyKey"] as const) {
      const v = field(f, name).value.trim();
      if (v !== "") q[name] = v;
    }
    this.query = q;
    this.searchSeq++;
    this.cursor = undefined;
    this.entries = [];
    byId("history").replaceChildren();
    byId("csv-link").hidden = true;
    await this.page();
  }

  private async more(): Promise<void> {
    // One page at a time: a second press while one loads would fetch the same cursor.
    if (this.cursor !== undefined && byId("history").dataset.loading !== "true") await this.page();
  }

  /** The next page of the current search. */
  private async page(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    const history = byId("history");
    const seq = this.searchSeq;
    history.dataset.loading = "true";
    await this.run(async () => {
      const res = await this.client.adminLedger(id, { ...this.query, cursor: this.cursor });
      if (this.userId !== id || this.searchSeq !== seq) return;
      this.entries.push(...res.entries);
      for (const e of res.entries) history.append(this.entryItem(e));
      this.cursor = res.nextCursor;
      byId("history-more").hidden = this.cursor === undefined;
      byId("history-empty").hidden = this.entries.length > 0 || this.cursor !== undefined;
      this.renderChart();
      if (window.savesyncMetrics.firstPageAt === undefined) window.savesyncMetrics.firstPageAt = performance.now();
    });
    history.dataset.loading = "false";
    history.dataset.count = String(this.entries.length);
  }

  private entryItem(e: LedgerEntry): HTMLElement {
    const purchase = e.ops.some((op) => op.op === "purchase");
    const changes = h("ul", { class: "changes-list" });
    for (const c of e.changes) changes.append(changeItem(c));
    return h(
      "li",
      { "data-entry-id": e.entryId, "data-version": e.version, "data-actor-kind": e.actor.kind, "data-kind": e.kind, "data-ops": e.ops.map((o) => o.op).join(" ") },
      h(
        "div",
        { class: "entry-head" },
        h("strong", {}, `v${e.versionBefore} → v${e.version}`),
        h("time", { datetime: e.committedAt }, formatTime(e.committedAt)),
        h("span", { class: `actor k-${e.actor.kind}` }, `${e.actor.kind}: ${e.actor.id}`),
        h("span", { class: "kind" }, e.kind),
        e.reason ? h("span", { class: "reason" }, `“${e.reason}”`) : undefined,
      ),
      h("p", { class: "ops" }, e.ops.map(opText).join("; ")),
      changes,
      h(
        "div",
        { class: "row entry-actions" },
        h("button", { type: "button", class: "button ghost small", "data-compare": e.version }, "Compare with before"),
        purchase && h("button", { type: "button", class: "button ghost small", "data-refund": e.entryId }, "Refund…"),
        this.role === "admin" && h("button", { type: "button", class: "button ghost small", "data-restore-to": e.versionBefore }, `Restore to v${e.versionBefore}…`),
        h("code", { class: "entry-id", title: "Entry id" }, e.entryId),
      ),
    );
  }

  private onHistoryClick(ev: Event): void {
    const b = (ev.target as HTMLElement).closest("button");
    if (!b) return;
    if (b.dataset.compare !== undefined) {
      const v = Number(b.dataset.compare);
      const f = byId<HTMLFormElement>("travel-form");
      field(f, "a").value = String(Math.max(0, v - 1));
      field(f, "b").value = String(v);
      void this.travel();
      byId("travel-form").scrollIntoView({ block: "start" });
    } else if (b.dataset.refund !== undefined) {
      const f = byId<HTMLFormElement>("refund-form");
      field(f, "entryId").value = b.dataset.refund;
      this.keys.delete("refund-form");
      field(f, "reason").focus();
    } else if (b.dataset.restoreTo !== undefined) {
      const f = byId<HTMLFormElement>("restore-form");
      field(f, "version").value = b.dataset.restoreTo;
      this.keys.delete("restore-form");
      field(f, "reason").focus();
    }
  }

  /** The balance of a currency or stat over the versions of the loaded entries, marked by actor kind. */
  private renderChart(): void {
    const select = byId<HTMLSelectElement>("chart-path");
    const paths = new Set<string>();
    for (const e of this.entries) for (const c of e.changes) if (/^(currencies|stats)\./.test(c.path) && isNum(c.new)) paths.add(c.path);
    const chosen = select.value !== "" && paths.has(select.value) ? select.value : paths.has("currencies.gems") ? "currencies.gems" : [...paths][0];
    select.replaceChildren(...[...paths].sort().map((p) => h("option", { value: p, selected: p === chosen }, p)));
    const box = byId("chart");
    box.replaceChildren();
    byId("chart-box").hidden = chosen === undefined;
    if (chosen === undefined) return;
    const points: { v: number; y: number; kind: string; e: LedgerEntry }[] = [];
    const sorted = [...this.entries].sort((a, b) => a.version - b.version);
    for (const e of sorted) {
      const c = e.changes.find((x) => x.path === chosen);
      if (!c || !isNum(c.new)) continue;
      if (points.length === 0) points.push({ v: e.versionBefore, y: isNum(c.old) ? c.old : 0, kind: "", e });
      points.push({ v: e.version, y: c.new, kind: e.actor.kind, e });
    }
    const W = 640;
    const H = 170;
    const pad = 34;
    const vs = points.map((p) => p.v);
    const ys = points.map((p) => p.y);
    const [v0, v1] = [Math.min(...vs), Math.max(...vs)];
    const [y0, y1] = [Math.min(0, ...ys), Math.max(...ys)];
    const x = (v: number) => pad + ((v - v0) / Math.max(1, v1 - v0)) * (W - 2 * pad);
    const y = (n: number) => H - pad * 0.6 - ((n - y0) / Math.max(1, y1 - y0)) * (H - pad);
    let d = "";
    points.forEach((p, i) => {
      d += i === 0 ? `M${x(p.v)},${y(p.y)}` : `H${x(p.v)}V${y(p.y)}`;
    });
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${chosen} from ${ys[0]} to ${ys[ys.length - 1]} over versions ${v0} to ${v1}`);
    svg.dataset.path = chosen;
    const el = (tag: string, attrs: Record<string, string | number>, text?: string) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      if (text !== undefined) n.textContent = text;
      return n;
    };
    svg.append(el("line", { x1: pad, x2: W - pad, y1: y(y0), y2: y(y0), class: "axis" }));
    svg.append(el("text", { x: 2, y: y(y1) + 4, class: "tick" }, String(y1)));
    svg.append(el("text", { x: 2, y: y(y0), class: "tick" }, String(y0)));
    svg.append(el("text", { x: pad, y: H - 1, class: "tick" }, `v${v0}`));
    svg.append(el("text", { x: W - pad, y: H - 1, class: "tick", "text-anchor": "end" }, `v${v1}`));
    svg.append(el("path", { d, class: "line" }));
    for (const p of points.slice(1)) {
      const prev = points[points.indexOf(p) - 1]!;
      const c = el("circle", { cx: x(p.v), cy: y(p.y), r: p.y < prev.y ? 6 : 4, class: `dot k-${p.kind}${p.y < prev.y ? " drop" : ""}`, "data-version": p.v, "data-actor-kind": p.kind, "data-value": p.y, tabindex: 0 });
      c.append(el("title", {}, `v${p.v}: ${prev.y} → ${p.y} by ${p.kind} ${p.e.actor.id} (${p.e.ops.map(opText).join("; ")})`));
      svg.append(c);
    }
    box.append(svg);
  }

  private async exportCsv(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    await this.run(async () => {
      const text = await this.client.adminLedgerCsv(id, this.query);
      const a = byId<HTMLAnchorElement>("csv-link");
      if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
      a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      a.download = `ledger-${id}.csv`;
      const rows = Math.max(0, text.trimEnd().split("\n").length - 1);
      a.dataset.rows = String(rows);
      a.textContent = `ledger-${id}.csv (${rows} entries)`;
      a.hidden = false;
      a.click();
    });
  }

  private async travel(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    const f = byId<HTMLFormElement>("travel-form");
    const a = Number(field(f, "a").value);
    const b = Number(field(f, "b").value);
    await this.run(async () => {
      const [sa, sb, diff] = await Promise.all([this.client.adminVersion(id, a), this.client.adminVersion(id, b), this.client.adminDiff(id, a, b)]);
      byId("side-a-version").textContent = String(a);
      byId("side-b-version").textContent = String(b);
      byId("side-a").textContent = JSON.stringify(sa.save, null, 2);
      byId("side-b").textContent = JSON.stringify(sb.save, null, 2);
      const table = byId("diff");
      fillChanges(table, diff.changes);
      table.dataset.from = String(a);
      table.dataset.to = String(b);
      table.hidden = false;
      byId("sides").hidden = false;
    });
  }

  private addOp(): boolean {
    const f = byId<HTMLFormElement>("compensate-form");
    const kind = field(f, "op").value;
    const target = field(f, "target").value.trim();
    const value = field(f, "value").value.trim();
    let op: Op;
    const n = Number(value);
    const needInt = () => {
      if (!/^-?[0-9]+$/.test(value) || n === 0) throw new Error(`${kind} needs a whole number other than 0 as its amount`);
    };
    try {
      if (kind !== "xp.add" && target === "") throw new Error(`${kind} needs what it applies to (the "Of" field)`);
      switch (kind) {
        case "currency.add":
          needInt();
          op = { op: kind, currency: target, amount: n };
          break;
        case "xp.add":
          needInt();
          op = { op: kind, amount: n };
          break;
        case "stat.add":
          needInt();
          op = { op: kind, stat: target, amount: n };
          break;
        case "item.grant":
        case "item.consume":
          needInt();
          op = { op: kind, item: target, count: n };
          break;
        case "settings.set":
          op = { op: kind, key: target, value: value === "true" ? true : value === "false" ? false : value !== "" && !Number.isNaN(n) ? n : value };
          break;
        case "collection.add":
          op = { op: kind, collection: target, element: value };
          break;
        case "collection.remove":
          op = { op: kind, collection: target, element: value, observedVersion: this.currentVersion };
          break;
        default:
          throw new Error(`unknown op ${kind}`);
      }
    } catch (err) {
      this.say("error", "INVALID_OP", `${err instanceof Error ? err.message : String(err)}.`);
      return false;
    }
    this.compOps.push(op);
    this.keys.delete("compensate-form");
    field(f, "target").value = "";
    field(f, "value").value = "";
    this.renderOps();
    return true;
  }

  private renderOps(): void {
    const list = byId("comp-ops");
    list.replaceChildren(
      ...this.compOps.map((op, i) => {
        const remove = h("button", { type: "button", class: "button ghost small", "aria-label": `Remove ${opText(op)}` }, "Remove");
        remove.addEventListener("click", () => {
          this.compOps.splice(i, 1);
          this.keys.delete("compensate-form");
          this.renderOps();
        });
        return h("li", { "data-op": op.op }, opText(op), " ", remove);
      }),
    );
  }

  private async compensate(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    const f = byId<HTMLFormElement>("compensate-form");
    if (field(f, "target").value.trim() !== "" || field(f, "value").value.trim() !== "") {
      if (!this.addOp()) return;
    }
    if (this.compOps.length === 0) {
      this.say("error", "INVALID_OP", "Add at least one op to compensate with.");
      return;
    }
    const ops = [...this.compOps];
    const reason = field(f, "reason").value.trim();
    const ticket = field(f, "ticket").value.trim();
    if (!(await confirmAction(`Apply ${ops.map(opText).join("; ")} to player ${id} (ticket ${ticket})?`))) return;
    const key = this.keyFor("compensate-form");
    await this.run(async () => {
      const r = await this.client.compensate(id, { reason, ticket, ops }, { idempotencyKey: key });
      this.keys.delete("compensate-form");
      this.compOps = [];
      this.renderOps();
      f.reset();
      this.showOutcome("compensation", r.body, r.replayed, "COMPENSATED");
    });
    await this.refresh();
  }

  private async refund(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    const f = byId<HTMLFormElement>("refund-form");
    const entryId = field(f, "entryId").value.trim();
    const reason = field(f, "reason").value.trim();
    const ticket = field(f, "ticket").value.trim();
    const entry = this.entries.find((e) => e.entryId === entryId);
    const what = entry ? entry.ops.map(opText).join("; ") : entryId;
    if (!(await confirmAction(`Refund ${what} for player ${id} (ticket ${ticket})? The price comes back in full; what it granted is taken back as far as the player still holds it.`))) return;
    const key = this.keyFor("refund-form");
    await this.run(async () => {
      const r = await this.client.refund(id, entryId, reason, ticket, { idempotencyKey: key });
      this.keys.delete("refund-form");
      f.reset();
      this.showOutcome("refund", r.body.mutation, r.replayed, "REFUNDED", r.body.unrecovered);
    });
    await this.refresh();
  }

  private async restore(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    const f = byId<HTMLFormElement>("restore-form");
    const version = Number(field(f, "version").value);
    const reason = field(f, "reason").value.trim();
    const ticket = field(f, "ticket").value.trim();
    let changes: Change[] | undefined;
    await this.run(async () => {
      changes = (await this.client.adminDiff(id, this.currentVersion, version)).changes;
    });
    if (changes === undefined) return;
    const ok = await confirmAction(
      changes.length === 0
        ? `Version ${version} is the same as the current version ${this.currentVersion}: restoring changes nothing. Restore anyway?`
        : `Restore player ${id} from version ${this.currentVersion} to version ${version} (ticket ${ticket})? These fields change:`,
      changes,
    );
    if (!ok) return;
    const key = this.keyFor("restore-form");
    await this.run(async () => {
      const r = await this.client.restore(id, version, reason, ticket, { idempotencyKey: key });
      this.keys.delete("restore-form");
      f.reset();
      this.showOutcome("restore", r.body, r.replayed, "RESTORED");
    });
    await this.refresh();
  }

  private async erase(): Promise<void> {
    const id = this.userId;
    if (id === null) return;
    const f = byId<HTMLFormElement>("erase-form");
    if (field(f, "confirm").value.trim() !== this.erasePhrase()) return;
    const key = this.keyFor("erase-form");
    await this.run(async () => {
      const r = await this.client.erase(id, { idempotencyKey: key });
      this.keys.delete("erase-form");
      f.reset();
      byId<HTMLButtonElement>("erase").disabled = true;
      const d = r.body.deleted;
      const res = byId("result");
      res.dataset.kind = "erasure";
      res.dataset.entryId = r.body.recordId;
      res.dataset.version = "";
      res.dataset.replayed = String(r.replayed);
      byId("result-summary").textContent = r.body.alreadyErased
        ? `Nothing was left to erase (record ${r.body.recordId}).`
        : `Erased at ${formatTime(r.body.erasedAt)} (record ${r.body.recordId}): ${d.players ?? 0} save(s), ${d.ledgerEntries ?? 0} ledger entries, ${d.links ?? 0} link(s), ${d.linkCodes ?? 0} link code(s), ${d.other ?? 0} other.`;
      fillChanges(byId("result-changes"), []);
      byId("unrecovered-box").hidden = true;
      res.hidden = false;
      res.focus();
      this.say("info", "ERASED", `Player ${id} was erased.`);
    });
    await this.refresh();
  }

  /** Shows the ledger entry an action wrote. */
  private showOutcome(kind: string, o: Outcome, replayed: boolean, code: string, unrecovered?: RefundResult["unrecovered"]): void {
    const res = byId("result");
    res.dataset.kind = kind;
    res.dataset.entryId = o.entryId;
    res.dataset.version = String(o.version);
    res.dataset.replayed = String(replayed);
    byId("result-summary").textContent = o.unchanged
      ? `Nothing changed: the save already was so (version ${o.version}).`
      : `Ledger entry ${o.entryId}: version ${o.versionBefore} → ${o.version} at ${formatTime(o.committedAt)}${replayed ? " (answered before: applied once)" : ""}.`;
    fillChanges(byId("result-changes"), o.changes);
    const box = byId("unrecovered-box");
    const list = byId("unrecovered");
    list.replaceChildren(
      ...(unrecovered ?? []).map((u) =>
        h("li", { "data-path": u.path, "data-granted": u.granted, "data-recovered": u.recovered }, `${u.path}: granted ${u.granted}, taken back ${u.recovered}`),
      ),
    );
    box.hidden = (unrecovered ?? []).length === 0;
    res.hidden = false;
    res.focus();
    this.say("info", code, `${kind[0]!.toUpperCase()}${kind.slice(1)} done: version ${o.version}.`);
  }

  /** Reloads the current save and the history after a change. */
  private async refresh(): Promise<void> {
    await Promise.all([this.loadCurrent(), this.search()]);
  }

  /** Runs a call, counting it in body[data-busy] and showing its failure. */
  private async run(f: () => Promise<void>): Promise<void> {
    this.busy++;
    document.body.dataset.busy = String(this.busy);
    try {
      await f();
    } catch (err) {
      this.fail(err);
    } finally {
      this.busy--;
      document.body.dataset.busy = String(this.busy);
    }
  }

  private fail(err: unknown): void {
    if (err instanceof ApiError) {
      this.say("error", err.code, `${err.message}${err.requestId ? ` (request ${err.requestId})` : ""}`);
    } else {
      this.say("error", "ERROR", err instanceof Error ? err.message : String(err));
    }
  }

  private say(kind: "info" | "error", code: string, text: string): void {
    const m = byId("message");
    m.dataset.kind = kind;
    m.dataset.code = code;
    m.setAttribute("role", kind === "error" ? "alert" : "status");
    m.textContent = text;
    m.hidden = false;
  }

  private clearMessage(): void {
    const m = byId("message");
    m.hidden = true;
    m.dataset.code = "";
    m.textContent = "";
  }

  private show(view: View): void {
    for (const el of document.querySelectorAll<HTMLElement>("main > section")) el.hidden = el.id !== `view-${view}`;
    document.body.dataset.view = view;
  }
}

declare global {
  interface Window {
    /**
     * Figures the browser tests read: findAt is performance.now() when a
     * player was looked up, firstPageAt when the first page of its history
     * was shown.
     */
    savesyncMetrics: { findAt?: number; firstPageAt?: number };
  }
}
window.savesyncMetrics = {};

/** The positive whole numbers in a typed or uploaded list of user ids. */
function parseIds(text: string): number[] {
  const out: number[] = [];
  for (const tok of text.split(/[\s,;]+/)) if (/^[1-9][0-9]{0,18}$/.test(tok)) out.push(Number(tok));
  return out;
}

/** A dry run in words. */
/** A job's line in the recent-jobs list. */
function bulkJobItem(j: BulkJob): HTMLElement {
  return h(
    "li",
    { "data-job-id": j.jobId, "data-state": j.state },
    h("button", { type: "button", class: "button ghost small", "data-job": j.jobId }, j.jobId),
    ` ${j.state} · ${j.matched}/${j.estimate} players · ${j.reason} [${j.ticket}]`,
  );
}

function previewText(p: BulkPreview): string {
  const scanned = p.effectComplete ? "" : ` (outcomes and totals over the first ${p.scanned})`;
  return `${p.matchedExact ? "" : "at least "}${p.matched} players match: ${p.changed} would change, ${p.failed} would fail, ${p.skipped} would be skipped${scanned}.`;
}

/** The named control of a form. */
function field(f: HTMLFormElement, name: string): HTMLInputElement {
  const el = f.elements.namedItem(name);
  if (!el) throw new Error(`form #${f.id} has no field ${name}`);
  return el as HTMLInputElement;
}

function isNum(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** A value of a change as text: — for absent. */
function valueText(v: unknown): string {
  if (v === null || v === undefined) return "—";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function changeItem(c: Change): HTMLElement {
  return h("li", { "data-path": c.path }, h("code", {}, c.path), `: ${valueText(c.old)} → ${valueText(c.new)}`);
}

function fillChanges(table: HTMLElement, changes: readonly Change[]): void {
  const body = table.querySelector("tbody")!;
  body.replaceChildren(
    ...changes.map((c) =>
      h("tr", { "data-path": c.path, "data-old": valueText(c.old), "data-new": valueText(c.new) }, h("th", { scope: "row" }, c.path), h("td", {}, valueText(c.old)), h("td", {}, valueText(c.new))),
    ),
  );
  if (changes.length === 0) body.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No changes.")));
}

/** An op in a line: "currency.add gems +5". */
function opText(op: Op): string {
  const parts: string[] = [op.op];
  for (const k of ["sku", "currency", "stat", "item", "slot", "key", "collection", "element"] as const) if (op[k] !== undefined) parts.push(String(op[k]));
  if (op.amount !== undefined) parts.push(op.amount > 0 ? `+${op.amount}` : String(op.amount));
  if (op.count !== undefined) parts.push(`×${op.count}`);
  if (op.value !== undefined) parts.push(`= ${valueText(op.value)}`);
  if (op.remove !== undefined) parts.push(`−${JSON.stringify(op.remove)}`);
  if (op.add !== undefined) parts.push(`+${JSON.stringify(op.add)}`);
  return parts.join(" ");
}

/** A save's currencies, stats and items as small tables. */
function renderSave(box: HTMLElement, s: Save): void {
  const group = (title: string, attr: string, values: Record<string, number> | undefined) =>
    h(
      "div",
      {},
      h("h3", {}, title),
      h("dl", {}, ...Object.entries(values ?? {}).flatMap(([k, v]) => [h("dt", {}, k), h("dd", { [attr]: k, "data-value": v }, String(v))])),
    );
  box.replaceChildren(group("Currencies", "data-currency", s.currencies), group("Stats", "data-stat", s.stats), group("Items", "data-item", s.items));
}

/** Asks in the confirmation dialog; resolves true on Confirm. */
function confirmAction(text: string, changes?: readonly Change[]): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>("confirm");
  byId("confirm-text").textContent = text;
  const table = byId("confirm-changes");
  table.hidden = changes === undefined;
  if (changes !== undefined) fillChanges(table, changes);
  dialog.returnValue = "";
  dialog.showModal();
  byId("confirm-yes").focus();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true }));
}

/** A dry run's outcome as a preview says it: nothing has happened yet. */
function previewOutcome(outcome: string): string {
  switch (outcome) {
    case "done":
      return "would change";
    case "failed":
      return "would fail";
    case "skipped":
      return "would be skipped";
    default:
      return outcome;
  }
}
