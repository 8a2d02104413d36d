package emulator

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"cloud.google.com/go/firestore/apiv1/admin/adminpb"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// IndexConfig is a firestore.indexes.json as the Firebase CLI deploys it:
// the composite indexes and the single-field overrides. With one in
// Options.Indexes the server refuses, as Cloud Firestore does, every query
// that needs an index the file does not declare.
type IndexConfig struct {
	// Indexes are the composite indexes.
	Indexes []IndexDefinition `json:"indexes"`
	// FieldOverrides replace the automatic single-field indexes of a field
	// (and of its subfields) in one collection group; an empty Indexes list
	// exempts the field from indexing altogether.
	FieldOverrides []FieldOverride `json:"fieldOverrides"`
}

// IndexDefinition is one composite index.
type IndexDefinition struct {
	// CollectionGroup is the collection id the index covers.
	CollectionGroup string `json:"collectionGroup"`
	// QueryScope is COLLECTION (the default) or COLLECTION_GROUP.
	QueryScope string `json:"queryScope"`
	// Fields are the indexed fields in index order; a trailing __name__
	// may be given, otherwise it follows the last field's direction.
	Fields []IndexField `json:"fields"`
}

// IndexField is one field of a composite index: exactly one of Order
// (ASCENDING, DESCENDING) and ArrayConfig (CONTAINS).
type IndexField struct {
	// FieldPath is the field, dotted, with backquotes where needed.
	FieldPath string `json:"fieldPath"`
	// Order is ASCENDING or DESCENDING.
	Order string `json:"order,omitempty"`
	// ArrayConfig is CONTAINS for array-contains indexes.
	ArrayConfig string `json:"arrayConfig,omitempty"`
}

// FieldOverride sets the single-field indexes of one field.
type FieldOverride struct {
	// CollectionGroup is the collection id the override applies to.
	CollectionGroup string `json:"collectionGroup"`
	// FieldPath is the field; its subfields inherit the override.
	FieldPath string `json:"fieldPath"`
	// TTL marks a time-to-live field; it does not change indexing.
	TTL bool `json:"ttl,omitempty"`
	// Indexes are the single-field indexes the field keeps.
	Indexes []FieldIndex `json:"indexes"`
}

// FieldIndex is one single-field index of an override.
type FieldIndex struct {
	// Order is ASCENDING or DESCENDING.
	Order string `json:"order,omitempty"`
	// ArrayConfig is CONTAINS for an array-contains index.
	ArrayConfig string `json:"arrayConfig,omitempty"`
	// QueryScope is COLLECTION (the default) or COLLECTION_GROUP.
	QueryScope string `json:"queryScope,omitempty"`
}

// LoadIndexConfig reads and checks a firestore.indexes.json file.
func LoadIndexConfig(path string) (*IndexConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("emulator: read indexes: %w", err)
	}
	cfg, err := ParseIndexConfig(data)
	if err != nil {
		return nil, fmt.Errorf("emulator: %s: %w", path, err)
	}
	return cfg, nil
}

// ParseIndexConfig parses and checks the contents of a
// firestore.indexes.json. Keys it does not know (density, vectorConfig, …)
// are ignored; vector index fields do not serve queries here.
func ParseIndexConfig(data []byte) (*IndexConfig, error) {
	var cfg IndexConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse indexes: %w", err)
	}
	if _, err := compileIndexes(&cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Index scopes, as the plan summary of Query Explain names them.
const (
	scopeCollection      = "Collection"
	scopeCollectionGroup = "Collection Group"
)

// idxField is one field of an index or of a query's index need, its path
// in canonical form (query.FormatFieldPath).
type idxField struct {
	path     string
	desc     bool
	contains bool
}

func (f idxField) String() string {
	switch {
	case f.contains:
		return f.path + " CONTAINS"
	case f.desc:
		return f.path + " DESC"
	default:
		return f.path + " ASC"
	}
}

// compositeIndex is a declared composite index without its __name__.
type compositeIndex struct {
	fields   []idxField
	nameDesc bool
}

// singleSet tells which single-field indexes a field has in one scope.
type singleSet struct{ asc, desc, contains bool }

// fieldOverride is a compiled field override: its indexes by scope.
type fieldOverride struct {
	path       []string
	collection singleSet
	group      singleSet
}

// indexCatalog is a compiled IndexConfig.
type indexCatalog struct {
	composites map[string][]compositeIndex // by scopeKey
	overrides  map[string][]fieldOverride  // by collection group
}

func scopeKey(group bool, coll string) string {
	if group {
		return "g\x00" + coll
	}
	return "c\x00" + coll
}

func compileIndexes(cfg *IndexConfig) (*indexCatalog, error) {
	c := &indexCatalog{composites: map[string][]compositeIndex{}, overrides: map[string][]fieldOverride{}}
	for i, ix := range cfg.Indexes {
		where := fmt.Sprintf("indexes[%d] (%s)", i, ix.CollectionGroup)
		if ix.CollectionGroup == "" {
			return nil, fmt.Errorf("%s: collectionGroup is missing", where)
		}
		group, err := parseScope(ix.QueryScope)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var ci compositeIndex
		vector := false
		for j, f := range ix.Fields {
			if f.FieldPath == "" {
				return nil, fmt.Errorf("%s: fields[%d]: fieldPath is missing", where, j)
			}
			path, err := query.ParseFieldPath(f.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("%s: fields[%d]: %s", where, j, status.Convert(err).Message())
			}
			if f.Order == "" && f.ArrayConfig == "" {
				// A vectorConfig field: such indexes serve vector search only.
				vector = true
				continue
			}
			fld, err := parseIndexMode(f.Order, f.ArrayConfig)
			if err != nil {
				return nil, fmt.Errorf("%s: fields[%d] %s: %w", where, j, f.FieldPath, err)
			}
			fld.path = query.FormatFieldPath(path)
			if fld.path == "__name__" {
				if j != len(ix.Fields)-1 {
					return nil, fmt.Errorf("%s: __name__ may only be the last field", where)
				}
				ci.nameDesc = fld.desc
				continue
			}
			ci.fields = append(ci.fields, fld)
		}
		if vector || len(ci.fields) == 0 {
			continue
		}
		if len(ix.Fields) > 0 && query.FormatFieldPath(mustPath(ix.Fields[len(ix.Fields)-1].FieldPath)) != "__name__" {
			last := ci.fields[len(ci.fields)-1]
			ci.nameDesc = last.desc
		}
		k := scopeKey(group, ix.CollectionGroup)
		c.composites[k] = append(c.composites[k], ci)
	}
	for i, o := range cfg.FieldOverrides {
		where := fmt.Sprintf("fieldOverrides[%d] (%s.%s)", i, o.CollectionGroup, o.FieldPath)
		if o.CollectionGroup == "" || o.FieldPath == "" {
			return nil, fmt.Errorf("%s: collectionGroup and fieldPath are required", where)
		}
		path, err := query.ParseFieldPath(o.FieldPath)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", where, status.Convert(err).Message())
		}
		fo := fieldOverride{path: path}
		for j, fi := range o.Indexes {
			group, err := parseScope(fi.QueryScope)
			if err != nil {
				return nil, fmt.Errorf("%s: indexes[%d]: %w", where, j, err)
			}
			mode, err := parseIndexMode(fi.Order, fi.ArrayConfig)
			if err != nil {
				return nil, fmt.Errorf("%s: indexes[%d]: %w", where, j, err)
			}
			set := &fo.collection
			if group {
				set = &fo.group
			}
			switch {
			case mode.contains:
				set.contains = true
			case mode.desc:
				set.desc = true
			default:
				set.asc = true
			}
		}
		c.overrides[o.CollectionGroup] = append(c.overrides[o.CollectionGroup], fo)
	}
	return c, nil
}

func mustPath(s string) []string {
	p, err := query.ParseFieldPath(s)
	if err != nil {
		return []string{s}
	}
	return p
}

func parseScope(s string) (group bool, err error) {
	switch s {
	case "", "COLLECTION":
		return false, nil
	case "COLLECTION_GROUP":
		return true, nil
	default:
		return false, fmt.Errorf("queryScope %q is not COLLECTION or COLLECTION_GROUP", s)
	}
}

func parseIndexMode(order, arrayConfig string) (idxField, error) {
	switch {
	case order != "" && arrayConfig != "":
		return idxField{}, fmt.Errorf("give order or arrayConfig, not both")
	case arrayConfig == "CONTAINS":
		return idxField{contains: true}, nil
	case arrayConfig != "":
		return idxField{}, fmt.Errorf("arrayConfig %q is not CONTAINS", arrayConfig)
	case order == "ASCENDING":
		return idxField{}, nil
	case order == "DESCENDING":
		return idxField{desc: true}, nil
	default:
		return idxField{}, fmt.Errorf("order %q is not ASCENDING or DESCENDING", order)
	}
}

// single tells whether the single-field index f (its direction or
// array-contains mode) exists for a collection id in a scope: the closest
// override of the field or of a parent map decides; without one, Firestore
// indexes every field automatically in collection scope only.
func (c *indexCatalog) single(group bool, coll string, path []string, f idxField) bool {
	var best *fieldOverride
	if c != nil {
		for i, o := range c.overrides[coll] {
			if len(o.path) <= len(path) && slices.Equal(o.path, path[:len(o.path)]) && (best == nil || len(o.path) > len(best.path)) {
				best = &c.overrides[coll][i]
			}
		}
	}
	if best == nil {
		return !group
	}
	set := best.collection
	if group {
		set = best.group
	}
	switch {
	case f.contains:
		return set.contains
	case f.desc:
		return set.desc
	default:
		return set.asc
	}
}

// indexNeed is what one conjunction of a query asks of the indexes:
// equality and array-contains fields (in any index order) followed by the
// ordering, then __name__.
type indexNeed struct {
	group      bool
	coll       string
	eq         []idxField // sorted by path
	eqPaths    map[string][]string
	orders     []idxField
	orderPaths [][]string
	nameDesc   bool
	inequality int // distinct inequality fields, for the error text
}

// usedIndex is an index a plan reads, as Query Explain reports it.
type usedIndex struct {
	group  bool
	fields []idxField
	name   bool // nameDesc
}

func (u usedIndex) properties() string {
	parts := make([]string, 0, len(u.fields)+1)
	for _, f := range u.fields {
		parts = append(parts, f.String())
	}
	parts = append(parts, idxField{path: "__name__", desc: u.name}.String())
	return "(" + strings.Join(parts, ", ") + ")"
}

func (u usedIndex) scope() string {
	if u.group {
		return scopeCollectionGroup
	}
	return scopeCollection
}

// queryIndexNeeds derives the index needs of a structured query, one per
// term of its filter's disjunctive normal form. aggFields are the fields
// of SUM and AVG aggregations, which Firestore reads from an index too.
// The query must already be valid.
func queryIndexNeeds(q *firestorepb.StructuredQuery, aggFields [][]string) []indexNeed {
	from := q.GetFrom()
	if len(from) != 1 {
		return nil
	}
	base := indexNeed{group: from[0].GetAllDescendants(), coll: from[0].GetCollectionId()}
	terms := dnf(q.GetWhere())

	// The ordering: explicit orders, then every inequality field of the
	// whole filter not yet ordered (lexicographically), then __name__, the
	// implicit ones in the direction of the last explicit order.
	var orders []idxField
	var orderPaths [][]string
	seen := map[string]bool{}
	desc := false
	for _, o := range q.GetOrderBy() {
		path := mustPath(o.GetField().GetFieldPath())
		key := query.FormatFieldPath(path)
		desc = o.GetDirection() == firestorepb.StructuredQuery_DESCENDING
		if seen[key] {
			continue
		}
		seen[key] = true
		orders = append(orders, idxField{path: key, desc: desc})
		orderPaths = append(orderPaths, path)
	}
	var ineq [][]string
	for _, t := range terms {
		for _, l := range t {
			if l.kind == leafInequality && !seen[l.key] && l.key != "__name__" {
				seen[l.key] = true
				ineq = append(ineq, l.path)
			}
		}
	}
	slices.SortFunc(ineq, comparePathSegments)
	for _, p := range ineq {
		orders = append(orders, idxField{path: query.FormatFieldPath(p), desc: desc})
		orderPaths = append(orderPaths, p)
	}
	if !seen["__name__"] {
		orders = append(orders, idxField{path: "__name__", desc: desc})
		orderPaths = append(orderPaths, []string{"__name__"})
	}

	needs := make([]indexNeed, 0, len(terms))
	for _, t := range terms {
		n := base
		n.eqPaths = map[string][]string{}
		equal := map[string]bool{}
		ineqFields := map[string]bool{}
		for _, l := range t {
			if l.key == "__name__" {
				continue
			}
			switch l.kind {
			case leafEqual, leafIn:
				if l.kind == leafEqual {
					equal[l.key] = true
				}
				if _, ok := n.eqPaths[l.key]; !ok {
					n.eqPaths[l.key] = l.path
					n.eq = append(n.eq, idxField{path: l.key})
				}
			case leafContains:
				n.eqPaths["\x00"+l.key] = l.path
				n.eq = append(n.eq, idxField{path: l.key, contains: true})
			case leafInequality:
				ineqFields[l.key] = true
			}
		}
		n.inequality = len(ineqFields)
		for i, o := range orders {
			// An order on a field fixed by == does not change the result.
			if equal[o.path] && !ineqFields[o.path] {
				continue
			}
			n.orders = append(n.orders, o)
			n.orderPaths = append(n.orderPaths, orderPaths[i])
		}
		// An equality field that is also ordered (IN with an order on it,
		// say) is read in the ordering part of the index.
		n.eq = slices.DeleteFunc(n.eq, func(f idxField) bool {
			if f.contains {
				return false
			}
			for _, o := range n.orders {
				if o.path == f.path {
					return true
				}
			}
			return false
		})
		last := n.orders[len(n.orders)-1]
		if last.path == "__name__" {
			n.nameDesc = last.desc
			n.orders = n.orders[:len(n.orders)-1]
			n.orderPaths = n.orderPaths[:len(n.orderPaths)-1]
		}
		for _, a := range aggFields {
			key := query.FormatFieldPath(a)
			if _, ok := n.eqPaths[key]; ok {
				continue
			}
			if slices.ContainsFunc(n.orders, func(o idxField) bool { return o.path == key }) {
				continue
			}
			n.orders = append(n.orders, idxField{path: key, desc: n.nameDesc})
			n.orderPaths = append(n.orderPaths, a)
		}
		slices.SortFunc(n.eq, func(a, b idxField) int { return strings.Compare(a.path, b.path) })
		n.eq = slices.CompactFunc(n.eq, func(a, b idxField) bool { return a == b })
		needs = append(needs, n)
	}
	return needs
}

// leafKind classifies a filter for indexing.
type leafKind int

const (
	leafEqual      leafKind = iota // ==, IS_NULL, IS_NAN
	leafIn                         // IN
	leafContains                   // ARRAY_CONTAINS, ARRAY_CONTAINS_ANY
	leafInequality                 // <, <=, >, >=, !=, NOT_IN, IS_NOT_NULL, IS_NOT_NAN
)

type leaf struct {
	kind leafKind
	path []string
	key  string
}

// maxTerms bounds the disjunctive normal form; valid queries have at most 30.
const maxTerms = 64

// dnf returns the conjunctions of a filter's disjunctive normal form; a
// query without a filter has one empty term.
func dnf(f *firestorepb.StructuredQuery_Filter) [][]leaf {
	if f == nil {
		return [][]leaf{nil}
	}
	switch x := f.GetFilterType().(type) {
	case *firestorepb.StructuredQuery_Filter_CompositeFilter:
		subs := x.CompositeFilter.GetFilters()
		if x.CompositeFilter.GetOp() == firestorepb.StructuredQuery_CompositeFilter_OR {
			var out [][]leaf
			for _, s := range subs {
				out = append(out, dnf(s)...)
				if len(out) > maxTerms {
					return out[:maxTerms]
				}
			}
			return out
		}
		out := [][]leaf{nil}
		for _, s := range subs {
			var next [][]leaf
			for _, a := range out {
				for _, b := range dnf(s) {
					next = append(next, append(slices.Clip(a), b...))
					if len(next) > maxTerms {
						break
					}
				}
			}
			out = next
		}
		return out
	case *firestorepb.StructuredQuery_Filter_FieldFilter:
		ff := x.FieldFilter
		path := mustPath(ff.GetField().GetFieldPath())
		l := leaf{path: path, key: query.FormatFieldPath(path)}
		switch ff.GetOp() {
		case firestorepb.StructuredQuery_FieldFilter_EQUAL:
			l.kind = leafEqual
		case firestorepb.StructuredQuery_FieldFilter_IN:
			l.kind = leafIn
		case firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS, firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY:
			l.kind = leafContains
		default:
			l.kind = leafInequality
		}
		return [][]leaf{{l}}
	case *firestorepb.StructuredQuery_Filter_UnaryFilter:
		u := x.UnaryFilter
		path := mustPath(u.GetField().GetFieldPath())
		l := leaf{path: path, key: query.FormatFieldPath(path), kind: leafEqual}
		switch u.GetOp() {
		case firestorepb.StructuredQuery_UnaryFilter_IS_NOT_NULL, firestorepb.StructuredQuery_UnaryFilter_IS_NOT_NAN:
			l.kind = leafInequality
		}
		return [][]leaf{{l}}
	}
	return [][]leaf{nil}
}

// comparePathSegments orders field paths segment by segment, as the
// query engine orders implicit inequality fields.
func comparePathSegments(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// indexChoice is the outcome of planning one need: the indexes read, or
// the index that is missing.
type indexChoice struct {
	used    []usedIndex
	missing *usedIndex // nil when served
	single  bool       // the missing index is a single-field one
}

// choose picks the indexes that serve n. With a nil catalog (no index
// check) every index the need asks for is taken to exist: automatic
// single-field indexes where they suffice, the exact composite otherwise.
func (c *indexCatalog) choose(n indexNeed, check bool) indexChoice {
	if n.coll == "" || (len(n.eq) == 0 && len(n.orders) == 0) {
		return indexChoice{used: []usedIndex{{group: n.group, name: n.nameDesc}}}
	}
	// One ordered field, nothing else: its single-field index.
	if len(n.eq) == 0 && len(n.orders) == 1 && n.orders[0].desc == n.nameDesc {
		o := n.orders[0]
		u := usedIndex{group: n.group, fields: []idxField{o}, name: n.nameDesc}
		if !check || c.single(n.group, n.coll, n.orderPaths[0], o) {
			return indexChoice{used: []usedIndex{u}}
		}
		if ch, ok := c.cover(n); ok {
			return ch
		}
		return indexChoice{missing: &u, single: true}
	}
	if !check {
		if len(n.orders) == 0 {
			var used []usedIndex
			for _, e := range n.eq {
				used = append(used, usedIndex{group: n.group, fields: []idxField{e}, name: n.nameDesc})
			}
			return indexChoice{used: used}
		}
		return indexChoice{used: []usedIndex{n.composite()}}
	}
	if ch, ok := c.cover(n); ok {
		return ch
	}
	if len(n.eq) == 1 && len(n.orders) == 0 {
		u := usedIndex{group: n.group, fields: []idxField{{path: n.eq[0].path, contains: n.eq[0].contains, desc: n.nameDesc && !n.eq[0].contains}}, name: n.nameDesc}
		return indexChoice{missing: &u, single: true}
	}
	u := n.composite()
	return indexChoice{missing: &u}
}

// composite is the composite index that serves n on its own, in the field
// order Firestore's index-creation link proposes: equality fields by name,
// then the ordering, then __name__.
func (n indexNeed) composite() usedIndex {
	fields := slices.Clone(n.eq)
	fields = append(fields, n.orders...)
	return usedIndex{group: n.group, fields: fields, name: n.nameDesc}
}

// cover finds declared indexes whose union serves n: each made of some of
// n's equality fields followed by exactly n's ordering and __name__
// direction (index merging); single-field indexes take part when n has no
// ordering.
func (c *indexCatalog) cover(n indexNeed) (indexChoice, bool) {
	type cand struct {
		u   usedIndex
		eqs map[string]bool
	}
	var cands []cand
	if len(n.orders) == 0 {
		for _, e := range n.eq {
			mode := e
			if !e.contains {
				mode.desc = n.nameDesc
			}
			pathKey := e.path
			if e.contains {
				pathKey = "\x00" + e.path
			}
			if c.single(n.group, n.coll, n.eqPaths[pathKey], mode) {
				cands = append(cands, cand{usedIndex{group: n.group, fields: []idxField{mode}, name: n.nameDesc}, map[string]bool{eqKey(e): true}})
			}
		}
	}
	for _, ci := range c.composites[scopeKey(n.group, n.coll)] {
		if ci.nameDesc != n.nameDesc || len(ci.fields) < len(n.orders) {
			continue
		}
		k := len(ci.fields) - len(n.orders)
		if !slices.Equal(ci.fields[k:], n.orders) {
			continue
		}
		eqs := map[string]bool{}
		ok := true
		for _, f := range ci.fields[:k] {
			key := eqKey(f)
			if eqs[key] || !n.hasEq(f) {
				ok = false
				break
			}
			eqs[key] = true
		}
		if ok {
			cands = append(cands, cand{usedIndex{group: n.group, fields: ci.fields, name: ci.nameDesc}, eqs})
		}
	}
	// Prefer one index that covers every equality field; otherwise merge
	// greedily, largest new coverage first.
	need := map[string]bool{}
	for _, e := range n.eq {
		need[eqKey(e)] = true
	}
	for _, cd := range cands {
		if len(cd.eqs) == len(need) {
			return indexChoice{used: []usedIndex{cd.u}}, true
		}
	}
	if len(need) == 0 {
		return indexChoice{}, false
	}
	var used []usedIndex
	covered := map[string]bool{}
	for len(covered) < len(need) {
		best, gain := -1, 0
		for i, cd := range cands {
			g := 0
			for k := range cd.eqs {
				if !covered[k] {
					g++
				}
			}
			if g > gain {
				best, gain = i, g
			}
		}
		if best < 0 {
			return indexChoice{}, false
		}
		used = append(used, cands[best].u)
		for k := range cands[best].eqs {
			covered[k] = true
		}
	}
	return indexChoice{used: used}, true
}

func eqKey(f idxField) string {
	if f.contains {
		return "\x00" + f.path
	}
	return f.path
}

// hasEq reports whether an index field can serve one of n's equality
// fields: an array-contains field for array-contains, an ordered field in
// either direction for equality.
func (n indexNeed) hasEq(f idxField) bool {
	for _, e := range n.eq {
		if e.path == f.path && e.contains == f.contains {
			return true
		}
	}
	return false
}

// planIndexes plans a query's index use. With check it returns
// FAILED_PRECONDITION, worded as Cloud Firestore words it, when an index
// is missing; otherwise it reports the indexes a plan would read.
func planIndexes(cat *indexCatalog, check bool, dbName string, needs []indexNeed) ([]usedIndex, error) {
	var used []usedIndex
	for _, n := range needs {
		ch := cat.choose(n, check)
		if ch.missing != nil {
			return nil, missingIndexError(dbName, n, *ch.missing, ch.single)
		}
		for _, u := range ch.used {
			if !slices.ContainsFunc(used, func(x usedIndex) bool {
				return x.group == u.group && x.name == u.name && slices.Equal(x.fields, u.fields)
			}) {
				used = append(used, u)
			}
		}
	}
	return used, nil
}

// checkTargetIndexes checks the indexes of a listen target's query when
// the server checks indexes.
func (s *Server) checkTargetIndexes(db *database, t *listenTarget) error {
	if s.indexes == nil || t.query == nil {
		return nil
	}
	_, err := planIndexes(s.indexes, true, db.name, queryIndexNeeds(t.query, nil))
	return err
}

// missingIndexError is Firestore's answer to a query without its index,
// with the console link that creates it.
func missingIndexError(dbName string, n indexNeed, u usedIndex, single bool) error {
	project, database := splitDatabaseName(dbName)
	scope := adminpb.Index_COLLECTION
	if n.group {
		scope = adminpb.Index_COLLECTION_GROUP
	}
	console := "https://console.firebase.google.com/v1/r/project/" + project + "/firestore/"
	if database != "(default)" {
		console += "databases/" + database + "/"
	}
	if single {
		f := u.fields[0]
		ix := &adminpb.Index{
			Name:       dbName + "/collectionGroups/" + n.coll + "/fields/" + f.path,
			QueryScope: scope,
			Fields:     []*adminpb.Index_IndexField{adminField(f)},
		}
		kind := "ASC"
		switch {
		case f.contains:
			kind = "ARRAY_CONTAINS"
		case f.desc:
			kind = "DESC"
		}
		article := "an "
		if n.group {
			kind = "COLLECTION_GROUP_" + kind
			article = "a "
		} else if kind == "DESC" {
			article = "a "
		}
		return status.Errorf(codes.FailedPrecondition, "The query requires %s%s index for collection %s and field %s. You can create it here: %sindexes?create_exemption=%s",
			article, kind, n.coll, f.path, console, encodeIndex(ix))
	}
	ix := &adminpb.Index{
		Name:       dbName + "/collectionGroups/" + n.coll + "/indexes/_",
		QueryScope: scope,
	}
	for _, f := range u.fields {
		ix.Fields = append(ix.Fields, adminField(f))
	}
	ix.Fields = append(ix.Fields, adminField(idxField{path: "__name__", desc: u.name}))
	msg := "The query requires an index. You can create it here: " + console + "indexes?create_composite=" + encodeIndex(ix)
	if n.inequality > 1 {
		msg += " .\nThe query contains range and inequality filters on multiple fields, please refer to the documentation for index selection best practices: https://cloud.google.com/firestore/docs/query-data/multiple-range-fields."
	}
	return status.Error(codes.FailedPrecondition, msg)
}

func adminField(f idxField) *adminpb.Index_IndexField {
	out := &adminpb.Index_IndexField{FieldPath: f.path}
	switch {
	case f.contains:
		out.ValueMode = &adminpb.Index_IndexField_ArrayConfig_{ArrayConfig: adminpb.Index_IndexField_CONTAINS}
	case f.desc:
		out.ValueMode = &adminpb.Index_IndexField_Order_{Order: adminpb.Index_IndexField_DESCENDING}
	default:
		out.ValueMode = &adminpb.Index_IndexField_Order_{Order: adminpb.Index_IndexField_ASCENDING}
	}
	return out
}

// encodeIndex is the create_composite / create_exemption parameter: the
// admin API's Index message, base64 without padding.
func encodeIndex(ix *adminpb.Index) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ix)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// splitDatabaseName splits "projects/p/databases/d" into p and d.
func splitDatabaseName(name string) (project, database string) {
	rest := strings.TrimPrefix(name, "projects/")
	project, database, _ = strings.Cut(rest, "/databases/")
	return project, database
}
