package query

import (
	"slices"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"
)

func sortedKeys(m map[string]*firestorepb.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func cloneValue(v *firestorepb.Value) *firestorepb.Value {
	if v == nil {
		return nil
	}
	return proto.Clone(v).(*firestorepb.Value)
}

func intValue(i int64) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: i}}
}

func doubleValue(d float64) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_DoubleValue{DoubleValue: d}}
}

func nullValue() *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_NullValue{}}
}

func arrayValue(vs []*firestorepb.Value) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_ArrayValue{ArrayValue: &firestorepb.ArrayValue{Values: vs}}}
}

func mapValue(fields map[string]*firestorepb.Value) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_MapValue{MapValue: &firestorepb.MapValue{Fields: fields}}}
}

// isNumber reports whether v is an integer or a double.
func isNumber(v *firestorepb.Value) bool {
	switch v.GetValueType().(type) {
	case *firestorepb.Value_IntegerValue, *firestorepb.Value_DoubleValue:
		return true
	}
	return false
}

// asFloat returns a numeric value as a double.
func asFloat(v *firestorepb.Value) float64 {
	if i, ok := v.GetValueType().(*firestorepb.Value_IntegerValue); ok {
		return float64(i.IntegerValue)
	}
	return v.GetDoubleValue()
}
