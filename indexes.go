// Package savesync holds the deployment files Go code reads at run time.
// The Firestore indexes live here, beside firebase.json, so the tests and
// the embedded emulator demand exactly the indexes that are deployed.
package savesync

import _ "embed"

// FirestoreIndexes is firestore.indexes.json as it was at build time: the
// composite indexes and field overrides deployed to Cloud Firestore.
//
//go:embed firestore.indexes.json
var FirestoreIndexes []byte
