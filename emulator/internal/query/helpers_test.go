package query

import (
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func nul() *firestorepb.Value { return nullValue() }
func bl(b bool) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_BooleanValue{BooleanValue: b}}
}
func in(i int64) *firestorepb.Value   { return intValue(i) }
func db(d float64) *firestorepb.Value { return doubleValue(d) }
func ts(sec int64, nanos int32) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_TimestampValue{TimestampValue: &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}}}
}
func st(s string) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_StringValue{StringValue: s}}
}
func by(b ...byte) *firestorepb.Value {
	if b == nil {
		b = []byte{}
	}
	return &firestorepb.Value{ValueType: &firestorepb.Value_BytesValue{BytesValue: b}}
}
func rf(path string) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_ReferenceValue{ReferenceValue: testRoot + "/" + path}}
}
func geo(lat, lng float64) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_GeoPointValue{GeoPointValue: &latlng.LatLng{Latitude: lat, Longitude: lng}}}
}
func arr(vs ...*firestorepb.Value) *firestorepb.Value { return arrayValue(vs) }

// mp builds a map value from alternating keys and values.
func mp(kv ...any) *firestorepb.Value {
	return mapValue(fields(kv...))
}

// fields builds a field map from alternating keys and values.
func fields(kv ...any) map[string]*firestorepb.Value {
	m := map[string]*firestorepb.Value{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(*firestorepb.Value)
	}
	return m
}

func vec(xs ...float64) *firestorepb.Value {
	vs := make([]*firestorepb.Value, len(xs))
	for i, x := range xs {
		vs[i] = db(x)
	}
	return mp(vectorTypeKey, st(vectorTypeValue), vectorValueKey, arr(vs...))
}

const testRoot = "projects/p/databases/(default)/documents"

// diff returns the difference between two values holding protobuf messages.
func diff(t *testing.T, want, got any) string {
	t.Helper()
	return cmp.Diff(want, got, protocmp.Transform(), cmpopts.EquateNaNs())
}
