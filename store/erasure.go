package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

// ErasureRequest asks to erase a Roblox player's data.
type ErasureRequest struct {
	UserID int64
	// Source is ErasureSourceRoblox or ErasureSourceAdmin.
	Source string
	// Requester names who asked: the webhook, or the operator's uid.
	Requester string
	// RequestID identifies the request (the webhook's NotificationId, or an
	// Idempotency-Key): a request seen before erases nothing again.
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
// ids, no user id. It is idempotent: a request id seen before erases
// nothing, and erasing an erased player deletes nothing. key is the
// erasure-record key (see ErasureRecordID).
//
// A game server still holding the player's session may write again after
// the erasure; that new save is erased by the next request.
// Errors: INVALID_ARGUMENT (bad user id or source), UNAVAILABLE.
func (s *Store) ErasePlayer(ctx context.Context, key []byte, req ErasureRequest) (Erasure, error) {
	if req.UserID <= 0 {
		return Erasure{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id").WithDetail("field", "userId")
	}
	if req.Source != ErasureSourceRoblox && req.Source != ErasureSourceAdmin {
		return Erasure{}, save.Errorf(save.CodeInvalidArgument, "unknown erasure source %q", req.Source)
	}
	id := ErasureRecordID(key, req.UserID)
	rec := s.fs.Collection("erasures").Doc(id)
	if req.RequestID != "" {
		done, at, err := seenRequest(ctx, rec, req.RequestID)
		if err != nil {
			return Erasure{}, err
		}
		if done {
			return Erasure{RecordID: id, ErasedAt: at, AlreadyErased: true}, nil
		}
	}

	out := Erasure{RecordID: id}
	player := s.fs.Doc(playerPath(req.UserID))
	snap, err := player.Get(ctx)
	if err != nil && status.Code(err) != codes.NotFound {
		return Erasure{}, err
	}
	if snap != nil && snap.Exists() {
		if uid, _ := snap.Data()["ownerUid"].(string); uid != "" {
			out.OwnerUIDs = append(out.OwnerUIDs, uid)
		}
	}
	subs := player.Collections(ctx)
	for range maxEraseBatches {
		col, err := subs.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return Erasure{}, err
		}
		n, err := s.deleteAll(ctx, col.Query)
		if err != nil {
			return Erasure{}, err
		}
		if col.ID == "ledger" {
			out.Deleted.LedgerEntries += n
		} else {
			out.Deleted.Other += n
		}
	}
	links, err := s.fs.Collection("links").Where("userId", "==", req.UserID).Documents(ctx).GetAll()
	if err != nil {
		return Erasure{}, err
	}
	for _, l := range links {
		out.OwnerUIDs = appendNew(out.OwnerUIDs, l.Ref.ID)
	}
	if out.Deleted.Links, err = s.deleteAll(ctx, s.fs.Collection("links").Where("userId", "==", req.UserID)); err != nil {
		return Erasure{}, err
	}
	if out.Deleted.LinkCodes, err = s.deleteAll(ctx, s.fs.Collection("linkCodes").Where("userId", "==", req.UserID)); err != nil {
		return Erasure{}, err
	}
	for _, uid := range out.OwnerUIDs {
		n, err := s.deleteAll(ctx, s.fs.Collection("linkCodes").Where("uid", "==", uid))
		if err != nil {
			return Erasure{}, err
		}
		out.Deleted.LinkCodes += n
	}
	if snap != nil && snap.Exists() {
		if _, err := player.Delete(ctx); err != nil {
			return Erasure{}, err
		}
		out.Deleted.Players = 1
	}

	now := s.now().UTC().Truncate(time.Microsecond)
	err = s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
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
			if req.RequestID != "" && requestSeen(requests, req.RequestID) {
				out.AlreadyErased = true
				return nil
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
	if err != nil {
		return Erasure{}, fmt.Errorf("store.ErasePlayer: record: %w", err)
	}
	return out, nil
}

// seenRequest reports whether an erasure record lists a request id.
func seenRequest(ctx context.Context, rec *firestore.DocumentRef, requestID string) (bool, time.Time, error) {
	snap, err := rec.Get(ctx)
	if status.Code(err) == codes.NotFound {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, err
	}
	data := snap.Data()
	requests, _ := data["requests"].([]any)
	at, _ := data["erasedAt"].(time.Time)
	return requestSeen(requests, requestID), at.UTC(), nil
}

func requestSeen(requests []any, id string) bool {
	for _, r := range requests {
		if m, ok := r.(map[string]any); ok && m["requestId"] == id {
			return true
		}
	}
	return false
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
