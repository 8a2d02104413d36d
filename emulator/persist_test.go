package emulator

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p, gone := testProject(t), testProject(t)
	srv, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := newClientFor(t, srv, p)
	wr, err := c.Doc("keep/a").Set(ctx, map[string]any{"n": int64(1), "nested": map[string]any{"x": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Doc("keep/deleted").Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Doc("keep/deleted").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := newClientFor(t, srv, gone).Doc("x/y").Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	srv.ResetProject(gone)
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	srv2, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer srv2.Close()
	c2 := newClientFor(t, srv2, p)
	snap, err := c2.Doc("keep/a").Get(ctx)
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if n, _ := snap.DataAt("n"); n != int64(1) {
		t.Errorf("n = %v, want 1", n)
	}
	if !snap.UpdateTime.Equal(wr.UpdateTime) {
		t.Errorf("update time %v, want %v", snap.UpdateTime, wr.UpdateTime)
	}
	if _, err := c2.Doc("keep/deleted").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("deleted document after restart: %v, want NotFound", err)
	}
	if _, err := newClientFor(t, srv2, gone).Doc("x/y").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("reset project after restart: %v, want NotFound", err)
	}
	wr2, err := c2.Doc("keep/a").Set(ctx, map[string]any{"n": int64(2)})
	if err != nil {
		t.Fatal(err)
	}
	if !wr2.UpdateTime.After(wr.UpdateTime) {
		t.Errorf("commit time after restart %v not after %v", wr2.UpdateTime, wr.UpdateTime)
	}
}

// TestPersistenceCrashImage copies the data directory of a running server (what
// a kill -9 leaves behind), adds a torn record, and starts from the copy:
// every acknowledged write is there and the torn tail is ignored.
func TestPersistenceCrashImage(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p := testProject(t)
	srv, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := newClientFor(t, srv, p)
	for i := 0; i < 10; i++ {
		if _, err := c.Doc("crash/a").Set(ctx, map[string]any{"n": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	image := copyDir(t, dir)
	logs, err := filepath.Glob(filepath.Join(image, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range logs {
		f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write([]byte{0x40, 0, 0, 0, 1, 2, 3, 4, 9, 9}) // a record cut short
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	srv2, err := Start(Options{DataDir: image})
	if err != nil {
		t.Fatalf("start from crash image: %v", err)
	}
	defer srv2.Close()
	snap, err := newClientFor(t, srv2, p).Doc("crash/a").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := snap.DataAt("n"); n != int64(9) {
		t.Errorf("n = %v, want 9 (the last acknowledged write)", n)
	}
}
