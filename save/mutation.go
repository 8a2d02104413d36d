package save

import (
	"math"
	"unicode/utf8"
)

// Mutation is a batch of ops applied atomically: all of them commit, or none.
type Mutation struct {
	// ExpectedVersion is the save version the caller last saw. Required when
	// any op is versioned; checked whenever present.
	ExpectedVersion *int64 `json:"expectedVersion,omitempty"`
	Ops             []Op   `json:"ops"`
	// Reason explains the change; the admin route requires it for compensations.
	Reason string `json:"reason,omitempty"`
}

// maxReasonLength bounds Mutation.Reason, in characters.
const maxReasonLength = 1000

// ActorKind is the kind of caller making a mutation; it decides which ops
// the caller may use.
type ActorKind string

// Actor kinds.
const (
	// ActorServer is a Roblox game server: every op.
	ActorServer ActorKind = "server"
	// ActorCompanion is the companion web app: purchase, settings.set,
	// collection.add, collection.remove (on companion-editable collections)
	// and loadout.set only, so a player can never grant themselves currency,
	// items or what the catalog sells.
	ActorCompanion ActorKind = "companion"
	// ActorAdmin is support staff: every op.
	ActorAdmin ActorKind = "admin"
	// ActorSystem is the service itself (restores, erasure): every op.
	ActorSystem ActorKind = "system"
)

// companionOps are the op kinds a companion may use.
var companionOps = map[string]bool{
	OpPurchase:         true,
	OpSettingsSet:      true,
	OpCollectionAdd:    true,
	OpCollectionRemove: true,
	OpLoadoutSet:       true,
}

// Allowed reports whether an actor of kind k may use op kind op.
func (k ActorKind) Allowed(op string) bool {
	switch k {
	case ActorServer, ActorAdmin, ActorSystem:
		return true
	case ActorCompanion:
		return companionOps[op]
	}
	return false
}

// Actor identifies the caller of a mutation. ID is the server's job id, the
// Firebase uid, or the admin's uid; it becomes the actor of collection dots.
type Actor struct {
	Kind ActorKind `json:"kind"`
	ID   string    `json:"id"`
}

// SeenByGameServers is the actor as game servers and anything else
// outside the service may see it: a game server learns that a change came
// from the companion or from support, not which account made it, so the
// id of companion and admin actors (a Firebase uid) is dropped. Game-server
// and system actors keep their id (a universe, a service task), which names
// no person. The ledger and the audit topic keep the full actor.
func (a Actor) SeenByGameServers() Actor {
	switch a.Kind {
	case ActorCompanion, ActorAdmin:
		return Actor{Kind: a.Kind}
	}
	return a
}

// dotActor is the actor recorded in collection dots.
func (a Actor) dotActor() string {
	if a.ID != "" {
		return a.ID
	}
	return string(a.Kind)
}

// Applied is the outcome of Apply: the new state and what changed.
type Applied struct {
	State State
	// Changes lists every changed leaf with its old and new value (nil when
	// absent), sorted by path. A collection leaf is one element, valued by its dots.
	Changes []Change
	// ChangedPaths are the sorted, distinct paths clients refetch by, e.g.
	// "currencies.coins", "items.sword", "settings.music", "collections.badges".
	ChangedPaths []string
}

// Change is one changed leaf of a save.
type Change struct {
	Path string `json:"path"`
	Old  any    `json:"old"`
	New  any    `json:"new"`
}

// DecodeMutation decodes a mutation request body strictly: unknown fields,
// duplicate keys, wrong types, trailing data and integers that overflow int64
// are INVALID_ARGUMENT errors naming the field ("ops[2].amount: ..."). It
// does not check the ops against a config; CheckMutation does.
func DecodeMutation(data []byte) (Mutation, error) {
	tree, err := decodeStrictJSON(data)
	if err != nil {
		return Mutation{}, err
	}
	root, err := asObject(tree, "")
	if err != nil {
		return Mutation{}, err
	}
	var m Mutation
	if n, ok, err := root.int64("expectedVersion"); err != nil {
		return Mutation{}, err
	} else if ok {
		m.ExpectedVersion = &n
	}
	if _, present := root.m["ops"]; !present {
		return Mutation{}, invalidf("ops", "required")
	}
	ops, err := root.array("ops")
	if err != nil {
		return Mutation{}, err
	}
	m.Ops = make([]Op, 0, len(ops))
	for i, v := range ops {
		op, err := decodeOp(v, indexPath("ops", i))
		if err != nil {
			return Mutation{}, err
		}
		m.Ops = append(m.Ops, op)
	}
	if m.Reason, err = root.str("reason"); err != nil {
		return Mutation{}, err
	}
	if err := root.done(); err != nil {
		return Mutation{}, err
	}
	return m, nil
}

// CheckMutation validates m against the config without looking at any
// state: at least one op and no more than the limit (LIMIT_EXCEEDED), known
// op kinds with only their own fields, declared ids and valid amounts
// (INVALID_ARGUMENT), a known SKU (NOT_FOUND), expectedVersion present when an
// op is versioned (INVALID_ARGUMENT), and every op allowed for the actor kind
// (PERMISSION_DENIED naming the op).
func (c *Config) CheckMutation(m Mutation, kind ActorKind) error {
	switch kind {
	case ActorServer, ActorCompanion, ActorAdmin, ActorSystem:
	default:
		return Errorf(CodePermissionDenied, "unknown actor kind %q", kind).WithDetail("actorKind", string(kind))
	}
	if len(m.Ops) == 0 {
		return invalidf("ops", "required: a mutation needs at least one op")
	}
	if limit := c.maxOps(); len(m.Ops) > limit {
		return fieldError(CodeLimitExceeded, "ops", "%d ops, more than the limit of %d per mutation", len(m.Ops), limit).
			WithDetail("limit", limit).WithDetail("count", len(m.Ops))
	}
	if m.ExpectedVersion != nil && *m.ExpectedVersion < 0 {
		return invalidf("expectedVersion", "must be ≥ 0, got %d", *m.ExpectedVersion)
	}
	if !utf8.ValidString(m.Reason) || utf8.RuneCountInString(m.Reason) > maxReasonLength {
		return invalidf("reason", "must be valid text of at most %d characters", maxReasonLength)
	}
	for i, op := range m.Ops {
		path := indexPath("ops", i)
		if _, known := opSpecs[op.Kind]; known && !kind.Allowed(op.Kind) {
			return fieldError(CodePermissionDenied, path+".op", "a %s may not use %s", kind, op.Kind).
				WithDetail("op", op.Kind).WithDetail("actorKind", string(kind))
		}
		if err := c.checkOp(op, path); err != nil {
			return err
		}
		if kind == ActorCompanion && StrategyOf(op.Kind) == StrategyORSet && !c.Collections[op.Collection].CompanionEditable {
			return fieldError(CodePermissionDenied, path+".collection", "collection %q changes only in game or through the catalog, not from the companion", op.Collection).
				WithDetail("op", op.Kind).WithDetail("collection", op.Collection).WithDetail("actorKind", string(kind))
		}
		if kind == ActorCompanion && op.Kind == OpCollectionRemove && op.ObservedVersion < 1 {
			// "Remove every add" would also remove adds this device never saw,
			// which the observed-remove set exists to keep.
			return invalidf(path+".observedVersion", "required from the companion: the save version the user saw when removing (≥ 1)")
		}
		if StrategyOf(op.Kind) == StrategyVersioned && m.ExpectedVersion == nil {
			return invalidf("expectedVersion", "required by %s (%s): versioned ops apply only to the version the caller saw", op.Kind, path)
		}
	}
	return nil
}

// Apply applies m to st, the save at version, on behalf of actor. It calls
// CheckMutation first, never modifies st, and is all-or-nothing: on error
// the returned Applied is empty. The new save is version+1.
//
// Errors: those of CheckMutation; VERSION_CONFLICT (details expectedVersion,
// currentVersion) when ExpectedVersion is set and differs from version;
// INSUFFICIENT_FUNDS when a balance or stack would drop below its floor;
// LIMIT_EXCEEDED when one would rise above its cap, a unique item would be
// held twice, a collection would outgrow maxElements or the encoded save
// maxSaveBytes; NOT_OWNED when loadout.set names an item the player does
// not own (or whose every owned copy is equipped elsewhere); INVALID_ARGUMENT
// for a save.replace that does not validate.
func (c *Config) Apply(st State, version int64, m Mutation, actor Actor) (Applied, error) {
	if err := c.CheckMutation(m, actor.Kind); err != nil {
		return Applied{}, err
	}
	return c.applyChecked(st, version, m, actor)
}

// applyChecked is Apply for a mutation that has passed CheckMutation: it
// checks only what depends on the state.
func (c *Config) applyChecked(st State, version int64, m Mutation, actor Actor) (Applied, error) {
	if m.ExpectedVersion != nil && *m.ExpectedVersion != version {
		return Applied{}, Errorf(CodeVersionConflict, "expectedVersion %d is not the current version %d; refetch and retry", *m.ExpectedVersion, version).
			WithDetail("expectedVersion", *m.ExpectedVersion).WithDetail("currentVersion", version)
	}
	if version < 0 || version == math.MaxInt64 {
		return Applied{}, Errorf(CodeInvalidArgument, "version %d cannot be advanced", version)
	}
	next := st.Clone()
	a := applier{c: c, st: &next, newVersion: version + 1, actor: actor}
	for i, op := range m.Ops {
		if err := a.apply(op, indexPath("ops", i)); err != nil {
			if e, ok := AsError(err); ok {
				e.WithDetail("opIndex", i)
			}
			return Applied{}, err
		}
	}
	if _, err := c.checkSize(next); err != nil {
		return Applied{}, err
	}
	changes, paths := diffStates(st, next)
	return Applied{State: next, Changes: changes, ChangedPaths: paths}, nil
}

// applier applies ops to one working copy of a state.
type applier struct {
	c          *Config
	st         *State
	newVersion int64
	actor      Actor
}

func (a *applier) apply(op Op, path string) error {
	c, st := a.c, a.st
	switch op.Kind {
	case OpCurrencyAdd:
		return addBounded(st.Currencies, c.Currencies[op.Currency], op.Currency, op.Amount, "currency", path)
	case OpStatAdd:
		return addBounded(st.Stats, c.Stats[op.Stat], op.Stat, op.Amount, "stat", path)
	case OpXPAdd:
		return addBounded(st.Stats, c.Stats[XPStat], XPStat, op.Amount, "stat", path)
	case OpItemGrant:
		return a.grantItem(op.Item, op.Count, path)
	case OpItemConsume:
		return a.consumeItem(op.Item, op.Count, path)
	case OpLoadoutSet:
		return a.setLoadout(op.Slot, op.Item, path)
	case OpInventorySwap:
		for _, id := range sortedKeys(op.Remove) {
			if err := a.consumeItem(id, op.Remove[id], path+".remove."+id); err != nil {
				return err
			}
		}
		for _, id := range sortedKeys(op.Add) {
			if err := a.grantItem(id, op.Add[id], path+".add."+id); err != nil {
				return err
			}
		}
		return nil
	case OpSaveReplace:
		return a.replace(op.Save, path+".save")
	case OpSettingsSet:
		v, err := normalizeSetting(c.Settings[op.Key], op.Value, path+".value")
		if err != nil {
			return err
		}
		st.Settings[op.Key] = v
		return nil
	case OpCollectionAdd:
		set := a.collection(op.Collection)
		if _, present := set[op.Element]; !present {
			if max := c.Collections[op.Collection].MaxElements; len(set) >= max {
				return fieldError(CodeLimitExceeded, path+".element", "collection %q already holds its maximum of %d elements", op.Collection, max).
					WithDetail("collection", op.Collection).WithDetail("maxElements", max)
			}
		}
		addElement(set, op.Element, Dot{Version: a.newVersion, Actor: a.actor.dotActor()})
		return nil
	case OpCollectionRemove:
		removeElement(a.collection(op.Collection), op.Element, op.ObservedVersion)
		return nil
	case OpPurchase:
		return a.purchase(op.SKU, path)
	}
	return invalidf(path+".op", "unknown op %q", op.Kind)
}

// addBounded adds amount to m[id], keeping it within b. what names the kind
// of balance in messages and details ("currency", "stat").
func addBounded(m map[string]int64, b Bounds, id string, amount int64, what, path string) error {
	old, ok := m[id]
	if !ok {
		old = b.Start
	}
	sum, overflow := addInt64(old, amount)
	switch {
	case (overflow && amount < 0) || (!overflow && sum < b.Floor):
		return fieldError(CodeInsufficientFunds, path, "%s %q has %d, cannot add %d (floor %d)", what, id, old, amount, b.Floor).
			WithDetail(what, id).WithDetail("balance", old).WithDetail("amount", amount).WithDetail("floor", b.Floor)
	case overflow || sum > b.Cap:
		return fieldError(CodeLimitExceeded, path, "%s %q has %d, cannot add %d (cap %d)", what, id, old, amount, b.Cap).
			WithDetail(what, id).WithDetail("balance", old).WithDetail("amount", amount).WithDetail("cap", b.Cap)
	}
	m[id] = sum
	return nil
}

func (a *applier) grantItem(item string, count int64, path string) error {
	def := a.c.Items[item]
	have := a.st.Items[item]
	sum, overflow := addInt64(have, count)
	if limit := def.limit(); overflow || sum > limit {
		e := fieldError(CodeLimitExceeded, path, "holds %d of %q, cannot add %d (at most %d)", have, item, count, limit)
		if !def.Stackable {
			e = fieldError(CodeLimitExceeded, path, "already owns unique item %q", item)
		}
		return e.WithDetail("item", item).WithDetail("have", have).WithDetail("count", count).WithDetail("maxStack", limit)
	}
	a.st.Items[item] = sum
	return nil
}

// consumeItem takes count of item; slots left holding more copies than the
// player owns are cleared, last slot first, so the loadout only ever holds
// owned items.
func (a *applier) consumeItem(item string, count int64, path string) error {
	have := a.st.Items[item]
	if have < count {
		return fieldError(CodeInsufficientFunds, path, "holds %d of %q, cannot take %d", have, item, count).
			WithDetail("item", item).WithDetail("have", have).WithDetail("want", count)
	}
	left := have - count
	if left == 0 {
		delete(a.st.Items, item)
	} else {
		a.st.Items[item] = left
	}
	var slots []string
	for _, slot := range sortedKeys(a.st.Loadout) {
		if a.st.Loadout[slot] == item {
			slots = append(slots, slot)
		}
	}
	for i := len(slots) - 1; i >= 0 && int64(i) >= left; i-- {
		delete(a.st.Loadout, slots[i])
	}
	return nil
}

func (a *applier) setLoadout(slot, item, path string) error {
	if item == "" {
		delete(a.st.Loadout, slot)
		return nil
	}
	var elsewhere int64
	for s, it := range a.st.Loadout {
		if it == item && s != slot {
			elsewhere++
		}
	}
	if have := a.st.Items[item]; have <= elsewhere {
		msg := "item %q is not owned"
		if have > 0 {
			msg = "every owned copy of %q is already equipped in another slot"
		}
		return fieldError(CodeNotOwned, path+".item", msg, item).
			WithDetail("item", item).WithDetail("have", have).WithDetail("equippedElsewhere", elsewhere)
	}
	a.st.Loadout[slot] = item
	return nil
}

// replace swaps the whole state for save, validated by DecodeState.
// Collections may come as element lists (the View form): elements the save
// already holds keep their dots, new ones get this mutation's dot.
func (a *applier) replace(save map[string]any, path string) error {
	raw := save
	if cols, ok := save[keyCollections].(map[string]any); ok {
		converted := make(map[string]any, len(cols))
		for id, v := range cols {
			list, isList := v.([]any)
			if !isList {
				converted[id] = v
				continue
			}
			set := make(map[string]any, len(list))
			for i, e := range list {
				elem, ok := e.(string)
				if !ok {
					return invalidf(indexPath(path+"."+keyCollections+"."+id, i), "must be a string, got %s", jsonType(e))
				}
				if dots, ok := a.st.Collections[id][elem]; ok {
					set[elem] = encodeDots(dots)
				} else {
					set[elem] = []any{map[string]any{"v": a.newVersion, "a": a.actor.dotActor()}}
				}
			}
			converted[id] = set
		}
		raw = make(map[string]any, len(save))
		for k, v := range save {
			raw[k] = v
		}
		raw[keyCollections] = converted
	}
	st, err := a.c.DecodeState(raw)
	if err != nil {
		return prefixField(err, path)
	}
	*a.st = st
	return nil
}

func (a *applier) collection(id string) map[string][]Dot {
	set := a.st.Collections[id]
	if set == nil {
		set = make(map[string][]Dot)
		a.st.Collections[id] = set
	}
	return set
}

// prefixField re-roots an error's field under prefix ("ops[0].save").
func prefixField(err error, prefix string) error {
	e, ok := AsError(err)
	if !ok {
		return err
	}
	out := &Error{Code: e.Code, Message: prefix + ": " + e.Message}
	for k, v := range e.Details {
		out.WithDetail(k, v)
	}
	if field, ok := e.Details["field"].(string); ok && field != "" {
		out.Message = prefix + "." + e.Message
		out.WithDetail("field", prefix+"."+field)
	} else {
		out.WithDetail("field", prefix)
	}
	return out
}
