// @savesync/client: a typed fetch client for savesync's companion API.
//
//   const client = new SavesyncClient({
//     baseUrl: "https://api.example.com",
//     getIdToken: (force) => auth.currentUser!.getIdToken(force),
//   });
//   const { body, replayed } = await client.purchase("starterPack");
//   const stream = client.openEvents({ save: (player) => show(player) });
//
// Types come from openapi.yaml through openapi-typescript (openapi.d.ts);
// `npm run gen` regenerates them and `npm run check` fails when they are stale.
export { SavesyncClient, newIdempotencyKey } from "./client";
export type { CallOptions, ClientOptions, WriteOptions, Written } from "./client";
export { ApiError, parseRetryAfter } from "./errors";
export type { ApiErrorCode } from "./errors";
export { EventStream } from "./events";
export type { EventHandlers, EventStreamOptions, StreamState } from "./events";
export type * from "./types";
export type { components, paths } from "./openapi";
