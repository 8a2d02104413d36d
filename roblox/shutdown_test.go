package roblox_test

import (
	"fmt"
	"testing"
)

func TestShutdownKeepsDeadLettersWhoseWriteFailed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		failures int // failed dead-letter writes per player
		wantDLQ  int // mutations in the dead-letter DataStore after shutdown
	}{
		{name: "dead-letter writes fail twice", failures: 2, wantDLQ: 3},
		{name: "dead-letter store down", failures: 1000, wantDLQ: 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			ds := newDataStoreBackend()
			h := newHarness(t, svc, ds, "job-shutdown")
			h.startGame("longPoll = false")
			var users []int64
			for j := int64(0); j < 3; j++ {
				u := uid(1800 + 10*int64(i) + j)
				users = append(users, u)
				h.mustJoin(u)
				h.failDataStore("SaveSyncDeadLetter", "UpdateAsync", fmt.Sprintf("u%d", u), tc.failures, 502)
			}
			svc.proxy.fail("/v1/batch/mutations", 1000, false)
			for _, u := range users {
				h.do(fmt.Sprintf(`sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 10}})`, u))
			}
			took, finished := h.close()
			if !finished || took > 25 {
				t.Fatalf("BindToClose finished = %v after %.1f s, want within 25 s", finished, took)
			}
			dead := 0
			for _, u := range users {
				dlq, _ := ds.get("SaveSyncDeadLetter", fmt.Sprintf("u%d", u)).(map[string]any)
				muts, _ := dlq["mutations"].([]any)
				dead += len(muts)
			}
			if dead != tc.wantDLQ {
				t.Errorf("dead-letter DataStore holds %d mutations, want %d", dead, tc.wantDLQ)
			}
			// Whatever the dead-letter store kept or not, the next join of
			// each player, on another server, writes the mutation.
			svc.proxy.clear()
			next := newHarness(t, svc, ds, "job-after-shutdown")
			next.startGame("longPoll = false")
			for _, u := range users {
				next.mustJoin(u)
				next.settle(u)
				if got := balance(t, svc, u, "coins"); got != 110 {
					t.Errorf("coins of %d after the next join = %d, want 110", u, got)
				}
			}
		})
	}
}
