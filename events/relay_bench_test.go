package events_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// BenchmarkRelayDrain measures how fast one relay empties a backlog: each
// iteration commits 2,000 ledger entries through the store (50
// players, untimed, on a fresh project), then times Drain until the
// outbox is empty, with the emulator answering at no added latency and at
// Cloud Firestore's in-region latency (16 ms p50, 33 ms p99), with the
// relay's default batch size and with batches of 100. It reports
// entries/s and the lease transactions (BeginTransaction calls) per drain
// of the whole backlog.
func BenchmarkRelayDrain(b *testing.B) {
	const benchBacklog, players = 2000, 50
	type latency struct {
		name            string
		latency, jitter time.Duration
	}
	type batch struct {
		name string
		size int
	}
	for _, lat := range []latency{
		{"latency=0", 0, 0},
		{"latency=16ms", 16 * time.Millisecond, 4350 * time.Microsecond},
	} {
		for _, bat := range []batch{{"batch=default", 0}, {"batch=100", 100}} {
			b.Run(lat.name+"/"+bat.name, func(b *testing.B) {
				benchmarkRelayDrain(b, benchBacklog, players, bat.size, lat.latency, lat.jitter)
			})
		}
	}
}

// benchmarkRelayDrain is one case of BenchmarkRelayDrain.
func benchmarkRelayDrain(b *testing.B, backlog, players, batchSize int, latency, jitter time.Duration) {
	emu := firestoretest.Emulator(b)
	b.Cleanup(func() { emu.SetLatency(0, 0) })
	srv, client := newPubsub(b)
	ensureEventTopics(b, client)
	ctx := context.Background()
	var timed time.Duration
	var leaseTxns int64
	published := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		st, project := firestoretest.Store(b, store.Options{})
		commitBacklog(b, st, players, backlog/players)
		relay := events.NewRelay(st, client, events.RelayOptions{InvalidationTopic: invTopic, AuditTopic: auditTopic, BatchSize: batchSize})
		if err := emu.SetLatency(latency, jitter); err != nil {
			b.Fatal(err)
		}
		before := emu.Counters(project).RPCs["BeginTransaction"]
		start := time.Now()
		b.StartTimer()
		n := 0
		for {
			got, err := relay.Drain(ctx)
			if err != nil {
				b.Fatalf("drain: %v", err)
			}
			if got == 0 {
				break
			}
			n += got
		}
		b.StopTimer()
		timed += time.Since(start)
		leaseTxns += emu.Counters(project).RPCs["BeginTransaction"] - before
		if err := emu.SetLatency(0, 0); err != nil {
			b.Fatal(err)
		}
		if n != backlog {
			b.Fatalf("drained %d entries, want %d", n, backlog)
		}
		published += n
	}
	if got := len(srv.Messages()); got < published {
		b.Fatalf("%d messages on the topics, want at least %d", got, published)
	}
	b.ReportMetric(float64(published)/timed.Seconds(), "entries/s")
	b.ReportMetric(float64(leaseTxns)/float64(b.N), "lease-txns/op")
}

// commitBacklog commits versions mutations for each of players players,
// eight players at a time, each player's in version order.
func commitBacklog(b *testing.B, st *store.Store, players, versions int) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, players)
	sem := make(chan struct{}, 8)
	for p := range players {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			uid := int64(5000 + p)
			for v := range versions {
				_, err := st.ApplyMutation(ctx, store.MutationRequest{
					UserID: uid, Actor: companion, IdempotencyKey: fmt.Sprintf("b-%d-%d", uid, v),
					Mutation: save.Mutation{Ops: []save.Op{volume(int64(v))}},
				})
				if err != nil {
					errs <- fmt.Errorf("commit %d v%d: %w", uid, v+1, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
