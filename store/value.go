package store

import (
	"fmt"
	"math"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// encodeValue turns a JSON-like Go value into a Firestore value. It accepts
// the shapes the domain produces (maps, slices, strings, bools, integers,
// floats, times, nil) and the few typed containers the store writes itself.
func encodeValue(v any) (*firestorepb.Value, error) {
	switch x := v.(type) {
	case nil:
		return &firestorepb.Value{ValueType: &firestorepb.Value_NullValue{NullValue: structpb.NullValue_NULL_VALUE}}, nil
	case *firestorepb.Value:
		return x, nil
	case bool:
		return &firestorepb.Value{ValueType: &firestorepb.Value_BooleanValue{BooleanValue: x}}, nil
	case int:
		return intValue(int64(x)), nil
	case int32:
		return intValue(int64(x)), nil
	case int64:
		return intValue(x), nil
	case float64:
		return &firestorepb.Value{ValueType: &firestorepb.Value_DoubleValue{DoubleValue: x}}, nil
	case string:
		return stringValue(x), nil
	case []byte:
		return &firestorepb.Value{ValueType: &firestorepb.Value_BytesValue{BytesValue: x}}, nil
	case time.Time:
		return timeValue(x), nil
	case map[string]any:
		fields := make(map[string]*firestorepb.Value, len(x))
		for k, e := range x {
			ev, err := encodeValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			fields[k] = ev
		}
		return mapValue(fields), nil
	case map[string]int64:
		fields := make(map[string]*firestorepb.Value, len(x))
		for k, e := range x {
			fields[k] = intValue(e)
		}
		return mapValue(fields), nil
	case map[string]string:
		fields := make(map[string]*firestorepb.Value, len(x))
		for k, e := range x {
			fields[k] = stringValue(e)
		}
		return mapValue(fields), nil
	case []any:
		vals := make([]*firestorepb.Value, len(x))
		for i, e := range x {
			ev, err := encodeValue(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			vals[i] = ev
		}
		return arrayValue(vals), nil
	case []string:
		vals := make([]*firestorepb.Value, len(x))
		for i, e := range x {
			vals[i] = stringValue(e)
		}
		return arrayValue(vals), nil
	default:
		return nil, fmt.Errorf("cannot store a value of type %T", v)
	}
}

// decodeValue is the inverse of encodeValue: it yields nil, bool, int64,
// float64, string, []byte, time.Time, map[string]any or []any.
func decodeValue(v *firestorepb.Value) any {
	switch x := v.GetValueType().(type) {
	case *firestorepb.Value_BooleanValue:
		return x.BooleanValue
	case *firestorepb.Value_IntegerValue:
		return x.IntegerValue
	case *firestorepb.Value_DoubleValue:
		return x.DoubleValue
	case *firestorepb.Value_StringValue:
		return x.StringValue
	case *firestorepb.Value_BytesValue:
		return x.BytesValue
	case *firestorepb.Value_TimestampValue:
		return x.TimestampValue.AsTime()
	case *firestorepb.Value_ReferenceValue:
		return x.ReferenceValue
	case *firestorepb.Value_MapValue:
		return decodeFields(x.MapValue.GetFields())
	case *firestorepb.Value_ArrayValue:
		out := make([]any, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			out[i] = decodeValue(e)
		}
		return out
	default:
		return nil
	}
}

// decodeFields decodes a document's or map's fields.
func decodeFields(fields map[string]*firestorepb.Value) map[string]any {
	out := make(map[string]any, len(fields))
	for k, v := range fields {
		out[k] = decodeValue(v)
	}
	return out
}

// encodeFields encodes a map as document fields.
func encodeFields(m map[string]any) (map[string]*firestorepb.Value, error) {
	v, err := encodeValue(m)
	if err != nil {
		return nil, err
	}
	return v.GetMapValue().GetFields(), nil
}

func intValue(i int64) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: i}}
}

func stringValue(s string) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_StringValue{StringValue: s}}
}

func timeValue(t time.Time) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_TimestampValue{TimestampValue: timestamppb.New(t.UTC().Truncate(time.Microsecond))}}
}

func mapValue(fields map[string]*firestorepb.Value) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_MapValue{MapValue: &firestorepb.MapValue{Fields: fields}}}
}

func arrayValue(vals []*firestorepb.Value) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_ArrayValue{ArrayValue: &firestorepb.ArrayValue{Values: vals}}}
}

// fieldInt reads an integer field, accepting integral doubles written by other tools.
func fieldInt(fields map[string]*firestorepb.Value, name string) int64 {
	switch x := fields[name].GetValueType().(type) {
	case *firestorepb.Value_IntegerValue:
		return x.IntegerValue
	case *firestorepb.Value_DoubleValue:
		if x.DoubleValue == math.Trunc(x.DoubleValue) && math.Abs(x.DoubleValue) < 1<<53 {
			return int64(x.DoubleValue)
		}
	}
	return 0
}

// fieldString reads a string field ("" when absent or another type).
func fieldString(fields map[string]*firestorepb.Value, name string) string {
	return fields[name].GetStringValue()
}

// fieldTime reads a timestamp field (zero when absent).
func fieldTime(fields map[string]*firestorepb.Value, name string) time.Time {
	if ts := fields[name].GetTimestampValue(); ts != nil {
		return ts.AsTime()
	}
	return time.Time{}
}
