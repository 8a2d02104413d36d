package save

import (
	"sort"
	"unicode/utf8"
)

// State is a save in the current schema, decoded and validated against the
// config. Maps are never nil in a State built by NewState or DecodeState.
type State struct {
	Currencies map[string]int64 `json:"currencies"`
	Stats      map[string]int64 `json:"stats"`
	// Items holds counts: unique items 0 or 1, and a zero count is deleted.
	Items map[string]int64 `json:"items"`
	// Loadout maps a slot to the item equipped in it; empty slots are absent.
	Loadout map[string]string `json:"loadout"`
	// Settings values are normalised to bool, int64, float64 or string.
	Settings map[string]any `json:"settings"`
	// Collections are observed-remove sets: element -> the dots of its adds.
	Collections map[string]map[string][]Dot `json:"collections"`
}

// Dot identifies one add to an observed-remove set: the version the adding
// mutation created and the id of the actor that made it.
type Dot struct {
	Version int64  `json:"v"`
	Actor   string `json:"a"`
}

// Top-level keys of an encoded save.
const (
	keyCurrencies  = "currencies"
	keyStats       = "stats"
	keyItems       = "items"
	keyLoadout     = "loadout"
	keySettings    = "settings"
	keyCollections = "collections"
)

// NewState returns a new player's save: starting balances, setting defaults,
// and empty (never nil) maps.
func (c *Config) NewState() State {
	s := State{
		Currencies:  make(map[string]int64, len(c.Currencies)),
		Stats:       make(map[string]int64, len(c.Stats)),
		Items:       make(map[string]int64),
		Loadout:     make(map[string]string),
		Settings:    make(map[string]any, len(c.Settings)),
		Collections: make(map[string]map[string][]Dot, len(c.Collections)),
	}
	for id, b := range c.Currencies {
		s.Currencies[id] = b.Start
	}
	for id, b := range c.Stats {
		s.Stats[id] = b.Start
	}
	for id, d := range c.Settings {
		v, err := normalizeSetting(d, d.Default, "")
		if err != nil {
			// Validate rejects such configs; keep the raw default rather than lose it.
			v = d.Default
		}
		s.Settings[id] = v
	}
	for id := range c.Collections {
		s.Collections[id] = make(map[string][]Dot)
	}
	return s
}

// DecodeState decodes a raw save (already migrated to the current schema) and
// validates it against the config: every id declared, every balance within
// its bounds, stacks within limits, the loadout holding owned and accepted
// items, settings well typed, collections within limits. Declared values the
// save lacks take their start or default value, so a config may add a
// currency or setting without a migration. Integers may be int64, int,
// integral float64 or json.Number. Errors are INVALID_ARGUMENT naming the
// path, e.g. "currencies.diamonds: unknown currency".
func (c *Config) DecodeState(raw map[string]any) (State, error) {
	s := c.NewState()
	for _, k := range sortedKeys(raw) {
		switch k {
		case keyCurrencies, keyStats, keyItems, keyLoadout, keySettings, keyCollections:
		default:
			return State{}, invalidf(k, "unknown field")
		}
	}
	if err := decodeBounded(raw, keyCurrencies, c.Currencies, s.Currencies, "currency"); err != nil {
		return State{}, err
	}
	if err := decodeBounded(raw, keyStats, c.Stats, s.Stats, "stat"); err != nil {
		return State{}, err
	}
	// Items come before the loadout, which may equip only what is owned.
	if err := c.decodeItems(raw, &s); err != nil {
		return State{}, err
	}
	if err := c.decodeLoadout(raw, &s); err != nil {
		return State{}, err
	}
	if err := c.decodeSettings(raw, &s); err != nil {
		return State{}, err
	}
	if err := c.decodeCollections(raw, &s); err != nil {
		return State{}, err
	}
	return s, nil
}

// decodeItems reads the held items: declared, each count within 0 and its
// stack limit; a count of 0 is no item.
func (c *Config) decodeItems(raw map[string]any, s *State) error {
	items, err := rawMap(raw, keyItems)
	if err != nil {
		return err
	}
	for _, id := range sortedKeys(items) {
		path := keyItems + "." + id
		def, ok := c.Items[id]
		if !ok {
			return invalidf(path, "unknown item")
		}
		n, err := intValue(items[id], path)
		if err != nil {
			return err
		}
		if n < 0 {
			return invalidf(path, "must be ≥ 0, got %d", n)
		}
		if limit := def.limit(); n > limit {
			return invalidf(path, "must be ≤ %d, got %d", limit, n)
		}
		if n > 0 {
			s.Items[id] = n
		}
	}
	return nil
}

// decodeLoadout reads the equipped items: declared slots holding owned
// items they accept, no copy equipped twice.
func (c *Config) decodeLoadout(raw map[string]any, s *State) error {
	loadout, err := rawMap(raw, keyLoadout)
	if err != nil {
		return err
	}
	for _, slot := range sortedKeys(loadout) {
		path := keyLoadout + "." + slot
		if _, ok := c.LoadoutSlots[slot]; !ok {
			return invalidf(path, "unknown loadout slot")
		}
		item, ok := loadout[slot].(string)
		if !ok {
			return invalidf(path, "must be an item id, got %s", jsonType(loadout[slot]))
		}
		if item == "" {
			continue
		}
		if _, ok := c.Items[item]; !ok {
			return invalidf(path, "unknown item %q", item)
		}
		if err := c.checkSlotAccepts(slot, item, path); err != nil {
			return err
		}
		if equipped := s.equippedCount(item); equipped >= s.Items[item] {
			return invalidf(path, "item %q is equipped in %d slots but %d owned", item, equipped+1, s.Items[item])
		}
		s.Loadout[slot] = item
	}
	return nil
}

// decodeSettings reads the settings, each normalised by its definition.
func (c *Config) decodeSettings(raw map[string]any, s *State) error {
	settings, err := rawMap(raw, keySettings)
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(settings) {
		path := keySettings + "." + key
		def, ok := c.Settings[key]
		if !ok {
			return invalidf(path, "unknown setting")
		}
		v, err := normalizeSetting(def, settings[key], path)
		if err != nil {
			return err
		}
		s.Settings[key] = v
	}
	return nil
}

// decodeCollections reads the collections: declared, within maxElements,
// each element with its dots.
func (c *Config) decodeCollections(raw map[string]any, s *State) error {
	collections, err := rawMap(raw, keyCollections)
	if err != nil {
		return err
	}
	for _, id := range sortedKeys(collections) {
		path := keyCollections + "." + id
		def, ok := c.Collections[id]
		if !ok {
			return invalidf(path, "unknown collection")
		}
		elems, ok := collections[id].(map[string]any)
		if !ok {
			return invalidf(path, "must be an object of element -> dots, got %s", jsonType(collections[id]))
		}
		if len(elems) > def.MaxElements {
			return invalidf(path, "holds %d elements, more than maxElements %d", len(elems), def.MaxElements)
		}
		set := s.Collections[id]
		for _, e := range sortedKeys(elems) {
			p := path + "." + e
			if err := c.checkElement(id, e, p); err != nil {
				return err
			}
			dots, err := decodeDots(elems[e], p)
			if err != nil {
				return err
			}
			set[e] = dots
		}
	}
	return nil
}

func decodeBounded(raw map[string]any, key string, defs map[string]Bounds, dst map[string]int64, what string) error {
	m, err := rawMap(raw, key)
	if err != nil {
		return err
	}
	for _, id := range sortedKeys(m) {
		path := key + "." + id
		b, ok := defs[id]
		if !ok {
			return invalidf(path, "unknown %s", what)
		}
		n, err := intValue(m[id], path)
		if err != nil {
			return err
		}
		if n < b.Floor || n > b.Cap {
			return invalidf(path, "must be between %d and %d, got %d", b.Floor, b.Cap, n)
		}
		dst[id] = n
	}
	return nil
}

func decodeDots(v any, path string) ([]Dot, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, invalidf(path, "must be a list of dots, got %s", jsonType(v))
	}
	if len(list) == 0 {
		return nil, invalidf(path, "must hold at least one dot")
	}
	dots := make([]Dot, 0, len(list))
	seen := make(map[Dot]bool, len(list))
	for i, e := range list {
		p := indexPath(path, i)
		m, ok := e.(map[string]any)
		if !ok {
			return nil, invalidf(p, "must be an object {v, a}, got %s", jsonType(e))
		}
		var d Dot
		for _, k := range sortedKeys(m) {
			switch k {
			case "v":
				n, err := intValue(m[k], p+".v")
				if err != nil {
					return nil, err
				}
				if n < 1 {
					return nil, invalidf(p+".v", "must be ≥ 1, got %d", n)
				}
				d.Version = n
			case "a":
				a, ok := m[k].(string)
				if !ok {
					return nil, invalidf(p+".a", "must be a string, got %s", jsonType(m[k]))
				}
				if !utf8.ValidString(a) {
					return nil, invalidf(p+".a", "must be valid UTF-8")
				}
				d.Actor = a
			default:
				return nil, invalidf(p+"."+k, "unknown field")
			}
		}
		if d.Version == 0 {
			return nil, invalidf(p+".v", "required")
		}
		if !seen[d] {
			seen[d] = true
			dots = append(dots, d)
		}
	}
	sortDots(dots)
	return dots, nil
}

// rawMap returns raw[key] as a map; absent or null is an empty map.
func rawMap(raw map[string]any, key string) (map[string]any, error) {
	v, ok := raw[key]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := objectValue(v)
	if !ok {
		return nil, invalidf(key, "must be an object, got %s", jsonType(v))
	}
	return m, nil
}

// limit is the most of an item one player may hold.
func (d ItemDef) limit() int64 {
	if d.Stackable {
		return d.MaxStack
	}
	return 1
}

// equippedCount is how many slots hold item.
func (s State) equippedCount(item string) int64 {
	var n int64
	for _, it := range s.Loadout {
		if it == item {
			n++
		}
	}
	return n
}

// Encode returns the raw form of s, the inverse of DecodeState: nested
// map[string]any and []any holding only int64, float64, string and bool, as
// Firestore stores them. Dots are sorted, so equal states encode equally.
func (s State) Encode() map[string]any {
	return s.encode(false)
}

// View returns the client-facing form of s for API responses: like Encode,
// but each collection is a sorted list of its elements ([]string). A View is
// also accepted by save.replace.
func (s State) View() map[string]any {
	return s.encode(true)
}

func (s State) encode(view bool) map[string]any {
	cols := make(map[string]any, len(s.Collections))
	for id, set := range s.Collections {
		if view {
			cols[id] = sortedKeys(set)
			continue
		}
		m := make(map[string]any, len(set))
		for e, dots := range set {
			m[e] = encodeDots(dots)
		}
		cols[id] = m
	}
	loadout := make(map[string]any, len(s.Loadout))
	for k, v := range s.Loadout {
		loadout[k] = v
	}
	settings := make(map[string]any, len(s.Settings))
	for k, v := range s.Settings {
		settings[k] = v
	}
	return map[string]any{
		keyCurrencies:  encodeInts(s.Currencies),
		keyStats:       encodeInts(s.Stats),
		keyItems:       encodeInts(s.Items),
		keyLoadout:     loadout,
		keySettings:    settings,
		keyCollections: cols,
	}
}

func encodeInts(m map[string]int64) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func encodeDots(dots []Dot) []any {
	sorted := append([]Dot(nil), dots...)
	sortDots(sorted)
	out := make([]any, len(sorted))
	for i, d := range sorted {
		out[i] = map[string]any{"v": d.Version, "a": d.Actor}
	}
	return out
}

// Clone returns a deep copy of s; Apply works on one so that a rejected
// mutation leaves the caller's state untouched.
func (s State) Clone() State {
	out := State{
		Currencies:  cloneMap(s.Currencies),
		Stats:       cloneMap(s.Stats),
		Items:       cloneMap(s.Items),
		Loadout:     cloneMap(s.Loadout),
		Settings:    cloneMap(s.Settings),
		Collections: make(map[string]map[string][]Dot, len(s.Collections)),
	}
	for id, set := range s.Collections {
		cs := make(map[string][]Dot, len(set))
		for e, dots := range set {
			cs[e] = append([]Dot(nil), dots...)
		}
		out.Collections[id] = cs
	}
	return out
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkSize returns the encoded (JSON) size of s and LIMIT_EXCEEDED when it
// is over the config's maxSaveBytes.
func (c *Config) checkSize(s State) (int, error) {
	n := encodedSize(s)
	if limit := c.maxSaveBytes(); n > limit {
		return n, Errorf(CodeLimitExceeded, "the save would be %d bytes, more than the limit of %d", n, limit).
			WithDetail("bytes", n).WithDetail("limit", limit)
	}
	return n, nil
}

// diffStates lists every leaf that differs between old and new, sorted by
// path, and the changed paths at the granularity clients refetch by
// ("currencies.coins", "collections.badges").
func diffStates(old, new State) ([]Change, []string) {
	var changes []Change
	paths := make(map[string]bool)
	diffInts := func(section string, a, b map[string]int64) {
		for _, k := range unionKeys(a, b) {
			av, aok := a[k]
			bv, bok := b[k]
			if aok == bok && av == bv {
				continue
			}
			path := section + "." + k
			changes = append(changes, Change{Path: path, Old: optional(av, aok), New: optional(bv, bok)})
			paths[path] = true
		}
	}
	diffInts(keyCurrencies, old.Currencies, new.Currencies)
	diffInts(keyStats, old.Stats, new.Stats)
	diffInts(keyItems, old.Items, new.Items)
	for _, k := range unionKeys(old.Loadout, new.Loadout) {
		av, aok := old.Loadout[k]
		bv, bok := new.Loadout[k]
		if aok == bok && av == bv {
			continue
		}
		path := keyLoadout + "." + k
		changes = append(changes, Change{Path: path, Old: optional(av, aok), New: optional(bv, bok)})
		paths[path] = true
	}
	for _, k := range unionKeys(old.Settings, new.Settings) {
		av, aok := old.Settings[k]
		bv, bok := new.Settings[k]
		if aok == bok && av == bv {
			continue
		}
		path := keySettings + "." + k
		changes = append(changes, Change{Path: path, Old: av, New: bv})
		paths[path] = true
	}
	for _, id := range unionKeys(old.Collections, new.Collections) {
		a, b := old.Collections[id], new.Collections[id]
		for _, e := range unionKeys(a, b) {
			ad, aok := a[e]
			bd, bok := b[e]
			if aok == bok && dotsEqual(ad, bd) {
				continue
			}
			var ov, nv any
			if aok {
				ov = encodeDots(ad)
			}
			if bok {
				nv = encodeDots(bd)
			}
			changes = append(changes, Change{Path: keyCollections + "." + id + "." + e, Old: ov, New: nv})
			paths[keyCollections+"."+id] = true
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Path < changes[j].Path })
	return changes, sortedKeys(paths)
}

func optional[V any](v V, ok bool) any {
	if !ok {
		return nil
	}
	return v
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func dotsEqual(a, b []Dot) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
