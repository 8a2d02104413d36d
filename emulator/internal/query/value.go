package query

import (
	"bytes"
	"cmp"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Type ranks in Firestore's cross-type order.
const (
	rankNull = iota
	rankBool
	rankNumber
	rankTimestamp
	rankString
	rankBytes
	rankReference
	rankGeoPoint
	rankArray
	rankVector
	rankMap
	rankOther // expression values (field references, functions, pipelines): never stored
)

// vectorTypeKey and vectorTypeValue mark a map value as a vector embedding.
const (
	vectorTypeKey   = "__type__"
	vectorTypeValue = "__vector__"
	vectorValueKey  = "value"
)

// Compare reports how a sorts against b in Firestore's total order of values:
// -1 if a sorts first, +1 if b sorts first, 0 if they are equivalent.
//
// Types sort as null < booleans < numbers < timestamps < strings < bytes <
// references < geopoints < arrays < vectors < maps. Integers and doubles are
// one group compared by exact numeric value (2^53+1 > float64(2^53), 0 ==
// -0.0, 3 == 3.0), NaN equals NaN and sorts below every other number,
// including -Inf. Strings and map keys compare by UTF-8 bytes; references
// segment by segment; geopoints by latitude, then longitude; arrays element by
// element, then the shorter first; vectors by dimension, then element by
// element; maps by sorted keys comparing key, then value, then size.
// A nil value or a value with no type set sorts as null.
func Compare(a, b *firestorepb.Value) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch ra {
	case rankNull, rankOther:
		return 0
	case rankBool:
		return compareBools(a.GetBooleanValue(), b.GetBooleanValue())
	case rankNumber:
		return compareNumbers(a, b)
	case rankTimestamp:
		return compareTimestamps(a.GetTimestampValue(), b.GetTimestampValue())
	case rankString:
		return strings.Compare(a.GetStringValue(), b.GetStringValue())
	case rankBytes:
		return bytes.Compare(a.GetBytesValue(), b.GetBytesValue())
	case rankReference:
		return compareReferences(a.GetReferenceValue(), b.GetReferenceValue())
	case rankGeoPoint:
		ga, gb := a.GetGeoPointValue(), b.GetGeoPointValue()
		if c := compareFloats(ga.GetLatitude(), gb.GetLatitude()); c != 0 {
			return c
		}
		return compareFloats(ga.GetLongitude(), gb.GetLongitude())
	case rankArray:
		return compareArrays(a.GetArrayValue().GetValues(), b.GetArrayValue().GetValues())
	case rankVector:
		va, vb := vectorElements(a), vectorElements(b)
		if c := cmp.Compare(len(va), len(vb)); c != 0 {
			return c
		}
		return compareArrays(va, vb)
	default:
		return compareMaps(a.GetMapValue().GetFields(), b.GetMapValue().GetFields())
	}
}

// Equal reports whether a and b are equivalent in Firestore's order, which is
// the equality the server uses for == and in filters, array-contains, array
// union and array removal: 3 equals 3.0, 0 equals -0.0, NaN equals NaN, null
// equals null, and arrays and maps are equal when their elements are.
// (Client SDKs' local caches differ: they treat 3 and 3.0 as distinct.)
func Equal(a, b *firestorepb.Value) bool {
	return Compare(a, b) == 0
}

func rank(v *firestorepb.Value) int {
	switch x := v.GetValueType().(type) {
	case nil, *firestorepb.Value_NullValue:
		return rankNull
	case *firestorepb.Value_BooleanValue:
		return rankBool
	case *firestorepb.Value_IntegerValue, *firestorepb.Value_DoubleValue:
		return rankNumber
	case *firestorepb.Value_TimestampValue:
		return rankTimestamp
	case *firestorepb.Value_StringValue:
		return rankString
	case *firestorepb.Value_BytesValue:
		return rankBytes
	case *firestorepb.Value_ReferenceValue:
		return rankReference
	case *firestorepb.Value_GeoPointValue:
		return rankGeoPoint
	case *firestorepb.Value_ArrayValue:
		return rankArray
	case *firestorepb.Value_MapValue:
		if isVectorFields(x.MapValue.GetFields()) {
			return rankVector
		}
		return rankMap
	default:
		return rankOther
	}
}

func isVectorFields(fields map[string]*firestorepb.Value) bool {
	t, ok := fields[vectorTypeKey]
	if !ok {
		return false
	}
	s, ok := t.GetValueType().(*firestorepb.Value_StringValue)
	return ok && s.StringValue == vectorTypeValue
}

func vectorElements(v *firestorepb.Value) []*firestorepb.Value {
	return v.GetMapValue().GetFields()[vectorValueKey].GetArrayValue().GetValues()
}

func compareBools(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}

// compareFloats orders doubles with NaN equal to NaN and below everything
// else, and -0.0 equal to 0.
func compareFloats(a, b float64) int {
	return cmp.Compare(a, b)
}

// compareNumbers compares two numeric values exactly, without rounding
// integers through float64.
func compareNumbers(a, b *firestorepb.Value) int {
	ai, aInt := a.GetValueType().(*firestorepb.Value_IntegerValue)
	bi, bInt := b.GetValueType().(*firestorepb.Value_IntegerValue)
	switch {
	case aInt && bInt:
		return cmp.Compare(ai.IntegerValue, bi.IntegerValue)
	case aInt:
		return compareIntDouble(ai.IntegerValue, b.GetDoubleValue())
	case bInt:
		return -compareIntDouble(bi.IntegerValue, a.GetDoubleValue())
	default:
		return compareFloats(a.GetDoubleValue(), b.GetDoubleValue())
	}
}

// twoTo63 is 2^63 as a double, the first double above every int64.
const twoTo63 = 9223372036854775808.0

// compareIntDouble compares an integer with a double exactly.
func compareIntDouble(i int64, d float64) int {
	switch {
	case math.IsNaN(d):
		return 1
	case d >= twoTo63:
		return -1
	case d < -twoTo63:
		return 1
	}
	// d is within [-2^63, 2^63): its integer part converts exactly.
	t := int64(d)
	if c := cmp.Compare(i, t); c != 0 {
		return c
	}
	// Same integer part: the fraction decides. For |d| >= 2^52 d is integral;
	// below that, float64(t) is exact and so is the subtraction.
	frac := d - float64(t)
	switch {
	case frac > 0:
		return -1
	case frac < 0:
		return 1
	default:
		return 0
	}
}

func compareTimestamps(a, b *timestamppb.Timestamp) int {
	if c := cmp.Compare(a.GetSeconds(), b.GetSeconds()); c != 0 {
		return c
	}
	return cmp.Compare(a.GetNanos(), b.GetNanos())
}

// compareReferences compares two resource names segment by segment. Segments
// of the form __id<integer>__ (numeric ids) sort before all other segments,
// by their number; other segments compare by UTF-8 bytes.
func compareReferences(a, b string) int {
	for {
		sa, restA, moreA := strings.Cut(a, "/")
		sb, restB, moreB := strings.Cut(b, "/")
		if c := compareSegments(sa, sb); c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = restA, restB
	}
}

func compareSegments(a, b string) int {
	na, aNum := numericID(a)
	nb, bNum := numericID(b)
	switch {
	case aNum && bNum:
		return cmp.Compare(na, nb)
	case aNum:
		return -1
	case bNum:
		return 1
	default:
		return strings.Compare(a, b)
	}
}

// numericID reports whether seg is a numeric document id, __id<n>__ where n
// is an int64 written in canonical decimal (an optional minus sign, then
// digits without leading zeros), and returns n.
// These are the ids Cloud Firestore gives entities with numeric keys; any
// other __id...__ segment is an ordinary (reserved) string.
func numericID(seg string) (int64, bool) {
	if len(seg) < 7 || !strings.HasPrefix(seg, "__id") || !strings.HasSuffix(seg, "__") {
		return 0, false
	}
	digits := seg[4 : len(seg)-2]
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != digits {
		// Not an int64, or not in its one canonical form (a sign other than
		// a leading minus, leading zeros, -0): two such ids would name the
		// same number.
		return 0, false
	}
	return n, true
}

// CompareNames orders two document names as Cloud Firestore orders them (and
// __name__ values): segment by segment, numeric ids (__id<int64>__) before
// string ids and by their number, other segments by UTF-8 bytes.
func CompareNames(a, b string) int {
	return compareReferences(a, b)
}

func compareArrays(a, b []*firestorepb.Value) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

func compareMaps(a, b map[string]*firestorepb.Value) int {
	ka, kb := slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b))
	for i := 0; i < len(ka) && i < len(kb); i++ {
		if c := strings.Compare(ka[i], kb[i]); c != 0 {
			return c
		}
		if c := Compare(a[ka[i]], b[kb[i]]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(ka), len(kb))
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
