package query

import (
	"fmt"
	"math"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxAggregations is the most aggregations one query may carry.
const maxAggregations = 5

// Aggregate runs a structured aggregation query over docs (as Run does for
// the nested query, including its offset and limit) and returns the result
// fields by alias. Unnamed aggregations are named field_1, field_2, … in
// order, skipping names taken by explicit aliases.
//
//   - COUNT counts the documents (at most up_to, which must be positive when
//     given) and returns an integer.
//   - SUM adds the numeric values of the field, skipping everything else:
//     an integer while every value is an integer and the sum does not
//     overflow, otherwise a double; 0 for no values; NaN if any value is NaN.
//   - AVG returns the mean of the numeric values as a double, NaN if any is
//     NaN, null for no values.
//
// As in Firestore, when there are several aggregations every one of them
// sees only the documents that have all the fields named by the SUM and AVG
// aggregations.
func Aggregate(parent string, q *firestorepb.StructuredAggregationQuery, docs []*firestorepb.Document) (map[string]*firestorepb.Value, error) {
	sq := q.GetStructuredQuery()
	if sq == nil {
		return nil, status.Errorf(codes.InvalidArgument, "aggregation query has no structured query")
	}
	aggs := q.GetAggregations()
	if len(aggs) == 0 || len(aggs) > maxAggregations {
		return nil, status.Errorf(codes.InvalidArgument, "an aggregation query needs between 1 and %d aggregations, got %d", maxAggregations, len(aggs))
	}
	aliases, err := aggregationAliases(aggs)
	if err != nil {
		return nil, err
	}
	var fieldPaths [][]string
	paths := make([][]string, len(aggs))
	for i, a := range aggs {
		var ref *firestorepb.StructuredQuery_FieldReference
		switch op := a.GetOperator().(type) {
		case *firestorepb.StructuredAggregationQuery_Aggregation_Count_:
			if u := op.Count.GetUpTo(); u != nil && u.GetValue() <= 0 {
				return nil, status.Errorf(codes.InvalidArgument, "aggregation %q: count up_to must be greater than zero, got %d", aliases[i], u.GetValue())
			}
			continue
		case *firestorepb.StructuredAggregationQuery_Aggregation_Sum_:
			ref = op.Sum.GetField()
		case *firestorepb.StructuredAggregationQuery_Aggregation_Avg_:
			ref = op.Avg.GetField()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "aggregation %q has no operator", aliases[i])
		}
		path, err := fieldRef(ref)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "aggregation %q: %s", aliases[i], status.Convert(err).Message())
		}
		paths[i] = path
		fieldPaths = append(fieldPaths, path)
	}

	p, err := compile(parent, sq)
	if err != nil {
		return nil, err
	}
	var results []*firestorepb.Document
	for _, v := range p.execute(docs) {
		if len(aggs) == 1 || hasAll(v.doc, fieldPaths) {
			results = append(results, v.doc)
		}
	}

	out := make(map[string]*firestorepb.Value, len(aggs))
	for i, a := range aggs {
		switch op := a.GetOperator().(type) {
		case *firestorepb.StructuredAggregationQuery_Aggregation_Count_:
			n := int64(len(results))
			if u := op.Count.GetUpTo(); u != nil {
				n = min(n, u.GetValue())
			}
			out[aliases[i]] = intValue(n)
		case *firestorepb.StructuredAggregationQuery_Aggregation_Sum_:
			out[aliases[i]] = sum(results, paths[i])
		case *firestorepb.StructuredAggregationQuery_Aggregation_Avg_:
			out[aliases[i]] = avg(results, paths[i])
		}
	}
	return out, nil
}

// aggregationAliases returns each aggregation's result name.
func aggregationAliases(aggs []*firestorepb.StructuredAggregationQuery_Aggregation) ([]string, error) {
	taken := map[string]bool{}
	for _, a := range aggs {
		alias := a.GetAlias()
		if alias == "" {
			continue
		}
		if err := validateAlias(alias); err != nil {
			return nil, err
		}
		if taken[alias] {
			return nil, status.Errorf(codes.InvalidArgument, "aggregation alias %q is used more than once", alias)
		}
		taken[alias] = true
	}
	names := make([]string, len(aggs))
	next := 1
	for i, a := range aggs {
		if a.GetAlias() != "" {
			names[i] = a.GetAlias()
			continue
		}
		for {
			name := fmt.Sprintf("field_%d", next)
			next++
			if !taken[name] {
				names[i] = name
				taken[name] = true
				break
			}
		}
	}
	return names, nil
}

func validateAlias(alias string) error {
	switch {
	case len(alias) > MaxIDBytes:
		return status.Errorf(codes.InvalidArgument, "aggregation alias %q is longer than 1500 bytes", alias[:32])
	case isReserved(alias):
		return status.Errorf(codes.InvalidArgument, "aggregation alias %q is reserved (matches __.*__)", alias)
	}
	return nil
}

func hasAll(d *firestorepb.Document, paths [][]string) bool {
	for _, p := range paths {
		if _, ok := Lookup(d.GetFields(), p); !ok {
			return false
		}
	}
	return true
}

func sum(docs []*firestorepb.Document, path []string) *firestorepb.Value {
	var isum int64
	var fsum float64
	useFloat := false
	for _, d := range docs {
		v, ok := Lookup(d.GetFields(), path)
		if !ok {
			continue
		}
		switch x := v.GetValueType().(type) {
		case *firestorepb.Value_IntegerValue:
			if useFloat {
				fsum += float64(x.IntegerValue)
				continue
			}
			s := isum + x.IntegerValue
			if (x.IntegerValue > 0 && s < isum) || (x.IntegerValue < 0 && s > isum) {
				useFloat = true
				fsum = float64(isum) + float64(x.IntegerValue)
				continue
			}
			isum = s
		case *firestorepb.Value_DoubleValue:
			if !useFloat {
				useFloat = true
				fsum = float64(isum)
			}
			fsum += x.DoubleValue
		}
	}
	if useFloat {
		return doubleValue(fsum)
	}
	return intValue(isum)
}

func avg(docs []*firestorepb.Document, path []string) *firestorepb.Value {
	var total float64
	n := 0
	for _, d := range docs {
		v, ok := Lookup(d.GetFields(), path)
		if !ok || !isNumber(v) {
			continue
		}
		total += asFloat(v)
		n++
	}
	if n == 0 {
		return nullValue()
	}
	if math.IsNaN(total) {
		return doubleValue(math.NaN())
	}
	return doubleValue(total / float64(n))
}
