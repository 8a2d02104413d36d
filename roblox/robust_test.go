package roblox_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/save"
)

// badBodies are answers a proxy, a load balancer or a broken deployment
// can give with a success status.
var badBodies = []struct{ name, body string }{
	{"empty", ""},
	{"not JSON", "<html>502 Bad Gateway</html>"},
	{"empty object", "{}"},
	{"array", "[]"},
	{"results not a list", `{"results":"none","player":7,"session":"x","changes":5,"cursor":{}}`},
	{"results without status", `{"results":[{"idempotencyKey":"?"},7,{"status":"200"}],"player":{"version":"3","save":[]},"session":{}}`},
}

func TestOneBadAnswerDoesNotStopSaving(t *testing.T) {
	t.Parallel()
	routes := []struct {
		name    string
		prefix  func(a, b int64) string
		trigger func(t *testing.T, svc *service, h *harness, a, b int64)
	}{
		{
			name:   "batch mutations",
			prefix: func(a, b int64) string { return "/v1/batch/mutations" },
			trigger: func(t *testing.T, svc *service, h *harness, a, b int64) {
				h.do(fmt.Sprintf(`sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})
					sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})`, a, b))
				h.settle(a)
				h.settle(b)
			},
		},
		{
			name:   "single mutation",
			prefix: func(a, b int64) string { return fmt.Sprintf("/v1/players/%d/mutations", a) },
			trigger: func(t *testing.T, svc *service, h *harness, a, b int64) {
				h.mutate(a, `{{op = "currency.add", currency = "coins", amount = 5}}`)
				h.settle(a)
				h.mutate(b, `{{op = "currency.add", currency = "coins", amount = 5}}`)
				h.settle(b)
			},
		},
		{
			name:   "lease renewal",
			prefix: func(a, b int64) string { return "/v1/batch/sessions/renew" },
			trigger: func(t *testing.T, svc *service, h *harness, a, b int64) {
				h.runFor(35)
				h.do(fmt.Sprintf(`sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})
					sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})`, a, b))
			},
		},
		{
			name:   "refetch",
			prefix: func(a, b int64) string { return fmt.Sprintf("/v1/players/%d", a) },
			trigger: func(t *testing.T, svc *service, h *harness, a, b int64) {
				version := companionWrite(t, svc, a, "companion-bad", save.Op{Kind: save.OpSettingsSet, Key: "volume", Value: int64(30)})
				msg, _ := json.Marshal(events.RobloxMessage{Type: events.RobloxInvalidationType, Users: []int64{a}, Versions: []int64{version}})
				h.publish(events.DefaultRobloxTopic, string(msg))
				h.runFor(5)
				h.do(fmt.Sprintf(`sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})
					sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})`, a, b))
			},
		},
		{
			name:   "changes long-poll",
			prefix: func(a, b int64) string { return "/v1/servers/" },
			trigger: func(t *testing.T, svc *service, h *harness, a, b int64) {
				h.runFor(5)
				h.do(fmt.Sprintf(`sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})
					sync:Mutate(__harness.player(%d), {{op = "currency.add", currency = "coins", amount = 5}})`, a, b))
			},
		},
	}
	n := int64(0)
	for _, route := range routes {
		for _, bad := range badBodies {
			n++
			a, b := uid(1100+2*n), uid(1101+2*n)
			t.Run(route.name+"/"+bad.name, func(t *testing.T) {
				t.Parallel()
				svc := newService(t)
				h := newHarness(t, svc, newDataStoreBackend(), "job-bad")
				h.startGame("safetyPollGap = 2, pollGap = 1")
				h.runUntil("subscribed", 10, func() bool { return h.truthy("sync._subscribed") })
				h.mustJoin(a)
				h.mustJoin(b)
				svc.proxy.answer(route.prefix(a, b), 1, true, http.StatusOK, bad.body)
				route.trigger(t, svc, h, a, b)
				// Saving goes on: the mutations commit once, leases stay held.
				h.settle(a)
				h.settle(b)
				h.runFor(200)
				for _, u := range []int64{a, b} {
					if got := balance(t, svc, u, "coins"); got != 105 {
						t.Errorf("service coins of %d = %d, want 105 (written once)", u, got)
					}
					if p := playerView(t, svc, u); p.Session == nil || p.Session.JobID != "job-bad" {
						t.Errorf("lease of %d after 200 s = %+v, want still held by this server", u, p.Session)
					}
				}
				if lost := h.events("sessionLost"); len(lost) > 0 {
					t.Errorf("SessionLost fired: %v", lost)
				}
				h.mutate(a, `{{op = "currency.add", currency = "coins", amount = 1}}`)
				h.settle(a)
				if got := balance(t, svc, a, "coins"); got != 106 {
					t.Errorf("service coins of %d after one more mutation = %d, want 106", a, got)
				}
			})
		}
	}
	for i, bad := range badBodies {
		userID := uid(1300 + int64(i))
		t.Run("join/"+bad.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			h := newHarness(t, svc, newDataStoreBackend(), "job-bad-join")
			h.startGame("longPoll = false")
			svc.proxy.answer("/v1/sessions", 1, true, http.StatusOK, bad.body)
			code := h.join(userID)
			if code != "" && code != "UNAVAILABLE" {
				t.Errorf("Join after an unreadable answer = %q, want success after a retry or UNAVAILABLE", code)
			}
			if h.truthy(fmt.Sprintf("sync._joining[%d] ~= nil", userID)) {
				t.Errorf("the module still marks %d as joining", userID)
			}
			if code != "" {
				h.do(fmt.Sprintf("joined[%d] = nil", userID))
				h.removePlayer(userID)
				h.mustJoin(userID)
			}
			h.mutate(userID, `{{op = "currency.add", currency = "coins", amount = 5}}`)
			h.settle(userID)
			if got := balance(t, svc, userID, "coins"); got != 105 {
				t.Errorf("service coins = %d, want 105", got)
			}
		})
	}
}
