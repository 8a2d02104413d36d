package query

import (
	"math"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type fieldTransform = firestorepb.DocumentTransform_FieldTransform

func incr(v *firestorepb.Value) *fieldTransform {
	return &fieldTransform{FieldPath: "f", TransformType: &firestorepb.DocumentTransform_FieldTransform_Increment{Increment: v}}
}
func maxT(v *firestorepb.Value) *fieldTransform {
	return &fieldTransform{FieldPath: "f", TransformType: &firestorepb.DocumentTransform_FieldTransform_Maximum{Maximum: v}}
}
func minT(v *firestorepb.Value) *fieldTransform {
	return &fieldTransform{FieldPath: "f", TransformType: &firestorepb.DocumentTransform_FieldTransform_Minimum{Minimum: v}}
}
func union(vs ...*firestorepb.Value) *fieldTransform {
	return &fieldTransform{FieldPath: "f", TransformType: &firestorepb.DocumentTransform_FieldTransform_AppendMissingElements{AppendMissingElements: &firestorepb.ArrayValue{Values: vs}}}
}
func remove(vs ...*firestorepb.Value) *fieldTransform {
	return &fieldTransform{FieldPath: "f", TransformType: &firestorepb.DocumentTransform_FieldTransform_RemoveAllFromArray{RemoveAllFromArray: &firestorepb.ArrayValue{Values: vs}}}
}
func serverTime(sv firestorepb.DocumentTransform_FieldTransform_ServerValue) *fieldTransform {
	return &fieldTransform{FieldPath: "f", TransformType: &firestorepb.DocumentTransform_FieldTransform_SetToServerValue{SetToServerValue: sv}}
}

func TestApplyTransform(t *testing.T) {
	negZero := math.Copysign(0, -1)
	commit := &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 123000}
	tests := []struct {
		name string
		prev *firestorepb.Value
		t    *fieldTransform
		want *firestorepb.Value
	}{
		{"request time", st("old"), serverTime(firestorepb.DocumentTransform_FieldTransform_REQUEST_TIME), ts(1700000000, 123000)},
		{"request time on missing", nil, serverTime(firestorepb.DocumentTransform_FieldTransform_REQUEST_TIME), ts(1700000000, 123000)},

		{"increment int", in(5), incr(in(3)), in(8)},
		{"increment negative", in(5), incr(in(-7)), in(-2)},
		{"increment missing", nil, incr(in(3)), in(3)},
		{"increment missing with double", nil, incr(db(1.5)), db(1.5)},
		{"increment string prev", st("x"), incr(in(3)), in(3)},
		{"increment null prev", nul(), incr(db(2)), db(2)},
		{"increment map prev", mp("a", in(1)), incr(in(3)), in(3)},
		{"increment int by double", in(1), incr(db(0.5)), db(1.5)},
		{"increment double by int", db(0.5), incr(in(1)), db(1.5)},
		{"increment double by whole double", in(1), incr(db(1)), db(2)},
		{"increment saturates high", in(math.MaxInt64 - 1), incr(in(5)), in(math.MaxInt64)},
		{"increment saturates low", in(math.MinInt64 + 1), incr(in(-5)), in(math.MinInt64)},
		{"increment at max by zero", in(math.MaxInt64), incr(in(0)), in(math.MaxInt64)},
		{"increment max plus min", in(math.MaxInt64), incr(in(math.MinInt64)), in(-1)},
		{"increment double overflow is inf", db(math.MaxFloat64), incr(db(math.MaxFloat64)), db(math.Inf(1))},
		{"increment NaN", db(math.NaN()), incr(in(1)), db(math.NaN())},

		{"maximum larger operand", in(1), maxT(in(2)), in(2)},
		{"maximum smaller operand", in(3), maxT(in(2)), in(3)},
		{"maximum missing", nil, maxT(in(2)), in(2)},
		{"maximum non-numeric", st("a"), maxT(db(2.5)), db(2.5)},
		{"maximum mixed takes double", in(2), maxT(db(2.5)), db(2.5)},
		{"maximum mixed takes int", db(2.5), maxT(in(3)), in(3)},
		{"maximum equal keeps int prev", in(3), maxT(db(3)), in(3)},
		{"maximum equal keeps double prev", db(3), maxT(in(3)), db(3)},
		{"maximum zero keeps stored negative zero", db(negZero), maxT(in(0)), db(negZero)},
		{"maximum NaN operand", in(3), maxT(db(math.NaN())), db(math.NaN())},
		{"maximum NaN prev", db(math.NaN()), maxT(in(3)), db(math.NaN())},
		{"maximum exact large ints", in(1<<53 + 1), maxT(db(1 << 53)), in(1<<53 + 1)},

		{"minimum smaller operand", in(3), minT(in(2)), in(2)},
		{"minimum larger operand", in(1), minT(in(2)), in(1)},
		{"minimum missing", nil, minT(db(-1)), db(-1)},
		{"minimum non-numeric", bl(true), minT(in(4)), in(4)},
		{"minimum mixed takes double", in(3), minT(db(2.5)), db(2.5)},
		{"minimum equal keeps prev", db(3), minT(in(3)), db(3)},
		{"minimum zero keeps stored zero", in(0), minT(db(negZero)), in(0)},
		{"minimum NaN operand", in(3), minT(db(math.NaN())), db(math.NaN())},
		{"minimum -inf", in(3), minT(db(math.Inf(-1))), db(math.Inf(-1))},

		{"union appends missing", arr(in(1), st("a")), union(in(2), st("a")), arr(in(1), st("a"), in(2))},
		{"union numbers equivalent", arr(in(3)), union(db(3)), arr(in(3))},
		{"union NaN equivalent", arr(db(math.NaN())), union(db(math.NaN())), arr(db(math.NaN()))},
		{"union null equivalent", arr(nul()), union(nul(), in(1)), arr(nul(), in(1))},
		{"union dedupes input", arr(), union(in(1), db(1), in(2), in(1)), arr(in(1), in(2))},
		{"union missing", nil, union(in(1)), arr(in(1))},
		{"union non-array", st("x"), union(in(1)), arr(in(1))},
		{"union keeps prev duplicates", arr(in(1), in(1)), union(in(1)), arr(in(1), in(1))},
		{"union maps", arr(mp("a", in(1))), union(mp("a", db(1)), mp("a", in(2))), arr(mp("a", in(1)), mp("a", in(2)))},
		{"union empty", arr(in(1)), union(), arr(in(1))},

		{"remove all equal", arr(in(1), db(1), in(2), in(1)), remove(in(1)), arr(in(2))},
		{"remove several", arr(in(1), st("a"), nul(), db(math.NaN())), remove(nul(), db(math.NaN()), st("a")), arr(in(1))},
		{"remove absent", arr(in(1)), remove(in(5)), arr(in(1))},
		{"remove missing", nil, remove(in(1)), arr()},
		{"remove non-array", in(7), remove(in(7)), arr()},
		{"remove everything", arr(in(1)), remove(in(1)), arr()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before *firestorepb.Value
			if tt.prev != nil {
				before = proto.Clone(tt.prev).(*firestorepb.Value)
			}
			got, err := ApplyTransform(tt.prev, tt.t, commit)
			if err != nil {
				t.Fatalf("ApplyTransform: %v", err)
			}
			// NaN != NaN under proto equality, so compare with Equal and types.
			if !Equal(tt.want, got) || rank(tt.want) != rank(got) || sameKind(tt.want, got) != nil {
				t.Errorf("ApplyTransform(%v, %v) = %v, want %v", tt.prev, tt.t, got, tt.want)
			}
			if math.Signbit(tt.want.GetDoubleValue()) != math.Signbit(got.GetDoubleValue()) {
				t.Errorf("ApplyTransform(%v, %v) = %v, want sign of %v", tt.prev, tt.t, got, tt.want)
			}
			if d := diff(t, before, tt.prev); d != "" {
				t.Errorf("prev was modified (-before +after):\n%s", d)
			}
		})
	}
}

// sameKind returns a non-nil error when two values differ in protobuf type
// anywhere in their structure (for example an integer against a double).
func sameKind(a, b *firestorepb.Value) error {
	switch x := a.GetValueType().(type) {
	case *firestorepb.Value_ArrayValue:
		ya := b.GetArrayValue().GetValues()
		if len(ya) != len(x.ArrayValue.GetValues()) {
			return status.Error(codes.Unknown, "length")
		}
		for i, e := range x.ArrayValue.GetValues() {
			if err := sameKind(e, ya[i]); err != nil {
				return err
			}
		}
		return nil
	case *firestorepb.Value_MapValue:
		for k, e := range x.MapValue.GetFields() {
			if err := sameKind(e, b.GetMapValue().GetFields()[k]); err != nil {
				return err
			}
		}
		return nil
	}
	if ak, bk := kindName(a), kindName(b); ak != bk {
		return status.Errorf(codes.Unknown, "%s vs %s", ak, bk)
	}
	return nil
}

func kindName(v *firestorepb.Value) string {
	switch v.GetValueType().(type) {
	case *firestorepb.Value_IntegerValue:
		return "int"
	case *firestorepb.Value_DoubleValue:
		return "double"
	}
	return "other"
}

func TestApplyTransformErrors(t *testing.T) {
	commit := &timestamppb.Timestamp{Seconds: 1}
	tests := []struct {
		name   string
		t      *fieldTransform
		commit *timestamppb.Timestamp
	}{
		{"increment by string", incr(st("1")), commit},
		{"increment by nothing", incr(nil), commit},
		{"maximum of null", maxT(nul()), commit},
		{"minimum of bool", minT(bl(true)), commit},
		{"unspecified server value", serverTime(firestorepb.DocumentTransform_FieldTransform_SERVER_VALUE_UNSPECIFIED), commit},
		{"request time without commit time", serverTime(firestorepb.DocumentTransform_FieldTransform_REQUEST_TIME), nil},
		{"no transform", &fieldTransform{FieldPath: "f"}, commit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ApplyTransform(in(1), tt.t, tt.commit)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("ApplyTransform() = %v, %v; want an InvalidArgument error", got, err)
			}
		})
	}
}
