package query

import (
	"strings"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ParseFieldPath parses a field path as the Firestore API writes it: segments
// separated by dots; a segment that is not a simple name
// ([A-Za-z_][A-Za-z_0-9]*) is enclosed in backticks, inside which a backslash
// escapes the next character (\` is a backtick, \\ a backslash). Empty
// segments, unterminated quotes, a trailing lone backslash and unquoted
// segments that are not simple names are rejected with InvalidArgument.
func ParseFieldPath(s string) ([]string, error) {
	if s == "" {
		return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: empty", s)
	}
	var segs []string
	i := 0
	for {
		var seg string
		if i < len(s) && s[i] == '`' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' {
					if i+1 >= len(s) {
						return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: a backslash at the end of a quoted segment escapes nothing", s)
					}
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '`' {
					closed = true
					i++
					break
				}
				b.WriteByte(c)
				i++
			}
			if !closed {
				return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: unterminated backtick", s)
			}
			seg = b.String()
			if seg == "" {
				return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: empty segment", s)
			}
		} else {
			j := i
			for j < len(s) && s[j] != '.' {
				j++
			}
			seg = s[i:j]
			if seg == "" {
				return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: empty segment", s)
			}
			if !isSimpleName(seg) {
				return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: segment %q must be quoted with backticks", s, seg)
			}
			i = j
		}
		segs = append(segs, seg)
		if i == len(s) {
			if n := pathBytes(segs); n > MaxFieldPathBytes {
				return nil, status.Errorf(codes.InvalidArgument, "invalid field path %.200q...: %d bytes, more than the maximum of %d bytes", s, n, MaxFieldPathBytes)
			}
			return segs, nil
		}
		if s[i] != '.' {
			return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: expected '.' after a quoted segment", s)
		}
		i++
		if i == len(s) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: empty segment", s)
		}
	}
}

// FormatFieldPath is the inverse of ParseFieldPath: it joins segments with
// dots, enclosing in backticks (and escaping backticks and backslashes in)
// every segment that is not a simple name.
func FormatFieldPath(path []string) string {
	var b strings.Builder
	for i, seg := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		if isSimpleName(seg) {
			b.WriteString(seg)
			continue
		}
		b.WriteByte('`')
		for j := 0; j < len(seg); j++ {
			if seg[j] == '`' || seg[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(seg[j])
		}
		b.WriteByte('`')
	}
	return b.String()
}

// isSimpleName reports whether s matches [A-Za-z_][A-Za-z_0-9]*.
func isSimpleName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Lookup returns the value at path inside fields, descending through map
// values, and whether it exists. An empty path finds nothing.
func Lookup(fields map[string]*firestorepb.Value, path []string) (*firestorepb.Value, bool) {
	if len(path) == 0 {
		return nil, false
	}
	cur := fields
	for i, seg := range path {
		v, ok := cur[seg]
		if !ok {
			return nil, false
		}
		if i == len(path)-1 {
			return v, true
		}
		m, ok := v.GetValueType().(*firestorepb.Value_MapValue)
		if !ok {
			return nil, false
		}
		cur = m.MapValue.GetFields()
	}
	return nil, false
}

// SetPath stores v at path inside fields, creating intermediate maps and
// replacing intermediate values that are not maps. It modifies fields and the
// maps inside it in place; v is stored as given (not copied). An empty path
// does nothing.
func SetPath(fields map[string]*firestorepb.Value, path []string, v *firestorepb.Value) {
	if len(path) == 0 || fields == nil {
		return
	}
	cur := fields
	for _, seg := range path[:len(path)-1] {
		next, ok := cur[seg].GetValueType().(*firestorepb.Value_MapValue)
		if !ok || next.MapValue == nil {
			next = &firestorepb.Value_MapValue{MapValue: &firestorepb.MapValue{}}
			cur[seg] = &firestorepb.Value{ValueType: next}
		}
		if next.MapValue.Fields == nil {
			next.MapValue.Fields = map[string]*firestorepb.Value{}
		}
		cur = next.MapValue.Fields
	}
	cur[path[len(path)-1]] = v
}

// DeletePath removes the value at path inside fields, in place. A missing
// path, or one that crosses a value that is not a map, is left alone; maps
// emptied by the removal stay (as in Firestore).
func DeletePath(fields map[string]*firestorepb.Value, path []string) {
	if len(path) == 0 {
		return
	}
	cur := fields
	for _, seg := range path[:len(path)-1] {
		next, ok := cur[seg].GetValueType().(*firestorepb.Value_MapValue)
		if !ok {
			return
		}
		cur = next.MapValue.GetFields()
	}
	delete(cur, path[len(path)-1])
}
