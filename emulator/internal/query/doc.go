// Package query implements Cloud Firestore's value semantics and query engine
// for the emulator: the total order of values, field paths, field transforms,
// document validation, structured queries and aggregations.
//
// Every function is pure: inputs are never mutated (except by SetPath and
// DeletePath, whose purpose is to modify the map they are given), and results
// are fresh copies. Errors are gRPC status errors with code InvalidArgument.
package query
