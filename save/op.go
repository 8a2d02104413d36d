package save

import (
	"strings"
)

// Op kinds. Each has one merge strategy (see Strategy).
const (
	OpCurrencyAdd      = "currency.add"
	OpStatAdd          = "stat.add"
	OpXPAdd            = "xp.add"
	OpItemGrant        = "item.grant"
	OpItemConsume      = "item.consume"
	OpLoadoutSet       = "loadout.set"
	OpInventorySwap    = "inventory.swap"
	OpSaveReplace      = "save.replace"
	OpSettingsSet      = "settings.set"
	OpCollectionAdd    = "collection.add"
	OpCollectionRemove = "collection.remove"
	OpPurchase         = "purchase"
)

// XPStat is the stat that xp.add changes; a config that uses xp.add declares it.
const XPStat = "xp"

// Strategy is how concurrent writers of an op kind are reconciled.
type Strategy string

// Strategies, as in the design's merge table.
const (
	// StrategyDelta ops commute and are checked only against floors and caps.
	StrategyDelta Strategy = "delta"
	// StrategyVersioned ops need expectedVersion to equal the current version.
	StrategyVersioned Strategy = "versioned"
	// StrategyLastWriterWins ops overwrite; the latest commit wins.
	StrategyLastWriterWins Strategy = "last-writer-wins"
	// StrategyORSet ops edit an observed-remove set; add wins over a concurrent remove.
	StrategyORSet Strategy = "or-set"
	// StrategyCatalog ops take price and grants from the server-side catalog.
	StrategyCatalog Strategy = "catalog"
)

// opSpec describes one op kind: its strategy and the fields it uses.
type opSpec struct {
	strategy Strategy
	fields   []string
}

var opSpecs = map[string]opSpec{
	OpCurrencyAdd:      {StrategyDelta, []string{"currency", "amount"}},
	OpStatAdd:          {StrategyDelta, []string{"stat", "amount"}},
	OpXPAdd:            {StrategyDelta, []string{"amount"}},
	OpItemGrant:        {StrategyDelta, []string{"item", "count"}},
	OpItemConsume:      {StrategyDelta, []string{"item", "count"}},
	OpLoadoutSet:       {StrategyVersioned, []string{"slot", "item"}},
	OpInventorySwap:    {StrategyVersioned, []string{"remove", "add"}},
	OpSaveReplace:      {StrategyVersioned, []string{"save"}},
	OpSettingsSet:      {StrategyLastWriterWins, []string{"key", "value"}},
	OpCollectionAdd:    {StrategyORSet, []string{"collection", "element"}},
	OpCollectionRemove: {StrategyORSet, []string{"collection", "element", "observedVersion"}},
	OpPurchase:         {StrategyCatalog, []string{"sku"}},
}

// grantOps are the op kinds a catalog SKU may grant.
var grantOps = map[string]bool{
	OpCurrencyAdd:   true,
	OpStatAdd:       true,
	OpXPAdd:         true,
	OpItemGrant:     true,
	OpCollectionAdd: true,
}

// Grantable reports whether a catalog SKU may grant op kind kind: only delta
// ops and collection adds, which need no version check, so a purchase never
// conflicts.
func Grantable(kind string) bool { return grantOps[kind] }

// OpKinds returns every op kind, sorted.
func OpKinds() []string { return sortedKeys(opSpecs) }

// StrategyOf returns the merge strategy of an op kind, or "" if it is unknown.
func StrategyOf(kind string) Strategy { return opSpecs[kind].strategy }

// Op is one change in a mutation. Its JSON is flat so that game scripts can
// build it as a plain table; each kind uses only its own fields (see the op
// constants) and any other field set is rejected.
type Op struct {
	Kind     string `json:"op"`
	Currency string `json:"currency,omitempty"`
	Stat     string `json:"stat,omitempty"`
	Item     string `json:"item,omitempty"`
	// Amount is the signed delta of currency.add, stat.add and xp.add; never 0.
	Amount int64 `json:"amount,omitempty"`
	// Count is how many items item.grant gives or item.consume takes; > 0.
	Count int64  `json:"count,omitempty"`
	Slot  string `json:"slot,omitempty"`
	Key   string `json:"key,omitempty"`
	// Value is the new value of settings.set.
	Value      any    `json:"value,omitempty"`
	Collection string `json:"collection,omitempty"`
	Element    string `json:"element,omitempty"`
	// ObservedVersion limits collection.remove to the adds the caller had
	// seen: dots with Version ≤ ObservedVersion. 0 removes every add.
	ObservedVersion int64 `json:"observedVersion,omitempty"`
	// Remove and Add are the items inventory.swap takes and gives.
	Remove map[string]int64 `json:"remove,omitempty"`
	Add    map[string]int64 `json:"add,omitempty"`
	SKU    string           `json:"sku,omitempty"`
	// Save is the whole save of save.replace, in the current schema (the form
	// of State.Encode, or of State.View whose collections are element lists).
	Save map[string]any `json:"save,omitempty"`
}

// decodeOp reads one op from a decoded JSON tree, naming fields under path.
func decodeOp(v any, path string) (Op, error) {
	o, err := asObject(v, path)
	if err != nil {
		return Op{}, err
	}
	var op Op
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"op", &op.Kind}, {"currency", &op.Currency}, {"stat", &op.Stat}, {"item", &op.Item},
		{"slot", &op.Slot}, {"key", &op.Key}, {"collection", &op.Collection},
		{"element", &op.Element}, {"sku", &op.SKU},
	} {
		if *f.dst, err = o.str(f.key); err != nil {
			return Op{}, err
		}
	}
	if op.Amount, _, err = o.int64("amount"); err != nil {
		return Op{}, err
	}
	if op.Count, _, err = o.int64("count"); err != nil {
		return Op{}, err
	}
	if op.ObservedVersion, _, err = o.int64("observedVersion"); err != nil {
		return Op{}, err
	}
	if v, ok := o.get("value"); ok {
		if op.Value, err = plainValue(v, o.field("value")); err != nil {
			return Op{}, err
		}
	}
	if op.Remove, err = o.int64Map("remove"); err != nil {
		return Op{}, err
	}
	if op.Add, err = o.int64Map("add"); err != nil {
		return Op{}, err
	}
	if v, ok := o.get("save"); ok {
		m, isObj := objectValue(v)
		if !isObj {
			return Op{}, invalidf(o.field("save"), "must be an object, got %s", jsonType(v))
		}
		v = m
		pv, err := plainValue(v, o.field("save"))
		if err != nil {
			return Op{}, err
		}
		op.Save = pv.(map[string]any)
	}
	if err := o.done(); err != nil {
		return Op{}, err
	}
	return op, nil
}

// setFields names the fields of op that hold a non-zero value.
func (op Op) setFields() []string {
	var out []string
	add := func(name string, set bool) {
		if set {
			out = append(out, name)
		}
	}
	add("currency", op.Currency != "")
	add("stat", op.Stat != "")
	add("item", op.Item != "")
	add("amount", op.Amount != 0)
	add("count", op.Count != 0)
	add("slot", op.Slot != "")
	add("key", op.Key != "")
	add("value", op.Value != nil)
	add("collection", op.Collection != "")
	add("element", op.Element != "")
	add("observedVersion", op.ObservedVersion != 0)
	add("remove", op.Remove != nil)
	add("add", op.Add != nil)
	add("sku", op.SKU != "")
	add("save", op.Save != nil)
	return out
}

// checkOp validates one op against the config without looking at any state:
// the kind is known, only its fields are set, every id is declared and every
// amount is in range. path prefixes field names ("ops[2]").
func (c *Config) checkOp(op Op, path string) error {
	spec, ok := opSpecs[op.Kind]
	if !ok {
		return invalidf(path+".op", "unknown op %q (known: %s)", op.Kind, strings.Join(OpKinds(), ", "))
	}
	for _, f := range op.setFields() {
		if !contains(spec.fields, f) {
			return invalidf(path+"."+f, "not a field of %s (it takes %s)", op.Kind, strings.Join(spec.fields, ", "))
		}
	}
	switch op.Kind {
	case OpCurrencyAdd:
		if err := checkDeclared(c.Currencies, op.Currency, path+".currency", "currency"); err != nil {
			return err
		}
		return checkNonZero(op.Amount, path+".amount")
	case OpStatAdd:
		if err := checkDeclared(c.Stats, op.Stat, path+".stat", "stat"); err != nil {
			return err
		}
		return checkNonZero(op.Amount, path+".amount")
	case OpXPAdd:
		if _, ok := c.Stats[XPStat]; !ok {
			return invalidf(path+".op", "xp.add needs a stat named %q in the game config", XPStat)
		}
		return checkNonZero(op.Amount, path+".amount")
	case OpItemGrant, OpItemConsume:
		if err := checkDeclared(c.Items, op.Item, path+".item", "item"); err != nil {
			return err
		}
		return checkPositive(op.Count, path+".count")
	case OpLoadoutSet:
		if err := checkDeclared(c.LoadoutSlots, op.Slot, path+".slot", "loadout slot"); err != nil {
			return err
		}
		if op.Item == "" {
			return nil
		}
		if err := checkDeclared(c.Items, op.Item, path+".item", "item"); err != nil {
			return err
		}
		return c.checkSlotAccepts(op.Slot, op.Item, path+".item")
	case OpInventorySwap:
		if len(op.Remove) == 0 && len(op.Add) == 0 {
			return invalidf(path+".remove", "remove or add must list at least one item")
		}
		for _, side := range []struct {
			name string
			m    map[string]int64
		}{{"remove", op.Remove}, {"add", op.Add}} {
			for _, id := range sortedKeys(side.m) {
				p := path + "." + side.name + "." + id
				if err := checkDeclared(c.Items, id, p, "item"); err != nil {
					return err
				}
				if err := checkPositive(side.m[id], p); err != nil {
					return err
				}
			}
		}
		return nil
	case OpSaveReplace:
		if op.Save == nil {
			return invalidf(path+".save", "required")
		}
		return nil
	case OpSettingsSet:
		if err := checkDeclared(c.Settings, op.Key, path+".key", "setting"); err != nil {
			return err
		}
		if op.Value == nil {
			return invalidf(path+".value", "required")
		}
		_, err := normalizeSetting(c.Settings[op.Key], op.Value, path+".value")
		return err
	case OpCollectionAdd, OpCollectionRemove:
		if err := checkDeclared(c.Collections, op.Collection, path+".collection", "collection"); err != nil {
			return err
		}
		if err := c.checkElement(op.Collection, op.Element, path+".element"); err != nil {
			return err
		}
		if op.ObservedVersion < 0 {
			return invalidf(path+".observedVersion", "must be ≥ 0, got %d", op.ObservedVersion)
		}
		return nil
	case OpPurchase:
		if op.SKU == "" {
			return invalidf(path+".sku", "required")
		}
		if _, ok := c.SKUs[op.SKU]; !ok {
			return fieldError(CodeNotFound, path+".sku", "no SKU %q in the catalog", op.SKU).WithDetail("sku", op.SKU)
		}
		return nil
	}
	return nil
}

func (c *Config) checkSlotAccepts(slot, item, path string) error {
	allowed := c.LoadoutSlots[slot].Items
	if len(allowed) > 0 && !contains(allowed, item) {
		return invalidf(path, "slot %q does not accept item %q (it accepts %s)", slot, item, strings.Join(allowed, ", "))
	}
	return nil
}

func checkDeclared[V any](m map[string]V, id, path, what string) error {
	if id == "" {
		return invalidf(path, "required")
	}
	if _, ok := m[id]; !ok {
		return invalidf(path, "unknown %s %q", what, id)
	}
	return nil
}

func checkNonZero(n int64, path string) error {
	if n == 0 {
		return invalidf(path, "required and must not be 0")
	}
	return nil
}

func checkPositive(n int64, path string) error {
	if n <= 0 {
		return invalidf(path, "must be > 0, got %d", n)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
