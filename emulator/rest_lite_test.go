package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// webWorkspace returns the repository's web/ directory, whose node_modules
// holds the Firebase JS SDK (installed by scripts/test.sh). The tests run in
// emulator/, one level below the repository root.
func webWorkspace(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "web"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "firebase", "package.json")); err != nil {
		t.Fatalf("the Firebase JS SDK is not installed in %s/node_modules (%v): run `npm ci --prefix web` at the repository root", dir, err)
	}
	return dir
}

// TestRESTFirestoreLite runs the Firebase JS SDK's firebase/firestore/lite,
// which speaks only REST, against the emulator: writes, reads, queries,
// a transaction, a batch and aggregations, then checks the data through
// the Go client over gRPC.
func TestRESTFirestoreLite(t *testing.T) {
	web := webWorkspace(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run firebase/firestore/lite: %v", err)
	}
	c, p := newClient(t)
	script, err := filepath.Abs(filepath.Join("testdata", "lite.cjs"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, script)
	cmd.Env = append(os.Environ(), "WEB_DIR="+web, "FIRESTORE_HOST="+testSrv.Addr(), "PROJECT="+p)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("script output %q: %v", stdout.String(), err)
	}
	want := map[string]any{
		"get":           map[string]any{"exists": true, "name": "ann", "score": float64(10), "tags": []any{"a", "b"}, "x": 1.5, "atMillis": float64(1700000000123)},
		"missing":       false,
		"query":         []any{"p2", "p1"},
		"limited":       []any{"p2"},
		"transaction":   float64(11),
		"count":         float64(3),
		"sum":           float64(37),
		"average":       37.0 / 3,
		"subcollection": []any{"i1"},
		"group":         []any{"players/p4/items/i1"},
		"updateMissing": "not-found",
		"afterDelete":   []any{"p1", "p2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("firebase/firestore/lite results (-want +got):\n%s", diff)
	}

	snap, err := c.Doc("players/p2").Get(context.Background())
	if err != nil {
		t.Fatalf("gRPC Get of the document written through REST: %v", err)
	}
	if diff := cmp.Diff(map[string]any{"name": "bob", "score": int64(25), "tags": []any{"z"}}, snap.Data()); diff != "" {
		t.Errorf("gRPC view of players/p2 (-want +got):\n%s", diff)
	}
}
