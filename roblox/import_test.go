package roblox_test

import (
	"context"
	"fmt"
	"testing"
)

// importConfig is the config of a studio adopting savesync: its old saves
// live in the DataStore PlayerData under Player_<userId>.
const importConfig = `longPoll = false, import = {
	dataStore = "PlayerData",
	key = function(userId) return "Player_" .. userId end,
	profileStore = %v,
	transform = function(old, userId)
		if old.Coins == nil then error("an old save without Coins") end
		local items = {}
		for _, id in ipairs(old.Inventory or {}) do items[id] = (items[id] or 0) + 1 end
		return {currencies = {coins = old.Coins, gems = 0}, items = items}
	end,
}`

func TestImportOfAnExistingSave(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		profile bool
		value   any
	}{
		{name: "plain key", value: map[string]any{"Coins": 250, "Inventory": []any{"potion", "potion", "sword"}}},
		{name: "ProfileStore profile", profile: true, value: map[string]any{
			"Data":     map[string]any{"Coins": 250, "Inventory": []any{"potion", "potion", "sword"}},
			"MetaData": map[string]any{"ProfileCreateTime": 1.7e9, "SessionLoadCount": 12},
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			ds := newDataStoreBackend()
			userID := uid(2401 + int64(i))
			ds.set("PlayerData", fmt.Sprintf("Player_%d", userID), tc.value)
			a := newHarness(t, svc, ds, "job-import-a")
			b := newHarness(t, svc, ds, "job-import-b")
			a.startGame(fmt.Sprintf(importConfig, tc.profile))
			b.startGame(fmt.Sprintf(importConfig, tc.profile))
			// Two servers race: a's import fails once and waits for its
			// retry while b takes the player over and imports too.
			svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 1, false)
			a.start(fmt.Sprintf("__harness.addPlayer(%d)", userID))
			a.runFor(0.5)
			b.do(fmt.Sprintf(`joined[%d] = nil
				local p = {UserId = %d, Name = "Player", Parent = game}
				joined[%d] = {save = sync:Join(p, {steal = true})}`, userID, userID, userID))
			a.runUntil("a's join", 60, func() bool { return a.truthy(fmt.Sprintf("joined[%d] ~= nil", userID)) })
			for _, h := range []*harness{a, b} {
				h.runFor(5)
				if coins := h.peek(fmt.Sprintf("joined[%d].save and joined[%d].save.currencies.coins", userID, userID)); coins != 250.0 {
					t.Errorf("%s: coins in the joined save = %v, want 250 (imported)", h.jobID, coins)
				}
			}
			p := playerView(t, svc, userID)
			if p.Version != 1 {
				t.Errorf("service version = %d, want 1: one import however many servers raced", p.Version)
			}
			if got := balance(t, svc, userID, "coins"); got != 250 {
				t.Errorf("service coins = %d, want 250", got)
			}
			page, err := svc.store.ListLedger(context.Background(), userID, "", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Entries) != 1 || page.Entries[0].Reason != fmt.Sprintf("import of PlayerData/Player_%d", userID) {
				t.Errorf("ledger = %+v, want one import entry", page.Entries)
			}
		})
	}
}

func TestImportFailureKeepsThePlayerOut(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	userID := uid(2410)
	ds.set("PlayerData", fmt.Sprintf("Player_%d", userID), map[string]any{"Gold": 5})
	h := newHarness(t, svc, ds, "job-import-bad")
	h.startGame(fmt.Sprintf(importConfig, false))
	if code := h.join(userID); code != "IMPORT_FAILED" {
		t.Fatalf("Join with a transform that fails = %q, want IMPORT_FAILED", code)
	}
	if reason := h.peek(fmt.Sprintf("joined[%d].details.reason", userID)); reason != "TRANSFORM_FAILED" {
		t.Errorf("details.reason = %v, want TRANSFORM_FAILED", reason)
	}
	if p := playerView(t, svc, userID); p.Session != nil || p.Version != 0 {
		t.Errorf("player after a failed import = version %d, lease %+v; want nothing written and the lease released", p.Version, p.Session)
	}
	// The studio fixes the old save (or the transform): the next join imports.
	ds.set("PlayerData", fmt.Sprintf("Player_%d", userID), map[string]any{"Coins": 5})
	h.removePlayer(userID)
	h.mustJoin(userID)
	if got := balance(t, svc, userID, "coins"); got != 5 {
		t.Errorf("service coins after the import = %d, want 5", got)
	}
}
