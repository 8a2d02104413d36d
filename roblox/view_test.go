package roblox_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// serviceSave reads a player's save from the service as JSON values.
func serviceSave(t *testing.T, svc *service, userID int64) map[string]any {
	t.Helper()
	raw, err := json.Marshal(playerView(t, svc, userID).Save)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestZeroBalancesStayInTheView(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-zero")
	h.startGame("longPoll = false")
	userID := uid(1901)
	h.mustJoin(userID)
	h.mutate(userID, `{{op = "item.grant", item = "sword", count = 1}, {op = "xp.add", amount = 5}}`)
	h.settle(userID)
	h.mutate(userID, `{{op = "loadout.set", slot = "primary", item = "sword"}}`)
	h.settle(userID)
	h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = -100}, {op = "stat.add", stat = "xp", amount = -5}, {op = "item.consume", item = "sword", count = 1}}`)
	// The game reads the balances at once: spent to 0 is 0, not nil.
	r := h.do(fmt.Sprintf(`local save = sync:Get(__harness.player(%d))
		return save.currencies.coins + 1, save.stats.xp + 1, save.items.sword == nil, save.loadout.primary == nil`, userID))
	if diff := cmp.Diff([]any{1.0, 1.0, true, true}, r); diff != "" {
		t.Errorf("optimistic view: coins+1, xp+1, sword gone, primary cleared (-want +got):\n%s", diff)
	}
	h.settle(userID)
	// Lua cannot tell an empty map from an empty list: compare them as one.
	emptyAlike := cmp.FilterValues(func(a, b any) bool { return isEmpty(a) && isEmpty(b) }, cmp.Comparer(func(a, b any) bool { return true }))
	if diff := cmp.Diff(serviceSave(t, svc, userID), h.view(userID), emptyAlike); diff != "" {
		t.Errorf("view after commit against the service's save (-service +view):\n%s", diff)
	}
}

// isEmpty reports whether v is an empty JSON list or object.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}
