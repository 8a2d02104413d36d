package save

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

const samplePath = "../config/sample-game.json"

// sampleConfig loads the shipped sample game config.
func sampleConfig(t testing.TB) *Config {
	t.Helper()
	c, err := LoadConfig(samplePath)
	if err != nil {
		t.Fatalf("LoadConfig(%s): %v", samplePath, err)
	}
	return c
}

// sampleTree returns the sample config as a generic JSON tree to edit.
func sampleTree(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := json.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	return tree
}

// setPath sets a dotted path in a JSON tree, creating objects on the way.
func setPath(t testing.TB, tree map[string]any, path string, v any) {
	t.Helper()
	segs := strings.Split(path, ".")
	m := tree
	for _, s := range segs[:len(segs)-1] {
		next, ok := m[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[s] = next
		}
		m = next
	}
	m[segs[len(segs)-1]] = v
}

// wantError checks err's code and, when field is not empty, that the error
// names it both in details and at the start of its message.
func wantError(t testing.TB, err error, code Code, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s (field %q)", code, field)
	}
	if got := ErrorCode(err); got != code {
		t.Fatalf("code = %s, want %s; error: %v", got, code, err)
	}
	if field == "" {
		return
	}
	e, _ := AsError(err)
	if got, _ := e.Details["field"].(string); got != field {
		t.Errorf("details.field = %q, want %q; error: %v", got, field, err)
	}
	if !strings.HasPrefix(e.Message, field+": ") {
		t.Errorf("message %q does not start with %q", e.Message, field+": ")
	}
}

func i64(n int64) *int64 { return &n }

// mustApply applies m and fails the test on error.
func mustApply(t testing.TB, c *Config, st State, version int64, m Mutation, actor Actor) Applied {
	t.Helper()
	a, err := c.Apply(st, version, m, actor)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", m, err)
	}
	return a
}

var (
	server    = Actor{Kind: ActorServer, ID: "job-1"}
	companion = Actor{Kind: ActorCompanion, ID: "uid-1"}
	admin     = Actor{Kind: ActorAdmin, ID: "admin-1"}
	system    = Actor{Kind: ActorSystem, ID: "restore"}
)

// Elements returns the elements of a collection in s, sorted: what a
// player sees of it.
func (s State) Elements(collection string) []string {
	return slices.Sorted(maps.Keys(s.Collections[collection]))
}

// RedoChanges is the inverse of UndoChanges, for tests that walk a save
// forward again: it sets every path of changes
// to its new value in raw, walking a save forward by one ledger entry.
// Errors: INVALID_ARGUMENT naming a path that is not a save leaf.
func RedoChanges(raw map[string]any, changes []Change) error {
	for _, ch := range changes {
		if err := setLeaf(raw, ch.Path, ch.New); err != nil {
			return err
		}
	}
	return nil
}
