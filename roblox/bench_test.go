package roblox_test

import (
	"fmt"
	"sort"
	"testing"
)

// BenchmarkServerBudgets plays one Roblox server under virtual time with
// 50 players in constant play (each earns coins every 2 s and xp every
// 10 s; one player leaves and another joins every 20 s) for 5 minutes,
// defaults otherwise (MessagingService subscribed, long-poll every 60 s),
// and reports what Roblox limits: HTTP requests in the busiest 60 s
// (limit 500), DataStore requests in the busiest 60 s by budget (limit 60 +
// 10 x players each), and how long a returning player's join takes.
//
//	go test -run '^$' -bench ServerBudgets -benchtime 1x ./roblox/
func BenchmarkServerBudgets(b *testing.B) {
	for i := 0; i < b.N; i++ {
		figures := playServer(b, 50, 5)
		names := make([]string, 0, len(figures))
		for k := range figures {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			b.ReportMetric(figures[k], k)
		}
	}
}

// playServer runs the scenario of BenchmarkServerBudgets and returns its
// figures.
func playServer(t testing.TB, players, minutes int) map[string]float64 {
	svc := newService(t)
	ds := newDataStoreBackend()
	// Returning players: each played once before on another server.
	past := newHarness(t, svc, ds, "job-earlier")
	past.startGame("")
	for i := int64(0); i < 10; i++ {
		past.mustJoin(uid(5000 + i))
		past.leave(uid(5000 + i))
	}
	past.runFor(5)
	past.crash()

	h := newHarness(t, svc, ds, "job-busy")
	h.startGame("")
	h.runUntil("subscribed", 10, func() bool { return h.truthy("sync._subscribed") })
	var joinLatency []float64
	next := int64(0)
	join := func(u int64) {
		start := h.now()
		h.mustJoin(u)
		if u >= uid(5000) && u < uid(5010) {
			joinLatency = append(joinLatency, h.now()-start)
		}
	}
	online := []int64{}
	for ; next < int64(players); next++ {
		online = append(online, uid(3000+next))
		join(online[len(online)-1])
	}
	// Ten ticks a second; each player acts on its own tick, so the
	// server's mutations spread over the second as in a real game.
	h.do(`function play(tick)
		for _, p in ipairs(game:GetService("Players"):GetPlayers()) do
			local phase = (tick + p.UserId) % 100
			if phase % 20 == 0 then
				sync:Mutate(p, {op = "currency.add", currency = "coins", amount = 1})
			end
			if phase == 7 then
				sync:Mutate(p, {op = "xp.add", amount = 5})
			end
		end
	end`)
	start := h.now()
	returning := int64(0)
	for tick := 0; tick < minutes*600; tick++ {
		if d := start + float64(tick)/10 - h.now(); d > 0 {
			h.runFor(d)
		}
		h.do(fmt.Sprintf("play(%d)", tick))
		if tick%200 == 199 {
			leaving := online[0]
			online = online[1:]
			h.start(fmt.Sprintf("__harness.removePlayer(%d)", leaving))
			var u int64
			if returning < 10 {
				u = uid(5000 + returning)
				returning++
			} else {
				u = uid(3000 + next)
				next++
			}
			online = append(online, u)
			join(u)
		}
	}
	h.runFor(start + float64(minutes*60) - h.now())
	window := func(from float64, kinds ...string) int {
		var at []float64
		for _, c := range h.dsLog {
			if c.at < from {
				continue
			}
			for _, k := range kinds {
				for _, b := range budgetKinds[c.method] {
					if b == k {
						at = append(at, c.at)
					}
				}
			}
		}
		best, j := 0, 0
		for i := range at {
			for j < len(at) && at[j] < at[i]+60 {
				j++
			}
			best = max(best, j-i)
		}
		return best
	}
	maxHTTP, _ := h.maxHTTPPerMinute()
	sent := 0
	for _, r := range h.requests {
		if r.at >= start {
			sent++
		}
	}
	sort.Float64s(joinLatency)
	figures := map[string]float64{
		"http_max_per_60s":           float64(maxHTTP),
		"http_per_min":               float64(len(h.requests)) / (h.now() / 60),
		"ds_get_max_per_60s":         float64(window(0, "GetAsync")),
		"ds_get_max_per_60s_in_play": float64(window(start, "GetAsync")),
		"ds_set_max_per_60s":         float64(window(0, "SetIncrementAsync")),
		"ds_set_max_per_60s_in_play": float64(window(start, "SetIncrementAsync")),
		"ds_budget_per_min":          float64(60 + 10*players),
		"returning_join_s_median":    joinLatency[len(joinLatency)/2],
		"returning_join_s_max":       joinLatency[len(joinLatency)-1],
		"mutations_committed":        float64(len(h.events("committed"))),
		"mutations_dead_lettered":    float64(len(h.events("deadLettered"))),
	}
	for _, k := range []string{"http_max_per_60s", "http_per_min", "ds_get_max_per_60s", "ds_set_max_per_60s", "ds_get_max_per_60s_in_play", "ds_set_max_per_60s_in_play", "returning_join_s_median", "returning_join_s_max", "mutations_committed"} {
		t.Logf("%s = %.2f", k, figures[k])
	}
	return figures
}

func TestBusyServerSendsBatches(t *testing.T) {
	t.Parallel()
	figures := playServer(t, 50, 1)
	// 50 players make about 30 mutations a second; gathered for 0.2 s
	// after each request they go out in batches, at most one request per
	// flush interval plus renewals and polls.
	if got := figures["http_max_per_60s"]; got > 250 {
		t.Errorf("%.0f requests in the busiest minute, want at most 250: mutations are sent in batches", got)
	}
	if got := figures["mutations_dead_lettered"]; got != 0 {
		t.Errorf("%.0f mutations dead-lettered, want none", got)
	}
}
