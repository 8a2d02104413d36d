package handlers_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/firestore"
)

// BenchmarkMutationThroughService measures one write-through mutation over
// HTTP: auth, decode, the store's transaction and the ledger entry. Compare
// with BenchmarkMutationCeiling, the same read-modify-write issued directly
// through the Firestore client, measured in the same run.
func BenchmarkMutationThroughService(b *testing.B) {
	e := newEnv(b)
	var seq atomic.Int64
	body := []byte(`{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/players/%d/mutations", e.url, 1000+n%64), bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+serverKey)
			req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", n))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkMutationCeiling is the ceiling for the service: a transaction
// that reads a player, increments a balance and creates a ledger document,
// straight through the Firestore client with no HTTP and no service logic.
func BenchmarkMutationCeiling(b *testing.B) {
	e := newEnv(b)
	fs := e.clients.Firestore
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			n := seq.Add(1)
			player := fs.Doc(fmt.Sprintf("players/%d", 1000+n%64))
			err := fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				snap, err := tx.Get(player)
				var coins int64
				if err == nil {
					if v, ok := snap.Data()["coins"].(int64); ok {
						coins = v
					}
				}
				if err := tx.Set(player, map[string]any{"coins": coins + 1}); err != nil {
					return err
				}
				return tx.Create(player.Collection("ledger").Doc(fmt.Sprintf("e%d", n)), map[string]any{"amount": 1})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
