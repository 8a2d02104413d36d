package roblox_test

import (
	"fmt"
	"strings"
	"testing"
)

// sessionIDs reads the session list the module keeps for a player in the
// session cache DataStore.
func sessionIDs(ds *dataStoreBackend, userID int64) []string {
	entry, _ := ds.get("SaveSyncSession", fmt.Sprintf("u%d", userID)).(map[string]any)
	list, _ := entry["sessions"].([]any)
	var out []string
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

func TestLeaveDuringJoinReleasesTheSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lost bool // the first join request took the lease and its answer was lost
	}{
		{name: "join request failed", lost: false},
		{name: "join answer lost", lost: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newHarness(t, svc, newDataStoreBackend(), "job-quit")
			h.startGame("longPoll = false")
			userID := uid(901 + int64(i))
			svc.proxy.fail("/v1/sessions", 1, tc.lost)
			h.addPlayer(userID) // Join is now in its retry backoff
			if h.truthy(fmt.Sprintf("joined[%d] ~= nil", userID)) {
				t.Fatalf("Join finished before its retry: %v", h.peek(fmt.Sprintf("joined[%d]", userID)))
			}
			h.removePlayer(userID)
			h.runUntil("join returned", 60, func() bool { return h.truthy(fmt.Sprintf("joined[%d] ~= nil", userID)) })
			if code := h.peek(fmt.Sprintf("joined[%d].code", userID)); code != "NOT_JOINED" {
				t.Errorf("Join of a player who quit = %v, want NOT_JOINED", code)
			}
			h.runFor(40) // longer than a lease renewal period
			if h.truthy(fmt.Sprintf("sync._players[%d] ~= nil", userID)) {
				t.Errorf("the module keeps a player who quit during Join")
			}
			if p := playerView(t, svc, userID); p.Session != nil {
				t.Errorf("lease of a player who quit during Join = %+v, want released", p.Session)
			}
			// Another server can take the player at once.
			h2 := newHarness(t, svc, newDataStoreBackend(), "job-other")
			h2.startGame("longPoll = false, sessionHeldWait = 0")
			h2.mustJoin(userID)
		})
	}
}

func TestRejoinWhileLeaveRunsKeepsTheNewSession(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-rejoin")
	h.startGame("longPoll = false")
	userID := uid(911)
	h.mustJoin(userID)
	// A mutation that needs retries keeps the Leave waiting for the queue.
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 2, false)
	h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 5}}`)
	h.removePlayer(userID)
	if h.truthy(fmt.Sprintf("left[%d] ~= nil", userID)) {
		t.Fatalf("Leave finished at once; the test needs it to be running")
	}
	h.do(fmt.Sprintf("joined[%d] = nil", userID))
	h.addPlayer(userID)
	h.runUntil("rejoin and leave returned", 60, func() bool {
		return h.truthy(fmt.Sprintf("joined[%d] ~= nil and left[%d] ~= nil", userID, userID))
	})
	if code := h.peek(fmt.Sprintf("joined[%d].code", userID)); code != "" {
		t.Fatalf("rejoin failed with %v", code)
	}
	h.runFor(5)
	if h.view(userID) == nil {
		t.Fatalf("the module lost the state of the rejoined player")
	}
	h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 7}}`)
	h.settle(userID)
	if got := balance(t, svc, userID, "coins"); got != 112 {
		t.Errorf("service coins = %d, want 112", got)
	}
	if p := playerView(t, svc, userID); p.Session == nil {
		t.Errorf("the rejoined player holds no lease")
	}
	if !h.leave(userID) {
		t.Errorf("Leave of the rejoined player did not release the lease")
	}
}

func TestMutateRefusedOnceLeaveStarted(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-leaving")
	h.startGame("longPoll = false")
	userID := uid(921)
	h.mustJoin(userID)
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 1, false)
	h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 5}}`)
	h.removePlayer(userID)
	if h.truthy(fmt.Sprintf("left[%d] ~= nil", userID)) {
		t.Fatalf("Leave finished at once; the test needs it to be running")
	}
	r := h.do(fmt.Sprintf(`local id, err = sync:Mutate({UserId = %d}, {{op = "xp.add", amount = 1}}); return id, err and err.code`, userID))
	if r[0] != nil || r[1] != "NOT_JOINED" {
		t.Errorf("Mutate during Leave = %v, want nil and NOT_JOINED", r)
	}
	h.runUntil("leave returned", 60, func() bool { return h.truthy(fmt.Sprintf("left[%d] ~= nil", userID)) })
	if got := balance(t, svc, userID, "coins"); got != 105 {
		t.Errorf("service coins = %d, want 105 (the mutation made before Leave)", got)
	}
}

func TestDeadLetteredDuringDeadLetterWriteIsKept(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	h := newHarness(t, svc, ds, "job-dlq")
	h.startGame("longPoll = false")
	userID := uid(931)
	h.mustJoin(userID)
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 3, false)
	id := h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 5}}`)
	// Another mutation is dead-lettered while the dead-letter write is in
	// flight (on Roblox, UpdateAsync yields).
	h.do(fmt.Sprintf(`
		local real = sync._deadLetters
		local injected = false
		sync._deadLetters = setmetatable({
			UpdateAsync = function(_, key, fn)
				-- The transform has run; the write is on its way.
				local value = real:UpdateAsync(key, fn)
				if not injected then
					injected = true
					local out = sync._deadLetterOut[%d] or {}
					table.insert(out, {key = "late-key", mutation = {ops = {{op = "xp.add", amount = 1}}}})
					sync._deadLetterOut[%d] = out
				end
				return value
			end,
		}, {__index = real})`, userID, userID))
	h.runUntil("both mutations in the dead-letter queue", 60, func() bool {
		dlq, _ := ds.get("SaveSyncDeadLetter", fmt.Sprintf("u%d", userID)).(map[string]any)
		muts, _ := dlq["mutations"].([]any)
		keys := map[any]bool{}
		for _, m := range muts {
			keys[m.(map[string]any)["key"]] = true
		}
		return keys[id] && keys["late-key"]
	})
}

func TestRecoverKeepsSessionsWhoseEntryWasNotRead(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	userID := uid(941)
	path := fmt.Sprintf("/v1/players/%d/mutations", userID)
	h := newHarness(t, svc, ds, "job-crashed")
	h.startGame("longPoll = false, backoffBase = 10, backoffMax = 20")
	h.mustJoin(userID)
	svc.proxy.fail(path, 1000, false)
	id := h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 25}}`)
	h.runFor(15) // one failed attempt, then the cache write of the unsent mutation
	old := sessionIDs(ds, userID)
	if len(old) != 1 {
		t.Fatalf("session list after the first join = %v, want one id", old)
	}

	// The module restarts; reading the old session's entry fails once.
	h.crash()
	svc.proxy.clear()
	h2 := newHarness(t, svc, ds, "job-crashed")
	h2.startGame("longPoll = false")
	h2.do(`
		local real = sync._cache
		local failed = false
		sync._cache = setmetatable({
			GetAsync = function(_, key)
				if not failed and string.find(key, "/") then
					failed = true
					error("DataStore request failed (injected)")
				end
				return real:GetAsync(key)
			end,
		}, {__index = real})`)
	h2.mustJoin(userID)
	h2.runFor(5)
	ids := sessionIDs(ds, userID)
	found := false
	for _, s := range ids {
		if s == old[0] {
			found = true
		}
	}
	if !found || len(ids) != 2 {
		t.Fatalf("session list after a join that could not read %s = %v, want it kept beside the new id", old[0], ids)
	}
	if got := balance(t, svc, userID, "coins"); got != 100 {
		t.Fatalf("service coins = %d, want 100 (nothing recovered yet)", got)
	}
	if !h2.leave(userID) {
		t.Fatalf("Leave did not release the lease")
	}

	// The next join reads the kept entry and writes the mutation.
	h3 := newHarness(t, svc, ds, "job-next")
	h3.startGame("longPoll = false")
	h3.mustJoin(userID)
	h3.settle(userID)
	if got := balance(t, svc, userID, "coins"); got != 125 {
		t.Errorf("service coins = %d, want 125 (recovered %s)", got, id)
	}
	h3.runFor(5)
	for _, s := range sessionIDs(ds, userID) {
		if s == old[0] {
			t.Errorf("session list %v still holds %s after its entry was moved", sessionIDs(ds, userID), old[0])
		}
	}
}

func TestSessionListWriteDoesNotDelayDeadLetterWrite(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	h := newHarness(t, svc, ds, "job-spacing")
	h.startGame("longPoll = false, backoffBase = 0.1, backoffMax = 0.2")
	userID := uid(951)
	h.mustJoin(userID) // writes the session list u951 in the session cache store
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 3, false)
	id := h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 5}}`)
	start := h.now()
	h.leave(userID)
	// u951 of the dead-letter store is another key: its write need not
	// wait for the session list write of the join.
	if took := h.now() - start; took > 2 {
		t.Errorf("Leave took %.1f virtual seconds, want under 2", took)
	}
	dlq, _ := ds.get("SaveSyncDeadLetter", fmt.Sprintf("u%d", userID)).(map[string]any)
	muts, _ := dlq["mutations"].([]any)
	if len(muts) != 1 || muts[0].(map[string]any)["key"] != id {
		t.Errorf("dead-letter queue = %v, want the mutation %s", dlq, id)
	}
}

func TestLeaveRetriedUnderOneKeyAfterALostAnswer(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-leave")
	h.startGame("longPoll = false")
	userID := uid(1234)
	h.mustJoin(userID)
	// The first leave releases the lease but its answer is lost.
	svc.proxy.fail("/v1/sessions/", 1, true)
	if !h.leave(userID) {
		t.Errorf("Leave = false, want true: the retry answers the first leave's answer")
	}
	leaves := svc.proxy.exchanges("/v1/sessions/")
	if len(leaves) != 2 {
		t.Fatalf("leave requests = %+v, want the lost one and one retry", leaves)
	}
	if leaves[0].key == "" || leaves[0].key != leaves[1].key {
		t.Errorf("leave keys = %q then %q, want one Idempotency-Key for both attempts", leaves[0].key, leaves[1].key)
	}
	if !leaves[1].replayed || leaves[1].status != 200 {
		t.Errorf("retry = %+v, want 200 marked Idempotent-Replayed", leaves[1])
	}
	if p := playerView(t, svc, userID); p.Session != nil {
		t.Errorf("lease after leave = %+v, want released", p.Session)
	}
}

func TestSchemaVersionRequiredAndSentOnJoin(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-schema")
	for _, cfg := range []string{"{baseUrl = SERVICE_URL}", "{baseUrl = SERVICE_URL, schemaVersion = 0}", `{baseUrl = SERVICE_URL, schemaVersion = "3"}`} {
		r := h.do("local ok, err = pcall(SaveSync.new, " + cfg + "); return ok, tostring(err)")
		if r[0] != false || !strings.Contains(fmt.Sprint(r[1]), "config.schemaVersion is required") {
			t.Errorf("SaveSync.new(%s) = %v, want an error naming config.schemaVersion", cfg, r)
		}
	}
	h.startGame("longPoll = false")
	h.mustJoin(uid(1235))
	joins := svc.proxy.exchanges("/v1/sessions")
	if len(joins) == 0 || !strings.Contains(joins[0].body, `"schemaVersion":3`) {
		t.Errorf("join requests = %+v, want the body to carry schemaVersion 3", joins)
	}
}

func TestSessionListStaysShort(t *testing.T) {
	t.Parallel()
	t.Run("clean leaves leave nothing behind", func(t *testing.T) {
		t.Parallel()
		svc := newService(t)
		ds := newDataStoreBackend()
		userID := uid(961)
		for i := 0; i < 3; i++ {
			h := newHarness(t, svc, ds, fmt.Sprintf("job-clean-%d", i))
			h.startGame("longPoll = false")
			h.mustJoin(userID)
			h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 1}}`)
			h.settle(userID)
			h.leave(userID)
			h.runFor(5)
			if ids := sessionIDs(ds, userID); len(ids) != 0 {
				t.Errorf("session list after clean leave %d = %v, want empty", i+1, ids)
			}
			if keys := ds.keys("SaveSyncSession"); len(keys) > 1 {
				t.Errorf("session cache keys after clean leave %d = %v, want only the list", i+1, keys)
			}
		}
	})
	t.Run("entries that cannot be read are dropped after ten sessions", func(t *testing.T) {
		t.Parallel()
		svc := newService(t)
		ds := newDataStoreBackend()
		userID := uid(962)
		svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 100000, false)
		for i := 0; i < 12; i++ {
			h := newHarness(t, svc, ds, fmt.Sprintf("job-crash-%d", i))
			h.failDataStore("SaveSyncSession", "GetAsync", fmt.Sprintf("u%d/", userID), 1000, 502)
			h.startGame("longPoll = false, backoffBase = 10, backoffMax = 20")
			h.mustJoin(userID)
			h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 1}}`)
			h.runFor(6) // the mutation is at risk: the entry keeps it
			if i == 11 {
				break
			}
			h.crash()
			h.runFor(91) // the crashed server's lease expires
		}
		if ids := sessionIDs(ds, userID); len(ids) > 10 {
			t.Errorf("session list holds %d ids, want at most 10", len(ids))
		}
	})
}
