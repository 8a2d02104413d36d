package query

import (
	"math"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ApplyTransform returns the new value of a field whose current value is prev
// (nil when the field does not exist) after the field transform t, applied at
// commitTime. The result is a fresh value; prev is not modified.
//
//   - set_to_server_value REQUEST_TIME: commitTime.
//   - increment: integer plus integer stays an integer, saturating at the
//     int64 bounds; if either side is a double the sum is a double (IEEE 754).
//     A missing or non-numeric prev counts as absent: the result is the
//     operand.
//   - maximum / minimum: a missing or non-numeric prev gives the operand;
//     otherwise the larger (smaller) of the two compared numerically, keeping
//     prev unchanged when they are equivalent (3 and 3.0, 0 and -0.0); NaN on
//     either side gives NaN.
//   - append_missing_elements: prev if it is an array (otherwise an empty
//     array) followed by each element not already present (Equal), in order.
//   - remove_all_from_array: prev if it is an array (otherwise an empty
//     array) without every element equal to one of the given ones.
//
// Operands that are not numbers for increment, maximum and minimum, and
// server values other than REQUEST_TIME, are InvalidArgument errors.
func ApplyTransform(prev *firestorepb.Value, t *firestorepb.DocumentTransform_FieldTransform, commitTime *timestamppb.Timestamp) (*firestorepb.Value, error) {
	path := t.GetFieldPath()
	switch tt := t.GetTransformType().(type) {
	case *firestorepb.DocumentTransform_FieldTransform_SetToServerValue:
		if tt.SetToServerValue != firestorepb.DocumentTransform_FieldTransform_REQUEST_TIME {
			return nil, status.Errorf(codes.InvalidArgument, "transform of field %q: unsupported server value %v", path, tt.SetToServerValue)
		}
		if commitTime == nil {
			return nil, status.Errorf(codes.InvalidArgument, "transform of field %q: no commit time", path)
		}
		return &firestorepb.Value{ValueType: &firestorepb.Value_TimestampValue{TimestampValue: proto.Clone(commitTime).(*timestamppb.Timestamp)}}, nil
	case *firestorepb.DocumentTransform_FieldTransform_Increment:
		if !isNumber(tt.Increment) {
			return nil, status.Errorf(codes.InvalidArgument, "increment of field %q: the operand must be an integer or a double", path)
		}
		return increment(prev, tt.Increment), nil
	case *firestorepb.DocumentTransform_FieldTransform_Maximum:
		if !isNumber(tt.Maximum) {
			return nil, status.Errorf(codes.InvalidArgument, "maximum of field %q: the operand must be an integer or a double", path)
		}
		return extremum(prev, tt.Maximum, 1), nil
	case *firestorepb.DocumentTransform_FieldTransform_Minimum:
		if !isNumber(tt.Minimum) {
			return nil, status.Errorf(codes.InvalidArgument, "minimum of field %q: the operand must be an integer or a double", path)
		}
		return extremum(prev, tt.Minimum, -1), nil
	case *firestorepb.DocumentTransform_FieldTransform_AppendMissingElements:
		out := clonedElements(prev)
		for _, e := range tt.AppendMissingElements.GetValues() {
			if !containsValue(out, e) {
				out = append(out, cloneValue(e))
			}
		}
		return arrayValue(out), nil
	case *firestorepb.DocumentTransform_FieldTransform_RemoveAllFromArray:
		remove := tt.RemoveAllFromArray.GetValues()
		var out []*firestorepb.Value
		for _, e := range prev.GetArrayValue().GetValues() {
			if !containsValue(remove, e) {
				out = append(out, cloneValue(e))
			}
		}
		return arrayValue(out), nil
	default:
		return nil, status.Errorf(codes.InvalidArgument, "transform of field %q: no transform type set", path)
	}
}

func increment(prev, op *firestorepb.Value) *firestorepb.Value {
	if !isNumber(prev) {
		return cloneValue(op)
	}
	pi, pInt := prev.GetValueType().(*firestorepb.Value_IntegerValue)
	oi, oInt := op.GetValueType().(*firestorepb.Value_IntegerValue)
	if pInt && oInt {
		return intValue(saturatingAdd(pi.IntegerValue, oi.IntegerValue))
	}
	return doubleValue(asFloat(prev) + asFloat(op))
}

// saturatingAdd adds two int64s, clamping to the int64 range on overflow.
func saturatingAdd(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}

// extremum returns the maximum (dir 1) or minimum (dir -1) of prev and op.
func extremum(prev, op *firestorepb.Value, dir int) *firestorepb.Value {
	if !isNumber(prev) {
		return cloneValue(op)
	}
	if isNaN(prev) {
		return cloneValue(prev)
	}
	if isNaN(op) {
		return cloneValue(op)
	}
	if compareNumbers(op, prev)*dir > 0 {
		return cloneValue(op)
	}
	return cloneValue(prev)
}

func isNaN(v *firestorepb.Value) bool {
	d, ok := v.GetValueType().(*firestorepb.Value_DoubleValue)
	return ok && math.IsNaN(d.DoubleValue)
}

func clonedElements(prev *firestorepb.Value) []*firestorepb.Value {
	vs := prev.GetArrayValue().GetValues()
	out := make([]*firestorepb.Value, 0, len(vs))
	for _, v := range vs {
		out = append(out, cloneValue(v))
	}
	return out
}

func containsValue(vs []*firestorepb.Value, v *firestorepb.Value) bool {
	for _, e := range vs {
		if Equal(e, v) {
			return true
		}
	}
	return false
}
