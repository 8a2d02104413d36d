package roblox_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/savesync/savesync/events"
)

func TestHTTPStaysWithinTheRollingMinute(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	// A fast network: the service loop is not slowed down by latency.
	h := newServer(t, svc, newDataStoreBackend(), "job-flood", serverOptions{httpLatency: 0.02})
	h.startGame("longPoll = false")
	h.runUntil("subscribed", 10, func() bool { return h.truthy("sync._subscribed") })
	var users []int64
	for i := int64(0); i < 50; i++ {
		users = append(users, uid(1500+i))
		h.mustJoin(users[i])
	}
	// Every player is said to have changed every second for three minutes:
	// each invalidation costs a refetch, far more than the budget allows.
	versions := make([]int64, len(users))
	for s := 1; s <= 180; s++ {
		for i := range versions {
			versions[i] = int64(s)
		}
		msg, err := json.Marshal(events.RobloxMessage{Type: events.RobloxInvalidationType, Users: users, Versions: versions})
		if err != nil {
			t.Fatal(err)
		}
		h.publish(events.DefaultRobloxTopic, string(msg))
		h.runFor(1)
	}
	if n, from := h.maxHTTPPerMinute(); n > 400 {
		t.Errorf("%d requests in the minute from %.0f s, want at most requestsPerMinute (400)", n, from)
	}
}

func TestHTTPStallIsWaitedOut(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newServer(t, svc, newDataStoreBackend(), "job-stall", serverOptions{allowHTTPRefusals: true})
	h.startGame("longPoll = false")
	userID := uid(1601)
	h.mustJoin(userID)
	// The game's own requests use up the server's 500 a minute.
	h.do(`local http = game:GetService("HttpService")
		for i = 1, 500 do
			task.spawn(function() pcall(http.RequestAsync, http, {Url = SERVICE_URL .. "/healthz"}) end)
		end`)
	h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 7}}`)
	h.runUntil("mutation committed", 120, func() bool { return len(h.events("committed")) == 1 })
	if dead := h.events("deadLettered"); len(dead) != 0 {
		t.Errorf("dead-lettered during the HTTP stall: %v", dead)
	}
	// The module sends nothing while HttpService stalls: each request it
	// had refused met a new stall, at least 30 s after the one before.
	last := -1e9
	for _, r := range h.requests {
		if r.refused == httpLimitMessage && r.url != svc.url+"/healthz" {
			if r.at-last < httpStallSeconds {
				t.Errorf("the module sent %s %s at %.1f s, %.1f s into a stall", r.method, r.url, r.at, r.at-last)
			}
			last = r.at
		}
	}
	if got := balance(t, svc, userID, "coins"); got != 107 {
		t.Errorf("service coins = %d, want 107", got)
	}
}

func TestFailingDeadLetterWriteBacksOff(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	h := newHarness(t, svc, ds, "job-dlq-backoff")
	h.startGame("longPoll = false, backoffBase = 0.1, backoffMax = 0.2")
	userID := uid(1701)
	h.mustJoin(userID)
	key := fmt.Sprintf("u%d", userID)
	h.failDataStore("SaveSyncDeadLetter", "UpdateAsync", key, 1000, 502)
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 3, false)
	id := h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 9}}`)
	h.runUntil("dead-lettered", 30, func() bool { return len(h.events("deadLettered")) == 1 })
	h.runFor(300)
	if n := len(h.dataStoreCalls("SaveSyncDeadLetter", "UpdateAsync", key)); n > 15 {
		t.Errorf("the failing dead-letter write was tried %d times in 5 minutes, want at most 15 (backoff up to 60 s)", n)
	}
	// The DataStore comes back: the entry lands within a backoff.
	h.dsFaults = nil
	h.runUntil("dead-letter queue written", 70, func() bool {
		dlq, _ := ds.get("SaveSyncDeadLetter", key).(map[string]any)
		muts, _ := dlq["mutations"].([]any)
		return len(muts) == 1 && muts[0].(map[string]any)["key"] == id
	})
}
