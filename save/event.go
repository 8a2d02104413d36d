package save

import "time"

// Event is one committed mutation as it is announced: who changed which
// player, to which version, whether a game server holding the player must
// be told, and the audit record. The store reads events from the ledger's
// outbox; the relay publishes them.
type Event struct {
	UserID        int64  `json:"userId"`
	Version       int64  `json:"version"`
	VersionBefore int64  `json:"versionBefore"`
	EntryID       string `json:"entryId"`
	Kind          string `json:"kind"`
	Actor         Actor  `json:"actor"`
	// JobID is the writing game server's job id, when the writer is one.
	JobID        string   `json:"jobId,omitempty"`
	ChangedPaths []string `json:"changedPaths"`
	// HolderJobID is the game server that held the player's session at
	// commit time, if any; Invalidate is set when that server is not the
	// writer and so must be told to refetch.
	Invalidate  bool      `json:"invalidate"`
	HolderJobID string    `json:"holderJobId,omitempty"`
	CommittedAt time.Time `json:"committedAt"`
	// Reason, Ops and Changes are the audit payload.
	Reason  string           `json:"reason,omitempty"`
	Ops     any              `json:"ops,omitempty"`
	Changes []map[string]any `json:"changes"`
}

// RelayLease is the lease under which one instance at a time publishes
// events, as a claim left it: one publisher keeps each player's events in
// version order.
type RelayLease struct {
	Holder    string
	Epoch     int64
	ExpiresAt time.Time
	// Held reports whether the caller holds the lease now.
	Held bool
}
