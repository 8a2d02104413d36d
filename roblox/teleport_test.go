package roblox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/savesync/savesync/store"
)

func TestLeaveRetriesTheReleaseUntilItLands(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-release")
	h.startGame("longPoll = false")
	userID := uid(1401)
	h.mustJoin(userID)
	svc.proxy.fail("/v1/sessions/", 4, false)
	if !h.leave(userID) {
		t.Errorf("Leave = false after the service came back, want the release to land")
	}
	leaves := svc.proxy.exchanges("/v1/sessions/")
	if len(leaves) != 5 {
		t.Errorf("leave requests = %d, want 4 failed and 1 that landed", len(leaves))
	}
	for i, l := range leaves {
		if l.key != leaves[0].key {
			t.Errorf("leave %d sent Idempotency-Key %q, want the first one's %q", i+1, l.key, leaves[0].key)
		}
	}
	if p := playerView(t, svc, userID); p.Session != nil {
		t.Errorf("lease after leave = %+v, want released", p.Session)
	}
}

func TestTeleportDestinationWaitsForTheSourcesLeave(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	src := newHarness(t, svc, ds, "job-source")
	dst := newHarness(t, svc, ds, "job-destination")
	src.startGame("longPoll = false")
	dst.startGame("longPoll = false")
	userID := uid(1402)
	src.mustJoin(userID)
	// The source's last mutation and its release both need retries: its
	// Leave takes longer than a destination waiting 10 s.
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 2, false)
	svc.proxy.fail("/v1/sessions/", 4, false)
	src.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 30}}`)
	src.start(fmt.Sprintf("__harness.removePlayer(%d)", userID))
	dst.start(fmt.Sprintf("__harness.addPlayer(%d)", userID))
	dst.runUntil("teleport join", 60, func() bool { return dst.truthy(fmt.Sprintf("joined[%d] ~= nil", userID)) })
	if code := dst.peek(fmt.Sprintf("joined[%d].code", userID)); code != "" {
		t.Fatalf("destination Join = %v, want the save once the source released it", code)
	}
	if left := src.peek(fmt.Sprintf("left[%d]", userID)); left != true {
		t.Errorf("source Leave = %v, want true (released, not taken over)", left)
	}
	if got := num(dst.view(userID), "currencies", "coins"); got != 130 {
		t.Errorf("destination coins = %v, want 130 (the source's last mutation)", got)
	}
	if p := playerView(t, svc, userID); p.Session == nil || p.Session.JobID != "job-destination" {
		t.Errorf("lease = %+v, want held by the destination", p.Session)
	}
}

func TestStuckHolderIsTakenOverAfterTheWait(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	src := newHarness(t, svc, ds, "job-stuck")
	dst := newHarness(t, svc, ds, "job-next")
	src.startGame("longPoll = false")
	dst.startGame("longPoll = false")
	userID := uid(1403)
	src.mustJoin(userID)
	src.crash()
	start := dst.now()
	dst.mustJoin(userID)
	if waited := dst.now() - start; waited < 30 {
		t.Errorf("the destination took the session over after %.1f virtual seconds, want it to wait the source's whole leave (30 s)", waited)
	}
	if p := playerView(t, svc, userID); p.Session == nil || p.Session.JobID != "job-next" {
		t.Errorf("lease = %+v, want taken over by the destination", p.Session)
	}
}

func TestCloseKeepsToItsBudgetWhenReleasesFail(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-close-release")
	h.startGame("longPoll = false")
	for i := int64(0); i < 3; i++ {
		h.mustJoin(uid(1410 + i))
	}
	svc.proxy.fail("/v1/sessions/", 100000, false)
	took, finished := h.close()
	if !finished || took > 25 {
		t.Errorf("BindToClose finished = %v after %.1f s, want finished within the 25 s budget", finished, took)
	}
}

func TestSessionLostStopsMutationsAndTellsTheGame(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-loser")
	h.startGame("longPoll = false")
	userID := uid(1404)
	h.mustJoin(userID)
	// Earned before the loss, still unsent when it is learnt.
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 1, false)
	h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 4}}`)
	if _, err := svc.store.JoinSession(context.Background(), store.JoinRequest{UserID: userID, JobID: "job-thief", Steal: true}); err != nil {
		t.Fatal(err)
	}
	// The game tries to award coins as soon as it hears of the loss.
	h.do(`sync.SessionLost:Connect(function(p)
		local id, err = sync:Mutate(p, {{op = "currency.add", currency = "coins", amount = 1000}})
		lostMutate = {id = id, code = err and err.code}
	end)`)
	h.runUntil("session loss reported", 60, func() bool { return len(h.events("sessionLost")) == 1 })
	if r := []any{h.peek("lostMutate.id"), h.peek("lostMutate.code")}; r[0] != nil || r[1] != "SESSION_LOST" {
		t.Errorf("Mutate once the session was lost = %v, want nil and SESSION_LOST", r)
	}
	h.runUntil("player kicked", 10, func() bool { return h.truthy(fmt.Sprintf("__harness.kicked[%d] ~= nil", userID)) })
	h.runUntil("leave returned", 60, func() bool { return h.truthy(fmt.Sprintf("left[%d] ~= nil", userID)) })
	if got := balance(t, svc, userID, "coins"); got != 104 {
		t.Errorf("service coins = %d, want 104 (the delta earned before the loss, nothing after)", got)
	}
	if p := playerView(t, svc, userID); p.Session == nil || p.Session.JobID != "job-thief" {
		t.Errorf("lease = %+v, want still the thief's", p.Session)
	}
}

func TestHolderReleasesWhenTheDestinationAsks(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	src := newHarness(t, svc, ds, "job-holder")
	dst := newHarness(t, svc, ds, "job-arrival")
	src.startGame("")
	dst.startGame("")
	for _, h := range []*harness{src, dst} {
		h.runUntil("subscribed", 10, func() bool { return h.truthy("sync._subscribed") })
	}
	userID := uid(1405)
	src.mustJoin(userID)
	src.mutate(userID, `{op = "currency.add", currency = "coins", amount = 12}`)
	// The player arrives at the destination before the source has heard
	// that they left (no PlayerRemoving there yet).
	start := dst.now()
	dst.mustJoin(userID)
	if took := dst.now() - start; took > 5 {
		t.Errorf("the hand-off took %.1f virtual seconds, want the holder to release at once when asked", took)
	}
	if p := playerView(t, svc, userID); p.Session == nil || p.Session.JobID != "job-arrival" {
		t.Errorf("lease = %+v, want held by the destination", p.Session)
	}
	if got := num(dst.view(userID), "currencies", "coins"); got != 112 {
		t.Errorf("destination coins = %v, want 112 (the holder wrote its queue first)", got)
	}
	if lost := src.events("sessionLost"); len(lost) != 0 {
		t.Errorf("the holder lost the session instead of releasing it: %v", lost)
	}
}
