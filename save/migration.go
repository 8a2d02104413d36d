package save

import (
	"fmt"
	"strconv"
	"strings"
)

// MigrationDef lists the declarative steps that take a save from schema From
// to From+1. Steps run in order, then any Go steps registered for From.
type MigrationDef struct {
	From  int             `json:"from"`
	Steps []MigrationStep `json:"steps"`
}

// MigrationStep is one declarative step; exactly one field is set. Paths are
// dotted ("currencies.coins") and walk nested objects of the raw save.
type MigrationStep struct {
	// Move moves a value; a missing source is a no-op, an existing destination fails.
	Move *MoveStep `json:"move,omitempty"`
	// Set writes a value, or only fills it in when IfMissing.
	Set *SetStep `json:"set,omitempty"`
	// Delete removes the value at a path; a missing value is a no-op.
	Delete string `json:"delete,omitempty"`
	// RenameKey renames a key of an object, adding the counts when both exist.
	RenameKey *RenameKeyStep `json:"renameKey,omitempty"`
	// Require fails naming the field unless it holds a value of the given type.
	Require *RequireStep `json:"require,omitempty"`
	// ToInt converts a numeric string or integral float to int64; a missing
	// value is a no-op, anything else fails.
	ToInt string `json:"toInt,omitempty"`
}

// MoveStep moves the value at From to To, creating objects on the way.
type MoveStep struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// SetStep sets Path to Value (copied), or only when absent if IfMissing.
type SetStep struct {
	Path      string `json:"path"`
	Value     any    `json:"value"`
	IfMissing bool   `json:"ifMissing,omitempty"`
}

// RenameKeyStep renames key From to To in the object at In. When both keys
// exist and hold integers, the counts are added (overflow fails the step);
// any other collision fails.
type RenameKeyStep struct {
	In   string `json:"in"`
	From string `json:"from"`
	To   string `json:"to"`
}

// RequireStep fails unless Path holds a value of Type: "int", "number",
// "string", "bool", "object" or "array".
type RequireStep struct {
	Path string `json:"path"`
	Type string `json:"type"`
}

var requireTypes = []string{"int", "number", "string", "bool", "object", "array"}

type registeredStep struct {
	name string
	fn   func(raw map[string]any) error
}

// RegisterMigration adds a Go step to the migration from schema from to
// from+1, run after that version's declarative steps, in registration order.
// fn edits raw in place. A returned *Error whose details carry a "field"
// keeps that field; any error becomes SAVE_MIGRATION_FAILED naming the step.
// Register at start-up, before the config is shared: it panics when from is
// outside 1..SchemaVersion-1 or fn is nil, which is a programming error.
func (c *Config) RegisterMigration(from int, name string, fn func(raw map[string]any) error) {
	if from < 1 || from >= c.SchemaVersion {
		panic(fmt.Sprintf("save.RegisterMigration(%d, %q): from must be between 1 and %d", from, name, c.SchemaVersion-1))
	}
	if fn == nil {
		panic(fmt.Sprintf("save.RegisterMigration(%d, %q): nil function", from, name))
	}
	if c.registered == nil {
		c.registered = make(map[int][]registeredStep)
	}
	c.registered[from] = append(c.registered[from], registeredStep{name: name, fn: fn})
}

// Migrate returns raw migrated from schema from to c.SchemaVersion. It works
// on a deep copy, so raw is untouched whatever happens. from < 1 counts as 1
// (saves written before versioning). A save newer than the config fails with
// SCHEMA_TOO_NEW (details storedSchema, serverSchema); a failing step with
// SAVE_MIGRATION_FAILED (details step "2->3", field, reason).
func (c *Config) Migrate(raw map[string]any, from int) (map[string]any, error) {
	if from > c.SchemaVersion {
		return nil, Errorf(CodeSchemaTooNew, "the save has schema %d but this server knows only up to %d; upgrade the server", from, c.SchemaVersion).
			WithDetail("storedSchema", from).WithDetail("serverSchema", c.SchemaVersion)
	}
	if from < 1 {
		from = 1
	}
	out := CloneTree(raw)
	for v := from; v < c.SchemaVersion; v++ {
		step := fmt.Sprintf("%d->%d", v, v+1)
		for _, def := range c.Migrations {
			if def.From != v {
				continue
			}
			for _, s := range def.Steps {
				if field, reason := s.apply(out); reason != "" {
					return nil, migrationError(step, field, reason)
				}
			}
		}
		for _, rs := range c.registered[v] {
			if err := runRegistered(rs, out); err != nil {
				field := ""
				if e, ok := AsError(err); ok {
					if f, ok := e.Details["field"].(string); ok {
						field = f
					}
				}
				return nil, migrationError(step, field, fmt.Sprintf("%s: %v", rs.name, err)).WithDetail("name", rs.name)
			}
		}
	}
	return out, nil
}

// LoadState migrates a stored save from its schema and decodes it: the one
// call a reader needs. A save that migrates but then fails validation is
// reported as SAVE_MIGRATION_FAILED too (step "validate"), since the stored
// data, not the request, is at fault.
func (c *Config) LoadState(raw map[string]any, storedSchema int) (State, error) {
	migrated, err := c.Migrate(raw, storedSchema)
	if err != nil {
		return State{}, err
	}
	st, err := c.DecodeState(migrated)
	if err != nil {
		e, ok := AsError(err)
		if !ok {
			return State{}, migrationError("validate", "", err.Error())
		}
		field, _ := e.Details["field"].(string)
		return State{}, migrationError("validate", field, e.Message)
	}
	return st, nil
}

// CheckClientSchema refuses game code that reads another schema than the
// one the service serves (this game config's current schema: every save
// is migrated to it when read). It knows no stored save, so its message
// speaks of the service's schema only; a join says what is stored.
// Errors: SCHEMA_TOO_NEW (older code; details serviceSchema,
// callerSchema), INVALID_ARGUMENT (code newer than the game config).
func (c *Config) CheckClientSchema(client int) error {
	current := c.SchemaVersion
	switch {
	case client == 0:
		return nil
	case client < current:
		return Errorf(CodeSchemaTooNew,
			"this service serves saves at its current schema %d but the game code reads schema %d: update the game servers", current, client).
			WithDetail("serviceSchema", current).WithDetail("callerSchema", client)
	case client > current:
		return Errorf(CodeInvalidArgument,
			"the game code reads schema %d but this service's game config is at schema %d: deploy the new game config first", client, current).
			WithDetail("field", "schemaVersion").WithDetail("serviceSchema", current).WithDetail("callerSchema", client)
	}
	return nil
}

// CheckJoinSchema refuses a join that could not be served: a stored save
// (exists, at schema stored) newer than this config's schema, or game code
// older than the schema the save would be served at. The message states
// what is stored, including that nothing is for a player with no save yet.
// Errors: SCHEMA_TOO_NEW (details serviceSchema, callerSchema, and
// storedSchema when the player has a document).
func (c *Config) CheckJoinSchema(exists bool, stored, client int) error {
	current := c.SchemaVersion
	stored = max(stored, 1) // saves from before versioning count as 1, as migrations do
	var err *Error
	switch {
	case exists && stored > current:
		err = Errorf(CodeSchemaTooNew,
			"this player's save is stored at schema %d, newer than this service's current schema %d: deploy the game config that knows schema %d, and game servers that read it",
			stored, current, stored)
	case client == 0 || client >= current:
		return nil
	case exists:
		err = Errorf(CodeSchemaTooNew,
			"this player's save is stored at schema %d and is served at this service's current schema %d, but the game code reads schema %d: update the game servers before they load this player",
			stored, current, client)
	default:
		err = Errorf(CodeSchemaTooNew,
			"this player has no save yet; it would start at this service's current schema %d, but the game code reads schema %d: update the game servers before they load this player",
			current, client)
	}
	err = err.WithDetail("serviceSchema", current)
	if client != 0 {
		err = err.WithDetail("callerSchema", client)
	}
	if exists {
		err = err.WithDetail("storedSchema", stored)
	}
	return err
}

func runRegistered(rs registeredStep, raw map[string]any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return rs.fn(raw)
}

func migrationError(step, field, reason string) *Error {
	msg := "migration " + step + " failed"
	if field != "" {
		msg += " at " + field
	}
	e := Errorf(CodeSaveMigrationFailed, "%s: %s", msg, reason).WithDetail("step", step).WithDetail("reason", reason)
	if field != "" {
		e.WithDetail("field", field)
	}
	return e
}

// apply runs one declarative step on raw. On failure it returns the field
// at fault and a non-empty reason.
func (s MigrationStep) apply(raw map[string]any) (field, reason string) {
	switch {
	case s.Move != nil:
		v, ok, f, r := lookup(raw, s.Move.From)
		if r != "" || !ok {
			return f, r
		}
		parent, key, f, r := parentOf(raw, s.Move.To, true)
		if r != "" {
			return f, r
		}
		if _, exists := parent[key]; exists {
			return s.Move.To, "already exists, cannot move " + s.Move.From + " onto it"
		}
		parent[key] = v
		src, srcKey, _, _ := parentOf(raw, s.Move.From, false)
		delete(src, srcKey)
	case s.Set != nil:
		parent, key, f, r := parentOf(raw, s.Set.Path, true)
		if r != "" {
			return f, r
		}
		if _, exists := parent[key]; exists && s.Set.IfMissing {
			return "", ""
		}
		parent[key] = cloneValue(s.Set.Value)
	case s.Delete != "":
		parent, key, f, r := parentOf(raw, s.Delete, false)
		if r != "" {
			return f, r
		}
		delete(parent, key)
	case s.RenameKey != nil:
		rk := s.RenameKey
		v, ok, f, r := lookup(raw, rk.In)
		if r != "" || !ok {
			return f, r
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			return rk.In, "must be an object, got " + jsonType(v)
		}
		old, ok := m[rk.From]
		if !ok {
			return "", ""
		}
		if cur, exists := m[rk.To]; exists {
			a, aok, _ := toInt64(cur)
			b, bok, _ := toInt64(old)
			if !aok || !bok {
				return joinPath(rk.In, rk.To), "already exists and the values are not both integers to merge"
			}
			sum, overflow := addInt64(a, b)
			if overflow {
				return joinPath(rk.In, rk.To), "merging the counts overflows"
			}
			m[rk.To] = sum
		} else {
			m[rk.To] = old
		}
		delete(m, rk.From)
	case s.Require != nil:
		v, ok, f, r := lookup(raw, s.Require.Path)
		if r != "" {
			return f, r
		}
		if !ok {
			return s.Require.Path, "required " + s.Require.Type + " is missing"
		}
		if !hasType(v, s.Require.Type) {
			return s.Require.Path, fmt.Sprintf("must be %s, got %s", s.Require.Type, describe(v))
		}
	case s.ToInt != "":
		v, ok, f, r := lookup(raw, s.ToInt)
		if r != "" || !ok {
			return f, r
		}
		n, reason := convertToInt(v)
		if reason != "" {
			return s.ToInt, reason
		}
		parent, key, _, _ := parentOf(raw, s.ToInt, false)
		parent[key] = n
	}
	return "", ""
}

func convertToInt(v any) (int64, string) {
	if str, ok := v.(string); ok {
		str = strings.TrimSpace(str)
		if n, err := strconv.ParseInt(str, 10, 64); err == nil {
			return n, ""
		}
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return 0, fmt.Sprintf("%q is not a number", str)
		}
		v = f
	}
	n, ok, rangeErr := toInt64(v)
	switch {
	case rangeErr:
		return 0, fmt.Sprintf("%s does not fit in a 64-bit integer", describe(v))
	case !ok:
		return 0, fmt.Sprintf("cannot convert %s to an integer", describe(v))
	}
	return n, ""
}

func hasType(v any, typ string) bool {
	switch typ {
	case "int":
		_, ok, _ := toInt64(v)
		return ok
	case "number":
		_, ok := toFloat64(v)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "bool":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	}
	return false
}

// lookup returns the value at a dotted path. A missing value (or a missing
// object on the way) is not an error; a non-object on the way is.
func lookup(raw map[string]any, path string) (v any, ok bool, field, reason string) {
	parent, key, f, r := parentOf(raw, path, false)
	if r != "" || parent == nil {
		return nil, false, f, r
	}
	v, ok = parent[key]
	return v, ok, "", ""
}

// parentOf returns the object holding the last segment of path, creating
// missing objects when create is set; parent is nil when one is missing.
func parentOf(raw map[string]any, path string, create bool) (parent map[string]any, key, field, reason string) {
	segs := strings.Split(path, ".")
	m := raw
	for i, seg := range segs[:len(segs)-1] {
		next, ok := m[seg]
		if !ok {
			if !create {
				return nil, "", "", ""
			}
			nm := make(map[string]any)
			m[seg] = nm
			m = nm
			continue
		}
		nm, isMap := next.(map[string]any)
		if !isMap {
			return nil, "", strings.Join(segs[:i+1], "."), "must be an object, got " + jsonType(next)
		}
		m = nm
	}
	return m, segs[len(segs)-1], "", ""
}

// CloneTree deep-copies a JSON-like tree of maps and slices, for callers
// that change a save tree in place (UndoChanges) but must keep the original.
func CloneTree(tree map[string]any) map[string]any {
	out := make(map[string]any, len(tree))
	for k, v := range tree {
		out[k] = cloneValue(v)
	}
	return out
}

// cloneValue deep-copies one value of a JSON-like tree.
func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return CloneTree(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	default:
		return v
	}
}

func parseMigrationDef(v any, path string) (MigrationDef, error) {
	o, err := asObject(v, path)
	if err != nil {
		return MigrationDef{}, err
	}
	var def MigrationDef
	if def.From, err = o.integer("from"); err != nil {
		return MigrationDef{}, err
	}
	steps, err := o.array("steps")
	if err != nil {
		return MigrationDef{}, err
	}
	def.Steps = []MigrationStep{}
	for i, sv := range steps {
		s, err := parseMigrationStep(sv, indexPath(o.field("steps"), i))
		if err != nil {
			return MigrationDef{}, err
		}
		def.Steps = append(def.Steps, s)
	}
	return def, o.done()
}

func parseMigrationStep(v any, path string) (MigrationStep, error) {
	o, err := asObject(v, path)
	if err != nil {
		return MigrationStep{}, err
	}
	if len(o.m) != 1 {
		return MigrationStep{}, invalidf(path, "must hold exactly one of move, set, delete, renameKey, require, toInt; got %d keys", len(o.m))
	}
	var s MigrationStep
	if mo, ok, err := o.object("move"); err != nil {
		return s, err
	} else if ok {
		s.Move = &MoveStep{}
		if s.Move.From, err = mo.str("from"); err != nil {
			return s, err
		}
		if s.Move.To, err = mo.str("to"); err != nil {
			return s, err
		}
		if err := mo.done(); err != nil {
			return s, err
		}
	}
	if so, ok, err := o.object("set"); err != nil {
		return s, err
	} else if ok {
		s.Set = &SetStep{}
		if s.Set.Path, err = so.str("path"); err != nil {
			return s, err
		}
		val, ok := so.get("value")
		if !ok {
			return s, invalidf(so.field("value"), "required")
		}
		if s.Set.Value, err = plainValue(val, so.field("value")); err != nil {
			return s, err
		}
		if s.Set.IfMissing, err = so.boolean("ifMissing"); err != nil {
			return s, err
		}
		if err := so.done(); err != nil {
			return s, err
		}
	}
	if s.Delete, err = o.str("delete"); err != nil {
		return s, err
	}
	if ro, ok, err := o.object("renameKey"); err != nil {
		return s, err
	} else if ok {
		s.RenameKey = &RenameKeyStep{}
		for _, f := range []struct {
			key string
			dst *string
		}{{"in", &s.RenameKey.In}, {"from", &s.RenameKey.From}, {"to", &s.RenameKey.To}} {
			if *f.dst, err = ro.str(f.key); err != nil {
				return s, err
			}
		}
		if err := ro.done(); err != nil {
			return s, err
		}
	}
	if ro, ok, err := o.object("require"); err != nil {
		return s, err
	} else if ok {
		s.Require = &RequireStep{}
		if s.Require.Path, err = ro.str("path"); err != nil {
			return s, err
		}
		if s.Require.Type, err = ro.str("type"); err != nil {
			return s, err
		}
		if err := ro.done(); err != nil {
			return s, err
		}
	}
	if s.ToInt, err = o.str("toInt"); err != nil {
		return s, err
	}
	return s, o.done()
}

// validateMigrations checks that each version 1..SchemaVersion-1 has exactly
// one entry and that every step is well formed.
func (c *Config) validateMigrations() error {
	seen := make(map[int]bool)
	for i, def := range c.Migrations {
		path := indexPath("migrations", i)
		if def.From < 1 || def.From >= c.SchemaVersion {
			return invalidf(path+".from", "must be between 1 and %d (schemaVersion %d), got %d", c.SchemaVersion-1, c.SchemaVersion, def.From)
		}
		if seen[def.From] {
			return invalidf(path+".from", "a migration from %d is already declared", def.From)
		}
		seen[def.From] = true
		for j, s := range def.Steps {
			if err := s.validate(indexPath(path+".steps", j)); err != nil {
				return err
			}
		}
	}
	for v := 1; v < c.SchemaVersion; v++ {
		if !seen[v] {
			return invalidf("migrations", "no migration from %d to %d (declare {\"from\": %d, \"steps\": [...]}; steps may be empty or registered in Go)", v, v+1, v)
		}
	}
	return nil
}

func (s MigrationStep) validate(path string) error {
	n := 0
	for _, set := range []bool{s.Move != nil, s.Set != nil, s.Delete != "", s.RenameKey != nil, s.Require != nil, s.ToInt != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return invalidf(path, "must hold exactly one of move, set, delete, renameKey, require, toInt")
	}
	switch {
	case s.Move != nil:
		if err := checkPath(path+".move.from", s.Move.From); err != nil {
			return err
		}
		if err := checkPath(path+".move.to", s.Move.To); err != nil {
			return err
		}
		if s.Move.To == s.Move.From || strings.HasPrefix(s.Move.To, s.Move.From+".") {
			return invalidf(path+".move.to", "cannot move %q into itself", s.Move.From)
		}
	case s.Set != nil:
		if err := checkPath(path+".set.path", s.Set.Path); err != nil {
			return err
		}
		if s.Set.Value == nil {
			return invalidf(path+".set.value", "required")
		}
	case s.Delete != "":
		return checkPath(path+".delete", s.Delete)
	case s.RenameKey != nil:
		if err := checkPath(path+".renameKey.in", s.RenameKey.In); err != nil {
			return err
		}
		if s.RenameKey.From == "" {
			return invalidf(path+".renameKey.from", "required")
		}
		if s.RenameKey.To == "" {
			return invalidf(path+".renameKey.to", "required")
		}
		if s.RenameKey.From == s.RenameKey.To {
			return invalidf(path+".renameKey.to", "must differ from from")
		}
	case s.Require != nil:
		if err := checkPath(path+".require.path", s.Require.Path); err != nil {
			return err
		}
		if !contains(requireTypes, s.Require.Type) {
			return invalidf(path+".require.type", "must be one of %s, got %q", strings.Join(requireTypes, ", "), s.Require.Type)
		}
	case s.ToInt != "":
		return checkPath(path+".toInt", s.ToInt)
	}
	return nil
}

func checkPath(field, path string) error {
	if path == "" {
		return invalidf(field, "required")
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			return invalidf(field, "path %q has an empty segment", path)
		}
	}
	return nil
}

// addInt64 returns a+b and whether it overflowed.
func addInt64(a, b int64) (int64, bool) {
	sum := a + b
	if (b > 0 && sum < a) || (b < 0 && sum > a) {
		return 0, true
	}
	return sum, false
}
