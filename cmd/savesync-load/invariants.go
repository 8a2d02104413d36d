package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/savesync/savesync/save"
)

// Invariant rules, as reported in violations.
const (
	ruleVersionCount   = "version equals the number of ledger entries"
	ruleVersionChain   = "ledger versions run 1..n, each versionBefore one less"
	ruleBalanceChanges = "balance equals start plus the ledger's changes"
	ruleChangeChain    = "each ledger change starts where the previous one ended"
	ruleBalanceOps     = "currency equals start plus the ledger's op deltas"
	ruleKeyOnce        = "no idempotency key applied twice"
	ruleAcked          = "every acknowledged mutation is in the ledger at its version"
	ruleInvalidate     = "every companion write to a held player is an invalidation"
	ruleDelivered      = "every invalidation reached the holding server's long-poll"
	ruleHot            = "the hot player's coins equal start plus its acknowledged deltas"
)

// Violation is one broken invariant.
type Violation struct {
	UserID int64  `json:"userId"`
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

// InvariantReport is what the checks read and found.
type InvariantReport struct {
	Project          string `json:"project"`
	Players          int    `json:"players"`
	LedgerEntries    int    `json:"ledgerEntries"`
	AckedChecked     int    `json:"ackedChecked"`
	CompanionEntries int    `json:"companionEntries"`
	// CompanionHeld counts companion writes made while a game server held
	// the player: each must be an invalidation.
	CompanionHeld int `json:"companionHeld"`
	// Delivered counts those the holding server's long-poll returned;
	// DeliveryChecked says whether the long-poll ran at all.
	Delivered       int         `json:"delivered"`
	DeliveryChecked bool        `json:"deliveryChecked"`
	Violations      []Violation `json:"violations"`

	// held lists the companion writes to held players, for the events report.
	held []heldWrite
}

// ledgerDoc is the part of a ledger entry the checks read.
type ledgerDoc struct {
	id            string
	version       int64
	versionBefore int64
	key           string
	actorKind     string
	actorID       string
	ops           []any
	changes       []any
	invalidate    bool
	holder        string
	committedAt   time.Time
}

// checkInvariants reads every player and ledger of the project and checks
// the invariants; exp adds what callers were told (nil checks the data alone).
func checkInvariants(ctx context.Context, fs *firestore.Client, project string, cfg *save.Config, exp *expectations, checkDelivery bool) (InvariantReport, error) {
	rep := InvariantReport{Project: project, DeliveryChecked: checkDelivery, Violations: []Violation{}}
	players, err := fs.Collection("players").Documents(ctx).GetAll()
	if err != nil {
		return rep, fmt.Errorf("read players: %w", err)
	}
	rep.Players = len(players)

	acked := map[int64]map[string]ack{}
	if exp != nil {
		exp.mu.Lock()
		for key, a := range exp.acked {
			if acked[a.UserID] == nil {
				acked[a.UserID] = map[string]ack{}
			}
			acked[a.UserID][key] = a
		}
		exp.mu.Unlock()
	}

	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, snap := range players {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			entries, err := snap.Ref.Collection("ledger").Documents(ctx).GetAll()
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			userID, _ := strconv.ParseInt(snap.Ref.ID, 10, 64)
			docs := make([]ledgerDoc, len(entries))
			for i, e := range entries {
				docs[i] = decodeLedger(e)
			}
			pr := checkPlayer(cfg, userID, snap.Data(), docs, acked[userID], exp, checkDelivery)
			mu.Lock()
			rep.LedgerEntries += len(docs)
			rep.AckedChecked += len(acked[userID])
			rep.CompanionEntries += pr.companion
			rep.CompanionHeld += pr.held
			rep.Delivered += pr.delivered
			rep.Violations = append(rep.Violations, pr.violations...)
			rep.held = append(rep.held, pr.heldWrites...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return rep, fmt.Errorf("read ledger: %w", firstErr)
	}

	// Acknowledged mutations of players with no document at all.
	seen := map[int64]bool{}
	for _, s := range players {
		id, _ := strconv.ParseInt(s.Ref.ID, 10, 64)
		seen[id] = true
	}
	for userID, keys := range acked {
		if !seen[userID] {
			rep.Violations = append(rep.Violations, Violation{userID, ruleAcked, fmt.Sprintf("%d acknowledged mutations, but the player does not exist", len(keys))})
		}
	}
	sort.Slice(rep.Violations, func(i, j int) bool {
		a, b := rep.Violations[i], rep.Violations[j]
		if a.UserID != b.UserID {
			return a.UserID < b.UserID
		}
		return a.Rule+a.Detail < b.Rule+b.Detail
	})
	return rep, nil
}

func decodeLedger(s *firestore.DocumentSnapshot) ledgerDoc {
	d := s.Data()
	l := ledgerDoc{id: s.Ref.ID, version: toInt(d["version"]), versionBefore: toInt(d["versionBefore"])}
	l.key, _ = d["idempotencyKey"].(string)
	if a, ok := d["actor"].(map[string]any); ok {
		l.actorKind, _ = a["kind"].(string)
		l.actorID, _ = a["id"].(string)
	}
	l.committedAt, _ = d["committedAt"].(time.Time)
	l.ops, _ = d["ops"].([]any)
	l.changes, _ = d["changes"].([]any)
	if o, ok := d["outbox"].(map[string]any); ok {
		l.invalidate, _ = o["invalidate"].(bool)
		l.holder, _ = o["holderJobId"].(string)
	}
	return l
}

// playerResult is what one player's checks found.
type playerResult struct {
	violations []Violation
	heldWrites []heldWrite
	companion  int
	held       int
	delivered  int
}

func checkPlayer(cfg *save.Config, userID int64, data map[string]any, docs []ledgerDoc, acked map[string]ack, exp *expectations, checkDelivery bool) playerResult {
	var r playerResult
	bad := func(rule, format string, args ...any) {
		r.violations = append(r.violations, Violation{userID, rule, fmt.Sprintf(format, args...)})
	}
	version := toInt(data["version"])
	if version != int64(len(docs)) {
		bad(ruleVersionCount, "version %d, %d ledger entries", version, len(docs))
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].version < docs[j].version })
	for i, d := range docs {
		if d.version != int64(i+1) || d.versionBefore != d.version-1 {
			bad(ruleVersionChain, "entry %s: position %d has version %d, versionBefore %d", d.id, i+1, d.version, d.versionBefore)
			break
		}
	}

	// Balances from the changes, with the chain of old and new values.
	final := numericLeaves(data["save"])
	running := startLeaves(cfg)
	for _, d := range docs {
		for _, c := range d.changes {
			m, _ := c.(map[string]any)
			path, _ := m["path"].(string)
			if !isBalancePath(path) {
				continue
			}
			old, nw := toInt(m["old"]), toInt(m["new"])
			if running[path] != old {
				bad(ruleChangeChain, "entry %s (version %d): %s old is %d, the previous entries leave %d", d.id, d.version, path, old, running[path])
			}
			running[path] = nw
		}
	}
	for path := range mergeKeys(final, running) {
		if final[path] != running[path] {
			bad(ruleBalanceChanges, "%s is %d, start plus changes is %d", path, final[path], running[path])
		}
	}

	// Currencies again, from the ops alone and the catalog.
	fromOps := map[string]int64{}
	for id, b := range cfg.Currencies {
		fromOps["currencies."+id] = b.Start
	}
	for _, d := range docs {
		for _, o := range d.ops {
			op, _ := o.(map[string]any)
			kind, _ := op["op"].(string)
			switch kind {
			case save.OpCurrencyAdd:
				cur, _ := op["currency"].(string)
				fromOps["currencies."+cur] += toInt(op["amount"])
			case save.OpPurchase:
				sku, _ := op["sku"].(string)
				entry := cfg.SKUs[sku]
				for cur, price := range entry.Price {
					fromOps["currencies."+cur] -= price
				}
				for _, g := range entry.Grants {
					if g.Kind == save.OpCurrencyAdd {
						fromOps["currencies."+g.Currency] += g.Amount
					}
				}
			}
		}
	}
	for path, want := range fromOps {
		if final[path] != want {
			bad(ruleBalanceOps, "%s is %d, start plus op deltas is %d", path, final[path], want)
		}
	}

	// Idempotency: one entry per (actor, key), and what callers were told.
	byKey := map[string][]ledgerDoc{}
	for _, d := range docs {
		k := d.actorKind + "\x00" + d.actorID + "\x00" + d.key
		byKey[k] = append(byKey[k], d)
		if len(byKey[k]) == 2 {
			bad(ruleKeyOnce, "key %q of %s %s in entries %s and %s", d.key, d.actorKind, d.actorID, byKey[k][0].id, d.id)
		}
	}
	byPlainKey := map[string][]ledgerDoc{}
	for _, d := range docs {
		byPlainKey[d.key] = append(byPlainKey[d.key], d)
	}
	for key, a := range acked {
		got := byPlainKey[key]
		switch {
		case len(got) == 0:
			bad(ruleAcked, "key %s acknowledged at version %d is not in the ledger", key, a.Version)
		case got[0].version != a.Version:
			bad(ruleAcked, "key %s acknowledged at version %d is in the ledger at version %d", key, a.Version, got[0].version)
		}
	}

	// Companion writes while a server held the player are invalidations,
	// and the holder's long-poll returned them.
	for _, d := range docs {
		if d.actorKind != string(save.ActorCompanion) {
			continue
		}
		r.companion++
		if d.holder == "" {
			continue
		}
		r.held++
		r.heldWrites = append(r.heldWrites, heldWrite{userID: userID, version: d.version, holder: d.holder, committed: d.committedAt})
		if !d.invalidate {
			bad(ruleInvalidate, "entry %s (version %d) held by %s is not marked for invalidation", d.id, d.version, d.holder)
			continue
		}
		if checkDelivery && exp != nil {
			exp.mu.Lock()
			ok := exp.seen[d.holder][fmt.Sprintf("%d/%d", userID, d.version)]
			exp.mu.Unlock()
			if ok {
				r.delivered++
			} else {
				bad(ruleDelivered, "version %d was never returned to %s", d.version, d.holder)
			}
		}
	}

	if exp != nil {
		exp.mu.Lock()
		want, isHot := exp.hot[userID]
		exp.mu.Unlock()
		if isHot && final["currencies.coins"] != want {
			bad(ruleHot, "coins %d, expected %d", final["currencies.coins"], want)
		}
	}
	return r
}

// isBalancePath reports whether a change path is a counted balance.
func isBalancePath(p string) bool {
	return strings.HasPrefix(p, "currencies.") || strings.HasPrefix(p, "stats.") || strings.HasPrefix(p, "items.")
}

// startLeaves are the balances of a new save; items start at 0 (absent).
func startLeaves(cfg *save.Config) map[string]int64 {
	out := map[string]int64{}
	for id, b := range cfg.Currencies {
		out["currencies."+id] = b.Start
	}
	for id, b := range cfg.Stats {
		out["stats."+id] = b.Start
	}
	return out
}

// numericLeaves flattens the balances of a stored save.
func numericLeaves(v any) map[string]int64 {
	out := map[string]int64{}
	s, _ := v.(map[string]any)
	for _, section := range []string{"currencies", "stats", "items"} {
		m, _ := s[section].(map[string]any)
		for k, x := range m {
			if n := toInt(x); n != 0 || section != "items" {
				out[section+"."+k] = n
			}
		}
	}
	return out
}

func mergeKeys(a, b map[string]int64) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// toInt reads a stored integer; absent (nil) is 0.
func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case int:
		return int64(x)
	}
	return 0
}
