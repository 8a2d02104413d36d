// Names for the companion API's shapes, all taken from the types that
// openapi-typescript generates from openapi.yaml (openapi.d.ts), so a change
// to the spec shows up here as a type error rather than at run time.
import type { components, paths } from "./openapi";

type Schemas = components["schemas"];

/** The JSON body of a response type from openapi.d.ts. */
type JSONOf<R> = R extends { content: { "application/json": infer B } } ? B : never;

/** A player's save and version, as GET /v1/me/save and `save` events carry it. */
export type Player = Schemas["Player"];
/** The game state inside a Player: currencies, stats, items, loadout, settings, collections. */
export type Save = Schemas["Save"];
/** The answer to every committed (or replayed, or unchanged) mutation. */
export type Outcome = Schemas["Outcome"];
/** The catalog the companion may buy from. */
export type Catalog = Schemas["Catalog"];
/** One catalog entry: its price (currency to amount) and grants. */
export type CatalogSKU = Schemas["CatalogSKU"];
/** One operation of a mutation. */
export type Op = Schemas["Op"];
/** A mutation: ops applied together, exactly once per Idempotency-Key. */
export type Mutation = Schemas["Mutation"];
/** One entry of the player's history. */
export type LedgerEntry = Schemas["LedgerEntry"];
/** One page of history, newest first. */
export type LedgerPage = Schemas["LedgerPage"];
/** Who wrote a ledger entry. */
export type Actor = Schemas["Actor"];
/** One field-level change of a ledger entry or outcome. */
export type Change = Schemas["Change"];
/** Whether the signed-in account is linked to a Roblox player. */
export type LinkStatus = Schemas["LinkStatus"];
/** The answer to DELETE /v1/me/link. */
export type Unlinked = Schemas["Unlinked"];
/** A stable error code of the service. */
export type ErrorCode = Schemas["ErrorCode"];
/** The `error` object of an error body. */
export type ErrorDetail = Schemas["ErrorDetail"];
/** Data of the stream's `save` event. */
export type SaveEvent = Schemas["SaveEvent"];
/** Data of the stream's `pending` event. */
export type PendingLinkEvent = Schemas["PendingLinkEvent"];
/** Data of the stream's `linked` event. */
export type LinkedEvent = Schemas["LinkedEvent"];
/** Data of the stream's `unlinked` event. */
export type UnlinkedEvent = Schemas["UnlinkedEvent"];
/** Data of the stream's `error` event: an error body. */
export type ErrorEvent = Schemas["Error"];

/** A link code for the player to type in game. */
export type LinkCode = JSONOf<paths["/v1/me/link-codes"]["post"]["responses"][201]>;
/** A single-use ticket that opens the event stream. */
export type EventTicket = JSONOf<paths["/v1/me/events/tickets"]["post"]["responses"][201]>;
/** The query of GET /v1/me/ledger. */
export type LedgerQuery = NonNullable<paths["/v1/me/ledger"]["get"]["parameters"]["query"]>;
/** A setting's value, as the game config declares it. */
export type SettingValue = boolean | number | string;

/** The save as it was after a version (GET /v1/admin/players/{userId}/versions/{version}). */
export type SaveAtVersion = Schemas["SaveAtVersion"];
/** The field changes between two versions. */
export type VersionDiff = Schemas["VersionDiff"];
/** The answer to a refund: the mutation and what could not be taken back. */
export type RefundResult = Schemas["RefundResult"];
/** What an erasure did. */
export type Erasure = Schemas["Erasure"];
/** The query of the admin ledger search. */
export type AdminLedgerQuery = NonNullable<paths["/v1/admin/players/{userId}/ledger"]["get"]["parameters"]["query"]>;
/** A compensating mutation: ops with a reason and a ticket. */
export type Compensation = { reason: string; ticket: string; ops: Op[] };

/** A bulk job: definition, state and progress (admin). */
export type BulkJob = Schemas["BulkJob"];
/** Which players a bulk job changes. */
export type BulkSelection = Schemas["BulkSelection"];
/** A dry run of a bulk job: matches, sample and total effect. */
export type BulkPreview = Schemas["BulkPreview"];
/** The answer to a bulk job's creation or dry run. */
export type BulkJobCreated = Schemas["BulkJobCreated"];
/** A page of bulk jobs, newest first. */
export type BulkJobPage = Schemas["BulkJobPage"];
/** The body of a bulk job's creation, without dryRun. */
export type BulkJobRequest = Omit<NonNullable<paths["/v1/admin/bulk-jobs"]["post"]["requestBody"]>["content"]["application/json"], "dryRun">;
/** What may be done to a bulk job. */
export type BulkAction = "start" | "pause" | "resume" | "cancel";
