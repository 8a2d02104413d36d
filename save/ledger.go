package save

import "time"

// Outcome is what a committed mutation answers. Its JSON is stored in the
// ledger entry and returned byte for byte on every replay.
type Outcome struct {
	UserID        int64     `json:"userId"`
	EntryID       string    `json:"entryId"`
	VersionBefore int64     `json:"versionBefore"`
	Version       int64     `json:"version"`
	SchemaVersion int       `json:"schemaVersion"`
	CommittedAt   time.Time `json:"committedAt"`
	ChangedPaths  []string  `json:"changedPaths"`
	Changes       []Change  `json:"changes"`
	// Unchanged is set on the answer to a mutation that would change
	// nothing (a setting set to the value it has, a remove of an absent
	// element): nothing was written, Version is the current version and
	// VersionBefore equals it, EntryID is empty (no ledger entry) and
	// CommittedAt is when the save was read. Absent on every committed answer.
	Unchanged bool `json:"unchanged,omitempty"`
}

// LedgerEntry is one committed change of a player's save as its owner and
// support see it: who, when, which ops and what changed. The idempotency
// record and outbox state stay with the store.
type LedgerEntry struct {
	EntryID       string    `json:"entryId"`
	Kind          string    `json:"kind"`
	Version       int64     `json:"version"`
	VersionBefore int64     `json:"versionBefore"`
	CommittedAt   time.Time `json:"committedAt"`
	Actor         Actor     `json:"actor"`
	Reason        string    `json:"reason,omitempty"`
	Ops           any       `json:"ops"`
	Changes       any       `json:"changes"`
	ChangedPaths  []string  `json:"changedPaths"`
}
