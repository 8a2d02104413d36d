package emulator

import (
	"context"
	"math"
	"testing"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"
)

// TestNaNInFilters pins how filters treat NaN (and null in lists). NaN is a
// number that sorts below every other number, -Infinity included, so an
// upper-bounded range filter (<, <=) on a number matches it and a
// lower-bounded one (>, >=, even >= -Infinity) does not; == and != (the
// IS_NAN and IS_NOT_NAN filters) match it and exclude it. This is the order
// the Firestore documentation gives for numbers and the rule the official
// SDKs' query matching applies (values of the filter value's type group,
// compared in that order); no Google source states that range filters skip
// NaN. In IN and ARRAY_CONTAINS_ANY lists, NaN and null match nothing, and
// NOT_IN [NaN] excludes NaN, as the JS SDK's integration tests assert
// against the backend (firebase-js-sdk
// packages/firestore/test/integration/api/query.test.ts, "can use IN
// filters", "can use array-contains-any filters", "can use NOT_IN filters").
func TestNaNInFilters(t *testing.T) {
	c, _ := newClient(t)
	col := c.Collection("nan")
	for id, v := range map[string]any{
		"nan": math.NaN(), "neginf": math.Inf(-1), "one": int64(1), "two": 2.0, "three": int64(3),
		"null": nil, "str": "s", "arrnan": []any{math.NaN()}, "arrnull": []any{nil}, "arr3": []any{int64(3)},
	} {
		if _, err := col.Doc(id).Set(context.Background(), map[string]any{"v": v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := col.Doc("missing").Set(context.Background(), map[string]any{"w": 1}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    firestore.Query
		want []string
	}{
		{"<= 2", col.Where("v", "<=", 2), []string{"nan/nan", "nan/neginf", "nan/one", "nan/two"}},
		{"< 1", col.Where("v", "<", 1), []string{"nan/nan", "nan/neginf"}},
		{"< -Inf", col.Where("v", "<", math.Inf(-1)), []string{"nan/nan"}},
		{">= -Inf", col.Where("v", ">=", math.Inf(-1)), []string{"nan/neginf", "nan/one", "nan/two", "nan/three"}},
		{"> 1", col.Where("v", ">", 1), []string{"nan/two", "nan/three"}},
		{"== NaN", col.Where("v", "==", math.NaN()), []string{"nan/nan"}},
		{"!= NaN", col.Where("v", "!=", math.NaN()), []string{"nan/neginf", "nan/one", "nan/two", "nan/three", "nan/str", "nan/arrnull", "nan/arrnan", "nan/arr3"}},
		{"in NaN", col.Where("v", "in", []any{math.NaN()}), []string{}},
		{"in NaN and a number", col.Where("v", "in", []any{math.NaN(), 3}), []string{"nan/three"}},
		{"in null", col.Where("v", "in", []any{nil}), []string{}},
		{"in null and a number", col.Where("v", "in", []any{3, nil}), []string{"nan/three"}},
		{"array-contains-any NaN", col.Where("v", "array-contains-any", []any{math.NaN()}), []string{}},
		{"array-contains-any null and a number", col.Where("v", "array-contains-any", []any{nil, 3}), []string{"nan/arr3"}},
		{"not-in NaN", col.Where("v", "not-in", []any{math.NaN()}), []string{"nan/neginf", "nan/one", "nan/two", "nan/three", "nan/str", "nan/arrnull", "nan/arrnan", "nan/arr3"}},
		{"not-in NaN and a number", col.Where("v", "not-in", []any{math.NaN(), 3}), []string{"nan/neginf", "nan/one", "nan/two", "nan/str", "nan/arrnull", "nan/arrnan", "nan/arr3"}},
		{"order by", col.OrderBy("v", firestore.Asc), []string{"nan/null", "nan/nan", "nan/neginf", "nan/one", "nan/two", "nan/three", "nan/str", "nan/arrnull", "nan/arrnan", "nan/arr3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, queryPaths(t, tt.q)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
