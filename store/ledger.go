package store

import (
	"cmp"
	"encoding/json"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"

	"github.com/savesync/savesync/save"
)

// ledgerDoc is a ledger entry as stored, players/{userId}/ledger/{entryId}:
// in one document, the audit record of a committed mutation, its
// idempotency record (the request's hash and the exact answer to replay)
// and its outbox state. This is the document's one definition: fields
// writes it and decodeLedgerDoc reads it, for the mutation's transaction,
// the outbox relay, the long-poll, history, audit and time travel alike.
type ledgerDoc struct {
	EntryID         string
	UserID          int64
	Kind            string // LedgerKindMutation, or a support fix's kind
	IdempotencyKey  string
	RequestHash     string
	Actor           save.Actor
	JobID           string // the writing game server, when the writer is one
	BulkJobID       string // the bulk job that wrote it, when one did
	Reason          string
	ExpectedVersion *int64
	Ops             []any // the request's ops as a JSON-like tree
	VersionBefore   int64
	Version         int64
	// SchemaBefore is the schema of the save as read by the entry's group;
	// SchemaVersion the schema it was written at.
	SchemaBefore  int64
	SchemaVersion int64
	Changes       []save.Change
	ChangedPaths  []string
	CommittedAt   time.Time
	// Response is the answer as sent, replayed byte for byte.
	Response string
	Outbox   ledgerOutbox
	// ExpireAt is when a Firestore TTL policy may delete the entry (zero:
	// never).
	ExpireAt time.Time
}

// ledgerOutbox is an entry's outbox state: whether its events were
// published, and whether the game server holding the player at commit
// time (HolderJobID) must be told to refetch.
type ledgerOutbox struct {
	Published   bool
	Invalidate  bool
	HolderJobID string
}

// Kinds of ledger entries: what wrote them.
const (
	// LedgerKindMutation is an ordinary mutation (game server, companion).
	LedgerKindMutation = "mutation"
	// LedgerKindCompensation is support's compensating mutation.
	LedgerKindCompensation = "compensation"
	// LedgerKindRefund is support's refund of a purchase entry.
	LedgerKindRefund = "refund"
	// LedgerKindRestore is an administrator's restore to an earlier version.
	LedgerKindRestore = "restore"
	// LedgerKindBulk is one player's change by an administrator's bulk job.
	LedgerKindBulk = "bulk"
)

// Paths of the ledger fields that queries and updates name; fields and
// decodeLedgerDoc use the same names.
const (
	ledgerUserID         = "userId"
	ledgerVersion        = "version"
	ledgerCommittedAt    = "committedAt"
	ledgerIdempotencyKey = "idempotencyKey"
	ledgerActorKind      = ledgerActor + "." + actorKind
	ledgerActorID        = ledgerActor + "." + actorID
	ledgerOps            = "ops"
	ledgerPublished      = ledgerOutboxField + "." + outboxPublished
	ledgerPublishedAt    = ledgerOutboxField + "." + "publishedAt"
	ledgerInvalidate     = ledgerOutboxField + "." + outboxInvalidate
	ledgerHolderJobID    = ledgerOutboxField + "." + outboxHolderJobID
)

// Names of the ledger's nested fields.
const (
	ledgerActor       = "actor"
	actorKind         = "kind"
	actorID           = "id"
	ledgerOutboxField = "outbox"
	outboxPublished   = "published"
	outboxInvalidate  = "invalidate"
	outboxHolderJobID = "holderJobId"
)

// fields encodes the entry as document fields.
func (d ledgerDoc) fields() (map[string]*firestorepb.Value, error) {
	var ops, expected any
	if d.Ops != nil {
		ops = d.Ops
	}
	if d.ExpectedVersion != nil {
		expected = *d.ExpectedVersion
	}
	changes, err := jsonTree(d.Changes)
	if err != nil {
		return nil, err
	}
	m := map[string]any{
		"entryId":            d.EntryID,
		ledgerUserID:         d.UserID,
		"kind":               d.Kind,
		ledgerIdempotencyKey: d.IdempotencyKey,
		"requestHash":        d.RequestHash,
		ledgerActor:          map[string]any{actorKind: string(d.Actor.Kind), actorID: d.Actor.ID},
		"jobId":              d.JobID,
		"reason":             d.Reason,
		"expectedVersion":    expected,
		ledgerOps:            ops,
		"versionBefore":      d.VersionBefore,
		ledgerVersion:        d.Version,
		"schemaBefore":       d.SchemaBefore,
		"schemaVersion":      d.SchemaVersion,
		"changes":            changes,
		"changedPaths":       toAnySlice(d.ChangedPaths),
		ledgerCommittedAt:    d.CommittedAt,
		"response":           d.Response,
		ledgerOutboxField: map[string]any{
			outboxPublished:   d.Outbox.Published,
			outboxInvalidate:  d.Outbox.Invalidate,
			outboxHolderJobID: d.Outbox.HolderJobID,
		},
	}
	if !d.ExpireAt.IsZero() {
		m["expireAt"] = d.ExpireAt
	}
	if d.BulkJobID != "" {
		m["bulkJobId"] = d.BulkJobID
	}
	return encodeFields(m)
}

// ledgerCreate is the write that creates an entry; it fails if the entry
// exists already.
func (s *Store) ledgerCreate(d ledgerDoc) (*firestorepb.Write, error) {
	fields, err := d.fields()
	if err != nil {
		return nil, err
	}
	return &firestorepb.Write{
		Operation:       &firestorepb.Write_Update{Update: &firestorepb.Document{Name: s.docName(ledgerPath(d.UserID, d.EntryID)), Fields: fields}},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}},
	}, nil
}

// decodeLedgerDoc reads an entry from its document id and decoded fields
// (as the Firestore client's Data or decodeFields yields them). Absent
// fields read as zero values, so a query that selects some fields reads
// those.
func decodeLedgerDoc(id string, d map[string]any) ledgerDoc {
	e := ledgerDoc{
		EntryID:        id,
		UserID:         asInt(d[ledgerUserID]),
		Kind:           asString(d["kind"]),
		IdempotencyKey: asString(d[ledgerIdempotencyKey]),
		RequestHash:    asString(d["requestHash"]),
		JobID:          asString(d["jobId"]),
		BulkJobID:      asString(d["bulkJobId"]),
		Reason:         asString(d["reason"]),
		VersionBefore:  asInt(d["versionBefore"]),
		Version:        asInt(d[ledgerVersion]),
		SchemaBefore:   asInt(d["schemaBefore"]),
		SchemaVersion:  asInt(d["schemaVersion"]),
		Response:       asString(d["response"]),
	}
	if a, ok := d[ledgerActor].(map[string]any); ok {
		e.Actor = save.Actor{Kind: save.ActorKind(asString(a[actorKind])), ID: asString(a[actorID])}
	}
	if v, ok := d["expectedVersion"].(int64); ok {
		e.ExpectedVersion = &v
	}
	e.Ops, _ = d[ledgerOps].([]any)
	if list, ok := d["changes"].([]any); ok {
		e.Changes = make([]save.Change, 0, len(list))
		for _, c := range list {
			if m, ok := c.(map[string]any); ok {
				e.Changes = append(e.Changes, save.Change{Path: asString(m["path"]), Old: m["old"], New: m["new"]})
			}
		}
	}
	if paths, ok := d["changedPaths"].([]any); ok {
		e.ChangedPaths = make([]string, 0, len(paths))
		for _, p := range paths {
			if str, ok := p.(string); ok {
				e.ChangedPaths = append(e.ChangedPaths, str)
			}
		}
	}
	if t, ok := d[ledgerCommittedAt].(time.Time); ok {
		e.CommittedAt = t.UTC()
	}
	if t, ok := d["expireAt"].(time.Time); ok {
		e.ExpireAt = t.UTC()
	}
	if o, ok := d[ledgerOutboxField].(map[string]any); ok {
		e.Outbox.Published, _ = o[outboxPublished].(bool)
		e.Outbox.Invalidate, _ = o[outboxInvalidate].(bool)
		e.Outbox.HolderJobID = asString(o[outboxHolderJobID])
	}
	return e
}

// ledgerDocOf reads an entry the Firestore client returned.
func ledgerDocOf(snap *firestore.DocumentSnapshot) ledgerDoc {
	return decodeLedgerDoc(snap.Ref.ID, snap.Data())
}

// ledgerDocIn reads an entry a transaction read.
func ledgerDocIn(id string, doc *firestorepb.Document) ledgerDoc {
	return decodeLedgerDoc(id, decodeFields(doc.GetFields()))
}

// hasOp reports whether the entry's ops include one of kind.
func (d ledgerDoc) hasOp(kind string) bool {
	for _, op := range d.Ops {
		if m, ok := op.(map[string]any); ok && m["op"] == kind {
			return true
		}
	}
	return false
}

// entry is the entry as its owner and support see it.
func (d ledgerDoc) entry() save.LedgerEntry {
	changes := make([]any, len(d.Changes))
	for i, c := range d.Changes {
		changes[i] = map[string]any{"path": c.Path, "old": jsonSafe(c.Old), "new": jsonSafe(c.New)}
	}
	return save.LedgerEntry{
		EntryID:       d.EntryID,
		Kind:          d.Kind,
		Version:       d.Version,
		VersionBefore: d.VersionBefore,
		CommittedAt:   d.CommittedAt,
		Actor:         d.Actor,
		Reason:        d.Reason,
		Ops:           jsonSafe(d.Ops),
		Changes:       changes,
		ChangedPaths:  nonNil(d.ChangedPaths),
	}
}

// auditEntry is the entry as support sees it.
func (d ledgerDoc) auditEntry() AuditEntry {
	return AuditEntry{
		LedgerEntry:     d.entry(),
		IdempotencyKey:  d.IdempotencyKey,
		JobID:           d.JobID,
		BulkJobID:       d.BulkJobID,
		ExpectedVersion: d.ExpectedVersion,
		Response:        d.Response,
	}
}

// event is the entry as the outbox relay publishes it.
func (d ledgerDoc) event() save.Event {
	changes := make([]map[string]any, len(d.Changes))
	for i, c := range d.Changes {
		changes[i] = map[string]any{"path": c.Path, "old": c.Old, "new": c.New}
	}
	e := save.Event{
		UserID:        d.UserID,
		Version:       d.Version,
		VersionBefore: d.VersionBefore,
		EntryID:       d.EntryID,
		Kind:          d.Kind,
		Actor:         d.Actor,
		JobID:         d.JobID,
		ChangedPaths:  nonNil(d.ChangedPaths),
		Invalidate:    d.Outbox.Invalidate,
		HolderJobID:   d.Outbox.HolderJobID,
		CommittedAt:   d.CommittedAt,
		Reason:        d.Reason,
		Changes:       changes,
	}
	if d.Ops != nil {
		e.Ops = d.Ops
	}
	return e
}

// invalidation is the entry as a game server's long-poll reports it.
func (d ledgerDoc) invalidation() Invalidation {
	return Invalidation{
		UserID:       d.UserID,
		Version:      d.Version,
		ChangedPaths: nonNil(d.ChangedPaths),
		Actor:        d.Actor.SeenByGameServers(),
		CommittedAt:  d.CommittedAt,
	}
}

// jsonSafe converts stored values to ones encoding/json renders faithfully
// (timestamps as RFC 3339, nested maps and lists kept).
func jsonSafe(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonSafe(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonSafe(e)
		}
		return out
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		return v
	}
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return 0
}

// toAnySlice turns a list of strings into the list the codec encodes.
func toAnySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// maxLedgerEntryBytes keeps a ledger entry (ops, old and new values and the
// stored response) under Firestore's 1 MiB document limit, with room for
// the fields Firestore counts beyond the encoded values.
const maxLedgerEntryBytes = 1<<20 - 16<<10

// onceNames are the once-only things a mutation does or settles.
func (pm *pendingMutation) onceNames() []string {
	if pm.req.Once == "" {
		return pm.req.Settles
	}
	return append([]string{pm.req.Once}, pm.req.Settles...)
}

// checkWrites checks, before anything is sent, that Firestore can take a
// member's writes (its ledger entry first): every write encodable, which
// text that is not valid UTF-8 is not, and the entry within the document
// limit. It returns the writes' encoded size.
func checkWrites(writes []*firestorepb.Write) (int, error) {
	total := 0
	for i, w := range writes {
		b, err := proto.Marshal(w)
		if err != nil {
			return 0, save.Errorf(save.CodeInvalidArgument, "the mutation holds text that is not valid UTF-8, which cannot be stored: send valid UTF-8")
		}
		if size := proto.Size(w.GetUpdate()); i == 0 && size > maxLedgerEntryBytes {
			return 0, save.Errorf(save.CodeLimitExceeded,
				"this mutation's ledger entry would be %d bytes, over the %d a Firestore document can hold: split it into smaller mutations", size, maxLedgerEntryBytes).
				WithDetail("entryBytes", size).WithDetail("limit", maxLedgerEntryBytes)
		}
		total += len(b)
	}
	return total, nil
}

// onceWrite records that a once-only mutation was done, by which entry.
func (s *Store) onceWrite(userID int64, once string, out save.Outcome) *firestorepb.Write {
	return &firestorepb.Write{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: s.docName(oncePath(userID, once)), Fields: map[string]*firestorepb.Value{
			"once":        stringValue(once),
			"entryId":     stringValue(out.EntryID),
			"version":     intValue(out.Version),
			"committedAt": timeValue(out.CommittedAt),
		}}},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}},
	}
}

// replay answers a mutation from its ledger entry: the answer stored there.
func replay(entry ledgerDoc) groupResult {
	body := []byte(entry.Response)
	var out save.Outcome
	if err := json.Unmarshal(body, &out); err != nil {
		return groupResult{err: err}
	}
	return groupResult{res: MutationResult{Outcome: out, Body: body, Replayed: true}}
}

// ledgerWrite creates a mutation's ledger entry: the audit record, the
// idempotency record (request hash and response) and the outbox entry.
func (s *Store) ledgerWrite(p Player, pm *pendingMutation, out save.Outcome, body []byte, schemaBefore int) (*firestorepb.Write, error) {
	ops, err := jsonTree(pm.req.Mutation.Ops)
	if err != nil {
		return nil, err
	}
	holder := ""
	if p.Session != nil && p.Session.ExpiresAt.After(out.CommittedAt) {
		holder = p.Session.JobID
	}
	doc := ledgerDoc{
		EntryID:         out.EntryID,
		UserID:          out.UserID,
		Kind:            cmp.Or(pm.req.Kind, LedgerKindMutation),
		IdempotencyKey:  pm.req.IdempotencyKey,
		RequestHash:     pm.hash,
		Actor:           pm.req.Actor,
		JobID:           pm.req.JobID,
		BulkJobID:       pm.req.BulkJobID,
		Reason:          pm.req.Mutation.Reason,
		ExpectedVersion: pm.req.Mutation.ExpectedVersion,
		VersionBefore:   out.VersionBefore,
		Version:         out.Version,
		SchemaBefore:    int64(schemaBefore),
		SchemaVersion:   int64(out.SchemaVersion),
		Changes:         out.Changes,
		ChangedPaths:    out.ChangedPaths,
		CommittedAt:     out.CommittedAt,
		Response:        string(body),
		Outbox: ledgerOutbox{
			Invalidate:  holder != "" && !(pm.req.Actor.Kind == save.ActorServer && pm.req.JobID == holder),
			HolderJobID: holder,
		},
	}
	doc.Ops, _ = ops.([]any)
	if s.retention > 0 {
		doc.ExpireAt = out.CommittedAt.Add(s.retention)
	}
	return s.ledgerCreate(doc)
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
