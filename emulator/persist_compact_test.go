package emulator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/google/go-cmp/cmp"
)

// dataFiles lists the files of a data directory.
func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// dirBytes is the size of the files in dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// TestRunningServerCompactsItsLog rewrites a few documents many times on a
// server whose log is compacted past 64 KiB: the log is compacted while the
// server runs (not only at start and shutdown), so the data directory stays
// near the size of its data instead of growing with every commit, and a
// crash image taken at any point, including one with the log switched and
// no snapshot written yet, holds every acknowledged write.
func TestRunningServerCompactsItsLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := testProject(t)
	srv, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.wal.mu.Lock()
	srv.wal.minCompact = 64 << 10
	srv.wal.mu.Unlock()
	c := newClientFor(t, srv, p)
	pad := strings.Repeat("x", 1000)
	const docs, rounds = 5, 200
	var written int64
	for r := range rounds {
		for d := range docs {
			if _, err := c.Doc(fmt.Sprintf("c/d%d", d)).Set(ctx, map[string]any{"round": int64(r), "pad": pad}); err != nil {
				t.Fatal(err)
			}
			written += int64(len(pad))
		}
	}
	// The versions of the last hour stay (so read_time works), but the
	// log was compacted: without it the log would hold every commit.
	srv.wal.compactWG.Wait()
	srv.wal.mu.Lock()
	gen, logBytes, snapBytes := srv.wal.gen, srv.wal.logBytes, srv.wal.snapBytes
	srv.wal.mu.Unlock()
	if gen < 2 {
		t.Errorf("log generation %d after %d bytes of commits: the running server never compacted", gen, written)
	}
	// Every version is within the hour, so the snapshot holds them all;
	// the log is compacted once it outgrows the snapshot (plus the commits
	// made while the last snapshot was written).
	if limit := max(64<<10, snapBytes) + 64<<10; logBytes > limit {
		t.Errorf("current log holds %d bytes, want at most %d (snapshot %d bytes)", logBytes, limit, snapBytes)
	}
	if files := dataFiles(t, dir); !slices.Contains(files, "snapshot.db") || len(files) != 2 {
		t.Errorf("data directory holds %v, want snapshot.db and one log", files)
	}

	check := func(from string, wantRound int64) {
		t.Helper()
		srv2, err := Start(Options{DataDir: from})
		if err != nil {
			t.Fatal(err)
		}
		defer srv2.Close()
		c2 := newClientFor(t, srv2, p)
		for d := range docs {
			snap, err := c2.Doc(fmt.Sprintf("c/d%d", d)).Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := snap.DataAt("round"); got != wantRound {
				t.Errorf("after restart from %s: c/d%d round = %v, want %d", filepath.Base(from), d, got, wantRound)
			}
		}
	}
	check(copyDir(t, dir), rounds-1)

	// A crash between switching logs and renaming the new snapshot leaves
	// the old snapshot and two logs: both are replayed.
	if _, err := srv.wal.switchLog(); err != nil {
		t.Fatal(err)
	}
	for d := range docs {
		if _, err := c.Doc(fmt.Sprintf("c/d%d", d)).Set(ctx, map[string]any{"round": int64(rounds), "pad": pad}); err != nil {
			t.Fatal(err)
		}
	}
	image := copyDir(t, dir)
	logs := 0
	for _, f := range dataFiles(t, image) {
		if strings.HasPrefix(f, "wal-") {
			logs++
		}
	}
	if logs != 2 {
		t.Fatalf("crash image holds %v, want two logs", dataFiles(t, image))
	}
	check(image, rounds)
}

// TestOldVersionsAreStoredEncoded updates a document many times: every
// version is kept encoded (a fraction of the memory of a decoded one), and
// a read at each version's time still sees it.
func TestOldVersionsAreStoredEncoded(t *testing.T) {
	ctx := context.Background()
	c, p := newClient(t)
	ref := c.Doc("enc/doc")
	var times []time.Time
	for i := range 5 {
		wr, err := ref.Set(ctx, map[string]any{"i": int64(i), "tags": []any{"a", fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, wr.UpdateTime)
	}
	db, err := testSrv.database(dbPath(p))
	if err != nil {
		t.Fatal(err)
	}
	db.mu.RLock()
	var encoded []bool
	for _, v := range db.docs[dbPath(p)+"/documents/enc/doc"].versions {
		encoded = append(encoded, v.enc != nil)
	}
	db.mu.RUnlock()
	if diff := cmp.Diff([]bool{true, true, true, true, true}, encoded); diff != "" {
		t.Errorf("encoded versions (-want +got):\n%s", diff)
	}
	for i, at := range times {
		snap, err := c.WithReadOptions(firestore.ReadTime(at)).Doc("enc/doc").Get(ctx)
		if err != nil {
			t.Fatalf("read at version %d: %v", i, err)
		}
		want := map[string]any{"i": int64(i), "tags": []any{"a", fmt.Sprint(i)}}
		if diff := cmp.Diff(want, snap.Data()); diff != "" {
			t.Errorf("read at version %d (-want +got):\n%s", i, diff)
		}
		if !snap.UpdateTime.Equal(at) {
			t.Errorf("read at version %d: update time %v, want %v", i, snap.UpdateTime, at)
		}
	}
}

// TestVersionRetention bounds how far back read_time reaches: Cloud
// Firestore's hour by default, the configured window otherwise, and no
// window shorter than a minute.
func TestVersionRetention(t *testing.T) {
	ctx := context.Background()
	if _, err := Start(Options{VersionRetention: 30 * time.Second}); err == nil || !strings.Contains(err.Error(), "below the minimum 1m0s") {
		t.Errorf("Start with a 30 s retention: %v, want a refusal naming the minimum", err)
	}
	short, err := Start(Options{VersionRetention: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	for _, tt := range []struct {
		name string
		srv  *Server
		ago  time.Duration
		want codes.Code
	}{
		{"default, 50 min ago", testSrv, 50 * time.Minute, codes.OK},
		{"default, 70 min ago", testSrv, 70 * time.Minute, codes.FailedPrecondition},
		{"2 min, 1 min ago", short, time.Minute, codes.OK},
		{"2 min, 3 min ago", short, 3 * time.Minute, codes.FailedPrecondition},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClientFor(t, tt.srv, testProject(t))
			_, err := c.WithReadOptions(firestore.ReadTime(time.Now().Add(-tt.ago))).Doc("r/d").Get(ctx)
			if status.Code(err) == codes.NotFound {
				err = nil
			}
			if got := status.Code(err); got != tt.want {
				t.Errorf("read %s ago: %v, want %v", tt.ago, err, tt.want)
			}
		})
	}
}
