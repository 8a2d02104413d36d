package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// PendingEvents returns up to limit committed mutations whose events have
// not been published yet, oldest first; a player's events come in version
// order. They stay pending until MarkPublished, so a relay that dies
// between commit and publish loses nothing: the next one finds them here.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]save.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	docs, err := s.fs.CollectionGroup(ledgerCollection).
		Where(ledgerPublished, "==", false).
		OrderBy(ledgerCommittedAt, firestore.Asc).
		OrderBy(ledgerUserID, firestore.Asc).
		OrderBy(ledgerVersion, firestore.Asc).
		Limit(limit).
		Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("store.PendingEvents: %w", err)
	}
	events := make([]save.Event, 0, len(docs))
	for _, d := range docs {
		events = append(events, ledgerDocOf(d).event())
	}
	inVersionOrder(events)
	return events, nil
}

// inVersionOrder puts each player's events in version order while keeping
// the positions the players' events occupy. Commit times come from the
// committing instance's clock, so two instances with skewed clocks could
// otherwise list a player's later version first.
func inVersionOrder(events []save.Event) {
	slots := make(map[int64][]int)
	for i, e := range events {
		slots[e.UserID] = append(slots[e.UserID], i)
	}
	for _, idx := range slots {
		if len(idx) < 2 {
			continue
		}
		own := make([]save.Event, len(idx))
		for j, i := range idx {
			own[j] = events[i]
		}
		sort.SliceStable(own, func(a, b int) bool { return own[a].Version < own[b].Version })
		for j, i := range idx {
			events[i] = own[j]
		}
	}
}

// MarkPublished records that events were published, so the relay does not
// publish them again. Only the outbox fields change; the audit record
// stays as committed.
func (s *Store) MarkPublished(ctx context.Context, events []save.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := s.now().UTC()
	// Each entry is marked on its own (BulkWriter), so an entry erased
	// since it was read (right to erasure) does not block the others.
	bw := s.fs.BulkWriter(ctx)
	jobs := make([]*firestore.BulkWriterJob, 0, len(events))
	for _, e := range events {
		job, err := bw.Update(s.fs.Doc(ledgerPath(e.UserID, e.EntryID)), []firestore.Update{
			{Path: ledgerPublished, Value: true},
			{Path: ledgerPublishedAt, Value: now},
		})
		if err != nil {
			bw.End()
			return fmt.Errorf("store.MarkPublished: %w", err)
		}
		jobs = append(jobs, job)
	}
	bw.End()
	for _, job := range jobs {
		if _, err := job.Results(); err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("store.MarkPublished: %w", err)
		}
	}
	return nil
}

// ClaimRelay takes the outbox relay lease for holder when it is free or
// expired, renews it when holder has it and less than half of ttl is
// left, and otherwise reports who has it. Times come from the store's
// clock.
func (s *Store) ClaimRelay(ctx context.Context, holder string, ttl time.Duration) (save.RelayLease, error) {
	if holder == "" || ttl <= 0 {
		return save.RelayLease{}, save.Errorf(save.CodeInvalidArgument, "a relay lease needs a holder and a positive ttl")
	}
	ref := s.fs.Doc(relayLeasePath)
	var out save.RelayLease
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		now := s.now().UTC().Truncate(time.Microsecond)
		cur, err := readRelayLease(tx, ref)
		if err != nil {
			return err
		}
		switch {
		case cur.Holder == holder && cur.ExpiresAt.Sub(now) > ttl/2:
			out = cur
			out.Held = true
			return nil
		case cur.Holder != "" && cur.Holder != holder && cur.ExpiresAt.After(now):
			out = cur
			out.Held = false
			return nil
		}
		next := save.RelayLease{Holder: holder, Epoch: cur.Epoch, ExpiresAt: now.Add(ttl), Held: true}
		if cur.Holder != holder {
			next.Epoch++
		}
		out = next
		return tx.Set(ref, map[string]any{"holder": next.Holder, "epoch": next.Epoch, "expiresAt": next.ExpiresAt, "updatedAt": now})
	})
	if err != nil {
		return save.RelayLease{}, fmt.Errorf("store.ClaimRelay(%s): %w", holder, err)
	}
	return out, nil
}

// ReleaseRelay gives the relay lease up if holder has it, so another
// instance can drain at once instead of waiting for expiry.
func (s *Store) ReleaseRelay(ctx context.Context, holder string) error {
	ref := s.fs.Doc(relayLeasePath)
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		cur, err := readRelayLease(tx, ref)
		if err != nil || cur.Holder != holder {
			return err
		}
		return tx.Set(ref, map[string]any{"holder": "", "epoch": cur.Epoch, "expiresAt": time.Unix(0, 0).UTC(), "updatedAt": s.now().UTC()})
	})
	if err != nil {
		return fmt.Errorf("store.ReleaseRelay(%s): %w", holder, err)
	}
	return nil
}

// readRelayLease reads the lease in a transaction; a missing document is
// a free lease.
func readRelayLease(tx *firestore.Transaction, ref *firestore.DocumentRef) (save.RelayLease, error) {
	snap, err := tx.Get(ref)
	if status.Code(err) == codes.NotFound {
		return save.RelayLease{}, nil
	}
	if err != nil {
		return save.RelayLease{}, err
	}
	var doc struct {
		Holder    string    `firestore:"holder"`
		Epoch     int64     `firestore:"epoch"`
		ExpiresAt time.Time `firestore:"expiresAt"`
	}
	if err := snap.DataTo(&doc); err != nil {
		return save.RelayLease{}, err
	}
	return save.RelayLease{Holder: doc.Holder, Epoch: doc.Epoch, ExpiresAt: doc.ExpiresAt}, nil
}
