package save

import (
	"encoding/json"
	"math"
	"sort"
	"strings"
)

// Diff lists every leaf that differs between two saves, sorted by path, in
// the form of a ledger entry's changes: balances, item counts, loadout
// slots and settings by id, collection elements valued by their dots.
func Diff(old, new State) []Change {
	changes, _ := diffStates(old, new)
	if changes == nil {
		return []Change{}
	}
	return changes
}

// UndoChanges sets every path of changes back to its old value in raw, an
// encoded save (State.Encode), so undoing the changes of ledger entries
// newest first walks a save back through its versions. Values are taken as
// recorded, so walking back needs no config; decode the result with
// DecodeState. Paths outside the save (such as "schemaVersion", which a
// migration records) are skipped.
// Errors: INVALID_ARGUMENT naming a path that is not a save leaf.
func UndoChanges(raw map[string]any, changes []Change) error {
	for i := len(changes) - 1; i >= 0; i-- {
		if err := setLeaf(raw, changes[i].Path, changes[i].Old); err != nil {
			return err
		}
	}
	return nil
}

// setLeaf sets one changed leaf of an encoded save; nil removes it.
func setLeaf(raw map[string]any, path string, value any) error {
	section, rest, ok := strings.Cut(path, ".")
	if !ok {
		if path == "schemaVersion" {
			return nil
		}
		return setTreePath(raw, []string{path}, value)
	}
	switch section {
	case keyCurrencies, keyStats, keyItems, keyLoadout, keySettings:
		m := sectionMap(raw, section)
		if value == nil {
			delete(m, rest)
		} else {
			m[rest] = value
		}
		return nil
	case keyCollections:
		id, elem, ok := strings.Cut(rest, ".")
		if !ok || elem == "" {
			return invalidf(path, "a collection change names the collection and the element")
		}
		cols := sectionMap(raw, keyCollections)
		set, _ := cols[id].(map[string]any)
		if set == nil {
			set = make(map[string]any)
			cols[id] = set
		}
		if value == nil {
			delete(set, elem)
		} else {
			set[elem] = value
		}
		return nil
	}
	// A path of an older schema, recorded by the migration that left it.
	return setTreePath(raw, strings.Split(path, "."), value)
}

// setTreePath sets a value at a path of nested maps, creating the maps on
// the way; nil removes the leaf.
func setTreePath(tree map[string]any, path []string, value any) error {
	for i, key := range path[:len(path)-1] {
		next, ok := tree[key].(map[string]any)
		if !ok {
			if _, taken := tree[key]; taken && value != nil {
				return invalidf(strings.Join(path[:i+1], "."), "is not a map in this save")
			}
			if value == nil {
				return nil
			}
			next = make(map[string]any)
			tree[key] = next
		}
		tree = next
	}
	if value == nil {
		delete(tree, path[len(path)-1])
	} else {
		tree[path[len(path)-1]] = value
	}
	return nil
}

// DiffTrees lists the leaves that differ between two encoded saves, which
// may be of different schemas (a migration's before and after): maps are
// walked, anything else is a leaf, and a collection's element (its list of
// adds) is one leaf, as Apply records it. Paths join keys with dots.
func DiffTrees(old, new map[string]any) []Change {
	var out []Change
	diffTrees("", old, new, &out)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func diffTrees(prefix string, old, new map[string]any, out *[]Change) {
	keys := make(map[string]bool, len(old)+len(new))
	for k := range old {
		keys[k] = true
	}
	for k := range new {
		keys[k] = true
	}
	for k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		o, oOK := old[k]
		n, nOK := new[k]
		om, oIsMap := o.(map[string]any)
		nm, nIsMap := n.(map[string]any)
		switch {
		case oIsMap && nIsMap:
			diffTrees(path, om, nm, out)
		case oOK != nOK || !sameLeaf(o, n):
			// A key on one side only is one change, whole, even a map:
			// undoing it removes or restores the map itself.
			*out = append(*out, Change{Path: path, Old: o, New: n})
		}
	}
}

// sameLeaf compares two leaves of encoded saves as JSON would.
func sameLeaf(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// sectionMap returns raw[section] as a map, creating it when absent.
func sectionMap(raw map[string]any, section string) map[string]any {
	m, _ := raw[section].(map[string]any)
	if m == nil {
		m = make(map[string]any)
		raw[section] = m
	}
	return m
}

// RefundPlan is what refunding a purchase does: the ops of the
// compensating mutation, and what could not be taken back because the
// player no longer holds it.
type RefundPlan struct {
	Ops []Op
	// Unrecovered lists grants the player had already spent or used; the
	// refund gives the price back all the same and takes what is left.
	Unrecovered []Shortfall
}

// Shortfall is one grant of a refunded purchase that was not (fully)
// taken back.
type Shortfall struct {
	Path      string `json:"path"`
	Granted   int64  `json:"granted"`
	Recovered int64  `json:"recovered"`
}

// PlanRefund builds the compensating ops that reverse a committed purchase
// entry, given the entry's recorded changes and the player's save now.
// What the player paid (a balance that went down) is given back in full;
// what they received (a balance, stat or item count that went up, a
// collection element that was added) is taken back as far as they still
// hold it, never below its floor, and the rest is reported in
// Unrecovered. Settings and loadout changes are not reversed: they are
// the player's choices, not the purchase's value.
// Errors: INVALID_ARGUMENT when the entry changed nothing a refund can reverse.
func (c *Config) PlanRefund(purchase []Change, now State) (RefundPlan, error) {
	plan := RefundPlan{Ops: []Op{}, Unrecovered: []Shortfall{}}
	for _, ch := range purchase {
		section, rest, _ := strings.Cut(ch.Path, ".")
		switch section {
		case keyCurrencies, keyStats, keyItems:
		case keyCollections:
			id, elem, _ := strings.Cut(rest, ".")
			if ch.Old != nil || ch.New == nil {
				continue
			}
			if _, held := now.Collections[id][elem]; !held {
				plan.Unrecovered = append(plan.Unrecovered, Shortfall{Path: ch.Path, Granted: 1})
				continue
			}
			plan.Ops = append(plan.Ops, Op{Kind: OpCollectionRemove, Collection: id, Element: elem})
			continue
		default:
			continue
		}
		oldN, _ := ChangeInt(ch.Old)
		newN, _ := ChangeInt(ch.New)
		delta := newN - oldN
		if delta == 0 {
			continue
		}
		if delta < 0 {
			plan.Ops = append(plan.Ops, giveOp(section, rest, -delta))
			continue
		}
		available := c.available(section, rest, now)
		take := min(delta, available)
		if take > 0 {
			plan.Ops = append(plan.Ops, takeOp(section, rest, take))
		}
		if take < delta {
			plan.Unrecovered = append(plan.Unrecovered, Shortfall{Path: ch.Path, Granted: delta, Recovered: take})
		}
	}
	if len(plan.Ops) == 0 && len(plan.Unrecovered) == 0 {
		return RefundPlan{}, Errorf(CodeInvalidArgument, "the entry changed no balance, item or collection, so there is nothing to refund")
	}
	if len(plan.Ops) == 0 {
		return RefundPlan{}, Errorf(CodeInsufficientFunds, "the player no longer holds anything the purchase granted and it cost nothing; compensate with explicit ops instead").
			WithDetail("unrecovered", plan.Unrecovered)
	}
	return plan, nil
}

// RefundShortfall recomputes a refund plan's Unrecovered from the refunded
// entry's changes and the refund's own committed changes, so a replayed
// refund reports the same shortfall as the first answer.
func RefundShortfall(purchase, refund []Change) []Shortfall {
	taken := make(map[string]int64, len(refund))
	removed := make(map[string]bool, len(refund))
	for _, ch := range refund {
		if strings.HasPrefix(ch.Path, keyCollections+".") {
			removed[ch.Path] = ch.Old != nil && ch.New == nil
			continue
		}
		oldN, _ := ChangeInt(ch.Old)
		newN, _ := ChangeInt(ch.New)
		taken[ch.Path] = oldN - newN
	}
	out := []Shortfall{}
	for _, ch := range purchase {
		section, _, _ := strings.Cut(ch.Path, ".")
		switch section {
		case keyCollections:
			if ch.Old == nil && ch.New != nil && !removed[ch.Path] {
				out = append(out, Shortfall{Path: ch.Path, Granted: 1})
			}
		case keyCurrencies, keyStats, keyItems:
			oldN, _ := ChangeInt(ch.Old)
			newN, _ := ChangeInt(ch.New)
			if delta := newN - oldN; delta > 0 && taken[ch.Path] < delta {
				out = append(out, Shortfall{Path: ch.Path, Granted: delta, Recovered: max(taken[ch.Path], 0)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// available is how much of a balance, stat or item the player could give
// back without going below its floor.
func (c *Config) available(section, id string, now State) int64 {
	switch section {
	case keyCurrencies:
		return max(now.Currencies[id]-c.Currencies[id].Floor, 0)
	case keyStats:
		return max(now.Stats[id]-c.Stats[id].Floor, 0)
	default:
		return now.Items[id]
	}
}

func giveOp(section, id string, n int64) Op {
	switch section {
	case keyCurrencies:
		return Op{Kind: OpCurrencyAdd, Currency: id, Amount: n}
	case keyStats:
		return Op{Kind: OpStatAdd, Stat: id, Amount: n}
	default:
		return Op{Kind: OpItemGrant, Item: id, Count: n}
	}
}

func takeOp(section, id string, n int64) Op {
	switch section {
	case keyCurrencies:
		return Op{Kind: OpCurrencyAdd, Currency: id, Amount: -n}
	case keyStats:
		return Op{Kind: OpStatAdd, Stat: id, Amount: -n}
	default:
		return Op{Kind: OpItemConsume, Item: id, Count: n}
	}
}

// ChangeInt reads a recorded change value as an integer: int64 as stored,
// float64 or json.Number as decoded from JSON, nil (absent) as 0. ok is
// false for anything else.
func ChangeInt(v any) (n int64, ok bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return int64(x), true
		}
	case json.Number:
		i, err := x.Int64()
		return i, err == nil
	}
	return 0, false
}
