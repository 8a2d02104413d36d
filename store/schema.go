package store

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// The database's layout. Every collection and document the store reads or
// writes is named here and nowhere else; paths are relative to the
// database root, and docName makes the full resource name the
// transactions use.
//
//	players/{userId}                    a save, its version, session lease and owner (Player)
//	players/{userId}/ledger/{entryId}   one entry per committed mutation (ledgerDoc)
//	players/{userId}/leaves/{entryId}   a leave's idempotency record
//	players/{userId}/once/{hash}        a once-only mutation's record
//	links/{uid}                         a companion account's link to a player
//	linkCodes/{code}                    a link code, issued or used
//	eventTickets/{hash}                 a single-use event-stream ticket
//	erasures/{recordId}                 an erased player's record, without the user id
//	erasures/{recordId}/requests/{key}  the claim of one erasure request
//	relay/lease                         the outbox relay's lease
//	bulkJobs/{jobId}                    a bulk job: definition, state, progress, runner lease
//	bulkJobs/{jobId}/results/{userId}   one player's outcome in a bulk job
const (
	playersCollection         = "players"
	ledgerCollection          = "ledger"
	leavesCollection          = "leaves"
	onceCollection            = "once"
	linksCollection           = "links"
	linkCodesCollection       = "linkCodes"
	eventTicketsCollection    = "eventTickets"
	erasuresCollection        = "erasures"
	erasureRequestsCollection = "requests"
	bulkJobsCollection        = "bulkJobs"
	bulkResultsCollection     = "results"
	// relayLeasePath is the one document that says which instance drains
	// the outbox. One drainer at a time keeps each player's events in order
	// on the topics and costs one lease write per TTL/2 instead of a claim
	// write per event.
	relayLeasePath = "relay/lease"
)

// docName is the full resource name of a document path.
func (s *Store) docName(path string) string {
	return s.database + "/documents/" + path
}

// playerPath is a player's document.
func playerPath(userID int64) string {
	return playersCollection + "/" + strconv.FormatInt(userID, 10)
}

// ledgerCollectionPath is a player's ledger.
func ledgerCollectionPath(userID int64) string {
	return playerPath(userID) + "/" + ledgerCollection
}

// ledgerPath is one ledger entry.
func ledgerPath(userID int64, entryID string) string {
	return ledgerCollectionPath(userID) + "/" + entryID
}

// leavePath is a leave's idempotency record, under the entry id of the
// caller's scope and key.
func leavePath(userID int64, entryID string) string {
	return playerPath(userID) + "/" + leavesCollection + "/" + entryID
}

// oncePath is the record of a once-only mutation of a player, under the
// hash of its name.
func oncePath(userID int64, once string) string {
	sum := sha256.Sum256([]byte(once))
	return playerPath(userID) + "/" + onceCollection + "/" + hex.EncodeToString(sum[:20])
}

// linkPath is a companion account's link.
func linkPath(uid string) string { return linksCollection + "/" + uid }

// linkCodePath is a link code's document.
func linkCodePath(code string) string { return linkCodesCollection + "/" + code }

// eventTicketPath is where a ticket's record lives: under its hash, so the
// database never holds a usable ticket.
func eventTicketPath(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return eventTicketsCollection + "/" + hex.EncodeToString(sum[:])
}

// erasurePath is an erasure record.
func erasurePath(recordID string) string { return erasuresCollection + "/" + recordID }

// erasureRequestPath is the claim document of one erasure request.
func erasureRequestPath(recordID, requestKey string) string {
	return erasurePath(recordID) + "/" + erasureRequestsCollection + "/" + requestKey
}
