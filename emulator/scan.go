package emulator

import (
	"sort"
	"strings"
	"sync"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/btree"

	"github.com/savesync/savesync/emulator/internal/query"
)

// A query's candidates are found the way Cloud Firestore finds them, so a
// query costs in proportion to what it reads, not to the size of the
// database: documents are grouped by collection, and a query with
// equality or range filters reads the entries of an index over those
// fields (per collection id: its equality fields, then its first range
// field, as a composite index of Cloud Firestore orders them) instead of
// every document of the collection group. The query engine then applies
// every filter, order and limit to the candidates as before, so an index
// only has to return a superset of the matches.
//
// Field indexes are built on first use (one scan of the collection group)
// and kept up to date by every commit from then on. They index the latest
// versions only; a read at an older read_time scans.

// collectionIndex groups a database's documents by collection.
type collectionIndex struct {
	// byPath holds, per collection path ("…/documents/players/1/ledger"),
	// the names of its documents that have a history.
	byPath map[string]map[string]struct{}
	// byID holds, per collection id ("ledger"), its collection paths.
	byID map[string]map[string]struct{}
	// fields are the field indexes built so far. Queries build them under
	// the database's read lock, so fieldsMu guards the map; commits change
	// them under its write lock, when no query runs.
	fieldsMu sync.Mutex
	fields   map[fieldIndexKey]*fieldIndex
}

// fieldIndexKey names a field index: field paths over the documents of
// every collection with one id.
type fieldIndexKey struct {
	collectionID string
	fields       string // query.FormatFieldPath of each path, joined by NUL
}

// fieldIndex orders the latest documents of a collection id that have all
// of its fields by the fields' values (Firestore's order, field by field),
// then by name.
type fieldIndex struct {
	paths [][]string
	tree  *btree.BTreeG[indexEntry]
}

type indexEntry struct {
	vals []*firestorepb.Value
	name string
}

// lessEntry orders entries by their values, then by name; an entry with
// fewer values (a pivot) sorts before every entry that extends them.
func lessEntry(a, b indexEntry) bool {
	for i := range min(len(a.vals), len(b.vals)) {
		if c := query.Compare(a.vals[i], b.vals[i]); c != 0 {
			return c < 0
		}
	}
	if len(a.vals) != len(b.vals) {
		return len(a.vals) < len(b.vals)
	}
	return a.name < b.name
}

// entryOf returns doc's entry in fi, false when doc lacks one of its
// fields.
func (fi *fieldIndex) entryOf(name string, doc *firestorepb.Document) (indexEntry, bool) {
	vals := make([]*firestorepb.Value, len(fi.paths))
	for i, p := range fi.paths {
		v, ok := query.Lookup(doc.GetFields(), p)
		if !ok {
			return indexEntry{}, false
		}
		vals[i] = v
	}
	return indexEntry{vals, name}, true
}

func newCollectionIndex() *collectionIndex {
	return &collectionIndex{
		byPath: map[string]map[string]struct{}{},
		byID:   map[string]map[string]struct{}{},
		fields: map[fieldIndexKey]*fieldIndex{},
	}
}

// historyLocked returns the history of name, created (and filed under its
// collection) when it has none. The caller holds db.mu for writing.
func (db *database) historyLocked(name string) *history {
	if h := db.docs[name]; h != nil {
		return h
	}
	h := &history{}
	db.docs[name] = h
	path, id := collectionPathOf(name)
	docs := db.colls.byPath[path]
	if docs == nil {
		docs = map[string]struct{}{}
		db.colls.byPath[path] = docs
		if db.colls.byID[id] == nil {
			db.colls.byID[id] = map[string]struct{}{}
		}
		db.colls.byID[id][path] = struct{}{}
	}
	docs[name] = struct{}{}
	return h
}

// dropLocked forgets name, whose history holds only an old deletion. The
// caller holds db.mu for writing.
func (db *database) dropLocked(name string) {
	delete(db.docs, name)
	path, id := collectionPathOf(name)
	docs := db.colls.byPath[path]
	delete(docs, name)
	if len(docs) == 0 {
		delete(db.colls.byPath, path)
		delete(db.colls.byID[id], path)
		if len(db.colls.byID[id]) == 0 {
			delete(db.colls.byID, id)
		}
	}
}

// clearLocked empties the database. The caller holds db.mu for writing.
func (db *database) clearLocked() {
	db.docs = map[string]*history{}
	db.colls = newCollectionIndex()
}

// indexChangeLocked keeps the field indexes up to date with a change of
// name's latest version from old to new (nil = missing). The caller holds
// db.mu for writing.
func (db *database) indexChangeLocked(name string, old, new *firestorepb.Document) {
	db.colls.fieldsMu.Lock()
	defer db.colls.fieldsMu.Unlock()
	if len(db.colls.fields) == 0 {
		return
	}
	_, id := collectionPathOf(name)
	for key, fi := range db.colls.fields {
		if key.collectionID != id {
			continue
		}
		if old != nil {
			if e, ok := fi.entryOf(name, old); ok {
				fi.tree.Delete(e)
			}
		}
		if new != nil {
			if e, ok := fi.entryOf(name, new); ok {
				fi.tree.ReplaceOrInsert(e)
			}
		}
	}
}

// fieldIndexLocked returns the index of paths over collection id,
// building it on first use. The caller holds db.mu.
func (db *database) fieldIndexLocked(id string, paths [][]string) *fieldIndex {
	db.colls.fieldsMu.Lock()
	defer db.colls.fieldsMu.Unlock()
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = query.FormatFieldPath(p)
	}
	key := fieldIndexKey{id, strings.Join(names, "\x00")}
	if fi := db.colls.fields[key]; fi != nil {
		return fi
	}
	fi := &fieldIndex{paths: paths, tree: btree.NewG(32, lessEntry)}
	for cp := range db.colls.byID[id] {
		for name := range db.colls.byPath[cp] {
			if d := db.docs[name].latest(); d != nil {
				if e, ok := fi.entryOf(name, d); ok {
					fi.tree.ReplaceOrInsert(e)
				}
			}
		}
	}
	db.colls.fields[key] = fi
	return fi
}

// collectionPathOf splits a document name into its collection's path and
// id.
func collectionPathOf(docName string) (path, id string) {
	i := strings.LastIndexByte(docName, '/')
	if i < 0 {
		return "", ""
	}
	path = docName[:i]
	return path, path[strings.LastIndexByte(path, '/')+1:]
}

// liveDocsLocked returns every document that exists at time t (0 = latest)
// whose name starts with prefix (a parent's name and "/"), sorted by name.
// The caller holds db.mu.
func (db *database) liveDocsLocked(prefix string, t int64) []*firestorepb.Document {
	var out []*firestorepb.Document
	for cp, names := range db.colls.byPath {
		if !strings.HasPrefix(cp+"/", prefix) {
			continue
		}
		out = db.appendLiveLocked(out, names, t)
	}
	sortByName(out)
	return out
}

func (db *database) appendLiveLocked(out []*firestorepb.Document, names map[string]struct{}, t int64) []*firestorepb.Document {
	for name := range names {
		if d := db.docs[name].at(t); d != nil {
			out = append(out, d)
		}
	}
	return out
}

func sortByName(docs []*firestorepb.Document) {
	sort.Slice(docs, func(i, j int) bool { return docs[i].GetName() < docs[j].GetName() })
}

// candidatesLocked lists the live documents under parent at time at (0 =
// latest) whose collection a query over q.from can select, sorted by name:
// the documents of the selected collections, narrowed by a field index
// when the query has an equality or range filter that one can serve. The
// caller holds db.mu.
func candidatesLocked(db *database, parent string, q *firestorepb.StructuredQuery, at int64) []*firestorepb.Document {
	from := q.GetFrom()
	if len(from) != 1 || from[0].GetCollectionId() == "" {
		return filterFrom(db.liveDocsLocked(parent+"/", at), parent, from)
	}
	sel := from[0]
	id := sel.GetCollectionId()
	inScope := func(name string) bool {
		if sel.GetAllDescendants() {
			return strings.HasPrefix(name, parent+"/")
		}
		cp, _ := collectionPathOf(name)
		return cp == parent+"/"+id
	}
	if at == 0 {
		if names, ok := db.indexedLocked(id, q); ok {
			var out []*firestorepb.Document
			for _, name := range names {
				if !inScope(name) {
					continue
				}
				if d := db.docs[name].latest(); d != nil {
					out = append(out, d)
				}
			}
			sortByName(out)
			return out
		}
	}
	var out []*firestorepb.Document
	if !sel.GetAllDescendants() {
		out = db.appendLiveLocked(out, db.colls.byPath[parent+"/"+id], at)
	} else {
		for cp := range db.colls.byID[id] {
			if strings.HasPrefix(cp+"/", parent+"/") {
				out = db.appendLiveLocked(out, db.colls.byPath[cp], at)
			}
		}
	}
	sortByName(out)
	return out
}

// filterFrom keeps the documents whose collection one of the selectors
// names (all of them for no selector).
func filterFrom(all []*firestorepb.Document, parent string, from []*firestorepb.StructuredQuery_CollectionSelector) []*firestorepb.Document {
	if len(from) == 0 {
		return all
	}
	out := all[:0:0]
	for _, d := range all {
		docParent, coll := collectionOf(d.GetName())
		for _, f := range from {
			if f.GetCollectionId() != "" && f.GetCollectionId() != coll {
				continue
			}
			if !f.GetAllDescendants() && docParent != parent {
				continue
			}
			if f.GetAllDescendants() && !strings.HasPrefix(d.GetName(), parent+"/") {
				continue
			}
			out = append(out, d)
			break
		}
	}
	return out
}

// indexedLocked returns the names an index finds for the query's
// equality filters and its first range filter (a superset of the query's
// matches within collection id), and false when it has none.
func (db *database) indexedLocked(id string, q *firestorepb.StructuredQuery) ([]string, bool) {
	var filters []*firestorepb.StructuredQuery_FieldFilter
	collectIndexable(q.GetWhere(), &filters)
	type eq struct {
		name string
		path []string
		v    *firestorepb.Value
	}
	var eqs []eq
	seen := map[string]bool{}
	var rng *firestorepb.StructuredQuery_FieldFilter
	var rngPath []string
	for _, f := range filters {
		path, err := query.ParseFieldPath(f.GetField().GetFieldPath())
		if err != nil {
			continue
		}
		name := query.FormatFieldPath(path)
		if f.GetOp() == firestorepb.StructuredQuery_FieldFilter_EQUAL {
			if !seen[name] {
				seen[name] = true
				eqs = append(eqs, eq{name, path, f.GetValue()})
			}
		} else if rng == nil {
			rng, rngPath = f, path
		}
	}
	sort.Slice(eqs, func(i, j int) bool { return eqs[i].name < eqs[j].name })
	if rng != nil && seen[query.FormatFieldPath(rngPath)] {
		rng = nil // the equality already pins the field
	}
	if len(eqs) == 0 && rng == nil {
		return nil, false
	}
	paths := make([][]string, 0, len(eqs)+1)
	prefix := make([]*firestorepb.Value, 0, len(eqs)+1)
	for _, e := range eqs {
		paths = append(paths, e.path)
		prefix = append(prefix, e.v)
	}
	if rng != nil {
		paths = append(paths, rngPath)
	}
	return db.fieldIndexLocked(id, paths).scan(prefix, rng), true
}

// collectIndexable appends the filters of f's top-level conjunction that a
// field index can serve: equality and ranges on a field other than the
// document name.
func collectIndexable(f *firestorepb.StructuredQuery_Filter, out *[]*firestorepb.StructuredQuery_FieldFilter) {
	switch ft := f.GetFilterType().(type) {
	case *firestorepb.StructuredQuery_Filter_CompositeFilter:
		if ft.CompositeFilter.GetOp() != firestorepb.StructuredQuery_CompositeFilter_AND {
			return
		}
		for _, sub := range ft.CompositeFilter.GetFilters() {
			collectIndexable(sub, out)
		}
	case *firestorepb.StructuredQuery_Filter_FieldFilter:
		ff := ft.FieldFilter
		if ff.GetValue() == nil || ff.GetValue().GetValueType() == nil || ff.GetField().GetFieldPath() == "__name__" {
			return
		}
		switch ff.GetOp() {
		case firestorepb.StructuredQuery_FieldFilter_EQUAL,
			firestorepb.StructuredQuery_FieldFilter_LESS_THAN,
			firestorepb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL,
			firestorepb.StructuredQuery_FieldFilter_GREATER_THAN,
			firestorepb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL:
			*out = append(*out, ff)
		}
	}
}

// scan returns the names of the entries whose first values equal prefix
// and, with a range filter, whose next value lies on the filter's side of
// its value (values of other types included; the query engine drops them).
func (fi *fieldIndex) scan(prefix []*firestorepb.Value, rng *firestorepb.StructuredQuery_FieldFilter) []string {
	var names []string
	samePrefix := func(e indexEntry) bool {
		for i, v := range prefix {
			if query.Compare(e.vals[i], v) != 0 {
				return false
			}
		}
		return true
	}
	pivot := indexEntry{vals: prefix}
	op := rng.GetOp()
	if op == firestorepb.StructuredQuery_FieldFilter_GREATER_THAN || op == firestorepb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL {
		pivot.vals = append(append([]*firestorepb.Value{}, prefix...), rng.GetValue())
	}
	n := len(prefix)
	fi.tree.AscendGreaterOrEqual(pivot, func(e indexEntry) bool {
		if !samePrefix(e) {
			return false
		}
		if rng != nil {
			c := query.Compare(e.vals[n], rng.GetValue())
			switch op {
			case firestorepb.StructuredQuery_FieldFilter_GREATER_THAN:
				if c == 0 {
					return true
				}
			case firestorepb.StructuredQuery_FieldFilter_LESS_THAN:
				if c >= 0 {
					return false
				}
			case firestorepb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL:
				if c > 0 {
					return false
				}
			}
		}
		names = append(names, e.name)
		return true
	})
	return names
}
