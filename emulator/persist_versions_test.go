package emulator

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	vkit "cloud.google.com/go/firestore/apiv1"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPersistenceKeepsOldVersions reads, after a restart from the data
// directory, at a time noted before the restart: it sees the state then, not
// the state at restart, after a clean shutdown and after a crash (a copy of
// the data directory of a running server).
func TestPersistenceKeepsOldVersions(t *testing.T) {
	for _, restart := range []string{"clean shutdown", "crash image"} {
		t.Run(restart, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			p := testProject(t)
			srv, err := Start(Options{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			c := newClientFor(t, srv, p)
			// The noted time is the commit time of the last first write:
			// a read at it sees that commit, and every later commit is
			// after it.
			var noted time.Time
			for _, name := range []string{"hist/a", "hist/gone"} {
				wr, err := c.Doc(name).Set(ctx, map[string]any{"n": int64(1)})
				if err != nil {
					t.Fatal(err)
				}
				noted = wr.UpdateTime
			}
			if _, err := c.Doc("hist/a").Set(ctx, map[string]any{"n": int64(2)}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Doc("hist/gone").Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Doc("hist/new").Set(ctx, map[string]any{"n": int64(3)}); err != nil {
				t.Fatal(err)
			}
			from := dir
			if restart == "crash image" {
				from = copyDir(t, dir)
			}
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			srv2, err := Start(Options{DataDir: from})
			if err != nil {
				t.Fatal(err)
			}
			defer srv2.Close()
			c2 := newClientFor(t, srv2, p)

			// A read-only transaction at the noted time.
			got := map[string]any{}
			err = c2.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				for _, name := range []string{"hist/a", "hist/gone", "hist/new"} {
					snap, err := tx.Get(c2.Doc(name))
					if status.Code(err) == codes.NotFound {
						got[name] = "missing"
						continue
					}
					if err != nil {
						return err
					}
					got[name], _ = snap.DataAt("n")
				}
				return nil
			}, firestore.ReadOnly, firestore.TransactionReadTime(noted))
			if err != nil {
				t.Fatalf("read-only transaction at the noted time: %v", err)
			}
			want := map[string]any{"hist/a": int64(1), "hist/gone": int64(1), "hist/new": "missing"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("transaction at the noted time (-want +got):\n%s", diff)
			}

			// A get and a query with a read time.
			at := c2.WithReadOptions(firestore.ReadTime(noted))
			snap, err := at.Doc("hist/a").Get(ctx)
			if err != nil {
				t.Fatalf("Get with ReadTime: %v", err)
			}
			if n, _ := snap.DataAt("n"); n != int64(1) {
				t.Errorf("Get with ReadTime: n = %v, want 1", n)
			}
			docs, err := at.Collection("hist").Documents(ctx).GetAll()
			if err != nil {
				t.Fatalf("query with ReadTime: %v", err)
			}
			var ids []string
			for _, d := range docs {
				ids = append(ids, d.Ref.ID)
			}
			if diff := cmp.Diff([]string{"a", "gone"}, ids); diff != "" {
				t.Errorf("query with ReadTime (-want +got):\n%s", diff)
			}
		})
	}
}

// copyDir copies the files of dir into a new directory, as a crash would
// leave them.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestPersistenceDropsVersionsPastRetention starts from a log holding
// versions older than the hour of retention: start-up drops the ones no
// read can see any more, so a data directory used by many short runs does
// not grow with versions nobody can read, and reads within the hour still
// see the state at their time.
func TestPersistenceDropsVersionsPastRetention(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p := testProject(t)
	root := dbPath(p) + "/documents"
	now := time.Now()
	at := func(ago time.Duration) int64 { return now.Add(-ago).UnixMicro() }
	doc := func(name string, n int64, created, updated int64) *firestorepb.Document {
		return &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{"n": intValue(n)}, CreateTime: tsMicros(created), UpdateTime: tsMicros(updated)}
	}
	kept, gone := root+"/old/kept", root+"/old/gone"
	var log []byte
	for _, c := range []struct {
		t    int64
		name string
		doc  *firestorepb.Document
	}{
		{at(3 * time.Hour), kept, doc(kept, 1, at(3*time.Hour), at(3*time.Hour))},
		{at(3 * time.Hour), gone, doc(gone, 1, at(3*time.Hour), at(3*time.Hour))},
		{at(2 * time.Hour), kept, doc(kept, 2, at(3*time.Hour), at(2*time.Hour))},
		{at(2 * time.Hour), gone, nil},
		{at(10 * time.Minute), kept, doc(kept, 3, at(3*time.Hour), at(10*time.Minute))},
	} {
		log = frame(log, commitPayload(c.t, []docChange{{name: c.name, new: c.doc}}))
	}
	if err := os.WriteFile(filepath.Join(dir, "wal-0.log"), log, 0o644); err != nil {
		t.Fatal(err)
	}

	versions := func(srv *Server) map[string]int {
		t.Helper()
		db, err := srv.database(dbPath(p))
		if err != nil {
			t.Fatal(err)
		}
		db.mu.RLock()
		defer db.mu.RUnlock()
		out := map[string]int{}
		for name, h := range db.docs {
			out[name] = len(h.versions)
		}
		return out
	}
	// kept: the version of 2 h ago (the state at every read time of the
	// last hour until 10 min ago) and the one of 10 min ago; gone: nothing.
	want := map[string]int{kept: 2}
	for _, step := range []string{"start-up", "restart"} {
		srv, err := Start(Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, versions(srv)); diff != "" {
			t.Errorf("%s: versions kept (-want +got):\n%s", step, diff)
		}
		c := newClientFor(t, srv, p)
		for _, r := range []struct {
			ago  time.Duration
			want int64
		}{{30 * time.Minute, 2}, {5 * time.Minute, 3}} {
			snap, err := c.WithReadOptions(firestore.ReadTime(now.Add(-r.ago))).Doc("old/kept").Get(ctx)
			if err != nil {
				t.Fatalf("%s: read %v ago: %v", step, r.ago, err)
			}
			if n, _ := snap.DataAt("n"); n != r.want {
				t.Errorf("%s: read %v ago: n = %v, want %d", step, r.ago, n, r.want)
			}
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPersistenceEndsTransactions checks the part a restart does not keep:
// a transaction begun before it is no longer valid after it.
func TestPersistenceEndsTransactions(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p := testProject(t)
	srv, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	g, err := vkit.NewClient(ctx, option.WithGRPCConn(dial(t, srv)))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	bt, err := g.BeginTransaction(ctx, &firestorepb.BeginTransactionRequest{Database: dbPath(p)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv2, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	g2, err := vkit.NewClient(ctx, option.WithGRPCConn(dial(t, srv2)))
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	_, err = g2.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: bt.GetTransaction()})
	wantCode(t, "commit of a transaction begun before the restart", err, codes.InvalidArgument)
}
