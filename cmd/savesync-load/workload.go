package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Routes as reported (path parameters replaced by their names).
const (
	routeJoin       = "POST /v1/sessions"
	routeLeave      = "POST /v1/sessions/{id}/leave"
	routeMutation   = "POST /v1/players/{id}/mutations"
	routeBatch      = "POST /v1/batch/mutations"
	routeChanges    = "GET /v1/servers/{jobId}/changes"
	routePurchase   = "POST /v1/me/purchases"
	routeSetting    = "PUT /v1/me/settings/{key}"
	routeCollAdd    = "POST /v1/me/collections/{c}"
	routeCollRemove = "DELETE /v1/me/collections/{c}/{e}"
	routeLinkCode   = "POST /v1/me/link-codes"
	routeRedeem     = "POST /v1/link-codes/{code}/redeem"
)

// player is one simulated Roblox player as the game servers see it.
type player struct {
	id int64

	// mu serialises this player's session changes (join, teleport, leave).
	mu      sync.Mutex
	job     string
	session string

	version   atomic.Int64 // the newest version the tool has seen
	companion *companionUser
}

// holder is the job the tool last saw holding the player.
func (p *player) holder() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.job
}

// seeVersion remembers v if it is newer than what was seen.
func (p *player) seeVersion(v int64) {
	for {
		cur := p.version.Load()
		if v <= cur || p.version.CompareAndSwap(cur, v) {
			return
		}
	}
}

// companionUser is a companion app account linked to a player.
type companionUser struct {
	uid      string
	email    string
	password string
	token    string
}

// ack is a mutation the service acknowledged with 200.
type ack struct {
	UserID    int64
	Version   int64
	ActorKind string
}

// expectations is what the callers learnt, checked against the data at the end.
type expectations struct {
	mu    sync.Mutex
	acked map[string]ack // by Idempotency-Key (the tool's keys are unique)
	// seen holds, per job, the "userId/version" pairs its changes long-poll returned.
	seen map[string]map[string]bool
	// seenAt is when the long-poll first returned each of them.
	seenAt map[string]map[string]time.Time
	// hot is the hot player's expected coins (start + every acknowledged +1).
	hot map[int64]int64
}

func newExpectations() *expectations {
	return &expectations{acked: map[string]ack{}, seen: map[string]map[string]bool{}, seenAt: map[string]map[string]time.Time{}, hot: map[int64]int64{}}
}

func (e *expectations) ack(key string, a ack) (first bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.acked[key]; dup {
		return false
	}
	e.acked[key] = a
	return true
}

func (e *expectations) see(job string, userID, version int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen[job] == nil {
		e.seen[job] = map[string]bool{}
		e.seenAt[job] = map[string]time.Time{}
	}
	k := fmt.Sprintf("%d/%d", userID, version)
	if !e.seen[job][k] {
		e.seen[job][k] = true
		e.seenAt[job][k] = time.Now()
	}
}

// world is the simulated population: game servers, players, companions.
type world struct {
	st      *stack
	p       params
	c       *caller
	exp     *expectations
	jobs    []string
	players []*player
	nextID  atomic.Int64
	// crashes is the crash injector while it runs (nil without --crash-every).
	crashes *crasher
}

// outcomeBody is the part of a mutation answer the tool reads.
type outcomeBody struct {
	Version int64 `json:"version"`
	// Unchanged marks a write that would have changed nothing (a setting
	// set to its value, a remove of an absent element): nothing committed.
	Unchanged bool `json:"unchanged"`
}

func (w *world) serverHeaders(job, key string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+w.st.serverKey)
	if job != "" {
		h.Set("Roblox-Job-Id", job)
	}
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	return h
}

// newPlayerID returns a user id not used before in this run.
func (w *world) newPlayerID() int64 { return w.nextID.Add(1) }

// join takes the player's lease for job.
func (w *world) join(ctx context.Context, rec *recorder, p *player, job string, steal bool) error {
	a, err := w.c.call(ctx, rec, routeJoin, "POST", "/v1/sessions", w.serverHeaders(job, ""),
		map[string]any{"userId": p.id, "jobId": job, "schemaVersion": w.st.cfg.SchemaVersion, "steal": steal})
	if err != nil {
		return err
	}
	if !a.ok() {
		return fmt.Errorf("join %d on %s: %d %s", p.id, job, a.Status, a.Code)
	}
	var res struct {
		Player struct {
			Version int64 `json:"version"`
		} `json:"player"`
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	if err := json.Unmarshal(a.Body, &res); err != nil {
		return fmt.Errorf("join answer: %w", err)
	}
	p.job, p.session = job, res.Session.ID
	p.seeVersion(res.Player.Version)
	return nil
}

// mutate sends one write-through mutation as the player's holding server.
func (w *world) mutate(ctx context.Context, rec *recorder, p *player, ops []map[string]any, expected *int64) (answer, error) {
	key := uuid.NewString()
	body := map[string]any{"ops": ops}
	if expected != nil {
		body["expectedVersion"] = *expected
	}
	a, err := w.c.call(ctx, rec, routeMutation, "POST", "/v1/players/"+strconv.FormatInt(p.id, 10)+"/mutations",
		w.serverHeaders(p.holder(), key), body)
	if err == nil && a.ok() {
		w.acknowledge(rec, p, key, "server", a)
	}
	return a, err
}

// acknowledge records a 200 mutation answer.
func (w *world) acknowledge(rec *recorder, p *player, key, actorKind string, a answer) {
	var out outcomeBody
	if json.Unmarshal(a.Body, &out) != nil || (out.Version == 0 && !out.Unchanged) {
		rec.note("200 UNPARSEABLE")
		return
	}
	p.seeVersion(out.Version)
	if out.Unchanged {
		// Nothing committed, so there is no ledger entry to find.
		rec.note("200 UNCHANGED")
		return
	}
	if w.exp.ack(key, ack{UserID: p.id, Version: out.Version, ActorKind: actorKind}) {
		rec.add(&rec.mutations, 1)
	}
	if a.Header.Get("Idempotent-Replayed") == "true" {
		rec.add(&rec.replays, 1)
	}
}

// deltaOps returns 1 to 3 delta ops, as a game server sends for rewards.
func deltaOps(rng *rand.Rand) []map[string]any {
	n := 1 + rng.IntN(3)
	ops := make([]map[string]any, 0, n)
	for range n {
		switch rng.IntN(5) {
		case 0:
			ops = append(ops, map[string]any{"op": "currency.add", "currency": "coins", "amount": int64(1 + rng.IntN(100))})
		case 1:
			ops = append(ops, map[string]any{"op": "currency.add", "currency": "gems", "amount": int64(1 + rng.IntN(20))})
		case 2:
			ops = append(ops, map[string]any{"op": "xp.add", "amount": int64(1 + rng.IntN(50))})
		case 3:
			ops = append(ops, map[string]any{"op": "item.grant", "item": "wood", "count": int64(1 + rng.IntN(10))})
		default:
			ops = append(ops, map[string]any{"op": "item.grant", "item": "steel", "count": int64(1 + rng.IntN(10))})
		}
	}
	return ops
}

// versionedOps grants a plank and swaps one for steel: the swap needs
// expectedVersion, so concurrent writers of the player can conflict.
func versionedOps() []map[string]any {
	return []map[string]any{
		{"op": "item.grant", "item": "wood", "count": int64(1)},
		{"op": "inventory.swap", "remove": map[string]any{"wood": int64(1)}, "add": map[string]any{"steel": int64(1)}},
	}
}

// versioned sends a versioned mutation at the last version seen and, on
// VERSION_CONFLICT, rebases once on the version the conflict names.
func (w *world) versioned(ctx context.Context, rec *recorder, p *player) {
	v := p.version.Load()
	a, err := w.mutate(ctx, rec, p, versionedOps(), &v)
	if err != nil || a.Code != "VERSION_CONFLICT" {
		return
	}
	if cur, ok := errorDetails(a.Body)["currentVersion"].(float64); ok {
		v := int64(cur)
		_, _ = w.mutate(ctx, rec, p, versionedOps(), &v)
	}
}

// batch sends deltas for several players of one game server in one request;
// items answered 5xx are sent again, same keys, like the Luau queue does.
func (w *world) batch(ctx context.Context, rec *recorder, rng *rand.Rand) {
	job := w.jobs[rng.IntN(len(w.jobs))]
	type item struct {
		p   *player
		key string
		ops []map[string]any
	}
	var items []item
	for _, i := range rng.Perm(len(w.players)) {
		p := w.players[i]
		if p.holder() == job {
			items = append(items, item{p, uuid.NewString(), deltaOps(rng)})
		}
		if len(items) == 8 {
			break
		}
	}
	for attempt := 0; len(items) > 0 && attempt < w.p.Attempts; attempt++ {
		muts := make([]map[string]any, len(items))
		for i, it := range items {
			muts[i] = map[string]any{"userId": it.p.id, "idempotencyKey": it.key, "mutation": map[string]any{"ops": it.ops}}
		}
		a, err := w.c.call(ctx, rec, routeBatch, "POST", "/v1/batch/mutations", w.serverHeaders(job, ""), map[string]any{"mutations": muts})
		if err != nil || !a.ok() {
			return
		}
		var res struct {
			Results []struct {
				Status   int             `json:"status"`
				Replayed bool            `json:"replayed"`
				Result   json.RawMessage `json:"result"`
				Error    struct {
					Code string `json:"code"`
				} `json:"error"`
			} `json:"results"`
		}
		if json.Unmarshal(a.Body, &res) != nil || len(res.Results) != len(items) {
			rec.note("200 UNPARSEABLE")
			return
		}
		var again []item
		for i, r := range res.Results {
			switch {
			case r.Status == http.StatusOK:
				h := http.Header{}
				if r.Replayed {
					h.Set("Idempotent-Replayed", "true")
				}
				w.acknowledge(rec, items[i].p, items[i].key, "server", answer{Status: 200, Body: r.Result, Header: h})
			case r.Status >= 500:
				rec.note("batch item " + strconv.Itoa(r.Status) + " " + r.Error.Code)
				again = append(again, items[i])
			default:
				rec.note("batch item " + strconv.Itoa(r.Status) + " " + r.Error.Code)
			}
		}
		if len(again) > 0 {
			rec.add(&rec.retries, 1)
		}
		items = again
	}
	if len(items) > 0 {
		rec.add(&rec.failures, int64(len(items)))
	}
}

// teleport moves the player to another game server, which steals the lease.
func (w *world) teleport(ctx context.Context, rec *recorder, p *player, rng *rand.Rand) {
	p.mu.Lock()
	defer p.mu.Unlock()
	to := w.jobs[rng.IntN(len(w.jobs))]
	if to == p.job {
		to = w.jobs[(rng.IntN(len(w.jobs)-1)+1+indexOf(w.jobs, p.job))%len(w.jobs)]
	}
	if err := w.join(ctx, rec, p, to, true); err != nil {
		rec.add(&rec.failures, 1)
	}
}

// leaveAndRejoin leaves with a final flush, then the player joins again.
func (w *world) leaveAndRejoin(ctx context.Context, rec *recorder, p *player) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := uuid.NewString()
	a, err := w.c.call(ctx, rec, routeLeave, "POST", "/v1/sessions/"+url.PathEscape(p.session)+"/leave", w.serverHeaders(p.job, key),
		map[string]any{"final": map[string]any{"ops": []map[string]any{{"op": "currency.add", "currency": "coins", "amount": int64(1)}}}})
	if err == nil && a.ok() {
		var res struct {
			Final json.RawMessage `json:"final"`
		}
		if json.Unmarshal(a.Body, &res) == nil && len(res.Final) > 0 {
			w.acknowledge(rec, p, key, "server", answer{Status: 200, Body: res.Final, Header: a.Header})
		}
	}
	if err := w.join(ctx, rec, p, p.job, false); err != nil {
		if err := w.join(ctx, rec, p, p.job, true); err != nil {
			rec.add(&rec.failures, 1)
		}
	}
}

// companionWrite is one companion app action: a purchase, a setting, or a
// collection edit.
func (w *world) companionWrite(ctx context.Context, rec *recorder, p *player, rng *rand.Rand) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+p.companion.token)
	key := uuid.NewString()
	h.Set("Idempotency-Key", key)
	var a answer
	var err error
	switch rng.IntN(4) {
	case 0:
		sku := []string{"speedPotions", "starterPack"}[rng.IntN(2)]
		a, err = w.c.call(ctx, rec, routePurchase, "POST", "/v1/me/purchases", h, map[string]any{"sku": sku})
	case 1:
		a, err = w.c.call(ctx, rec, routeSetting, "PUT", "/v1/me/settings/volume", h, map[string]any{"value": rng.IntN(101)})
	case 2:
		a, err = w.c.call(ctx, rec, routeCollAdd, "POST", "/v1/me/collections/wishlist", h, map[string]any{"element": fmt.Sprintf("b%d", rng.IntN(20))})
	default:
		path := fmt.Sprintf("/v1/me/collections/wishlist/b%d?observedVersion=%d", rng.IntN(20), p.version.Load())
		a, err = w.c.call(ctx, rec, routeCollRemove, "DELETE", path, h, nil)
	}
	if err == nil && a.ok() {
		w.acknowledge(rec, p, key, "companion", a)
	}
}

func indexOf(ss []string, s string) int {
	for i, v := range ss {
		if v == s {
			return i
		}
	}
	return 0
}

// mixed runs the mixed workload until the phase's deadline or request
// budget; every caller is a goroutine with its own seeded choices.
func (w *world) mixed(ctx context.Context, rec *recorder, d time.Duration, seed uint64) time.Duration {
	// The deadline stops callers from starting new actions; requests in
	// flight finish, so the phase's end is not counted as errors.
	deadline := time.Now().Add(d)
	var interval time.Duration
	if w.p.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(w.p.Workers) / w.p.Rate)
	}
	var companions []*player
	for _, p := range w.players {
		if p.companion != nil {
			companions = append(companions, p)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range w.p.Workers {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Go(func() {
			next := time.Now()
			for ctx.Err() == nil && (w.moreCrashesDue(deadline) || time.Now().Before(deadline) && rec.requestCount() < int64(w.p.MaxRequests) &&
				(w.p.Mutations == 0 || rec.mutationCount() < int64(w.p.Mutations))) {
				if interval > 0 {
					// Each caller paces itself to its share of the rate.
					if wait := time.Until(next); wait > 0 {
						time.Sleep(min(wait, time.Until(deadline)))
					}
					next = next.Add(interval)
					if !time.Now().Before(deadline) {
						return
					}
				}
				p := w.players[rng.IntN(len(w.players))]
				switch r := rng.IntN(100); {
				case r < 20 && len(companions) > 0:
					w.companionWrite(ctx, rec, companions[rng.IntN(len(companions))], rng)
				case r < 30:
					w.versioned(ctx, rec, p)
				case r < 45:
					w.batch(ctx, rec, rng)
				case r < 50:
					w.teleport(ctx, rec, p, rng)
				case r < 55:
					w.leaveAndRejoin(ctx, rec, p)
				default:
					_, _ = w.mutate(ctx, rec, p, deltaOps(rng), nil)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// moreCrashesDue reports whether the workload must go on for --min-crashes:
// fewer crashes have happened, and the phase is less than 2 minutes past
// its deadline.
func (w *world) moreCrashesDue(deadline time.Time) bool {
	return w.crashes != nil && w.crashes.count() < w.p.MinCrashes && time.Now().Before(deadline.Add(2*time.Minute))
}

// plannedMutation is one mutation of the service-versus-ceiling comparison.
type plannedMutation struct {
	player int // index into the players
	ops    []map[string]any
}

// plan makes the comparison's mutations, the same list for both sides.
func plan(n, players int, seed uint64) []plannedMutation {
	rng := rand.New(rand.NewPCG(seed, 0xce11))
	out := make([]plannedMutation, n)
	for i := range out {
		out[i] = plannedMutation{player: rng.IntN(players), ops: deltaOps(rng)}
	}
	return out
}

// runPlanned sends the planned mutations through the service with the
// configured number of callers and returns the wall time.
func (w *world) runPlanned(ctx context.Context, rec *recorder, muts []plannedMutation) time.Duration {
	next := make(chan plannedMutation)
	start := time.Now()
	var wg sync.WaitGroup
	for range w.p.Workers {
		wg.Go(func() {
			for m := range next {
				_, _ = w.mutate(ctx, rec, w.players[m.player], m.ops, nil)
			}
		})
	}
	for _, m := range muts {
		select {
		case next <- m:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return time.Since(start)
}

// hotPlayer has callers send +1 coin deltas to one player at once.
func (w *world) hotPlayer(ctx context.Context, rec *recorder) (*player, time.Duration, error) {
	p := &player{id: w.newPlayerID()}
	if err := w.join(ctx, rec, p, w.jobs[0], false); err != nil {
		return nil, 0, err
	}
	var acked atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range w.p.HotCallers {
		wg.Go(func() {
			for range w.p.HotEach {
				a, err := w.mutate(ctx, rec, p, []map[string]any{{"op": "currency.add", "currency": "coins", "amount": int64(1)}}, nil)
				if err == nil && a.ok() {
					acked.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	w.exp.mu.Lock()
	w.exp.hot[p.id] = w.st.cfg.Currencies["coins"].Start + acked.Load()
	w.exp.mu.Unlock()
	return p, took, nil
}

// poll runs each job's changes long-poll until ctx ends, recording what it
// returns; drain then reads whatever is left.
type poller struct {
	w       *world
	rec     *recorder
	cursors map[string]string
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

func (w *world) startPolling(ctx context.Context, rec *recorder) *poller {
	pctx, cancel := context.WithCancel(ctx)
	pl := &poller{w: w, rec: rec, cursors: map[string]string{}, cancel: cancel}
	var mu sync.Mutex
	for _, job := range w.jobs {
		pl.wg.Go(func() {
			cursor := ""
			for pctx.Err() == nil {
				next, _, err := w.pollOnce(pctx, rec, job, cursor, "2s")
				if err != nil {
					continue
				}
				cursor = next
			}
			mu.Lock()
			pl.cursors[job] = cursor
			mu.Unlock()
		})
	}
	return pl
}

// stop ends the long-polls and drains every job's remaining changes.
func (pl *poller) stop(ctx context.Context) {
	pl.cancel()
	pl.wg.Wait()
	for job, cursor := range pl.cursors {
		for range 100 {
			next, n, err := pl.w.pollOnce(ctx, pl.rec, job, cursor, "0s")
			if err != nil || n == 0 {
				break
			}
			cursor = next
		}
	}
}

// pollOnce is one long-poll call; it returns the next cursor and how many
// changes came back.
func (w *world) pollOnce(ctx context.Context, rec *recorder, job, cursor, timeout string) (string, int, error) {
	path := "/v1/servers/" + url.PathEscape(job) + "/changes?timeout=" + timeout + "&cursor=" + url.QueryEscape(cursor)
	a, err := w.c.call(ctx, rec, routeChanges, "GET", path, w.serverHeaders("", ""), nil)
	if err != nil {
		return cursor, 0, err
	}
	if !a.ok() {
		return cursor, 0, fmt.Errorf("changes: %d %s", a.Status, a.Code)
	}
	var page struct {
		Changes []struct {
			UserID  int64 `json:"userId"`
			Version int64 `json:"version"`
		} `json:"changes"`
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal(a.Body, &page); err != nil {
		return cursor, 0, err
	}
	for _, c := range page.Changes {
		w.exp.see(job, c.UserID, c.Version)
	}
	return page.Cursor, len(page.Changes), nil
}
