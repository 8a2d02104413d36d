package roblox_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/events"
)

func TestSubscriptionIsRetried(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-subscribe")
	h.subscribeFailures = 2
	h.startGame("")
	h.runUntil("subscribed after two refusals", 120, func() bool { return h.truthy("sync._subscribed") })
}

func TestMutateTakesOneOp(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-one-op")
	h.startGame("longPoll = false")
	userID := uid(2301)
	h.mustJoin(userID)
	h.mutate(userID, `{op = "currency.add", currency = "coins", amount = 3}`)
	h.settle(userID)
	if got := balance(t, svc, userID, "coins"); got != 103 {
		t.Errorf("service coins = %d, want 103", got)
	}
}

func TestSignalOnceAndWait(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-signal")
	h.startGame("longPoll = false")
	userID := uid(2302)
	h.mustJoin(userID)
	h.do(`onceCount = 0
		sync.Changed:Once(function() onceCount = onceCount + 1 end)
		task.spawn(function()
			local player, save, info = sync.Changed:Wait()
			waited = {user = player.UserId, reason = info.reason, coins = save.currencies.coins}
		end)`)
	h.mutate(userID, `{op = "currency.add", currency = "coins", amount = 1}`)
	h.mutate(userID, `{op = "currency.add", currency = "coins", amount = 1}`)
	h.settle(userID)
	if n := h.peek("onceCount"); n != 1.0 {
		t.Errorf("a Once handler ran %v times, want 1", n)
	}
	want := map[string]any{"user": float64(userID), "reason": "mutate", "coins": 101.0}
	if diff := cmp.Diff(want, h.peek("waited")); diff != "" {
		t.Errorf("Changed:Wait() (-want +got):\n%s", diff)
	}
}

func TestReturningPlayersJoinWaitsForOneDataStoreRound(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	userID := uid(2303)
	first := newHarness(t, svc, ds, "job-first-visit")
	first.startGame("longPoll = false")
	first.mustJoin(userID)
	first.mutate(userID, `{op = "currency.add", currency = "coins", amount = 1}`)
	first.settle(userID)
	first.leave(userID)
	first.runFor(5)

	h := newHarness(t, svc, ds, "job-return")
	h.startGame("longPoll = false")
	calls := len(h.dsLog)
	start := h.now()
	h.mustJoin(userID)
	took := h.now() - start
	var made []string
	for _, c := range h.dsLog[calls:] {
		made = append(made, c.method+" "+c.store)
	}
	if len(made) > 2 {
		t.Errorf("DataStore calls during a returning player's join = %v, want the session list and the dead-letter queue", made)
	}
	// Virtual seconds: the join request, then one DataStore round (the two
	// reads run at once), no key spacing.
	if limit := defaultHTTPLatency + defaultDataStoreLatency + 0.1; took > limit {
		t.Errorf("the join took %.2f virtual seconds, want at most %.2f", took, limit)
	}
}

func TestDataStoreKeysCarryTheUserAndAreErased(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	userID := uid(2304)
	h := newHarness(t, svc, ds, "job-gdpr")
	h.startGame("backoffBase = 10, backoffMax = 20")
	h.runUntil("subscribed", 10, func() bool { return h.truthy("sync._subscribed") })
	h.mustJoin(userID)
	// A dead-lettered mutation and one left in the session cache.
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 1000, false)
	h.mutate(userID, `{op = "currency.add", currency = "coins", amount = 1}`)
	h.runUntil("dead-lettered", 120, func() bool { return len(h.events("deadLettered")) == 1 })
	h.mutate(userID, `{op = "currency.add", currency = "coins", amount = 1}`)
	h.runFor(15)
	h.leave(userID)
	h.runFor(5)
	prefix := fmt.Sprintf("u%d", userID)
	keys := 0
	for _, store := range []string{"SaveSyncSession", "SaveSyncDeadLetter"} {
		for _, k := range ds.keys(store) {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			keys++
			if diff := cmp.Diff([]int64{userID}, ds.keyUsers(store, k)); diff != "" {
				t.Errorf("user ids of %s/%s (-want +got):\n%s", store, k, diff)
			}
		}
	}
	if keys < 3 {
		t.Fatalf("the module kept %d keys of the player, want the list, an entry and the dead-letter queue", keys)
	}

	// The service erased the player; its forwarder tells the servers.
	h.publish(events.DefaultRobloxTopic, events.EraseMessage(userID))
	h.runFor(30)
	for _, store := range []string{"SaveSyncSession", "SaveSyncDeadLetter"} {
		for _, k := range ds.keys(store) {
			if strings.HasPrefix(k, prefix) {
				t.Errorf("%s/%s is left after the erasure", store, k)
			}
		}
	}
}
