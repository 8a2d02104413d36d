package emulator

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkRetainedVersionMemory rewrites 50 save-like documents (a wallet,
// an inventory of 40 stacks, settings) b.N times each on a fresh server and
// reports the heap the server holds per retained version once the writes
// are done (every version stays readable for the hour of retention).
//
//	go test -run '^$' -bench RetainedVersionMemory -benchtime 200x ./
func BenchmarkRetainedVersionMemory(b *testing.B) {
	benchmarkMemory(b, false)
}

// BenchmarkLiveDocumentMemory writes the same documents under b.N × 50
// distinct names (as ledger entries accumulate) and reports the heap the
// server holds per live document.
//
//	go test -run '^$' -bench LiveDocumentMemory -benchtime 200x ./
func BenchmarkLiveDocumentMemory(b *testing.B) {
	benchmarkMemory(b, true)
}

func benchmarkMemory(b *testing.B, distinct bool) {
	ctx := context.Background()
	c := freshBenchClient(b, "bench-memory")
	const docs = 50
	save := func(i, round int) map[string]any {
		inv := map[string]any{}
		for k := range 40 {
			inv[fmt.Sprintf("item_%02d", k)] = map[string]any{"count": int64(round + k), "tier": "rare", "acquired": int64(1700000000 + k)}
		}
		return map[string]any{
			"userId": int64(i), "version": int64(round), "schema": int64(3),
			"wallet":    map[string]any{"coins": int64(1000 + round), "gems": int64(round % 7)},
			"inventory": inv,
			"settings":  map[string]any{"music": 0.5, "lang": "en", "hints": true},
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	b.ResetTimer()
	for round := range b.N {
		for i := range docs {
			name := fmt.Sprintf("players/%d", i)
			if distinct {
				name = fmt.Sprintf("players/%d/ledger/e%d", i, round)
			}
			if _, err := c.Doc(name).Set(ctx, save(i, round)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	after := heap()
	unit := "heap-B/version"
	if distinct {
		unit = "heap-B/document"
	}
	b.ReportMetric(float64(after-before)/float64(b.N*docs), unit)
}

// freshBenchClient starts a server of its own for one benchmark (so its
// heap and data hold nothing else) and returns a client for project on it.
func freshBenchClient(b *testing.B, project string) *firestore.Client {
	b.Helper()
	srv, err := Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	c, err := firestore.NewClient(context.Background(), project, option.WithGRPCConn(conn))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
