package query

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxNearestLimit is the largest limit of a vector search.
const maxNearestLimit = 1000

// docView is a document under evaluation.
type docView struct {
	doc  *firestorepb.Document
	name *firestorepb.Value
	keys []*firestorepb.Value // order-by values, filled after filtering
	dist float64              // vector distance, for find_nearest
}

func (d *docView) nameValue() *firestorepb.Value {
	if d.name == nil {
		d.name = &firestorepb.Value{ValueType: &firestorepb.Value_ReferenceValue{ReferenceValue: d.doc.GetName()}}
	}
	return d.name
}

// orderField is one compiled order_by entry.
type orderField struct {
	path []string
	desc bool
	get  func(d *docView) (*firestorepb.Value, bool)
}

// plan is a validated, compiled structured query.
type plan struct {
	root       string
	parentPath []string
	collection string // "" selects every collection id
	all        bool   // all_descendants
	filter     matcher
	orders     []orderField
	start, end *firestorepb.Cursor
	offset     int
	limit      int // -1 when unlimited
	projection [][]string
	project    bool
	nearest    *nearestPlan
}

// Run executes a structured query against docs, the live documents of one
// database (any collection, any depth, in any order), as Cloud Firestore
// would for a RunQuery request with the given parent (the database's
// documents root or a document name).
//
// It selects the documents whose collection matches q.from (children of
// parent, or with all_descendants any descendant), applies the filter, sorts
// by the order_by fields followed by the implicit ones (inequality fields not
// already ordered, in lexicographic order, then __name__, all in the
// direction of the last explicit order), drops documents lacking an order
// field, applies the start and end cursors, offset, limit, find_nearest and
// the projection. The results are copies; inputs are not modified.
//
// Filters follow Firestore: <, <=, >, >=, ==, IN match only values of the
// same type group (integers and doubles together; NaN sorts below every
// other number); != and NOT_IN never match a missing field or null, and a
// NOT_IN list containing null matches nothing; null and NaN in an IN or
// ARRAY_CONTAINS_ANY list match nothing; IS_NOT_NAN matches any non-null
// value other than NaN. Invalid queries return InvalidArgument.
func Run(parent string, q *firestorepb.StructuredQuery, docs []*firestorepb.Document) ([]*firestorepb.Document, error) {
	p, err := compile(parent, q)
	if err != nil {
		return nil, err
	}
	views := p.execute(docs)
	out := make([]*firestorepb.Document, len(views))
	for i, v := range views {
		out[i] = p.output(v)
	}
	return out, nil
}

func compile(parent string, q *firestorepb.StructuredQuery) (*plan, error) {
	if q == nil {
		return nil, status.Errorf(codes.InvalidArgument, "missing structured query")
	}
	root, parentPath, err := splitName(parent)
	if err != nil {
		return nil, err
	}
	if len(parentPath)%2 != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "parent %q must be the database's documents root or a document name, not a collection", parent)
	}
	if len(q.GetFrom()) != 1 {
		return nil, status.Errorf(codes.InvalidArgument, "a query must have exactly one collection selector in from, got %d", len(q.GetFrom()))
	}
	from := q.GetFrom()[0]
	p := &plan{root: root, parentPath: parentPath, collection: from.GetCollectionId(), all: from.GetAllDescendants(), limit: -1}
	if p.collection != "" {
		if err := validateID(p.collection); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "collection id %q %s", p.collection, err.Error())
		}
	}

	fi := &filterInfo{}
	if q.GetWhere() != nil {
		m, terms, err := compileFilter(q.GetWhere(), fi)
		if err != nil {
			return nil, err
		}
		fi.arrayContainsAnyPerTerm = arrayContainsAnyPerTerm(q.GetWhere())
		if err := checkFilterCombination(fi, terms); err != nil {
			return nil, err
		}
		p.filter = m
	}

	if err := p.compileOrders(q.GetOrderBy(), fi.inequality); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name string
		cur  *firestorepb.Cursor
	}{{"start_at", q.GetStartAt()}, {"end_at", q.GetEndAt()}} {
		if c.cur == nil {
			continue
		}
		if err := p.checkCursor(c.name, c.cur); err != nil {
			return nil, err
		}
	}
	p.start, p.end = q.GetStartAt(), q.GetEndAt()

	if q.GetOffset() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "offset must be non-negative, got %d", q.GetOffset())
	}
	p.offset = int(q.GetOffset())
	if l := q.GetLimit(); l != nil {
		if l.GetValue() < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "limit must be non-negative, got %d", l.GetValue())
		}
		p.limit = int(l.GetValue())
	}

	if sel := q.GetSelect(); sel != nil {
		p.project = true
		for _, f := range sel.GetFields() {
			path, err := fieldRef(f)
			if err != nil {
				return nil, err
			}
			if !isNamePath(path) {
				p.projection = append(p.projection, path)
			}
		}
		slices.SortFunc(p.projection, comparePaths)
	}

	if fn := q.GetFindNearest(); fn != nil {
		np, err := compileNearest(fn)
		if err != nil {
			return nil, err
		}
		p.nearest = np
	}
	return p, nil
}

// compileOrders builds the full ordering: explicit orders, then inequality
// fields not yet ordered (lexicographically), then __name__, the implicit
// ones in the direction of the last explicit order.
func (p *plan) compileOrders(orders []*firestorepb.StructuredQuery_Order, inequality [][]string) error {
	desc := false
	for _, o := range orders {
		path, err := fieldRef(o.GetField())
		if err != nil {
			return err
		}
		for _, prev := range p.orders {
			if samePath(prev.path, path) {
				return status.Errorf(codes.InvalidArgument, "order_by contains field %s more than once", FormatFieldPath(path))
			}
		}
		switch o.GetDirection() {
		case firestorepb.StructuredQuery_DESCENDING:
			desc = true
		case firestorepb.StructuredQuery_ASCENDING, firestorepb.StructuredQuery_DIRECTION_UNSPECIFIED:
			desc = false
		default:
			return status.Errorf(codes.InvalidArgument, "order_by on %s: unknown direction %v", FormatFieldPath(path), o.GetDirection())
		}
		p.orders = append(p.orders, orderField{path: path, desc: desc, get: fieldGetter(path)})
	}
	var missing [][]string
	for _, path := range inequality {
		if isNamePath(path) || p.ordered(path) {
			continue
		}
		missing = append(missing, path)
	}
	slices.SortFunc(missing, comparePaths)
	for _, path := range missing {
		p.orders = append(p.orders, orderField{path: path, desc: desc, get: fieldGetter(path)})
	}
	name := []string{nameField}
	if !p.ordered(name) {
		p.orders = append(p.orders, orderField{path: name, desc: desc, get: fieldGetter(name)})
	}
	return nil
}

func (p *plan) ordered(path []string) bool {
	for _, o := range p.orders {
		if samePath(o.path, path) {
			return true
		}
	}
	return false
}

// comparePaths orders field paths segment by segment (UTF-8 bytes).
func comparePaths(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

func (p *plan) checkCursor(which string, c *firestorepb.Cursor) error {
	if len(c.GetValues()) > len(p.orders) {
		return status.Errorf(codes.InvalidArgument, "%s cursor has %d values but the query orders by only %d fields (%s)", which, len(c.GetValues()), len(p.orders), p.orderNames())
	}
	for i, v := range c.GetValues() {
		if v.GetValueType() == nil {
			return status.Errorf(codes.InvalidArgument, "%s cursor value %d has no value", which, i)
		}
		if err := checkTimestamps(v); err != nil {
			return status.Errorf(codes.InvalidArgument, "%s cursor value %d: %s", which, i, err.Error())
		}
		if !isNamePath(p.orders[i].path) {
			continue
		}
		ref, ok := v.GetValueType().(*firestorepb.Value_ReferenceValue)
		if !ok {
			return status.Errorf(codes.InvalidArgument, "%s cursor value %d is for __name__ and must be a reference value, got %s", which, i, typeName(v))
		}
		if _, _, err := splitName(ref.ReferenceValue); err != nil {
			return status.Errorf(codes.InvalidArgument, "%s cursor value %d: %s", which, i, status.Convert(err).Message())
		}
	}
	return nil
}

func (p *plan) orderNames() string {
	names := make([]string, len(p.orders))
	for i, o := range p.orders {
		names[i] = FormatFieldPath(o.path)
	}
	return strings.Join(names, ", ")
}

// selects reports whether a document name is in the queried collection(s).
func (p *plan) selects(name string) bool {
	if !strings.HasPrefix(name, p.root) || len(name) == len(p.root) || name[len(p.root)] != '/' {
		return false
	}
	rest := name[len(p.root)+1:]
	for _, seg := range p.parentPath {
		next, tail, ok := strings.Cut(rest, "/")
		if !ok || next != seg {
			return false
		}
		rest = tail
	}
	// rest is collection/doc[/collection/doc...].
	n := strings.Count(rest, "/") + 1
	if n < 2 || n%2 != 0 {
		return false
	}
	if !p.all && n != 2 {
		return false
	}
	if p.collection == "" {
		return true
	}
	// The document's own collection id is the second-to-last segment.
	i := strings.LastIndexByte(rest, '/')
	coll := rest[:i]
	if j := strings.LastIndexByte(coll, '/'); j >= 0 {
		coll = coll[j+1:]
	}
	return coll == p.collection
}

func (p *plan) execute(docs []*firestorepb.Document) []*docView {
	var views []*docView
	for _, doc := range docs {
		if !p.selects(doc.GetName()) {
			continue
		}
		d := &docView{doc: doc}
		if p.filter != nil && !p.filter(d) {
			continue
		}
		if !p.fillKeys(d) {
			continue
		}
		views = append(views, d)
	}
	slices.SortFunc(views, p.compareDocs)
	if p.start != nil {
		i := 0
		for i < len(views) && !p.afterStart(views[i]) {
			i++
		}
		views = views[i:]
	}
	if p.end != nil {
		i := 0
		for i < len(views) && p.beforeEnd(views[i]) {
			i++
		}
		views = views[:i]
	}
	views = views[min(p.offset, len(views)):]
	if p.limit >= 0 && p.limit < len(views) {
		views = views[:p.limit]
	}
	if p.nearest != nil {
		views = p.nearest.apply(views)
	}
	return views
}

// fillKeys reads the order-by values of d; false if one is missing.
func (p *plan) fillKeys(d *docView) bool {
	d.keys = make([]*firestorepb.Value, len(p.orders))
	for i, o := range p.orders {
		v, ok := o.get(d)
		if !ok {
			return false
		}
		d.keys[i] = v
	}
	return true
}

func (p *plan) compareDocs(a, b *docView) int {
	for i, o := range p.orders {
		c := Compare(a.keys[i], b.keys[i])
		if o.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// compareCursor compares a document with a cursor position over the
// cursor's (possibly partial) values, in query order.
func (p *plan) compareCursor(d *docView, values []*firestorepb.Value) int {
	for i, v := range values {
		c := Compare(d.keys[i], v)
		if p.orders[i].desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// afterStart reports whether d is at or after the start cursor.
func (p *plan) afterStart(d *docView) bool {
	c := p.compareCursor(d, p.start.GetValues())
	if p.start.GetBefore() {
		return c >= 0
	}
	return c > 0
}

// beforeEnd reports whether d is before or at the end cursor.
func (p *plan) beforeEnd(d *docView) bool {
	c := p.compareCursor(d, p.end.GetValues())
	if p.end.GetBefore() {
		return c < 0
	}
	return c <= 0
}

// output copies a result document, applying the projection.
func (p *plan) output(d *docView) *firestorepb.Document {
	src := d.doc
	out := &firestorepb.Document{
		Name:       src.GetName(),
		CreateTime: src.GetCreateTime(),
		UpdateTime: src.GetUpdateTime(),
	}
	if out.CreateTime != nil {
		out.CreateTime = proto.CloneOf(out.CreateTime)
	}
	if out.UpdateTime != nil {
		out.UpdateTime = proto.CloneOf(out.UpdateTime)
	}
	switch {
	case !p.project:
		out.Fields = make(map[string]*firestorepb.Value, len(src.GetFields()))
		for k, v := range src.GetFields() {
			out.Fields[k] = cloneValue(v)
		}
	case len(p.projection) > 0:
		out.Fields = map[string]*firestorepb.Value{}
		for _, path := range p.projection {
			if v, ok := Lookup(src.GetFields(), path); ok {
				setProjected(out.Fields, path, cloneValue(v))
			}
		}
	}
	if p.nearest != nil && p.nearest.resultField != nil {
		if out.Fields == nil {
			out.Fields = map[string]*firestorepb.Value{}
		}
		SetPath(out.Fields, p.nearest.resultField, doubleValue(d.dist))
	}
	return out
}

// setProjected stores v at path, merging with maps already projected (so
// selecting a.b and a.c yields one map a with both). Paths arrive sorted, so
// an ancestor comes before its descendants.
func setProjected(fields map[string]*firestorepb.Value, path []string, v *firestorepb.Value) {
	if _, ok := Lookup(fields, path); ok {
		// An ancestor projected earlier already holds the whole value.
		return
	}
	SetPath(fields, path, v)
}

// nearestPlan is a compiled find_nearest clause.
type nearestPlan struct {
	field       []string
	query       []float64
	measure     firestorepb.StructuredQuery_FindNearest_DistanceMeasure
	limit       int
	threshold   *float64
	resultField []string
}

func compileNearest(fn *firestorepb.StructuredQuery_FindNearest) (*nearestPlan, error) {
	path, err := fieldRef(fn.GetVectorField())
	if err != nil {
		return nil, err
	}
	qv := fn.GetQueryVector()
	if rank(qv) != rankVector {
		return nil, status.Errorf(codes.InvalidArgument, "find_nearest: query_vector must be a vector value")
	}
	elems := vectorElements(qv)
	if len(elems) == 0 || len(elems) > 2048 {
		return nil, status.Errorf(codes.InvalidArgument, "find_nearest: query_vector must have between 1 and 2048 dimensions, got %d", len(elems))
	}
	np := &nearestPlan{field: path, measure: fn.GetDistanceMeasure()}
	for _, e := range elems {
		if !isNumber(e) {
			return nil, status.Errorf(codes.InvalidArgument, "find_nearest: query_vector elements must be numbers")
		}
		np.query = append(np.query, asFloat(e))
	}
	switch np.measure {
	case firestorepb.StructuredQuery_FindNearest_EUCLIDEAN, firestorepb.StructuredQuery_FindNearest_COSINE, firestorepb.StructuredQuery_FindNearest_DOT_PRODUCT:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "find_nearest: distance_measure must be EUCLIDEAN, COSINE or DOT_PRODUCT")
	}
	l := fn.GetLimit()
	if l == nil || l.GetValue() <= 0 || l.GetValue() > maxNearestLimit {
		return nil, status.Errorf(codes.InvalidArgument, "find_nearest: limit must be between 1 and %d", maxNearestLimit)
	}
	np.limit = int(l.GetValue())
	if t := fn.GetDistanceThreshold(); t != nil {
		v := t.GetValue()
		np.threshold = &v
	}
	if f := fn.GetDistanceResultField(); f != "" {
		rp, err := ParseFieldPath(f)
		if err != nil {
			return nil, err
		}
		np.resultField = rp
	}
	return np, nil
}

// apply keeps the documents whose vector field has the query's dimension,
// nearest first, within the threshold and limit.
func (np *nearestPlan) apply(views []*docView) []*docView {
	var out []*docView
	for _, d := range views {
		v, ok := Lookup(d.doc.GetFields(), np.field)
		if !ok || rank(v) != rankVector {
			continue
		}
		elems := vectorElements(v)
		if len(elems) != len(np.query) {
			continue
		}
		vec := make([]float64, len(elems))
		numeric := true
		for i, e := range elems {
			if !isNumber(e) {
				numeric = false
				break
			}
			vec[i] = asFloat(e)
		}
		if !numeric {
			continue
		}
		d.dist = np.distance(vec)
		if math.IsNaN(d.dist) {
			continue
		}
		if np.threshold != nil {
			if np.measure == firestorepb.StructuredQuery_FindNearest_DOT_PRODUCT {
				if d.dist < *np.threshold {
					continue
				}
			} else if d.dist > *np.threshold {
				continue
			}
		}
		out = append(out, d)
	}
	slices.SortStableFunc(out, func(a, b *docView) int {
		if np.measure == firestorepb.StructuredQuery_FindNearest_DOT_PRODUCT {
			return cmp.Compare(b.dist, a.dist)
		}
		return cmp.Compare(a.dist, b.dist)
	})
	if len(out) > np.limit {
		out = out[:np.limit]
	}
	return out
}

func (np *nearestPlan) distance(v []float64) float64 {
	var dot, na, nb, sq float64
	for i, x := range v {
		y := np.query[i]
		dot += x * y
		na += x * x
		nb += y * y
		sq += (x - y) * (x - y)
	}
	switch np.measure {
	case firestorepb.StructuredQuery_FindNearest_EUCLIDEAN:
		return math.Sqrt(sq)
	case firestorepb.StructuredQuery_FindNearest_COSINE:
		if na == 0 || nb == 0 {
			return math.NaN()
		}
		return 1 - dot/(math.Sqrt(na)*math.Sqrt(nb))
	default:
		return dot
	}
}
