package query

import "cloud.google.com/go/firestore/apiv1/firestorepb"

// TruncateTimestamps rounds every timestamp inside fields (at any depth, in
// maps and arrays) down to whole microseconds, in place, as Firestore does
// when it stores a document.
func TruncateTimestamps(fields map[string]*firestorepb.Value) {
	for _, v := range fields {
		truncateValue(v)
	}
}

func truncateValue(v *firestorepb.Value) {
	switch x := v.GetValueType().(type) {
	case *firestorepb.Value_TimestampValue:
		if x.TimestampValue != nil {
			x.TimestampValue.Nanos -= x.TimestampValue.Nanos % 1000
		}
	case *firestorepb.Value_ArrayValue:
		for _, e := range x.ArrayValue.GetValues() {
			truncateValue(e)
		}
	case *firestorepb.Value_MapValue:
		TruncateTimestamps(x.MapValue.GetFields())
	}
}
