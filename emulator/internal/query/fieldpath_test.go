package query

import (
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseFieldPath(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "a", want: []string{"a"}},
		{in: "a.b", want: []string{"a", "b"}},
		{in: "_a1.B_2.__name__", want: []string{"_a1", "B_2", "__name__"}},
		{in: "`a.b`.c", want: []string{"a.b", "c"}},
		{in: "`x\\`y`", want: []string{"x`y"}},
		{in: "`x\\\\y`", want: []string{`x\y`}},
		{in: "`\\q`", want: []string{"q"}},
		{in: "`1abc`.`a-b`.`é`", want: []string{"1abc", "a-b", "é"}},
		{in: "` `", want: []string{" "}},
		{in: "a.`b`.c", want: []string{"a", "b", "c"}},
		{in: "", wantErr: true},
		{in: ".", wantErr: true},
		{in: "a.", wantErr: true},
		{in: ".a", wantErr: true},
		{in: "a..b", wantErr: true},
		{in: "``", wantErr: true},
		{in: "`a", wantErr: true},
		{in: "`a\\`", wantErr: true},
		{in: "`a`b", wantErr: true},
		{in: "`a`.", wantErr: true},
		{in: "1a", wantErr: true},
		{in: "a-b", wantErr: true},
		{in: "a b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFieldPath(tt.in)
			if tt.wantErr {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("ParseFieldPath(%q) = %q, %v; want an InvalidArgument error", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFieldPath(%q): %v", tt.in, err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ParseFieldPath(%q) mismatch (-want +got):\n%s", tt.in, d)
			}
		})
	}
}

func TestFormatFieldPathRoundTrip(t *testing.T) {
	tests := []struct {
		path []string
		want string
	}{
		{[]string{"a"}, "a"},
		{[]string{"a", "b"}, "a.b"},
		{[]string{"a.b", "c"}, "`a.b`.c"},
		{[]string{"x`y"}, "`x\\`y`"},
		{[]string{`x\y`}, "`x\\\\y`"},
		{[]string{"1a", "_1", "é", " ", "a-b"}, "`1a`._1.`é`.` `.`a-b`"},
		{[]string{"``\\"}, "`\\`\\`\\\\`"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := FormatFieldPath(tt.path)
			if got != tt.want {
				t.Errorf("FormatFieldPath(%q) = %q, want %q", tt.path, got, tt.want)
			}
			back, err := ParseFieldPath(got)
			if err != nil {
				t.Fatalf("ParseFieldPath(%q): %v", got, err)
			}
			if d := cmp.Diff(tt.path, back); d != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	doc := fields("a", mp("b", mp("c", in(1))), "s", st("x"), "n", nul())
	tests := []struct {
		name   string
		path   []string
		want   *firestorepb.Value
		wantOK bool
	}{
		{"top level", []string{"s"}, st("x"), true},
		{"null is present", []string{"n"}, nul(), true},
		{"nested", []string{"a", "b", "c"}, in(1), true},
		{"intermediate map", []string{"a", "b"}, mp("c", in(1)), true},
		{"missing", []string{"z"}, nil, false},
		{"missing nested", []string{"a", "x"}, nil, false},
		{"through non-map", []string{"s", "x"}, nil, false},
		{"empty path", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Lookup(doc, tt.path)
			if ok != tt.wantOK {
				t.Fatalf("Lookup(%q) ok = %v, want %v", tt.path, ok, tt.wantOK)
			}
			if d := diff(t, tt.want, got); d != "" {
				t.Errorf("Lookup(%q) mismatch (-want +got):\n%s", tt.path, d)
			}
		})
	}
}

func TestSetPath(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]*firestorepb.Value
		path []string
		v    *firestorepb.Value
		want map[string]*firestorepb.Value
	}{
		{"top level", fields(), []string{"a"}, in(1), fields("a", in(1))},
		{"overwrite", fields("a", in(1)), []string{"a"}, st("x"), fields("a", st("x"))},
		{"create intermediates", fields(), []string{"a", "b", "c"}, in(1), fields("a", mp("b", mp("c", in(1))))},
		{"keep siblings", fields("a", mp("x", in(2))), []string{"a", "y"}, in(3), fields("a", mp("x", in(2), "y", in(3)))},
		{"replace non-map intermediate", fields("a", st("s")), []string{"a", "b"}, in(1), fields("a", mp("b", in(1)))},
		{"map with nil fields", fields("a", &firestorepb.Value{ValueType: &firestorepb.Value_MapValue{MapValue: &firestorepb.MapValue{}}}), []string{"a", "b"}, in(1), fields("a", mp("b", in(1)))},
		{"empty path", fields("a", in(1)), nil, in(2), fields("a", in(1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			SetPath(tt.in, tt.path, tt.v)
			if d := diff(t, tt.want, tt.in); d != "" {
				t.Errorf("SetPath(%q) mismatch (-want +got):\n%s", tt.path, d)
			}
		})
	}
}

func TestDeletePath(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]*firestorepb.Value
		path []string
		want map[string]*firestorepb.Value
	}{
		{"top level", fields("a", in(1), "b", in(2)), []string{"a"}, fields("b", in(2))},
		{"nested leaves empty map", fields("a", mp("b", in(1))), []string{"a", "b"}, fields("a", mp())},
		{"missing", fields("a", in(1)), []string{"z"}, fields("a", in(1))},
		{"missing intermediate", fields("a", in(1)), []string{"x", "y"}, fields("a", in(1))},
		{"through non-map", fields("a", in(1)), []string{"a", "b"}, fields("a", in(1))},
		{"empty path", fields("a", in(1)), nil, fields("a", in(1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			DeletePath(tt.in, tt.path)
			if d := diff(t, tt.want, tt.in); d != "" {
				t.Errorf("DeletePath(%q) mismatch (-want +got):\n%s", tt.path, d)
			}
		})
	}
}
