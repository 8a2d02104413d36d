package save

import (
	"fmt"
	"os"
	"regexp"
	"unicode/utf8"
)

// Config is one game's declaration of everything a save may hold and every
// rule a mutation must follow. Studios edit it as JSON; the service refuses to
// start when it does not validate. A Config is read-only once validated
// (RegisterMigration aside, which belongs to start-up), so it is safe to share
// between goroutines.
type Config struct {
	Game          string                   `json:"game"`
	SchemaVersion int                      `json:"schemaVersion"`
	Currencies    map[string]Bounds        `json:"currencies"`
	Stats         map[string]Bounds        `json:"stats"`
	Items         map[string]ItemDef       `json:"items"`
	LoadoutSlots  map[string]SlotDef       `json:"loadoutSlots"`
	Settings      map[string]SettingDef    `json:"settings"`
	Collections   map[string]CollectionDef `json:"collections"`
	SKUs          map[string]SKU           `json:"catalog"`
	Migrations    []MigrationDef           `json:"migrations"`
	Limits        Limits                   `json:"limits"`

	registered map[int][]registeredStep
}

// Bounds are the floor, cap and starting value of a currency or stat. A
// balance never leaves [Floor, Cap].
type Bounds struct {
	Floor int64 `json:"floor"`
	Cap   int64 `json:"cap"`
	Start int64 `json:"start"`
}

// ItemDef declares an item. A stackable item is held up to MaxStack times; a
// unique (non-stackable) item at most once.
type ItemDef struct {
	Stackable bool  `json:"stackable"`
	MaxStack  int64 `json:"maxStack,omitempty"`
}

// SlotDef declares a loadout slot. Items lists the item ids it accepts; an
// empty list accepts any owned item.
type SlotDef struct {
	Items []string `json:"items"`
}

// Setting types a SettingDef may declare.
const (
	SettingBool   = "bool"
	SettingInt    = "int"
	SettingNumber = "number"
	SettingString = "string"
)

// SettingDef declares a player setting: its type, default and constraints.
// Min and Max apply to int and number settings, Enum to int, number and string
// settings, MaxLength (in characters; 0 = bounded only by the save size) to
// string settings. Settings are last-writer-wins.
type SettingDef struct {
	Type      string   `json:"type"`
	Default   any      `json:"default"`
	Min       *float64 `json:"min,omitempty"`
	Max       *float64 `json:"max,omitempty"`
	Enum      []any    `json:"enum,omitempty"`
	MaxLength int      `json:"maxLength,omitempty"`
}

// CollectionDef declares a set of strings a player collects (badges, pets).
// Collections are observed-remove sets, so devices may add and remove
// concurrently without a version check. Only a CompanionEditable
// collection (a wishlist, favourites) may be edited from the companion;
// the others change through the game, the catalog or support, so a
// companion cannot add for free what is earned or sold.
type CollectionDef struct {
	MaxElements       int  `json:"maxElements"`
	MaxElementLength  int  `json:"maxElementLength"`
	CompanionEditable bool `json:"companionEditable,omitempty"`
}

// SKU is one catalog entry: what it costs and what it grants. Prices and
// grants live only here, never in a client's request. Grants are limited to
// delta and collection ops (see Grantable).
type SKU struct {
	Name   string           `json:"name,omitempty"`
	Price  map[string]int64 `json:"price"`
	Grants []Op             `json:"grants"`
}

// Limits bound each mutation and each save. Zero means the default.
type Limits struct {
	MaxOpsPerMutation int `json:"maxOpsPerMutation,omitempty"`
	MaxSaveBytes      int `json:"maxSaveBytes,omitempty"`
}

// Default and maximum limits. MaxSaveBytesCeiling keeps a save, plus the
// player document's other fields, under Firestore's 1 MiB document limit.
const (
	DefaultMaxOpsPerMutation = 50
	DefaultMaxSaveBytes      = 256 << 10
	MaxSaveBytesCeiling      = 900 << 10
	maxOpsCeiling            = 1000
)

// idPattern is the shape of every id a config declares: safe as a Firestore
// field name, a Luau identifier and a path segment.
var idPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// LoadConfig reads and parses a game config file. Errors name the file and
// the offending field.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("save.LoadConfig(%s): %w", path, err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("save.LoadConfig(%s): %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a game config strictly: unknown fields, duplicate keys,
// wrong types and trailing data are rejected with the field's path, and the
// result is validated.
func ParseConfig(data []byte) (*Config, error) {
	tree, err := decodeStrictJSON(data)
	if err != nil {
		return nil, err
	}
	root, err := asObject(tree, "")
	if err != nil {
		return nil, err
	}
	c := &Config{}
	if c.Game, err = root.str("game"); err != nil {
		return nil, err
	}
	if c.SchemaVersion, err = root.integer("schemaVersion"); err != nil {
		return nil, err
	}
	if c.Currencies, err = parseSection(root, "currencies", parseBounds); err != nil {
		return nil, err
	}
	if c.Stats, err = parseSection(root, "stats", parseBounds); err != nil {
		return nil, err
	}
	if c.Items, err = parseSection(root, "items", parseItem); err != nil {
		return nil, err
	}
	if c.LoadoutSlots, err = parseSection(root, "loadoutSlots", parseSlot); err != nil {
		return nil, err
	}
	if c.Settings, err = parseSection(root, "settings", parseSetting); err != nil {
		return nil, err
	}
	if c.Collections, err = parseSection(root, "collections", parseCollection); err != nil {
		return nil, err
	}
	if c.SKUs, err = parseSection(root, "catalog", parseSKU); err != nil {
		return nil, err
	}
	if c.Migrations, err = parseMigrations(root); err != nil {
		return nil, err
	}
	if c.Limits, err = parseLimits(root); err != nil {
		return nil, err
	}
	if err := root.done(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseSection parses every entry of the object at key with parse, into a
// map that is nil when the section is absent or empty.
func parseSection[T any](root *object, key string, parse func(o *object) (T, error)) (map[string]T, error) {
	var out map[string]T
	err := parseEach(root, key, func(id string, o *object) error {
		d, err := parse(o)
		if err != nil {
			return err
		}
		if out == nil {
			out = make(map[string]T)
		}
		out[id] = d
		return o.done()
	})
	return out, err
}

// parseBounds parses a currency or stat: floor, cap (required) and start.
func parseBounds(o *object) (b Bounds, err error) {
	if b.Floor, _, err = o.int64("floor"); err != nil {
		return b, err
	}
	var hasCap bool
	if b.Cap, hasCap, err = o.int64("cap"); err != nil {
		return b, err
	}
	if !hasCap {
		return b, invalidf(o.field("cap"), "required")
	}
	b.Start, _, err = o.int64("start")
	return b, err
}

// parseItem parses an item: stackable and maxStack.
func parseItem(o *object) (d ItemDef, err error) {
	if d.Stackable, err = o.boolean("stackable"); err != nil {
		return d, err
	}
	d.MaxStack, _, err = o.int64("maxStack")
	return d, err
}

// parseSlot parses a loadout slot: the items it may hold.
func parseSlot(o *object) (SlotDef, error) {
	d := SlotDef{Items: []string{}}
	list, err := o.array("items")
	if err != nil {
		return d, err
	}
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return d, invalidf(indexPath(o.field("items"), i), "must be a string, got %s", jsonType(v))
		}
		d.Items = append(d.Items, s)
	}
	return d, nil
}

// parseSetting parses a setting: type, default, bounds, enum and maxLength.
func parseSetting(o *object) (d SettingDef, err error) {
	if d.Type, err = o.str("type"); err != nil {
		return d, err
	}
	if v, ok := o.get("default"); ok {
		if d.Default, err = plainValue(v, o.field("default")); err != nil {
			return d, err
		}
	}
	if d.Min, err = o.float("min"); err != nil {
		return d, err
	}
	if d.Max, err = o.float("max"); err != nil {
		return d, err
	}
	enum, err := o.array("enum")
	if err != nil {
		return d, err
	}
	for i, v := range enum {
		pv, err := plainValue(v, indexPath(o.field("enum"), i))
		if err != nil {
			return d, err
		}
		d.Enum = append(d.Enum, pv)
	}
	d.MaxLength, err = o.integer("maxLength")
	return d, err
}

// parseCollection parses a collection: its limits and whether the
// companion may edit it.
func parseCollection(o *object) (d CollectionDef, err error) {
	if d.MaxElements, err = o.integer("maxElements"); err != nil {
		return d, err
	}
	if d.MaxElementLength, err = o.integer("maxElementLength"); err != nil {
		return d, err
	}
	d.CompanionEditable, err = o.boolean("companionEditable")
	return d, err
}

// parseSKU parses a catalog entry: name, price and the ops it grants.
func parseSKU(o *object) (d SKU, err error) {
	if d.Name, err = o.str("name"); err != nil {
		return d, err
	}
	if d.Price, err = o.int64Map("price"); err != nil {
		return d, err
	}
	grants, err := o.array("grants")
	if err != nil {
		return d, err
	}
	for i, g := range grants {
		op, err := decodeOp(g, indexPath(o.field("grants"), i))
		if err != nil {
			return d, err
		}
		d.Grants = append(d.Grants, op)
	}
	return d, nil
}

// parseMigrations parses the migrations list, in order.
func parseMigrations(root *object) ([]MigrationDef, error) {
	list, err := root.array("migrations")
	if err != nil {
		return nil, err
	}
	var out []MigrationDef
	for i, m := range list {
		def, err := parseMigrationDef(m, indexPath("migrations", i))
		if err != nil {
			return nil, err
		}
		out = append(out, def)
	}
	return out, nil
}

// parseLimits parses the optional limits object.
func parseLimits(root *object) (l Limits, err error) {
	o, ok, err := root.object("limits")
	if err != nil || !ok {
		return l, err
	}
	if l.MaxOpsPerMutation, err = o.integer("maxOpsPerMutation"); err != nil {
		return l, err
	}
	if l.MaxSaveBytes, err = o.integer("maxSaveBytes"); err != nil {
		return l, err
	}
	return l, o.done()
}

// parseEach calls fn for every entry of the object at key, in id order.
func parseEach(root *object, key string, fn func(id string, o *object) error) error {
	parent, ok, err := root.object(key)
	if err != nil || !ok {
		return err
	}
	for _, id := range parent.keys() {
		parent.seen[id] = true
		o, err := asObject(parent.m[id], parent.field(id))
		if err != nil {
			return err
		}
		if err := fn(id, o); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the config's semantics and returns the first problem found
// (in a stable order) as an INVALID_ARGUMENT *Error whose message starts with
// the field's path, e.g. "currencies.coins.cap: must be ≥ floor (0), got -5".
func (c *Config) Validate() error {
	if c.Game == "" {
		return invalidf("game", "required")
	}
	if n := utf8.RuneCountInString(c.Game); n > 100 || !utf8.ValidString(c.Game) {
		return invalidf("game", "must be valid text of at most 100 characters")
	}
	if c.SchemaVersion < 1 {
		return invalidf("schemaVersion", "must be ≥ 1, got %d", c.SchemaVersion)
	}
	for _, group := range []struct {
		name string
		m    map[string]Bounds
	}{{"currencies", c.Currencies}, {"stats", c.Stats}} {
		for _, id := range sortedKeys(group.m) {
			if err := validateBounds(group.name+"."+id, id, group.m[id]); err != nil {
				return err
			}
		}
	}
	for _, id := range sortedKeys(c.Items) {
		path := "items." + id
		if err := checkID(path, id); err != nil {
			return err
		}
		d := c.Items[id]
		switch {
		case d.Stackable && d.MaxStack < 1:
			return invalidf(path+".maxStack", "must be ≥ 1 for a stackable item, got %d", d.MaxStack)
		case !d.Stackable && d.MaxStack != 0:
			return invalidf(path+".maxStack", "only stackable items have a maxStack (unique items hold at most 1)")
		}
	}
	for _, id := range sortedKeys(c.LoadoutSlots) {
		path := "loadoutSlots." + id
		if err := checkID(path, id); err != nil {
			return err
		}
		seen := make(map[string]bool)
		for i, item := range c.LoadoutSlots[id].Items {
			p := indexPath(path+".items", i)
			if _, ok := c.Items[item]; !ok {
				return invalidf(p, "unknown item %q", item)
			}
			if seen[item] {
				return invalidf(p, "item %q listed twice", item)
			}
			seen[item] = true
		}
	}
	for _, id := range sortedKeys(c.Settings) {
		if err := c.validateSetting(id); err != nil {
			return err
		}
	}
	for _, id := range sortedKeys(c.Collections) {
		path := "collections." + id
		if err := checkID(path, id); err != nil {
			return err
		}
		d := c.Collections[id]
		if d.MaxElements < 1 {
			return invalidf(path+".maxElements", "must be ≥ 1, got %d", d.MaxElements)
		}
		if d.MaxElementLength < 1 || d.MaxElementLength > 1024 {
			return invalidf(path+".maxElementLength", "must be between 1 and 1024, got %d", d.MaxElementLength)
		}
	}
	for _, id := range sortedKeys(c.SKUs) {
		if err := c.validateSKU(id); err != nil {
			return err
		}
	}
	if err := c.validateMigrations(); err != nil {
		return err
	}
	if n := c.Limits.MaxOpsPerMutation; n < 0 || n > maxOpsCeiling {
		return invalidf("limits.maxOpsPerMutation", "must be between 1 and %d (0 = default %d), got %d", maxOpsCeiling, DefaultMaxOpsPerMutation, n)
	}
	if n := c.Limits.MaxSaveBytes; n < 0 || n > MaxSaveBytesCeiling {
		return invalidf("limits.maxSaveBytes", "must be between 1 and %d (0 = default %d), got %d", MaxSaveBytesCeiling, DefaultMaxSaveBytes, n)
	}
	if n, err := c.checkSize(c.NewState()); err != nil {
		return invalidf("limits.maxSaveBytes", "a new player's save (%d bytes) already exceeds %d", n, c.maxSaveBytes())
	}
	return nil
}

func checkID(path, id string) error {
	if !idPattern.MatchString(id) {
		return invalidf(path, "id must match %s", idPattern)
	}
	return nil
}

func validateBounds(path, id string, b Bounds) error {
	if err := checkID(path, id); err != nil {
		return err
	}
	if b.Cap < b.Floor {
		return invalidf(path+".cap", "must be ≥ floor (%d), got %d", b.Floor, b.Cap)
	}
	if b.Start < b.Floor || b.Start > b.Cap {
		return invalidf(path+".start", "must be between floor (%d) and cap (%d), got %d", b.Floor, b.Cap, b.Start)
	}
	return nil
}

func (c *Config) validateSetting(id string) error {
	path := "settings." + id
	if err := checkID(path, id); err != nil {
		return err
	}
	d := c.Settings[id]
	switch d.Type {
	case SettingBool, SettingInt, SettingNumber, SettingString:
	default:
		return invalidf(path+".type", `must be "bool", "int", "number" or "string", got %q`, d.Type)
	}
	numeric := d.Type == SettingInt || d.Type == SettingNumber
	if !numeric && (d.Min != nil || d.Max != nil) {
		if d.Min != nil {
			return invalidf(path+".min", "only int and number settings have a min")
		}
		return invalidf(path+".max", "only int and number settings have a max")
	}
	if d.Type == SettingInt {
		for name, f := range map[string]*float64{"min": d.Min, "max": d.Max} {
			if f != nil && (*f != float64(int64(*f)) || *f > 1<<53 || *f < -(1<<53)) {
				return invalidf(path+"."+name, "must be an integer within ±2^53 for an int setting, got %v", *f)
			}
		}
	}
	if d.Min != nil && d.Max != nil && *d.Max < *d.Min {
		return invalidf(path+".max", "must be ≥ min (%v), got %v", *d.Min, *d.Max)
	}
	if d.Type != SettingString && d.MaxLength != 0 {
		return invalidf(path+".maxLength", "only string settings have a maxLength")
	}
	if d.MaxLength < 0 {
		return invalidf(path+".maxLength", "must be ≥ 0, got %d", d.MaxLength)
	}
	if d.Type == SettingBool && len(d.Enum) > 0 {
		return invalidf(path+".enum", "bool settings have no enum")
	}
	// Enum values are checked against every constraint but the enum itself.
	bare := d
	bare.Enum = nil
	for i, v := range d.Enum {
		if _, err := normalizeSetting(bare, v, indexPath(path+".enum", i)); err != nil {
			return err
		}
	}
	if d.Default == nil {
		return invalidf(path+".default", "required")
	}
	if _, err := normalizeSetting(d, d.Default, path+".default"); err != nil {
		return err
	}
	return nil
}

func (c *Config) validateSKU(id string) error {
	path := "catalog." + id
	if err := checkID(path, id); err != nil {
		return err
	}
	sku := c.SKUs[id]
	if len(sku.Name) > 200 || !utf8.ValidString(sku.Name) {
		return invalidf(path+".name", "must be valid text of at most 200 bytes")
	}
	for _, cur := range sortedKeys(sku.Price) {
		p := path + ".price." + cur
		if _, ok := c.Currencies[cur]; !ok {
			return invalidf(p, "unknown currency %q", cur)
		}
		if sku.Price[cur] <= 0 {
			return invalidf(p, "must be > 0, got %d", sku.Price[cur])
		}
	}
	if len(sku.Grants) == 0 {
		return invalidf(path+".grants", "required: a SKU must grant something")
	}
	for i, g := range sku.Grants {
		p := indexPath(path+".grants", i)
		if !Grantable(g.Kind) {
			return invalidf(p+".op", "%q cannot be granted by a SKU (allowed: currency.add, stat.add, xp.add, item.grant, collection.add)", g.Kind)
		}
		if err := c.checkOp(g, p); err != nil {
			return err
		}
		if g.Kind == OpCollectionAdd && c.Collections[g.Collection].CompanionEditable {
			return invalidf(p+".collection", "collection %q is companionEditable, so the companion could add for free what this SKU sells: make it not companion-editable or grant something else", g.Collection)
		}
		if (g.Kind == OpCurrencyAdd || g.Kind == OpStatAdd || g.Kind == OpXPAdd) && g.Amount < 0 {
			return invalidf(p+".amount", "must be > 0 in a grant, got %d", g.Amount)
		}
	}
	return nil
}

// maxOps is the effective ops-per-mutation limit.
func (c *Config) maxOps() int {
	if c.Limits.MaxOpsPerMutation > 0 {
		return c.Limits.MaxOpsPerMutation
	}
	return DefaultMaxOpsPerMutation
}

// maxSaveBytes is the effective save size limit.
func (c *Config) maxSaveBytes() int {
	if c.Limits.MaxSaveBytes > 0 {
		return c.Limits.MaxSaveBytes
	}
	return DefaultMaxSaveBytes
}
