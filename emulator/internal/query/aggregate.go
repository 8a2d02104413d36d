package query

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"

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
//     an integer when every value is an integer and the sum fits in 64 bits
//     (intermediate overflow does not matter), otherwise a double; 0 for no
//     values; NaN if any value is NaN. Doubles are added with compensated
//     summation, so the result is the correctly rounded sum in all but
//     extreme cases (see numericSum).
//   - AVG returns the mean of the numeric values as a double (the same sum
//     divided by the count), NaN if any is NaN, null for no values.
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
	var acc numericSum
	for _, d := range docs {
		if v, ok := Lookup(d.GetFields(), path); ok {
			acc.add(v)
		}
	}
	if acc.doubles {
		return doubleValue(acc.float())
	}
	if i, ok := acc.ints.int64(); ok {
		return intValue(i)
	}
	return doubleValue(acc.float())
}

func avg(docs []*firestorepb.Document, path []string) *firestorepb.Value {
	var acc numericSum
	for _, d := range docs {
		if v, ok := Lookup(d.GetFields(), path); ok {
			acc.add(v)
		}
	}
	if acc.n == 0 {
		return nullValue()
	}
	return doubleValue(acc.float() / float64(acc.n))
}

// numericSum adds up numeric values as Cloud Firestore does: integers
// exactly (a sum that overflows int64 on the way but ends within it stays an
// integer), doubles with compensated (Kahan-Babuska-Neumaier) summation, so
// 4.8+5.9+6.0+7.1+8.2 is 32 and not 31.999999999999996. Other values are
// skipped.
type numericSum struct {
	n       int     // numeric values added
	ints    int128  // exact sum of the integers
	doubles bool    // whether any double was added
	sum     float64 // compensated sum of the doubles
	comp    float64 // its running compensation
	naive   float64 // plain sum of the doubles, for infinities and NaN
}

func (s *numericSum) add(v *firestorepb.Value) {
	switch x := v.GetValueType().(type) {
	case *firestorepb.Value_IntegerValue:
		s.n++
		s.ints.add(x.IntegerValue)
	case *firestorepb.Value_DoubleValue:
		s.n++
		s.doubles = true
		s.addDouble(x.DoubleValue)
	}
}

func (s *numericSum) addDouble(d float64) {
	s.naive += d
	t := s.sum + d
	if math.Abs(s.sum) >= math.Abs(d) {
		s.comp += (s.sum - t) + d
	} else {
		s.comp += (d - t) + s.sum
	}
	s.sum = t
}

// float returns the whole sum as a double: the integers' exact sum rounded
// once, added to the doubles with the same compensation.
func (s *numericSum) float() float64 {
	if math.IsNaN(s.naive) || math.IsInf(s.naive, 0) {
		return s.naive + s.ints.float()
	}
	acc := *s
	acc.addDouble(s.ints.float())
	if r := acc.sum + acc.comp; !math.IsNaN(r) {
		return r
	}
	return acc.naive
}

// int128 is a two's-complement 128-bit integer, wide enough to add up any
// number of int64 values a query can return without overflowing.
type int128 struct {
	hi int64
	lo uint64
}

func (a *int128) add(x int64) {
	lo, carry := bits.Add64(a.lo, uint64(x), 0)
	a.hi += x>>63 + int64(carry)
	a.lo = lo
}

// int64 returns a as an int64 when it fits.
func (a int128) int64() (int64, bool) {
	if (a.hi == 0 && a.lo < 1<<63) || (a.hi == -1 && a.lo >= 1<<63) {
		return int64(a.lo), true
	}
	return 0, false
}

// float returns a rounded to the nearest double.
func (a int128) float() float64 {
	if i, ok := a.int64(); ok {
		return float64(i)
	}
	b := new(big.Int).Lsh(big.NewInt(a.hi), 64)
	b.Or(b, new(big.Int).SetUint64(a.lo))
	f, _ := new(big.Float).SetInt(b).Float64()
	return f
}
