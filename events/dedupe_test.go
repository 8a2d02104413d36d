package events_test

import (
	"testing"

	"github.com/savesync/savesync/events"
)

func TestDeduper(t *testing.T) {
	t.Parallel()
	type seen struct {
		user, version int64
		want          bool
	}
	tests := []struct {
		name     string
		capacity int
		steps    []seen
	}{
		{"first version is fresh, repeats are not", 10, []seen{{1, 1, true}, {1, 1, false}, {1, 2, true}, {1, 2, false}}},
		{"older versions are superseded", 10, []seen{{1, 5, true}, {1, 3, false}, {1, 6, true}}},
		{"players are independent", 10, []seen{{1, 5, true}, {2, 1, true}, {2, 1, false}, {1, 5, false}}},
		{"the least recently seen player is forgotten", 2, []seen{{1, 1, true}, {2, 1, true}, {1, 2, true}, {3, 1, true}, {1, 2, false}, {2, 1, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := events.NewDeduper(tt.capacity)
			for i, s := range tt.steps {
				if fresh := d.Fresh(s.user, s.version); fresh != s.want {
					t.Errorf("step %d: Fresh(%d, %d) = %v, want %v", i, s.user, s.version, fresh, s.want)
				}
				if got := d.Observe(s.user, s.version); got != s.want {
					t.Errorf("step %d: Observe(%d, %d) = %v, want %v", i, s.user, s.version, got, s.want)
				}
			}
			if d.Len() > tt.capacity {
				t.Errorf("remembers %d players, capacity %d", d.Len(), tt.capacity)
			}
		})
	}
}

func TestDeduperRecordKeepsHighestVersion(t *testing.T) {
	t.Parallel()
	d := events.NewDeduper(0)
	d.Record(7, 4)
	d.Record(7, 2)
	if d.Fresh(7, 4) || !d.Fresh(7, 5) {
		t.Errorf("after Record(7,4) and Record(7,2): Fresh(7,4)=%v Fresh(7,5)=%v, want false and true", d.Fresh(7, 4), d.Fresh(7, 5))
	}
}
