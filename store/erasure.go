package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// Sources of erasure requests.
const (
	// ErasureSourceRoblox is Roblox's right-to-erasure webhook.
	ErasureSourceRoblox = "roblox-webhook"
	// ErasureSourceAdmin is an administrator's request through the admin API.
	ErasureSourceAdmin = "admin"
)

// Bounds of an erasure's deletes: documents per batch, and batches per
// collection, so a runaway collection cannot hold a request forever.
const (
	eraseBatch      = 400
	maxEraseBatches = 10000
	// maxErasureRequests bounds the request log kept on one erasure record.
	maxErasureRequests = 100
)

// Bounds of the claim that makes one delivery of an erasure request the
// one that erases.
const (
	// erasureClaimTTL is how long a claimed request may run before another
	// delivery of it takes over, as after a crash of the claiming instance.
	erasureClaimTTL = 10 * time.Minute
	// erasureWaitPoll is how often a duplicate delivery looks whether the
	// claiming one has finished.
	erasureWaitPoll = 50 * time.Millisecond
	// maxErasureWait bounds how long a duplicate delivery waits for the
	// claiming one before it answers UNAVAILABLE (the caller retries).
	maxErasureWait = time.Minute
)

// States of an erasure request's claim document.
const (
	erasureErasing = "erasing"
	erasureDone    = "done"
)

// ErasureRequest asks to erase a Roblox player's data.
type ErasureRequest struct {
	UserID int64
	// Source is ErasureSourceRoblox or ErasureSourceAdmin.
	Source string
	// Requester names who asked: the webhook, or the operator's uid.
	Requester string
	// RequestID identifies the request (the webhook's NotificationId, or an
	// Idempotency-Key): a request seen before erases nothing again. Like
	// every idempotency key it is scoped by who asked: an admin's key is
	// the key of that admin (Requester) only, while a webhook notification
	// id is the same request whoever delivers it.
	RequestID string
}

// Erasure is what an erasure did. Its record, erasures/{RecordID}, keeps
// when and by whom, never the user id: RecordID is a keyed hash of it.
type Erasure struct {
	RecordID string    `json:"recordId"`
	ErasedAt time.Time `json:"erasedAt"`
	// AlreadyErased is set when this request had been handled before, or
	// there was nothing left to erase and a record exists.
	AlreadyErased bool `json:"alreadyErased"`
	// Deleted counts the documents removed by this request.
	Deleted ErasedCounts `json:"deleted"`
	// OwnerUIDs are the companion accounts that were linked to the player,
	// so the caller can clear their robloxUserId claims.
	OwnerUIDs []string `json:"-"`
	// Replayed is set when this is the stored answer of an admin's request
	// made before with the same Idempotency-Key.
	Replayed bool `json:"-"`
}

// ErasedCounts counts deleted documents by kind.
type ErasedCounts struct {
	Players       int `json:"players"`
	LedgerEntries int `json:"ledgerEntries"`
	Other         int `json:"other"`
	Links         int `json:"links"`
	LinkCodes     int `json:"linkCodes"`
}

func (c ErasedCounts) total() int {
	return c.Players + c.LedgerEntries + c.Other + c.Links + c.LinkCodes
}

// ErasureRecordID is the id of a player's erasure record: HMAC-SHA256 of
// the user id under key. A keyed hash, because Roblox user ids are few
// enough to hash them all; without the key the record cannot be tied to
// a player, yet the service finds it again on a repeated request.
func ErasureRecordID(key []byte, userID int64) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("savesync-erasure\x00" + strconv.FormatInt(userID, 10)))
	return hex.EncodeToString(mac.Sum(nil))
}

// ErasePlayer removes a player's save and personal data: the player
// document and everything under it (ledger entries, which hold the audit
// trail and idempotency records), the links/{uid} documents and link codes
// that tie a companion account to the player. It then records the erasure
// in erasures/{ErasureRecordID}: times, sources, requesters and request
// ids, no user id. key is the erasure-record key (see ErasureRecordID).
//
// It is idempotent. A request with a RequestID first claims it by creating
// its claim document (a create-if-absent precondition), so of concurrent
// deliveries of one request exactly one erases; the others wait for it to
// finish and answer AlreadyErased (a webhook's duplicate delivery) or the
// stored answer with Replayed set (an admin's retry with the same key).
// A claim whose erasure failed is released, and one left by a crashed
// instance is taken over after erasureClaimTTL. Erasing an erased player
// deletes nothing and answers AlreadyErased.
//
// A game server still holding the player's session may write again after
// the erasure; that new save is erased by the next request.
// Errors: INVALID_ARGUMENT (bad user id or source), UNAVAILABLE (also when
// another delivery of the request is still erasing after maxErasureWait).
func (s *Store) ErasePlayer(ctx context.Context, key []byte, req ErasureRequest) (_ Erasure, err error) {
	defer wrapOp(&err, "store.ErasePlayer(%s)", req.Source)
	if req.UserID <= 0 {
		return Erasure{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id").WithDetail("field", "userId")
	}
	if req.Source != ErasureSourceRoblox && req.Source != ErasureSourceAdmin {
		return Erasure{}, save.Errorf(save.CodeInvalidArgument, "unknown erasure source %q", req.Source)
	}
	id := ErasureRecordID(key, req.UserID)
	if req.RequestID == "" {
		return s.erase(ctx, id, req)
	}
	claim, done, err := s.claimErasure(ctx, id, req)
	if err != nil {
		return Erasure{}, err
	}
	if done != nil {
		return *done, nil
	}
	out, err := s.erase(ctx, id, req)
	if err != nil {
		s.releaseErasure(ctx, claim)
		return Erasure{}, err
	}
	if err := s.finishErasure(ctx, claim, out); err != nil {
		return Erasure{}, fmt.Errorf("store.ErasePlayer: finish the claim: %w", err)
	}
	return out, nil
}

// erasureClaim is a claimed erasure request: its document, as this
// delivery wrote it.
type erasureClaim struct {
	ref     *firestore.DocumentRef
	written time.Time
}

// erasureRequestKey names the claim document of a request: the hash of
// its scope and id. A webhook's notification id is scoped by the source
// only; an admin's key by the admin too.
func erasureRequestKey(req ErasureRequest) string {
	requester := ""
	if req.Source == ErasureSourceAdmin {
		requester = req.Requester
	}
	sum := sha256.Sum256([]byte(req.Source + "\x00" + requester + "\x00" + req.RequestID))
	return hex.EncodeToString(sum[:20])
}

// claimErasure makes this delivery the one that erases for req, or returns
// the answer to give when another delivery has erased already (waiting
// for one that is erasing now).
func (s *Store) claimErasure(ctx context.Context, recordID string, req ErasureRequest) (erasureClaim, *Erasure, error) {
	ref := s.fs.Doc(erasureRequestPath(recordID, erasureRequestKey(req)))
	deadline := time.Now().Add(maxErasureWait)
	for {
		now := s.now().UTC().Truncate(time.Microsecond)
		wr, err := ref.Create(ctx, map[string]any{"state": erasureErasing, "claimedAt": now, "source": req.Source})
		if err == nil {
			return erasureClaim{ref: ref, written: wr.UpdateTime}, nil, nil
		}
		if status.Code(err) != codes.AlreadyExists {
			return erasureClaim{}, nil, err
		}
		snap, err := ref.Get(ctx)
		if status.Code(err) == codes.NotFound {
			continue // released meanwhile: claim it afresh
		}
		if err != nil {
			return erasureClaim{}, nil, err
		}
		data := snap.Data()
		if data["state"] == erasureDone {
			out, err := storedErasure(data)
			if err != nil {
				return erasureClaim{}, nil, fmt.Errorf("store.ErasePlayer: claim %s: %w", ref.ID, err)
			}
			if req.Source == ErasureSourceAdmin {
				out.Replayed = true
			} else {
				out.AlreadyErased, out.Deleted = true, ErasedCounts{}
			}
			return erasureClaim{}, &out, nil
		}
		if at, _ := data["claimedAt"].(time.Time); now.Sub(at) >= erasureClaimTTL {
			wr, err := ref.Update(ctx, []firestore.Update{{Path: "claimedAt", Value: now}}, firestore.LastUpdateTime(snap.UpdateTime))
			if err == nil {
				return erasureClaim{ref: ref, written: wr.UpdateTime}, nil, nil
			}
			if c := status.Code(err); c != codes.FailedPrecondition && c != codes.NotFound {
				return erasureClaim{}, nil, err
			}
			continue // another delivery took it over first
		}
		if time.Now().After(deadline) {
			return erasureClaim{}, nil, save.Errorf(save.CodeUnavailable, "this erasure request is being carried out by another delivery; retry it later")
		}
		t := time.NewTimer(erasureWaitPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return erasureClaim{}, nil, ctx.Err()
		case <-t.C:
		}
	}
}

// finishErasure records the answer on the claim, for later deliveries.
func (s *Store) finishErasure(ctx context.Context, c erasureClaim, out Erasure) error {
	answer, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = c.ref.Set(ctx, map[string]any{
		"state":    erasureDone,
		"doneAt":   s.now().UTC().Truncate(time.Microsecond),
		"response": string(answer),
	}, firestore.MergeAll)
	return err
}

// releaseErasure gives up a claim whose erasure failed, so the caller's
// retry erases at once instead of waiting out erasureClaimTTL. The claim
// is deleted only if nobody took it over meanwhile; if the delete fails
// too, the claim lapses after erasureClaimTTL.
func (s *Store) releaseErasure(ctx context.Context, c erasureClaim) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, _ = c.ref.Delete(ctx, firestore.LastUpdateTime(c.written))
}

// storedErasure decodes the answer kept on a finished claim.
func storedErasure(data map[string]any) (Erasure, error) {
	var out Erasure
	raw, _ := data["response"].(string)
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		return Erasure{}, fmt.Errorf("the stored answer cannot be read: %w", err)
	}
	return out, nil
}

// erase deletes the player's data and logs the request on the erasure
// record recordID. The player's document goes last, so an erasure that
// fails halfway is found again, owner and all, by the next request.
func (s *Store) erase(ctx context.Context, recordID string, req ErasureRequest) (Erasure, error) {
	out := Erasure{RecordID: recordID}
	player := s.fs.Doc(playerPath(req.UserID))
	snap, err := player.Get(ctx)
	if err != nil && status.Code(err) != codes.NotFound {
		return Erasure{}, err
	}
	exists := snap != nil && snap.Exists()
	if exists {
		if uid, _ := snap.Data()["ownerUid"].(string); uid != "" {
			out.OwnerUIDs = append(out.OwnerUIDs, uid)
		}
	}
	if err := s.eraseUnder(ctx, player, &out.Deleted); err != nil {
		return Erasure{}, err
	}
	if err := s.eraseLinks(ctx, req.UserID, &out); err != nil {
		return Erasure{}, err
	}
	if exists {
		if _, err := player.Delete(ctx); err != nil {
			return Erasure{}, err
		}
		out.Deleted.Players = 1
	}
	if err := s.recordErasure(ctx, recordID, req, &out); err != nil {
		return Erasure{}, fmt.Errorf("store.ErasePlayer: record: %w", err)
	}
	return out, nil
}

// eraseUnder deletes every collection under the player's document: the
// ledger (the audit trail and idempotency records) and the leave and
// once-only records.
func (s *Store) eraseUnder(ctx context.Context, player *firestore.DocumentRef, deleted *ErasedCounts) error {
	subs := player.Collections(ctx)
	for range maxEraseBatches {
		col, err := subs.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := s.deleteAll(ctx, col.Query)
		if err != nil {
			return err
		}
		if col.ID == ledgerCollection {
			deleted.LedgerEntries += n
		} else {
			deleted.Other += n
		}
	}
	return nil
}

// eraseLinks deletes the links/{uid} documents and the link codes that tie
// a companion account to the player, noting the accounts in OwnerUIDs.
func (s *Store) eraseLinks(ctx context.Context, userID int64, out *Erasure) error {
	links, err := s.fs.Collection(linksCollection).Where("userId", "==", userID).Documents(ctx).GetAll()
	if err != nil {
		return err
	}
	for _, l := range links {
		out.OwnerUIDs = appendNew(out.OwnerUIDs, l.Ref.ID)
	}
	if out.Deleted.Links, err = s.deleteAll(ctx, s.fs.Collection(linksCollection).Where("userId", "==", userID)); err != nil {
		return err
	}
	if out.Deleted.LinkCodes, err = s.deleteAll(ctx, s.fs.Collection(linkCodesCollection).Where("userId", "==", userID)); err != nil {
		return err
	}
	for _, uid := range out.OwnerUIDs {
		n, err := s.deleteAll(ctx, s.fs.Collection(linkCodesCollection).Where("uid", "==", uid))
		if err != nil {
			return err
		}
		out.Deleted.LinkCodes += n
	}
	return nil
}

// recordErasure logs the request on the erasure record, in a transaction:
// when, from where, by whom and how much it deleted, never the user id. A
// request that found nothing to delete on a player erased before answers
// AlreadyErased and logs nothing.
func (s *Store) recordErasure(ctx context.Context, recordID string, req ErasureRequest, out *Erasure) error {
	rec := s.fs.Doc(erasurePath(recordID))
	now := s.now().UTC().Truncate(time.Microsecond)
	return s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		d, err := tx.Get(rec)
		exists := err == nil
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		var requests []any
		out.ErasedAt, out.AlreadyErased = now, false
		if exists {
			data := d.Data()
			requests, _ = data["requests"].([]any)
			if t, ok := data["erasedAt"].(time.Time); ok {
				out.ErasedAt = t.UTC()
			}
			if out.Deleted.total() == 0 {
				out.AlreadyErased = true
				return nil
			}
		}
		requests = append(requests, map[string]any{
			"at":        now,
			"source":    req.Source,
			"requester": req.Requester,
			"requestId": req.RequestID,
			"deleted":   int64(out.Deleted.total()),
		})
		if len(requests) > maxErasureRequests {
			requests = requests[len(requests)-maxErasureRequests:]
		}
		return tx.Set(rec, map[string]any{
			"erasedAt":     out.ErasedAt,
			"lastErasedAt": now,
			"requests":     requests,
		})
	})
}

// deleteAll deletes every document a query matches, a batch at a time.
func (s *Store) deleteAll(ctx context.Context, q firestore.Query) (int, error) {
	n := 0
	for range maxEraseBatches {
		docs, err := q.Select().Limit(eraseBatch).Documents(ctx).GetAll()
		if err != nil {
			return n, err
		}
		if len(docs) == 0 {
			return n, nil
		}
		bw := s.fs.BulkWriter(ctx)
		jobs := make([]*firestore.BulkWriterJob, 0, len(docs))
		for _, d := range docs {
			job, err := bw.Delete(d.Ref)
			if err != nil {
				bw.End()
				return n, err
			}
			jobs = append(jobs, job)
		}
		bw.End()
		for _, job := range jobs {
			if _, err := job.Results(); err != nil {
				return n, err
			}
		}
		n += len(docs)
	}
	return n, save.Errorf(save.CodeUnavailable, "erasure stopped after %d documents; repeat the request to finish", n)
}

func appendNew(list []string, s string) []string {
	for _, e := range list {
		if e == s {
			return list
		}
	}
	return append(list, s)
}
