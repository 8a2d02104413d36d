package query

import (
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
)

func TestTruncateTimestamps(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]*firestorepb.Value
		want map[string]*firestorepb.Value
	}{
		{"top level", fields("t", ts(5, 123456789)), fields("t", ts(5, 123456000))},
		{"already whole microseconds", fields("t", ts(5, 1000)), fields("t", ts(5, 1000))},
		{"before the epoch rounds down", fields("t", ts(-1, 999)), fields("t", ts(-1, 0))},
		{"nested", fields("m", mp("a", arr(ts(1, 1), st("x")), "b", ts(2, 2500))), fields("m", mp("a", arr(ts(1, 0), st("x")), "b", ts(2, 2000)))},
		{"other values untouched", fields("i", in(1234567), "s", st("1999")), fields("i", in(1234567), "s", st("1999"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			TruncateTimestamps(tt.in)
			if d := diff(t, tt.want, tt.in); d != "" {
				t.Errorf("TruncateTimestamps mismatch (-want +got):\n%s", d)
			}
		})
	}
}
