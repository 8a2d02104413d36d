package roblox_test

import (
	"fmt"
)

// gameScript is the game code of the tests: it starts the module, records
// its signals in the global events, and joins and leaves players as
// Players fires, recording the outcomes in joined and left.
const gameScript = `
sync = SaveSync.new({
	baseUrl = SERVICE_URL,
	schemaVersion = %s,
	longPollSeconds = 0,
	random = function() return 0.5 end,
	%s
})
events = {}
joined = {}
left = {}
local function log(e) table.insert(events, e) end
sync.Changed:Connect(function(p, save, info) log({kind = "changed", user = p.UserId, reason = info.reason, save = save}) end)
sync.MutationCommitted:Connect(function(p, id, outcome) log({kind = "committed", user = p.UserId, id = id, version = outcome.version}) end)
sync.MutationRefused:Connect(function(p, id, err) log({kind = "refused", user = p.UserId, id = id, code = err.code, message = err.message}) end)
sync.MutationDeadLettered:Connect(function(p, id, err) log({kind = "deadLettered", user = p.UserId, id = id, code = err.code}) end)
sync.SessionLost:Connect(function(p, err) log({kind = "sessionLost", user = p.UserId, code = err.code}) end)
local Players = game:GetService("Players")
Players.PlayerAdded:Connect(function(p)
	local save, err = sync:Join(p)
	joined[p.UserId] = {save = save, code = err and err.code or "", details = err and err.details}
end)
Players.PlayerRemoving:Connect(function(p)
	left[p.UserId] = sync:Leave(p)
end)
`

// startGame runs the game script with the module's extra config fields.
func (h *harness) startGame(extraConfig string) {
	h.t.Helper()
	h.startGameSchema("3", extraConfig)
}

func (h *harness) startGameSchema(schema, extraConfig string) {
	h.t.Helper()
	h.do(fmt.Sprintf(gameScript, schema, extraConfig))
}

// peek evaluates a Lua expression without running the scheduler.
func (h *harness) peek(expr string) any {
	h.t.Helper()
	fn, err := h.L.LoadString("return " + expr)
	if err != nil {
		h.t.Fatalf("compile %q: %v", expr, err)
	}
	h.L.Push(fn)
	if err := h.L.PCall(0, 1, nil); err != nil {
		h.t.Fatalf("evaluate %q: %v", expr, err)
	}
	v := h.L.Get(-1)
	h.L.Pop(1)
	return toGo(v)
}

// truthy reports whether a Lua expression is true right now.
func (h *harness) truthy(expr string) bool {
	h.t.Helper()
	return h.peek(expr) == true
}

// join adds a player and waits until the game's Join returned; it
// returns the error code ("" on success).
func (h *harness) join(userID int64) string {
	h.t.Helper()
	h.do(fmt.Sprintf("joined[%d] = nil", userID))
	h.addPlayer(userID)
	h.runUntil(fmt.Sprintf("join of %d", userID), 60, func() bool {
		return h.truthy(fmt.Sprintf("joined[%d] ~= nil", userID))
	})
	code, _ := h.peek(fmt.Sprintf("joined[%d].code", userID)).(string)
	return code
}

// mustJoin joins a player and fails the test if Join failed.
func (h *harness) mustJoin(userID int64) {
	h.t.Helper()
	if code := h.join(userID); code != "" {
		h.t.Fatalf("Join(%d) failed with %s: %v", userID, code, h.peek(fmt.Sprintf("joined[%d].details", userID)))
	}
}

// leave removes a player and waits until the game's Leave returned.
func (h *harness) leave(userID int64) bool {
	h.t.Helper()
	h.do(fmt.Sprintf("left[%d] = nil", userID))
	h.removePlayer(userID)
	h.runUntil(fmt.Sprintf("leave of %d", userID), 60, func() bool {
		return h.truthy(fmt.Sprintf("left[%d] ~= nil", userID))
	})
	return h.truthy(fmt.Sprintf("left[%d]", userID))
}

// mutate calls sync:Mutate with ops written in Lua and returns the
// mutation id.
func (h *harness) mutate(userID int64, ops string) string {
	h.t.Helper()
	r := h.do(fmt.Sprintf("return sync:Mutate(__harness.player(%d), %s)", userID, ops))
	id, _ := r[0].(string)
	if id == "" {
		h.t.Fatalf("Mutate(%d, %s) returned %v", userID, ops, r)
	}
	return id
}

// settle runs the server until the player has no unconfirmed mutation.
func (h *harness) settle(userID int64) {
	h.t.Helper()
	h.runUntil(fmt.Sprintf("mutations of %d settled", userID), 60, func() bool {
		return h.truthy(fmt.Sprintf("sync._players[%d] == nil or #sync._players[%d].pending == 0", userID, userID))
	})
}

// view returns sync:Get(player) as Go values.
func (h *harness) view(userID int64) map[string]any {
	h.t.Helper()
	v, _ := h.peek(fmt.Sprintf("sync:Get(__harness.player(%d))", userID)).(map[string]any)
	return v
}

// events returns the recorded signal events of a kind.
func (h *harness) events(kind string) []map[string]any {
	h.t.Helper()
	all, _ := h.peek("events").([]any)
	var out []map[string]any
	for _, e := range all {
		m, _ := e.(map[string]any)
		if m["kind"] == kind {
			out = append(out, m)
		}
	}
	return out
}

// num reads a number at a path of nested maps ("currencies", "coins").
func num(v map[string]any, path ...string) float64 {
	var cur any = v
	for _, p := range path {
		m, _ := cur.(map[string]any)
		cur = m[p]
	}
	f, _ := cur.(float64)
	return f
}
