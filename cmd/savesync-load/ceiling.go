package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// ceilingActor is the actor the ceiling's ledger entries record.
var ceilingActor = save.Actor{Kind: save.ActorServer, ID: "ceiling"}

// runCeiling issues the planned mutations directly through the Firestore
// client, with no HTTP and no service: per mutation one RunTransaction that
// reads the player, applies the ops with the game's domain rules, writes
// the player and creates the ledger entry. It uses its own project in the
// same emulator, so its counters and data stay apart.
func runCeiling(ctx context.Context, emuAddr, project string, cfg *save.Config, players []int64, muts []plannedMutation, workers int) (time.Duration, []time.Duration, int64, error) {
	clients, err := store.Dial(ctx, project, emuAddr)
	if err != nil {
		return 0, nil, 0, err
	}
	defer clients.Close()
	fs := clients.Firestore

	prepared := make([]save.Mutation, len(muts))
	for i, m := range muts {
		raw, err := json.Marshal(map[string]any{"ops": m.ops})
		if err != nil {
			return 0, nil, 0, err
		}
		if prepared[i], err = save.DecodeMutation(raw); err != nil {
			return 0, nil, 0, err
		}
	}

	type job struct {
		i int
	}
	next := make(chan job)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, len(muts))
	var failed int64
	var firstErr error
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range next {
				t := time.Now()
				err := ceilingMutation(ctx, fs, cfg, players[muts[j.i].player], muts[j.i].ops, prepared[j.i])
				d := time.Since(t)
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				}
				mu.Unlock()
			}
		})
	}
	for i := range muts {
		select {
		case next <- job{i}:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	if firstErr != nil {
		return took, lat, failed, fmt.Errorf("ceiling: %d of %d transactions failed, first: %w", failed, len(muts), firstErr)
	}
	return took, lat, failed, nil
}

// ceilingMutation is one mutation as a plain Firestore transaction.
func ceilingMutation(ctx context.Context, fs *firestore.Client, cfg *save.Config, userID int64, ops []map[string]any, m save.Mutation) error {
	ref := fs.Collection("players").Doc(strconv.FormatInt(userID, 10))
	key := uuid.NewString()
	return fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		st := cfg.NewState()
		var version int64
		exists := true
		switch {
		case status.Code(err) == codes.NotFound:
			exists = false
		case err != nil:
			return err
		default:
			data := snap.Data()
			version, _ = data["version"].(int64)
			raw, _ := data["save"].(map[string]any)
			if st, err = cfg.DecodeState(raw); err != nil {
				return err
			}
		}
		applied, err := cfg.Apply(st, version, m, ceilingActor)
		if err != nil {
			return err
		}
		if exists {
			err = tx.Update(ref, []firestore.Update{
				{Path: "version", Value: version + 1},
				{Path: "schemaVersion", Value: int64(cfg.SchemaVersion)},
				{Path: "save", Value: applied.State.Encode()},
				{Path: "updatedAt", Value: firestore.ServerTimestamp},
			})
		} else {
			err = tx.Create(ref, map[string]any{
				"userId":        userID,
				"version":       version + 1,
				"schemaVersion": int64(cfg.SchemaVersion),
				"save":          applied.State.Encode(),
				"createdAt":     firestore.ServerTimestamp,
				"updatedAt":     firestore.ServerTimestamp,
			})
		}
		if err != nil {
			return err
		}
		changes := make([]any, len(applied.Changes))
		for i, c := range applied.Changes {
			changes[i] = map[string]any{"path": c.Path, "old": c.Old, "new": c.New}
		}
		opsAny := make([]any, len(ops))
		for i, o := range ops {
			opsAny[i] = o
		}
		return tx.Create(ref.Collection("ledger").Doc(store.EntryID(ceilingActor, key)), map[string]any{
			"kind":           "mutation",
			"userId":         userID,
			"idempotencyKey": key,
			"actor":          map[string]any{"kind": string(ceilingActor.Kind), "id": ceilingActor.ID},
			"ops":            opsAny,
			"versionBefore":  version,
			"version":        version + 1,
			"changes":        changes,
			"committedAt":    firestore.ServerTimestamp,
		})
	})
}
