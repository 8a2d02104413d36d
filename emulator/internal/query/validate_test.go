package query

import (
	"strings"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestValidateName(t *testing.T) {
	long := strings.Repeat("x", MaxIDBytes)
	tests := []struct {
		name string
		ok   bool
	}{
		{testRoot + "/users/alice", true},
		{testRoot + "/users/alice/tasks/t1", true},
		{"projects/p/databases/named-db/documents/c/d", true},
		{testRoot + "/" + long + "/" + long, true},
		{testRoot + "/c/_d_", true},
		{testRoot + "/c/__d", true},
		{testRoot + "/c/...", true},
		{testRoot, false},
		{testRoot + "/users", false},
		{testRoot + "/users/alice/tasks", false},
		{testRoot + "/users//x", false},
		{testRoot + "//alice", false},
		{testRoot + "/users/alice/", false},
		{testRoot + "/./alice", false},
		{testRoot + "/users/..", false},
		{testRoot + "/__users__/alice", false},
		{testRoot + "/users/__alice__", false},
		{testRoot + "/" + long + "x/alice", false},
		{testRoot + "/users/" + long + "x", false},
		{testRoot + "/users/\xff", false},
		{"projects/p/databases/d/docs/c/d", false},
		{"projects//databases/d/documents/c/d", false},
		{"c/d", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name[:min(len(tt.name), 80)], func(t *testing.T) {
			err := ValidateName(tt.name)
			if tt.ok && err != nil {
				t.Errorf("ValidateName: unexpected error %v", err)
			}
			if !tt.ok && status.Code(err) != codes.InvalidArgument {
				t.Errorf("ValidateName = %v, want an InvalidArgument error", err)
			}
		})
	}
}

// nested returns a value made of depth maps nested inside each other.
func nested(depth int) *firestorepb.Value {
	v := in(1)
	for range depth {
		v = mp("m", v)
	}
	return v
}

func TestValidateDocument(t *testing.T) {
	name := testRoot + "/users/jeff/tasks/my_task_id"
	// Storage size of the document name above: 6 + 5 + 6 + 11 + 16.
	const nameBytes = 44
	tests := []struct {
		name   string
		doc    *firestorepb.Document
		ok     bool
		errHas string
	}{
		{"all types", &firestorepb.Document{Name: name, Fields: fields(
			"n", nul(), "b", bl(true), "i", in(1), "d", db(1.5), "t", ts(1, 2), "s", st("x"),
			"y", by(1), "r", rf("a/b"), "g", geo(-90, 180), "a", arr(nul(), in(1), mp("k", arr())),
			"m", mp("k", st("v")), "v", vec(1, 2), "e", mp(), "ea", arr(),
		)}, true, ""},
		{"no fields", &firestorepb.Document{Name: name}, true, ""},
		{"depth 20", &firestorepb.Document{Name: name, Fields: fields("a", nested(20))}, true, ""},
		{"depth 21", &firestorepb.Document{Name: name, Fields: fields("a", nested(21))}, false, "levels deep"},
		{"depth 21 through array", &firestorepb.Document{Name: name, Fields: fields("a", arr(nested(20)))}, false, "levels deep"},
		{"bad name", &firestorepb.Document{Name: testRoot + "/users"}, false, "even"},
		{"empty field name", &firestorepb.Document{Name: name, Fields: fields("", in(1))}, false, "empty"},
		{"empty nested field name", &firestorepb.Document{Name: name, Fields: fields("a", mp("", in(1)))}, false, "empty"},
		{"reserved field name", &firestorepb.Document{Name: name, Fields: fields("__name__", in(1))}, false, "reserved"},
		{"reserved nested field name", &firestorepb.Document{Name: name, Fields: fields("a", mp("__x__", in(1)))}, false, "reserved"},
		{"type key outside vector", &firestorepb.Document{Name: name, Fields: fields("a", mp("__type__", st("other")))}, false, "reserved"},
		{"long field name", &firestorepb.Document{Name: name, Fields: fields(strings.Repeat("f", 1501), in(1))}, false, "1500"},
		{"unset value", &firestorepb.Document{Name: name, Fields: fields("a", &firestorepb.Value{})}, false, "no type"},
		{"nil value", &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{"a": nil}}, false, "no type"},
		{"unset value in array", &firestorepb.Document{Name: name, Fields: fields("a", arr(in(1), &firestorepb.Value{}))}, false, "no type"},
		{"array in array", &firestorepb.Document{Name: name, Fields: fields("a", arr(arr()))}, false, "directly contain"},
		{"bad reference", &firestorepb.Document{Name: name, Fields: fields("r", &firestorepb.Value{ValueType: &firestorepb.Value_ReferenceValue{ReferenceValue: "users/x"}})}, false, "reference"},
		{"latitude out of range", &firestorepb.Document{Name: name, Fields: fields("g", geo(90.5, 0))}, false, "latitude"},
		{"longitude out of range", &firestorepb.Document{Name: name, Fields: fields("g", geo(0, -181))}, false, "longitude"},
		{"timestamp before year 1", &firestorepb.Document{Name: name, Fields: fields("t", ts(minTimestampSeconds-1, 0))}, false, "timestamp"},
		{"timestamp after year 9999", &firestorepb.Document{Name: name, Fields: fields("t", ts(maxTimestampSeconds+1, 0))}, false, "timestamp"},
		{"timestamp bad nanos", &firestorepb.Document{Name: name, Fields: fields("t", ts(0, 1_000_000_000))}, false, "timestamp"},
		{"expression value", &firestorepb.Document{Name: name, Fields: fields("x", &firestorepb.Value{ValueType: &firestorepb.Value_FieldReferenceValue{FieldReferenceValue: "a"}})}, false, "expression"},
		{"string at limit", &firestorepb.Document{Name: name, Fields: fields("s", st(strings.Repeat("x", MaxValueBytes)))}, true, ""},
		{"string over limit", &firestorepb.Document{Name: name, Fields: fields("s", st(strings.Repeat("x", MaxValueBytes+1)))}, false, "string value"},
		{"bytes over limit", &firestorepb.Document{Name: name, Fields: fields("s", by(make([]byte, MaxValueBytes+1)...))}, false, "bytes value"},
		// name 44 + field name "s" 2 + bytes + 32 = 1 MiB exactly.
		{"size exactly 1 MiB", &firestorepb.Document{Name: name, Fields: fields("s", by(make([]byte, MaxValueBytes-2)...), "t", by(make([]byte, MaxDocumentSize-nameBytes-32-2-(MaxValueBytes-2)-2)...))}, true, ""},
		{"size 1 MiB plus 1", &firestorepb.Document{Name: name, Fields: fields("s", by(make([]byte, MaxValueBytes-2)...), "t", by(make([]byte, MaxDocumentSize-nameBytes-32-2-(MaxValueBytes-2)-2+1)...))}, false, "exceeds the maximum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateDocument(tt.doc)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidateDocument: unexpected error %v", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("ValidateDocument = %v, want an InvalidArgument error", err)
			}
			if !strings.Contains(status.Convert(err).Message(), tt.errHas) {
				t.Errorf("ValidateDocument error %q does not mention %q", status.Convert(err).Message(), tt.errHas)
			}
		})
	}
}

func TestSize(t *testing.T) {
	// The worked example from Firestore's storage-size documentation.
	doc := &firestorepb.Document{
		Name: testRoot + "/users/jeff/tasks/my_task_id",
		Fields: fields(
			"type", st("Personal"),
			"done", bl(false),
			"priority", in(1),
			"description", st("Learn Cloud Firestore"),
		),
	}
	if got, want := Size(doc), 147; got != want {
		t.Errorf("Size(documentation example) = %d, want %d", got, want)
	}
	tests := []struct {
		name string
		v    *firestorepb.Value
		want int
	}{
		{"null", nul(), 1},
		{"bool", bl(true), 1},
		{"int", in(1), 8},
		{"double", db(1), 8},
		{"timestamp", ts(1, 1), 8},
		{"string", st("héllo"), 7},
		{"bytes", by(1, 2, 3), 3},
		{"reference", rf("users/jeff"), 6 + 5 + 16},
		{"geopoint", geo(1, 2), 16},
		{"array", arr(in(1), st("ab")), 8 + 3},
		{"map", mp("a", in(1), "bc", bl(true)), 2 + 8 + 3 + 1},
		{"vector", vec(1, 2, 3), 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &firestorepb.Document{Name: testRoot + "/c/d", Fields: fields("f", tt.v)}
			// name: 2 + 2 + 16; field name: 2; plus 32.
			if got, want := Size(d), 20+2+tt.want+32; got != want {
				t.Errorf("Size = %d, want %d", got, want)
			}
		})
	}
}
