package roblox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// balance reads a player's currency balance from the service's store.
func balance(t *testing.T, svc *service, userID int64, currency string) int64 {
	t.Helper()
	p, err := svc.store.GetPlayer(context.Background(), userID)
	if err != nil {
		t.Fatalf("GetPlayer(%d): %v", userID, err)
	}
	cur, _ := p.Save["currencies"].(map[string]any)
	switch v := cur[currency].(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	}
	return 0
}

// playerView reads a player from the service's store.
func playerView(t *testing.T, svc *service, userID int64) store.PlayerView {
	t.Helper()
	p, err := svc.store.GetPlayer(context.Background(), userID)
	if err != nil {
		t.Fatalf("GetPlayer(%d): %v", userID, err)
	}
	return p
}

func TestJoinMutateLeave(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-a")
	h.startGame("")
	h.mustJoin(uid(101))

	if got := num(h.view(uid(101)), "currencies", "coins"); got != 100 {
		t.Fatalf("coins after join = %v, want the starting 100", got)
	}
	h.mutate(uid(101), `{{op = "currency.add", currency = "coins", amount = 25}, {op = "xp.add", amount = 10}}`)
	h.mutate(uid(101), `{{op = "item.grant", item = "potion", count = 2}, {op = "item.grant", item = "sword", count = 1}}`)
	h.mutate(uid(101), `{{op = "loadout.set", slot = "primary", item = "sword"}}`)
	// Optimistic: the view changed before anything was written.
	optimistic := h.view(uid(101))
	if got := num(optimistic, "currencies", "coins"); got != 125 {
		t.Errorf("optimistic coins = %v, want 125", got)
	}
	h.settle(uid(101))

	p := playerView(t, svc, uid(101))
	if p.Version != 3 {
		t.Errorf("service version = %d, want 3 (one per mutation)", p.Version)
	}
	if got := balance(t, svc, uid(101), "coins"); got != 125 {
		t.Errorf("service coins = %d, want 125", got)
	}
	want := map[string]any{
		"currencies":  map[string]any{"coins": 125.0, "gems": 0.0},
		"stats":       map[string]any{"xp": 10.0},
		"items":       map[string]any{"potion": 2.0, "sword": 1.0},
		"loadout":     map[string]any{"primary": "sword"},
		"settings":    map[string]any{"music": true, "volume": 80.0},
		"collections": map[string]any{"badges": []any{}},
	}
	got := h.view(uid(101))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("view after commit (-want +got):\n%s", diff)
	}
	if v := h.peek(fmt.Sprintf("sync:Version(__harness.player(%d))", uid(101))); v != 3.0 {
		t.Errorf("module version = %v, want 3", v)
	}
	if r := h.events("refused"); len(r) > 0 {
		t.Errorf("refused: %v", r)
	}
	if n := len(h.events("committed")); n != 3 {
		t.Errorf("MutationCommitted fired %d times, want 3", n)
	}

	if !h.leave(uid(101)) {
		t.Errorf("Leave reported the lease not released")
	}
	if p := playerView(t, svc, uid(101)); p.Session != nil {
		t.Errorf("lease after leave = %+v, want released", p.Session)
	}
	if h.peek(fmt.Sprintf("sync:Get({UserId = %d})", uid(101))) != nil {
		t.Errorf("the module still holds the player after Leave")
	}
	// The key never reached the script: the Secret prints as "Secret".
	if s := h.peek(`tostring(game:GetService("HttpService"):GetSecret("savesync_server_key"))`); s != "Secret" {
		t.Errorf("tostring(secret) = %v", s)
	}
}

// companionWrite commits a mutation as the companion app would.
func companionWrite(t *testing.T, svc *service, userID int64, key string, ops ...save.Op) int64 {
	t.Helper()
	res, err := svc.store.ApplyMutation(context.Background(), store.MutationRequest{
		UserID:         userID,
		Actor:          save.Actor{Kind: save.ActorCompanion, ID: "uid-companion"},
		IdempotencyKey: key,
		Mutation:       save.Mutation{Ops: ops},
	})
	if err != nil {
		t.Fatalf("companion mutation: %v", err)
	}
	return res.Outcome.Version
}

func TestRetryAfter503ReusesKeyAndAppliesOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		failures int
		lost     bool // the service committed, then the answer was lost
	}{
		{name: "answer lost after commit", failures: 1, lost: true},
		{name: "service unavailable twice", failures: 2, lost: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newHarness(t, svc, newDataStoreBackend(), "job-retry")
			h.startGame("")
			h.mustJoin(uid(201))
			svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", uid(201)), tc.failures, tc.lost)
			id := h.mutate(uid(201), `{{op = "currency.add", currency = "coins", amount = 25}}`)
			h.settle(uid(201))

			ex := svc.proxy.exchanges(fmt.Sprintf("/v1/players/%d/mutations", uid(201)))
			if len(ex) != tc.failures+1 {
				t.Fatalf("mutation requests = %d, want %d", len(ex), tc.failures+1)
			}
			for i, e := range ex {
				if e.key != id {
					t.Errorf("attempt %d sent Idempotency-Key %q, want the mutation id %q", i+1, e.key, id)
				}
				if e.body != ex[0].body {
					t.Errorf("attempt %d body %s differs from the first %s", i+1, e.body, ex[0].body)
				}
			}
			if last := ex[len(ex)-1]; last.replayed != tc.lost {
				t.Errorf("last attempt replayed = %v, want %v", last.replayed, tc.lost)
			}
			if got := balance(t, svc, uid(201), "coins"); got != 125 {
				t.Errorf("service coins = %d, want 125 (applied once)", got)
			}
			if p := playerView(t, svc, uid(201)); p.Version != 1 {
				t.Errorf("service version = %d, want 1", p.Version)
			}
			if got := num(h.view(uid(201)), "currencies", "coins"); got != 125 {
				t.Errorf("view coins = %v, want 125", got)
			}
			if n := len(h.events("committed")); n != 1 {
				t.Errorf("MutationCommitted fired %d times, want 1", n)
			}
			if r := h.events("refused"); len(r) != 0 {
				t.Errorf("refused: %v", r)
			}
		})
	}
}

func TestDeadLetterAfterThreeFailuresReplayedOnNextJoin(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	h := newHarness(t, svc, ds, "job-first")
	h.startGame("")
	h.mustJoin(uid(301))
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", uid(301)), 3, false)
	id := h.mutate(uid(301), `{{op = "currency.add", currency = "coins", amount = 40}}`)
	h.runUntil("dead-lettered", 60, func() bool { return len(h.events("deadLettered")) == 1 })

	if n := len(svc.proxy.exchanges(fmt.Sprintf("/v1/players/%d/mutations", uid(301)))); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
	if got := balance(t, svc, uid(301), "coins"); got != 100 {
		t.Errorf("service coins = %d, want 100 (nothing applied)", got)
	}
	// Not refused: the change stays in the view until the next join writes it.
	if got := num(h.view(uid(301)), "currencies", "coins"); got != 140 {
		t.Errorf("view coins = %v, want 140", got)
	}
	h.leave(uid(301))
	dlq, _ := ds.get("SaveSyncDeadLetter", fmt.Sprintf("u%d", uid(301))).(map[string]any)
	muts, _ := dlq["mutations"].([]any)
	if len(muts) != 1 || muts[0].(map[string]any)["key"] != id {
		t.Fatalf("dead-letter queue = %v, want the mutation %s", dlq, id)
	}

	// The player joins another server: the queue is replayed, once.
	h2 := newHarness(t, svc, ds, "job-second")
	h2.startGame("")
	h2.mustJoin(uid(301))
	if got := balance(t, svc, uid(301), "coins"); got != 140 {
		t.Errorf("service coins after the next join = %d, want 140", got)
	}
	if got := num(h2.view(uid(301)), "currencies", "coins"); got != 140 {
		t.Errorf("view coins after the next join = %v, want 140", got)
	}
	ex := svc.proxy.exchanges(fmt.Sprintf("/v1/players/%d/mutations", uid(301)))
	if last := ex[len(ex)-1]; last.key != id || last.status != 200 {
		t.Errorf("replay = %+v, want key %s answered 200", last, id)
	}
	h2.runUntil("dead-letter queue cleared", 60, func() bool {
		dlq, _ := ds.get("SaveSyncDeadLetter", fmt.Sprintf("u%d", uid(301))).(map[string]any)
		muts, _ := dlq["mutations"].([]any)
		return len(muts) == 0
	})
	h2.mutate(uid(301), `{{op = "currency.add", currency = "coins", amount = 1}}`)
	h2.settle(uid(301))
	if got := balance(t, svc, uid(301), "coins"); got != 141 {
		t.Errorf("service coins = %d, want 141", got)
	}
}

func TestCompanionWriteTriggersRefetch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		config  string
		publish bool
	}{
		{name: "MessagingService", config: "longPoll = false", publish: true},
		{name: "long-poll", config: "safetyPollGap = 2", publish: false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newHarness(t, svc, newDataStoreBackend(), "job-refetch")
			h.startGame(tc.config)
			h.runUntil("subscribed", 10, func() bool { return h.truthy("sync._subscribed") })
			userID := uid(401 + int64(i))
			h.mustJoin(userID)
			version := companionWrite(t, svc, userID, "companion-1",
				save.Op{Kind: save.OpSettingsSet, Key: "volume", Value: int64(30)},
				save.Op{Kind: save.OpCollectionAdd, Collection: "badges", Element: "web-visitor"})
			if tc.publish {
				msg, err := json.Marshal(events.RobloxMessage{Type: events.RobloxInvalidationType, Users: []int64{userID}, Versions: []int64{version}})
				if err != nil {
					t.Fatal(err)
				}
				h.publish(events.DefaultRobloxTopic, string(msg))
			}
			h.runUntil("refetched", 30, func() bool {
				return num(h.view(userID), "settings", "volume") == 30
			})
			got := h.view(userID)
			if diff := cmp.Diff([]any{"web-visitor"}, got["collections"].(map[string]any)["badges"]); diff != "" {
				t.Errorf("badges (-want +got):\n%s", diff)
			}
			if v := h.peek(fmt.Sprintf("sync:Version(__harness.player(%d))", userID)); v != float64(version) {
				t.Errorf("module version = %v, want %d", v, version)
			}
			var reasons []any
			for _, e := range h.events("changed") {
				reasons = append(reasons, e["reason"])
			}
			if diff := cmp.Diff([]any{"refetch"}, reasons); diff != "" {
				t.Errorf("Changed reasons (-want +got):\n%s", diff)
			}
			// A later server write starts from the refetched version.
			h.mutate(userID, `{{op = "loadout.set", slot = "offhand", item = ""}}`)
			h.settle(userID)
			if r := h.events("refused"); len(r) != 0 {
				t.Errorf("refused after refetch: %v", r)
			}
		})
	}
}

func TestRefusedMutationRollsBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		prepare  func(t *testing.T, svc *service, h *harness, userID int64)
		ops      string
		wantCode string
		check    func(t *testing.T, view map[string]any)
	}{
		{
			name:     "insufficient funds",
			ops:      `{{op = "currency.add", currency = "coins", amount = -1000}}`,
			wantCode: "INSUFFICIENT_FUNDS",
			check: func(t *testing.T, view map[string]any) {
				if got := num(view, "currencies", "coins"); got != 100 {
					t.Errorf("coins after rollback = %v, want 100", got)
				}
			},
		},
		{
			name: "stale version",
			prepare: func(t *testing.T, svc *service, h *harness, userID int64) {
				h.mutate(userID, `{{op = "item.grant", item = "sword", count = 1}}`)
				h.settle(userID)
				// The companion writes; this server hears nothing of it.
				companionWrite(t, svc, userID, "companion-stale", save.Op{Kind: save.OpSettingsSet, Key: "volume", Value: int64(5)})
			},
			ops:      `{{op = "loadout.set", slot = "primary", item = "sword"}}`,
			wantCode: "VERSION_CONFLICT",
			check: func(t *testing.T, view map[string]any) {
				if l, ok := view["loadout"].(map[string]any); ok && l["primary"] != nil {
					t.Errorf("loadout after rollback = %v, want no primary", l)
				}
				// The conflict carried the current save: no refetch needed.
				if got := num(view, "settings", "volume"); got != 5 {
					t.Errorf("volume = %v, want the companion's 5", got)
				}
			},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newHarness(t, svc, newDataStoreBackend(), "job-refuse")
			h.startGame("longPoll = false")
			userID := uid(501 + int64(i))
			h.mustJoin(userID)
			if tc.prepare != nil {
				tc.prepare(t, svc, h, userID)
			}
			before := playerView(t, svc, userID).Version
			id := h.mutate(userID, tc.ops)
			h.settle(userID)
			refused := h.events("refused")
			if len(refused) != 1 || refused[0]["id"] != id || refused[0]["code"] != tc.wantCode {
				t.Fatalf("MutationRefused = %v, want one for %s with %s", refused, id, tc.wantCode)
			}
			last := h.events("changed")
			if len(last) == 0 || last[len(last)-1]["reason"] != "rollback" {
				t.Errorf("last Changed = %v, want a rollback", last)
			}
			tc.check(t, h.view(userID))
			if after := playerView(t, svc, userID).Version; after != before {
				t.Errorf("service version %d -> %d, want unchanged", before, after)
			}
		})
	}
}

func TestBindToCloseFlushes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		batchFailures int
		wantCoins     int64
		wantDead      int
	}{
		{name: "service up", batchFailures: 1, wantCoins: 110},
		{name: "service down", batchFailures: 1000, wantCoins: 100, wantDead: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			ds := newDataStoreBackend()
			h := newHarness(t, svc, ds, "job-close")
			h.startGame("longPoll = false")
			users := []int64{uid(601), uid(602), uid(603)}
			for _, u := range users {
				h.mustJoin(u)
			}
			svc.proxy.fail("/v1/batch/mutations", tc.batchFailures, false)
			for _, u := range users {
				h.do(fmt.Sprintf(`sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 10}})`, u))
			}
			took, finished := h.close()
			if !finished {
				t.Fatalf("BindToClose did not finish within %d s", bindToCloseSeconds)
			}
			if took > 25 {
				t.Errorf("BindToClose took %.1f s, want at most the 25 s budget", took)
			}
			for _, u := range users {
				if got := balance(t, svc, u, "coins"); got != tc.wantCoins {
					t.Errorf("coins of %d = %d, want %d", u, got, tc.wantCoins)
				}
				if p := playerView(t, svc, u); p.Session != nil {
					t.Errorf("lease of %d still held: %+v", u, p.Session)
				}
			}
			batches := svc.proxy.exchanges("/v1/batch/mutations")
			var first struct {
				Mutations []struct {
					UserID int64 `json:"userId"`
				} `json:"mutations"`
			}
			if err := json.Unmarshal([]byte(batches[0].body), &first); err != nil {
				t.Fatal(err)
			}
			if len(first.Mutations) != len(users) {
				t.Errorf("first batch carried %d mutations, want all %d players' in one request", len(first.Mutations), len(users))
			}
			if n := len(h.events("deadLettered")); n != tc.wantDead {
				t.Errorf("dead-lettered %d, want %d", n, tc.wantDead)
			}
			dead := 0
			for _, u := range users {
				dlq, _ := ds.get("SaveSyncDeadLetter", fmt.Sprintf("u%d", u)).(map[string]any)
				muts, _ := dlq["mutations"].([]any)
				dead += len(muts)
			}
			if dead != tc.wantDead {
				t.Errorf("dead-letter DataStore holds %d mutations, want %d", dead, tc.wantDead)
			}
		})
	}
}

func TestJoinErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		schema   string
		prepare  func(t *testing.T, svc *service, userID int64)
		wantCode string
		wantKey  string
	}{
		{
			name:     "schema too new",
			schema:   "2",
			wantCode: "SCHEMA_TOO_NEW",
		},
		{
			name:   "session held",
			schema: "3",
			prepare: func(t *testing.T, svc *service, userID int64) {
				if _, err := svc.store.JoinSession(context.Background(), store.JoinRequest{UserID: userID, JobID: "job-elsewhere"}); err != nil {
					t.Fatal(err)
				}
			},
			wantCode: "SESSION_HELD",
			wantKey:  "jobId",
		},
		{
			name:   "migration failed",
			schema: "3",
			prepare: func(t *testing.T, svc *service, userID int64) {
				_, err := svc.clients.Firestore.Doc(fmt.Sprintf("players/%d", userID)).Set(context.Background(), map[string]any{
					"version":       int64(4),
					"schemaVersion": int64(2),
					"save":          map[string]any{"currencies": map[string]any{"coins": "lots"}},
				})
				if err != nil {
					t.Fatal(err)
				}
			},
			wantCode: "SAVE_MIGRATION_FAILED",
			wantKey:  "step",
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newHarness(t, svc, newDataStoreBackend(), "job-join")
			h.startGameSchema(tc.schema, "sessionHeldWait = 0, stealAfterWait = false, longPoll = false")
			userID := uid(701 + int64(i))
			if tc.prepare != nil {
				tc.prepare(t, svc, userID)
			}
			if code := h.join(userID); code != tc.wantCode {
				t.Fatalf("Join error = %q, want %s", code, tc.wantCode)
			}
			if tc.wantKey != "" {
				details, _ := h.peek(fmt.Sprintf("joined[%d].details", userID)).(map[string]any)
				if details[tc.wantKey] == nil {
					t.Errorf("error details %v lack %q", details, tc.wantKey)
				}
			}
			if h.peek(fmt.Sprintf("sync:Get(__harness.player(%d))", userID)) != nil {
				t.Errorf("the module holds a player whose join failed")
			}
			if r := h.do(fmt.Sprintf(`local id, err = sync:Mutate(__harness.player(%d), {{op = "xp.add", amount = 1}}); return err.code`, userID)); r[0] != "NOT_JOINED" {
				t.Errorf("Mutate before a successful join = %v, want NOT_JOINED", r)
			}
		})
	}
}

func TestBatchesAcrossPlayers(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-batch")
	h.startGame("longPoll = false")
	const players = 40
	for u := uid(1001); u < uid(1001+players); u++ {
		h.mustJoin(u)
	}
	// Every player earns twice within one flush interval.
	h.do(`for _, p in ipairs(game:GetService("Players"):GetPlayers()) do
		sync:Mutate(p, {{op = "currency.add", currency = "coins", amount = 3}})
		sync:Mutate(p, {{op = "stat.add", stat = "xp", amount = 7}})
	end`)
	for u := uid(1001); u < uid(1001+players); u++ {
		h.settle(u)
	}
	if n := len(svc.proxy.exchanges("/v1/batch/mutations")); n != 1 {
		t.Errorf("batch requests = %d, want 1 for %d mutations", n, 2*players)
	}
	if n := len(svc.proxy.exchanges("/v1/players/")); n != 0 {
		t.Errorf("single-mutation requests = %d, want 0", n)
	}
	for u := uid(1001); u < uid(1001+players); u++ {
		if got := balance(t, svc, u, "coins"); got != 103 {
			t.Fatalf("coins of %d = %d, want 103", u, got)
		}
	}
}

func TestSessionCacheRecoversUnsentMutationsAfterRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lost bool // the first attempt committed and its answer was lost
	}{
		{name: "never reached the service", lost: false},
		{name: "committed, answer lost", lost: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			ds := newDataStoreBackend()
			userID := uid(801 + int64(i)) // 10 digits: the entry key must still fit in 50 characters
			path := fmt.Sprintf("/v1/players/%d/mutations", userID)
			h := newHarness(t, svc, ds, "job-restart")
			h.startGame("longPoll = false, backoffBase = 10, backoffMax = 20")
			h.mustJoin(userID)
			if tc.lost {
				svc.proxy.fail(path, 1, true)
			}
			svc.proxy.fail(path, 1000, false)
			id := h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 25}}`)
			h.runFor(15) // one failed attempt, then the cache write of the unsent mutation
			cached := false
			for _, k := range ds.keys("SaveSyncSession") {
				entry, _ := ds.get("SaveSyncSession", k).(map[string]any)
				pending, _ := entry["pending"].([]any)
				if len(pending) == 1 && pending[0].(map[string]any)["key"] == id {
					cached = true
				}
			}
			if !cached {
				t.Fatalf("no session cache entry holds the unsent mutation: %v", ds.keys("SaveSyncSession"))
			}

			// The module restarts on the same server; the service is back.
			h.crash()
			svc.proxy.clear()
			h2 := newHarness(t, svc, ds, "job-restart")
			h2.startGame("longPoll = false")
			h2.mustJoin(userID)
			if got := balance(t, svc, userID, "coins"); got != 125 {
				t.Errorf("service coins = %d, want 125 (applied once)", got)
			}
			if got := num(h2.view(userID), "currencies", "coins"); got != 125 {
				t.Errorf("view coins = %v, want 125", got)
			}
			ex := svc.proxy.exchanges(path)
			if last := ex[len(ex)-1]; last.key != id || last.replayed != tc.lost {
				t.Errorf("recovery request = %+v, want key %s replayed=%v", last, id, tc.lost)
			}
			h2.runUntil("old cache entry removed", 60, func() bool { return len(ds.keys("SaveSyncSession")) == 2 })
		})
	}
}

func TestLeaseRenewedAndLossReported(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-renew")
	h.startGame("longPoll = false")
	h.mustJoin(uid(901))
	h.mustJoin(uid(902))
	h.runFor(35) // the 90 s leases are renewed after 30 s, both in one request
	renews := svc.proxy.exchanges("/v1/batch/sessions/renew")
	ok := 0
	for _, e := range renews {
		if e.status == 200 {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("renewals answered 200 = %d of %v, want 1", ok, renews)
	}
	if n := len(h.events("sessionLost")); n != 0 {
		t.Fatalf("SessionLost fired %d times while the lease was held", n)
	}
	// A teleport elsewhere steals the player; the next renewal learns it.
	if _, err := svc.store.JoinSession(context.Background(), store.JoinRequest{UserID: uid(901), JobID: "job-thief", Steal: true}); err != nil {
		t.Fatal(err)
	}
	h.runUntil("session loss reported", 60, func() bool { return len(h.events("sessionLost")) == 1 })
	if code := h.events("sessionLost")[0]["code"]; code != "SESSION_HELD" {
		t.Errorf("SessionLost code = %v, want SESSION_HELD", code)
	}
}
