package query

import (
	"math"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Filter limits.
const (
	maxDisjunctions = 30 // values in IN / ARRAY_CONTAINS_ANY, and DNF terms
	maxNotInValues  = 10
)

// nameField is the pseudo-field holding a document's name.
const nameField = "__name__"

// matcher reports whether a document matches a filter.
type matcher func(d *docView) bool

// filterInfo gathers what the whole filter tree contains, for the
// cross-filter rules.
type filterInfo struct {
	notIn, notEqual, in, arrayContainsAny, or int
	notNull, notNaN                           int
	// arrayContainsAnyPerTerm is the most ARRAY_CONTAINS_ANY filters in one
	// conjunction of the filter's disjunctive normal form.
	arrayContainsAnyPerTerm int
	// inequality holds the fields of inequality filters, in order of
	// appearance, each once.
	inequality [][]string
}

func (fi *filterInfo) addInequality(path []string) {
	for _, p := range fi.inequality {
		if samePath(p, path) {
			return
		}
	}
	fi.inequality = append(fi.inequality, path)
}

// compileFilter validates f and returns its matcher and its number of terms
// in disjunctive normal form.
func compileFilter(f *firestorepb.StructuredQuery_Filter, fi *filterInfo) (matcher, int, error) {
	switch x := f.GetFilterType().(type) {
	case *firestorepb.StructuredQuery_Filter_CompositeFilter:
		return compileComposite(x.CompositeFilter, fi)
	case *firestorepb.StructuredQuery_Filter_FieldFilter:
		return compileFieldFilter(x.FieldFilter, fi)
	case *firestorepb.StructuredQuery_Filter_UnaryFilter:
		return compileUnary(x.UnaryFilter, fi)
	default:
		return nil, 0, status.Errorf(codes.InvalidArgument, "filter has no filter type set")
	}
}

func compileComposite(c *firestorepb.StructuredQuery_CompositeFilter, fi *filterInfo) (matcher, int, error) {
	if len(c.GetFilters()) == 0 {
		return nil, 0, status.Errorf(codes.InvalidArgument, "composite filter must contain at least one filter")
	}
	ms := make([]matcher, 0, len(c.GetFilters()))
	terms := make([]int, 0, len(c.GetFilters()))
	for _, sub := range c.GetFilters() {
		m, n, err := compileFilter(sub, fi)
		if err != nil {
			return nil, 0, err
		}
		ms = append(ms, m)
		terms = append(terms, n)
	}
	switch c.GetOp() {
	case firestorepb.StructuredQuery_CompositeFilter_AND:
		total := 1
		for _, n := range terms {
			total = min(total*n, maxDisjunctions+1)
		}
		if len(ms) == 1 {
			return ms[0], total, nil
		}
		return func(d *docView) bool {
			for _, m := range ms {
				if !m(d) {
					return false
				}
			}
			return true
		}, total, nil
	case firestorepb.StructuredQuery_CompositeFilter_OR:
		fi.or++
		total := 0
		for _, n := range terms {
			total = min(total+n, maxDisjunctions+1)
		}
		if len(ms) == 1 {
			return ms[0], total, nil
		}
		return func(d *docView) bool {
			for _, m := range ms {
				if m(d) {
					return true
				}
			}
			return false
		}, total, nil
	default:
		return nil, 0, status.Errorf(codes.InvalidArgument, "composite filter operator %v is not supported", c.GetOp())
	}
}

func compileFieldFilter(f *firestorepb.StructuredQuery_FieldFilter, fi *filterInfo) (matcher, int, error) {
	path, err := fieldRef(f.GetField())
	if err != nil {
		return nil, 0, err
	}
	op := f.GetOp()
	v := f.GetValue()
	if v == nil || v.GetValueType() == nil {
		return nil, 0, status.Errorf(codes.InvalidArgument, "filter on %s (%v) has no value", FormatFieldPath(path), op)
	}
	if err := checkTimestamps(v); err != nil {
		return nil, 0, status.Errorf(codes.InvalidArgument, "filter on %s (%v): %s", FormatFieldPath(path), op, err.Error())
	}
	isName := isNamePath(path)
	terms := 1
	var list []*firestorepb.Value
	switch op {
	case firestorepb.StructuredQuery_FieldFilter_IN, firestorepb.StructuredQuery_FieldFilter_NOT_IN, firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY:
		av, ok := v.GetValueType().(*firestorepb.Value_ArrayValue)
		if !ok || len(av.ArrayValue.GetValues()) == 0 {
			return nil, 0, status.Errorf(codes.InvalidArgument, "filter on %s: %v requires a non-empty array value", FormatFieldPath(path), op)
		}
		list = av.ArrayValue.GetValues()
		limit := maxDisjunctions
		if op == firestorepb.StructuredQuery_FieldFilter_NOT_IN {
			limit = maxNotInValues
		} else {
			terms = len(list)
		}
		if len(list) > limit {
			return nil, 0, status.Errorf(codes.InvalidArgument, "filter on %s: %v allows at most %d values, got %d", FormatFieldPath(path), op, limit, len(list))
		}
		if isName {
			if op == firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY {
				return nil, 0, status.Errorf(codes.InvalidArgument, "filter on __name__: %v is not allowed on the document name", op)
			}
			for _, e := range list {
				if err := checkNameValue(e, op); err != nil {
					return nil, 0, err
				}
			}
		}
	case firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS:
		if isName {
			return nil, 0, status.Errorf(codes.InvalidArgument, "filter on __name__: %v is not allowed on the document name", op)
		}
	case firestorepb.StructuredQuery_FieldFilter_EQUAL, firestorepb.StructuredQuery_FieldFilter_NOT_EQUAL,
		firestorepb.StructuredQuery_FieldFilter_LESS_THAN, firestorepb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL,
		firestorepb.StructuredQuery_FieldFilter_GREATER_THAN, firestorepb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL:
		if isName {
			if err := checkNameValue(v, op); err != nil {
				return nil, 0, err
			}
		}
	default:
		return nil, 0, status.Errorf(codes.InvalidArgument, "filter on %s: operator %v is not supported", FormatFieldPath(path), op)
	}

	get := fieldGetter(path)
	switch op {
	case firestorepb.StructuredQuery_FieldFilter_EQUAL:
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && Equal(x, v)
		}, 1, nil
	case firestorepb.StructuredQuery_FieldFilter_NOT_EQUAL:
		fi.notEqual++
		fi.addInequality(path)
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && rank(x) != rankNull && !Equal(x, v)
		}, 1, nil
	case firestorepb.StructuredQuery_FieldFilter_LESS_THAN, firestorepb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL,
		firestorepb.StructuredQuery_FieldFilter_GREATER_THAN, firestorepb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL:
		fi.addInequality(path)
		want := rank(v)
		accept := rangeAccept(op)
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && rank(x) == want && accept(Compare(x, v))
		}, 1, nil
	case firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS:
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && containsValue(x.GetArrayValue().GetValues(), v)
		}, 1, nil
	case firestorepb.StructuredQuery_FieldFilter_IN:
		fi.in++
		candidates := matchableValues(list)
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && containsValue(candidates, x)
		}, terms, nil
	case firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY:
		fi.arrayContainsAny++
		candidates := matchableValues(list)
		return func(d *docView) bool {
			x, ok := get(d)
			if !ok {
				return false
			}
			for _, e := range x.GetArrayValue().GetValues() {
				if containsValue(candidates, e) {
					return true
				}
			}
			return false
		}, terms, nil
	default: // NOT_IN
		fi.notIn++
		fi.addInequality(path)
		hasNull := false
		for _, e := range list {
			if rank(e) == rankNull {
				hasNull = true
			}
		}
		return func(d *docView) bool {
			if hasNull {
				return false
			}
			x, ok := get(d)
			return ok && rank(x) != rankNull && !containsValue(list, x)
		}, 1, nil
	}
}

// matchableValues drops the null and NaN values of an IN or
// ARRAY_CONTAINS_ANY list: in Cloud Firestore they match nothing there (a
// document whose field is null or NaN is not returned by in [null] or
// in [NaN]; only ==, !=, IS_NULL and IS_NAN match those values).
func matchableValues(list []*firestorepb.Value) []*firestorepb.Value {
	out := make([]*firestorepb.Value, 0, len(list))
	for _, e := range list {
		if rank(e) != rankNull && !isNaN(e) {
			out = append(out, e)
		}
	}
	return out
}

func rangeAccept(op firestorepb.StructuredQuery_FieldFilter_Operator) func(int) bool {
	switch op {
	case firestorepb.StructuredQuery_FieldFilter_LESS_THAN:
		return func(c int) bool { return c < 0 }
	case firestorepb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL:
		return func(c int) bool { return c <= 0 }
	case firestorepb.StructuredQuery_FieldFilter_GREATER_THAN:
		return func(c int) bool { return c > 0 }
	default:
		return func(c int) bool { return c >= 0 }
	}
}

func compileUnary(u *firestorepb.StructuredQuery_UnaryFilter, fi *filterInfo) (matcher, int, error) {
	path, err := fieldRef(u.GetField())
	if err != nil {
		return nil, 0, err
	}
	get := fieldGetter(path)
	switch u.GetOp() {
	case firestorepb.StructuredQuery_UnaryFilter_IS_NULL:
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && rank(x) == rankNull
		}, 1, nil
	case firestorepb.StructuredQuery_UnaryFilter_IS_NAN:
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && isNaN(x)
		}, 1, nil
	case firestorepb.StructuredQuery_UnaryFilter_IS_NOT_NULL:
		fi.notNull++
		fi.addInequality(path)
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && rank(x) != rankNull
		}, 1, nil
	case firestorepb.StructuredQuery_UnaryFilter_IS_NOT_NAN:
		fi.notNaN++
		fi.addInequality(path)
		return func(d *docView) bool {
			x, ok := get(d)
			return ok && rank(x) != rankNull && !isNaN(x)
		}, 1, nil
	default:
		return nil, 0, status.Errorf(codes.InvalidArgument, "unary filter on %s: operator %v is not supported", FormatFieldPath(path), u.GetOp())
	}
}

// checkFilterCombination applies the rules that span the whole filter, as
// the API documents them for each operator.
func checkFilterCombination(fi *filterInfo, terms int) error {
	if terms > maxDisjunctions {
		return status.Errorf(codes.InvalidArgument, "the filter has more than %d disjunctions in disjunctive normal form (IN and ARRAY_CONTAINS_ANY values and OR branches multiply)", maxDisjunctions)
	}
	if fi.arrayContainsAnyPerTerm > 1 {
		return status.Errorf(codes.InvalidArgument, "a query can have at most one ARRAY_CONTAINS_ANY filter per disjunction")
	}
	if fi.notIn > 0 {
		switch {
		case fi.notIn > 1:
			return status.Errorf(codes.InvalidArgument, "a query can have at most one NOT_IN filter")
		case fi.or > 0:
			return status.Errorf(codes.InvalidArgument, "NOT_IN cannot be combined with OR filters")
		case fi.in > 0:
			return status.Errorf(codes.InvalidArgument, "NOT_IN cannot be combined with IN filters")
		case fi.arrayContainsAny > 0:
			return status.Errorf(codes.InvalidArgument, "NOT_IN cannot be combined with ARRAY_CONTAINS_ANY filters")
		case fi.notEqual > 0:
			return status.Errorf(codes.InvalidArgument, "NOT_IN cannot be combined with NOT_EQUAL filters")
		case fi.notNull > 0:
			return status.Errorf(codes.InvalidArgument, "NOT_IN cannot be combined with IS_NOT_NULL filters")
		case fi.notNaN > 0:
			return status.Errorf(codes.InvalidArgument, "NOT_IN cannot be combined with IS_NOT_NAN filters")
		}
	}
	return nil
}

// arrayContainsAnyPerTerm returns the most ARRAY_CONTAINS_ANY filters that
// end up in one conjunction when f is put in disjunctive normal form: the
// branches of an AND add up, the branches of an OR are alternatives.
func arrayContainsAnyPerTerm(f *firestorepb.StructuredQuery_Filter) int {
	switch x := f.GetFilterType().(type) {
	case *firestorepb.StructuredQuery_Filter_CompositeFilter:
		n := 0
		for _, sub := range x.CompositeFilter.GetFilters() {
			m := arrayContainsAnyPerTerm(sub)
			if x.CompositeFilter.GetOp() == firestorepb.StructuredQuery_CompositeFilter_OR {
				n = max(n, m)
			} else {
				n += m
			}
		}
		return n
	case *firestorepb.StructuredQuery_Filter_FieldFilter:
		if x.FieldFilter.GetOp() == firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY {
			return 1
		}
	}
	return 0
}

// checkTimestamps rejects a query value holding (at any depth) a timestamp
// outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59.999999999Z.
func checkTimestamps(v *firestorepb.Value) error {
	switch x := v.GetValueType().(type) {
	case *firestorepb.Value_TimestampValue:
		if !validTimestamp(x.TimestampValue) {
			return idError("timestamp must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z")
		}
	case *firestorepb.Value_ArrayValue:
		for _, e := range x.ArrayValue.GetValues() {
			if err := checkTimestamps(e); err != nil {
				return err
			}
		}
	case *firestorepb.Value_MapValue:
		for _, e := range x.MapValue.GetFields() {
			if err := checkTimestamps(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkNameValue checks a value compared with __name__.
func checkNameValue(v *firestorepb.Value, op firestorepb.StructuredQuery_FieldFilter_Operator) error {
	ref, ok := v.GetValueType().(*firestorepb.Value_ReferenceValue)
	if !ok {
		return status.Errorf(codes.InvalidArgument, "filter on __name__ (%v): the value must be a reference value, got %s", op, typeName(v))
	}
	if _, _, err := splitName(ref.ReferenceValue); err != nil {
		return status.Errorf(codes.InvalidArgument, "filter on __name__ (%v): %s", op, status.Convert(err).Message())
	}
	return nil
}

// fieldRef parses a query's field reference.
func fieldRef(f *firestorepb.StructuredQuery_FieldReference) ([]string, error) {
	if f == nil {
		return nil, status.Errorf(codes.InvalidArgument, "missing field reference")
	}
	return ParseFieldPath(f.GetFieldPath())
}

func isNamePath(path []string) bool {
	return len(path) == 1 && path[0] == nameField
}

func samePath(a, b []string) bool {
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

// fieldGetter returns a function reading a field (or the name) of a document.
func fieldGetter(path []string) func(d *docView) (*firestorepb.Value, bool) {
	if isNamePath(path) {
		return func(d *docView) (*firestorepb.Value, bool) { return d.nameValue(), true }
	}
	return func(d *docView) (*firestorepb.Value, bool) { return Lookup(d.doc.GetFields(), path) }
}

func typeName(v *firestorepb.Value) string {
	switch v.GetValueType().(type) {
	case nil:
		return "no value"
	case *firestorepb.Value_NullValue:
		return "null"
	case *firestorepb.Value_BooleanValue:
		return "a boolean"
	case *firestorepb.Value_IntegerValue:
		return "an integer"
	case *firestorepb.Value_DoubleValue:
		if math.IsNaN(v.GetDoubleValue()) {
			return "NaN"
		}
		return "a double"
	case *firestorepb.Value_TimestampValue:
		return "a timestamp"
	case *firestorepb.Value_StringValue:
		return "a string"
	case *firestorepb.Value_BytesValue:
		return "bytes"
	case *firestorepb.Value_ReferenceValue:
		return "a reference"
	case *firestorepb.Value_GeoPointValue:
		return "a geopoint"
	case *firestorepb.Value_ArrayValue:
		return "an array"
	case *firestorepb.Value_MapValue:
		return "a map"
	default:
		return "an expression"
	}
}
