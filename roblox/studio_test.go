package roblox_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// gameConfigLua is the test game config as a Lua expression, for mock
// mode's rules (a studio would load its game.json the same way).
func gameConfigLua(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../internal/firestoretest/game.json")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	compact, _ := json.Marshal(v)
	return fmt.Sprintf("game:GetService(\"HttpService\"):JSONDecode(%q)", compact)
}

func TestStudioUsesMockMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts serverOptions
	}{
		{name: "no Secret, HTTP off", opts: serverOptions{studio: true, httpDisabled: true}},
		{name: "local Secret and HTTP on", opts: serverOptions{studio: true, secret: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newServer(t, svc, newDataStoreBackend(), "", tc.opts)
			h.startGame("mockConfig = " + gameConfigLua(t))
			if mode := h.peek("sync.Mode"); mode != "mock" {
				t.Fatalf("sync.Mode in Studio = %v, want mock", mode)
			}
			const player = -1 // Studio's first test player
			h.mustJoin(player)
			r := h.do(fmt.Sprintf(`local p = __harness.player(%d)
				local ok1, out = sync:MutateAsync(p, {{op = "currency.add", currency = "coins", amount = 25}, {op = "item.grant", item = "potion", count = 2}})
				local ok2, err = sync:MutateAsync(p, {op = "currency.add", currency = "coins", amount = -1000})
				local ok3, err3 = sync:MutateAsync(p, {op = "item.grant", item = "sword", count = 2})
				local ok4 = sync:MutateAsync(p, {op = "purchase", sku = "starter"})
				return ok1, out.version, ok2, err.code, ok3, err3.code, ok4`, player))
			want := []any{true, 1.0, false, "INSUFFICIENT_FUNDS", false, "LIMIT_EXCEEDED", true}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("mutations in mock mode (-want +got):\n%s", diff)
			}
			view := h.view(player)
			if got := num(view, "currencies", "coins"); got != 75 {
				t.Errorf("coins = %v, want 100 + 25 - 50 (the starter pack)", got)
			}
			if got := num(view, "items", "potion"); got != 4 {
				t.Errorf("potions = %v, want 2 + 2 from the starter pack", got)
			}
			// A rejoin in the same Studio session keeps the mock save.
			h.leave(player)
			h.mustJoin(player)
			if got := num(h.view(player), "currencies", "coins"); got != 75 {
				t.Errorf("coins after a rejoin = %v, want 75", got)
			}
			if _, finished := h.close(); !finished {
				t.Errorf("BindToClose did not finish")
			}
			if len(h.requests) != 0 || len(h.dsLog) != 0 {
				t.Errorf("mock mode sent %d HTTP requests and %d DataStore calls, want none", len(h.requests), len(h.dsLog))
			}
		})
	}
}

func TestStudioLiveMode(t *testing.T) {
	t.Parallel()
	t.Run("own job id, real accounts only", func(t *testing.T) {
		t.Parallel()
		svc := newService(t)
		h := newServer(t, svc, newDataStoreBackend(), "", serverOptions{studio: true, secret: true})
		h.startGame(`mode = "live", longPoll = false`)
		if code := h.join(-1); code != "INVALID_ARGUMENT" {
			t.Errorf("Join of a Studio test player in live mode = %q, want INVALID_ARGUMENT", code)
		}
		if len(h.requests) != 0 {
			t.Errorf("a join of a negative user id sent %d requests, want none", len(h.requests))
		}
		userID := uid(2101)
		h.mustJoin(userID)
		if p := playerView(t, svc, userID); p.Session == nil || !strings.HasPrefix(p.Session.JobID, "studio-") || p.Session.JobID == "studio-" {
			t.Errorf("lease = %+v, want a job id of this Studio session", p.Session)
		}
	})
	t.Run("HTTP off falls back to mock", func(t *testing.T) {
		t.Parallel()
		svc := newService(t)
		h := newServer(t, svc, newDataStoreBackend(), "", serverOptions{studio: true, secret: true, httpDisabled: true})
		h.startGame(`mode = "live", longPoll = false`)
		h.mustJoin(uid(2102))
		if mode := h.peek("sync.Mode"); mode != "mock" {
			t.Errorf("sync.Mode = %v, want mock after HTTP turned out to be off", mode)
		}
		if n := len(h.requests); n != 1 {
			t.Errorf("requests tried = %d, want 1 (HTTP off is not retried)", n)
		}
	})
}

func TestLiveServerWithoutSetupSaysWhy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       serverOptions
		wantReason string
	}{
		{name: "no Secret", opts: serverOptions{noSecret: true}, wantReason: "SECRET_MISSING"},
		{name: "HTTP off", opts: serverOptions{httpDisabled: true}, wantReason: "HTTP_DISABLED"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newServer(t, svc, newDataStoreBackend(), fmt.Sprintf("job-unset-%d", i), tc.opts)
			h.startGame("longPoll = false")
			userID := uid(2110 + int64(i))
			if code := h.join(userID); code != "NOT_CONFIGURED" {
				t.Errorf("Join = %q, want NOT_CONFIGURED", code)
			}
			if reason := h.peek(fmt.Sprintf("joined[%d].details.reason", userID)); reason != tc.wantReason {
				t.Errorf("details.reason = %v, want %s", reason, tc.wantReason)
			}
			if mode := h.peek("sync.Mode"); mode != "live" {
				t.Errorf("sync.Mode on a live server = %v, want live (never a mock that loses progress)", mode)
			}
			if n := len(h.requests); n > 1 {
				t.Errorf("requests tried = %d, want at most 1", n)
			}
		})
	}
}
