package handlers_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/store"
)

func TestBulkJobsOverHTTP(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	ctx := context.Background()
	players := []int64{3_100_000_001, 3_100_000_002, 3_100_000_003}
	for i, id := range players {
		e.serverMutate(id, fmt.Sprintf("seed-%d", id), fmt.Sprintf(`{"ops":[{"op":"currency.add","currency":"gems","amount":%d}]}`, 100*(i+1)))
	}
	// Take 250 gems back from the players holding more than 100: the one
	// with 200 fails at the floor, the one with 300 keeps 50, the one with
	// 100 is not selected.
	body := map[string]any{
		"selection": map[string]any{"kind": "save", "field": "currencies.gems", "cmp": ">", "value": 100},
		"ops":       []any{map[string]any{"op": "currency.add", "currency": "gems", "amount": -250}},
		"reason":    "duplicated gems", "ticket": "T-77",
	}
	dry := map[string]any{"dryRun": true}
	for k, v := range body {
		dry[k] = v
	}

	t.Run("support may not run bulk jobs", func(t *testing.T) {
		r := e.call("POST", "/v1/admin/bulk-jobs", e.support.IDToken, dry)
		if r.status != http.StatusForbidden {
			t.Errorf("support's dry run: %d %s, want 403", r.status, r.body)
		}
	})

	r := e.call("POST", "/v1/admin/bulk-jobs", e.admin.IDToken, dry)
	if r.status != http.StatusOK {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	preview := r.object(t)["preview"].(map[string]any)
	wantPreview := map[string]any{"matched": 2.0, "changed": 1.0, "failed": 1.0, "effect": map[string]any{"currencies.gems": -250.0}}
	gotPreview := map[string]any{"matched": preview["matched"], "changed": preview["changed"], "failed": preview["failed"], "effect": preview["effect"]}
	if diff := cmp.Diff(wantPreview, gotPreview); diff != "" {
		t.Errorf("dry run preview (-want +got):\n%s", diff)
	}
	if _, ok := r.object(t)["job"]; ok {
		t.Errorf("a dry run answered a job: %s", r.body)
	}

	bad := []struct {
		name   string
		change func(map[string]any)
		status int
		code   string
	}{
		{"a versioned op", func(b map[string]any) {
			b["ops"] = []any{map[string]any{"op": "loadout.set", "slot": "primary", "item": "sword"}}
		}, http.StatusForbidden, "PERMISSION_DENIED"},
		{"a bad expression", func(b map[string]any) {
			b["ops"] = []any{map[string]any{"op": "currency.add", "currency": "gems", "amount": "min(held"}}
		}, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"no ticket", func(b map[string]any) { delete(b, "ticket") }, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"an unknown selection field", func(b map[string]any) {
			b["selection"] = map[string]any{"kind": "all", "where": "x"}
		}, http.StatusBadRequest, "INVALID_ARGUMENT"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			b := map[string]any{}
			for k, v := range body {
				b[k] = v
			}
			tc.change(b)
			r := e.call("POST", "/v1/admin/bulk-jobs", e.admin.IDToken, b, "Idempotency-Key", "bad-"+tc.name)
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Errorf("%d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}

	r = e.call("POST", "/v1/admin/bulk-jobs", e.admin.IDToken, body, "Idempotency-Key", "gems-1")
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	job := r.object(t)["job"].(map[string]any)
	id := job["jobId"].(string)
	if job["state"] != "draft" || job["estimate"] != 2.0 {
		t.Errorf("created job %v, want a draft estimating 2 players", job)
	}
	replay := e.call("POST", "/v1/admin/bulk-jobs", e.admin.IDToken, body, "Idempotency-Key", "gems-1")
	if replay.status != http.StatusOK || replay.header.Get("Idempotent-Replayed") != "true" || replay.object(t)["job"].(map[string]any)["jobId"] != id {
		t.Errorf("replayed create: %d %v %s, want 200 replayed with job %s", replay.status, replay.header, replay.body, id)
	}

	base := "/v1/admin/bulk-jobs/" + id
	if r := e.call("POST", base+"/start", e.admin.IDToken, nil); r.status != http.StatusOK || r.object(t)["state"] != "running" {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	if r := e.call("POST", base+"/start", e.admin.IDToken, nil); r.status != http.StatusConflict || r.errorCode(t) != "FAILED_PRECONDITION" {
		t.Errorf("second start: %d %s, want 409 FAILED_PRECONDITION", r.status, r.body)
	}
	if _, err := store.NewBulkRunner(e.store, store.BulkRunnerOptions{}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	r = e.call("GET", base, e.admin.IDToken, nil)
	got := r.object(t)
	progress := map[string]any{"state": got["state"], "matched": got["matched"], "done": got["done"], "failed": got["failed"], "effect": got["effect"]}
	if diff := cmp.Diff(map[string]any{"state": "done", "matched": 2.0, "done": 1.0, "failed": 1.0, "effect": map[string]any{"currencies.gems": -250.0}}, progress); diff != "" {
		t.Errorf("job after the run (-want +got):\n%s", diff)
	}
	if list := e.call("GET", "/v1/admin/bulk-jobs", e.admin.IDToken, nil); list.status != http.StatusOK || len(list.object(t)["jobs"].([]any)) != 1 {
		t.Errorf("list: %d %s, want one job", list.status, list.body)
	}

	r = e.call("GET", base+"/results", e.admin.IDToken, nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("results: %d %v %s", r.status, r.header, r.body)
	}
	rows, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var outcomes [][]string
	for _, row := range rows {
		outcomes = append(outcomes, row[:3])
	}
	want := [][]string{{"userId", "outcome", "code"}, {"3100000002", "failed", "INSUFFICIENT_FUNDS"}, {"3100000003", "done", ""}}
	if diff := cmp.Diff(want, outcomes); diff != "" {
		t.Errorf("results CSV (-want +got):\n%s", diff)
	}

	// The support history names the job on the player's entry.
	hist := e.call("GET", "/v1/admin/players/3100000003/ledger", e.support.IDToken, nil)
	entry := hist.object(t)["entries"].([]any)[0].(map[string]any)
	if entry["kind"] != "bulk" || entry["bulkJobId"] != id || !strings.Contains(entry["reason"].(string), "T-77") {
		t.Errorf("newest ledger entry %v, want kind bulk naming job %s and ticket T-77", entry, id)
	}
	if g := e.call("GET", "/v1/admin/players/3100000002/ledger", e.support.IDToken, nil); len(g.object(t)["entries"].([]any)) != 1 {
		t.Errorf("the failed player has entries %s, want only its own", g.body)
	}

	empty := map[string]any{
		"selection": map[string]any{"kind": "save", "field": "currencies.gems", "cmp": ">", "value": 1_000_000},
		"ops":       []any{map[string]any{"op": "xp.add", "amount": 1}},
		"reason":    "nobody", "ticket": "T-78",
	}
	r = e.call("POST", "/v1/admin/bulk-jobs", e.admin.IDToken, empty, "Idempotency-Key", "empty-1")
	if r.status != http.StatusCreated {
		t.Fatalf("create the empty job: %d %s", r.status, r.body)
	}
	emptyID := r.object(t)["job"].(map[string]any)["jobId"].(string)
	if r := e.call("POST", "/v1/admin/bulk-jobs/"+emptyID+"/start", e.admin.IDToken, nil); r.status != http.StatusUnprocessableEntity || r.errorCode(t) != "SELECTION_EMPTY" {
		t.Errorf("start of an empty selection: %d %s, want 422 SELECTION_EMPTY", r.status, r.body)
	}
	if r := e.call("GET", "/v1/admin/bulk-jobs/bj-nope", e.admin.IDToken, nil); r.status != http.StatusNotFound {
		t.Errorf("unknown job: %d %s, want 404", r.status, r.body)
	}
}
