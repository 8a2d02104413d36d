package query

import (
	"fmt"
	"math"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
)

// orderedGroups lists groups of equivalent values, each group sorting
// strictly before the next.
func orderedGroups() [][]*firestorepb.Value {
	const two53 = 1 << 53
	return [][]*firestorepb.Value{
		{nul(), {}},
		{bl(false)},
		{bl(true)},
		{db(math.NaN()), db(math.Float64frombits(0x7ff8000000000001))},
		{db(math.Inf(-1))},
		{db(-math.MaxFloat64)},
		{in(math.MinInt64), db(-twoTo63)},
		{in(math.MinInt64 + 1)},
		{in(-1), db(-1)},
		{db(-0.5)},
		{in(0), db(0), db(math.Copysign(0, -1))},
		{db(math.SmallestNonzeroFloat64)},
		{in(1), db(1)},
		{db(1.5)},
		{in(two53), db(two53)},
		{in(two53 + 1)},
		{in(two53 + 2), db(two53 + 2)},
		{in(math.MaxInt64 - 1)},
		{in(math.MaxInt64)},
		{db(twoTo63)},
		{db(math.MaxFloat64)},
		{db(math.Inf(1))},
		{ts(-1, 999_999_999)},
		{ts(0, 0)},
		{ts(0, 1)},
		{ts(1, 0)},
		{st("")},
		{st("A")},
		{st("a")},
		{st("aa")},
		{st("b")},
		{st("é")},
		{st("\uffff")},
		{st("😀")}, // UTF-8 bytes order: F0.. after EF BF BF (UTF-16 would put it first)
		{by()},
		{by(0)},
		{by(0, 0)},
		{by(1)},
		{by(255)},
		{rf("a/__id2__")},
		{rf("a/__id10__")},
		{rf("a/1")},
		{rf("a/1/b/x")},
		{rf("a/2")},
		{rf("a-b/1")}, // segment order: "a" < "a-b" although "a-" < "a/" bytewise
		{geo(-10, 50)},
		{geo(0, -10)},
		{geo(0, 10)},
		{geo(1, -180)},
		{arr()},
		{arr(nul())},
		{arr(in(1), in(2), in(3)), arr(db(1), in(2), db(3))},
		{arr(in(1), in(2), in(3), in(1))},
		{arr(in(2))},
		{arr(st("a"))},
		{vec()},
		{vec(5)},
		{vec(1, 2)},
		{vec(1, 3)},
		{mp()},
		{mp("__type__", st("x"))},
		{mp("a", st("aaa"), "b", st("baz"))},
		{mp("a", st("foo"), "b", st("bar"))},
		{mp("a", st("foo"), "b", st("bar"), "c", st("qux"))},
		{mp("a", st("foo"), "b", st("baz"))},
		{mp("b", st("aaa"), "c", st("baz"))},
		{mp("c", st("aaa"))},
		{mp("c", mp("x", in(1)))},
		{mp("c", mp("x", in(1), "y", nul()))},
	}
}

func TestCompareTotalOrder(t *testing.T) {
	groups := orderedGroups()
	for gi, ga := range groups {
		for gj, gb := range groups {
			want := 0
			switch {
			case gi < gj:
				want = -1
			case gi > gj:
				want = 1
			}
			for ai, a := range ga {
				for bi, b := range gb {
					if got := Compare(a, b); got != want {
						t.Errorf("Compare(group %d[%d] %v, group %d[%d] %v) = %d, want %d", gi, ai, a, gj, bi, b, got, want)
					}
					if got := Equal(a, b); got != (want == 0) {
						t.Errorf("Equal(%v, %v) = %v, want %v", a, b, got, want == 0)
					}
				}
			}
		}
	}
}

func TestCompareIntDouble(t *testing.T) {
	const two53 = 1 << 53
	tests := []struct {
		i    int64
		d    float64
		want int
	}{
		{two53 + 1, two53, 1},
		{two53 + 1, two53 + 2, -1},
		{two53 - 1, two53 - 1, 0},
		{math.MaxInt64, twoTo63, -1},
		{math.MaxInt64, math.Nextafter(twoTo63, 0), 1},
		{math.MinInt64, -twoTo63, 0},
		{math.MinInt64, math.Nextafter(-twoTo63, math.Inf(-1)), 1},
		{0, math.Copysign(0, -1), 0},
		{1, 0.9999999999999999, 1},
		{-1, -0.5, -1},
		{3, 3.5, -1},
		{-3, -3.5, 1},
		{-3, -2.5, -1},
		{math.MinInt64, math.NaN(), 1},
		{math.MaxInt64, math.Inf(1), -1},
		{math.MinInt64, math.Inf(-1), 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_vs_%g", tt.i, tt.d), func(t *testing.T) {
			if got := Compare(in(tt.i), db(tt.d)); got != tt.want {
				t.Errorf("Compare(%d, %g) = %d, want %d", tt.i, tt.d, got, tt.want)
			}
			if got := Compare(db(tt.d), in(tt.i)); got != -tt.want {
				t.Errorf("Compare(%g, %d) = %d, want %d", tt.d, tt.i, got, -tt.want)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b *firestorepb.Value
		want bool
	}{
		{"int and double", in(3), db(3), true},
		{"NaN and NaN", db(math.NaN()), db(math.NaN()), true},
		{"null and null", nul(), nul(), true},
		{"zero and negative zero", db(0), db(math.Copysign(0, -1)), true},
		{"nested numbers", mp("a", arr(in(1), db(2))), mp("a", arr(db(1), in(2))), true},
		{"different map keys", mp("a", in(1)), mp("b", in(1)), false},
		{"string and bytes", st("a"), by('a'), false},
		{"false and null", bl(false), nul(), false},
		{"vector and array", vec(1), arr(db(1)), false},
		{"vector and its map", vec(1, 2), mp("__type__", st("__vector__"), "value", arr(in(1), in(2))), true},
		{"int and close double", in(1<<53 + 1), db(1 << 53), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(tt.a, tt.b); got != tt.want {
				t.Errorf("Equal(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func BenchmarkCompare(b *testing.B) {
	groups := orderedGroups()
	var vs []*firestorepb.Value
	for _, g := range groups {
		vs = append(vs, g...)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		Compare(vs[i%len(vs)], vs[(i*7+3)%len(vs)])
	}
}
