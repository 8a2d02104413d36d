package handlers_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSettingToItsValueChangesNothing checks that PUT /v1/me/settings/{key}
// with the value the setting already has answers 200 with the current
// version, marked unchanged, and writes no ledger entry; its retry answers
// the same way.
func TestSettingToItsValueChangesNothing(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	e.link(u, 4701)
	if r := e.me(u, "PUT", "/settings/volume", map[string]any{"value": 30}, "Idempotency-Key", "vol-30"); r.status != http.StatusOK {
		t.Fatalf("set volume: %d %s", r.status, r.body)
	}
	type answer struct {
		VersionBefore int64 `json:"versionBefore"`
		Version       int64 `json:"version"`
		Unchanged     bool  `json:"unchanged"`
		Replayed      string
	}
	for _, name := range []string{"again", "its retry"} {
		r := e.me(u, "PUT", "/settings/volume", map[string]any{"value": 30}, "Idempotency-Key", "vol-30-again")
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
		var got answer
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		got.Replayed = r.header.Get("Idempotent-Replayed")
		if diff := cmp.Diff(answer{VersionBefore: 1, Version: 1, Unchanged: true}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	if v, s := e.meSave(u); v != 1 || s.Settings["volume"] != float64(30) {
		t.Errorf("save: version %d volume %v, want version 1 and volume 30", v, s.Settings["volume"])
	}
	r := e.me(u, "GET", "/ledger", nil)
	var page struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Entries) != 1 {
		t.Errorf("ledger: %d entries (%v), want 1: %s", len(page.Entries), err, r.body)
	}
}
