package save

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting in decoded documents; Firestore itself allows
// 20 levels of maps and arrays, so anything deeper could never be stored.
const maxJSONDepth = 32

// decodeStrictJSON decodes one JSON value into a generic tree whose numbers
// stay json.Number. It rejects duplicate object keys, invalid UTF-8, trailing
// data and excessive nesting, which encoding/json alone would accept.
func decodeStrictJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, invalidf("", "body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJSONValue(dec, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalidf("", "unexpected data after the JSON value")
	}
	return v, nil
}

func readJSONValue(dec *json.Decoder, path string, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, invalidf(path, "nested deeper than %d levels", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(path, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := make(map[string]any)
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, syntaxError(path, err)
				}
				key, ok := kt.(string)
				if !ok {
					return nil, invalidf(path, "object key is not a string")
				}
				child := joinPath(path, key)
				if _, dup := m[key]; dup {
					return nil, invalidf(child, "duplicate key")
				}
				v, err := readJSONValue(dec, child, depth+1)
				if err != nil {
					return nil, err
				}
				m[key] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, syntaxError(path, err)
			}
			return m, nil
		case '[':
			a := []any{}
			for i := 0; dec.More(); i++ {
				v, err := readJSONValue(dec, indexPath(path, i), depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, syntaxError(path, err)
			}
			return a, nil
		default:
			return nil, invalidf(path, "unexpected %q", t.String())
		}
	default:
		return t, nil
	}
}

func syntaxError(path string, err error) *Error {
	if errors.Is(err, io.EOF) {
		return invalidf(path, "unexpected end of JSON")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalidf(path, "invalid JSON at byte %d: %v", se.Offset, se)
	}
	return invalidf(path, "invalid JSON: %v", err)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// jsonType names the JSON type of a decoded value, for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case string:
		return "string"
	case json.Number, int, int32, int64, float32, float64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// toInt64 converts any integral number representation (Go ints, integral
// floats in range, json.Number) to int64. ok is false for anything else,
// including values that do not fit; rangeErr reports the latter.
func toInt64(v any) (n int64, ok bool, rangeErr bool) {
	switch x := v.(type) {
	case int64:
		return x, true, false
	case int:
		return int64(x), true, false
	case int32:
		return int64(x), true, false
	case float64:
		return floatToInt64(x)
	case float32:
		return floatToInt64(float64(x))
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n, true, false
		} else if errors.Is(err, strconv.ErrRange) {
			return 0, false, true
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, false, errors.Is(err, strconv.ErrRange)
		}
		return floatToInt64(f)
	}
	return 0, false, false
}

func floatToInt64(f float64) (int64, bool, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, false, math.IsInf(f, 0)
	}
	// 2^63 is exactly representable; every float below it in magnitude fits.
	if f >= 9223372036854775808.0 || f < -9223372036854775808.0 {
		return 0, false, true
	}
	return int64(f), true, false
}

// toFloat64 converts any finite number representation to float64.
func toFloat64(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int64:
		f = float64(x)
	case int:
		f = float64(x)
	case int32:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = strconv.ParseFloat(string(x), 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// plainValue converts a decoded JSON tree to the value types a save may hold:
// integral numbers become int64, other numbers float64.
func plainValue(v any, path string) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if n, ok, _ := toInt64(x); ok && !bytes.ContainsAny([]byte(x), ".eE") {
			return n, nil
		}
		f, ok := toFloat64(x)
		if !ok {
			return nil, invalidf(path, "number %s is out of range", x)
		}
		return f, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			pv, err := plainValue(e, joinPath(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = pv
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			pv, err := plainValue(e, indexPath(path, i))
			if err != nil {
				return nil, err
			}
			out[i] = pv
		}
		return out, nil
	default:
		return v, nil
	}
}

// object walks one decoded JSON object, remembering which keys were read so
// that done can reject the rest as unknown fields.
type object struct {
	path string
	m    map[string]any
	seen map[string]bool
}

func asObject(v any, path string) (*object, error) {
	m, ok := objectValue(v)
	if !ok {
		return nil, invalidf(path, "must be an object, got %s", jsonType(v))
	}
	return &object{path: path, m: m, seen: make(map[string]bool, len(m))}, nil
}

// objectValue reads a JSON object. An empty array counts as an empty
// object: Roblox's HttpService:JSONEncode turns every empty table into [],
// so a game script cannot send {}.
func objectValue(v any) (map[string]any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case []any:
		if len(x) == 0 {
			return map[string]any{}, true
		}
	}
	return nil, false
}

func (o *object) field(key string) string { return joinPath(o.path, key) }

// get returns the value at key; a JSON null counts as absent.
func (o *object) get(key string) (any, bool) {
	o.seen[key] = true
	v, ok := o.m[key]
	if v == nil {
		return nil, false
	}
	return v, ok
}

func (o *object) str(key string) (string, error) {
	v, ok := o.get(key)
	if !ok {
		return "", nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", invalidf(o.field(key), "must be a string, got %s", jsonType(v))
	}
	return s, nil
}

func (o *object) boolean(key string) (bool, error) {
	v, ok := o.get(key)
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, invalidf(o.field(key), "must be true or false, got %s", jsonType(v))
	}
	return b, nil
}

func (o *object) int64(key string) (int64, bool, error) {
	v, ok := o.get(key)
	if !ok {
		return 0, false, nil
	}
	n, err := intValue(v, o.field(key))
	return n, true, err
}

func (o *object) integer(key string) (int, error) {
	n, _, err := o.int64(key)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt32 || n < math.MinInt32 {
		return 0, invalidf(o.field(key), "%d is out of range", n)
	}
	return int(n), nil
}

func (o *object) float(key string) (*float64, error) {
	v, ok := o.get(key)
	if !ok {
		return nil, nil
	}
	f, isNum := toFloat64(v)
	if !isNum {
		return nil, invalidf(o.field(key), "must be a number, got %s", jsonType(v))
	}
	return &f, nil
}

func (o *object) object(key string) (*object, bool, error) {
	v, ok := o.get(key)
	if !ok {
		return nil, false, nil
	}
	child, err := asObject(v, o.field(key))
	return child, true, err
}

func (o *object) array(key string) ([]any, error) {
	v, ok := o.get(key)
	if !ok {
		return nil, nil
	}
	a, isArr := v.([]any)
	if !isArr {
		return nil, invalidf(o.field(key), "must be an array, got %s", jsonType(v))
	}
	return a, nil
}

// int64Map reads an object of integers, e.g. {"wood": 3}.
func (o *object) int64Map(key string) (map[string]int64, error) {
	child, ok, err := o.object(key)
	if err != nil || !ok {
		return nil, err
	}
	out := make(map[string]int64, len(child.m))
	for _, k := range child.keys() {
		n, _, err := child.int64(k)
		if err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, nil
}

// keys returns the object's keys sorted, so errors are deterministic.
func (o *object) keys() []string {
	ks := make([]string, 0, len(o.m))
	for k := range o.m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// done rejects every key that was not read.
func (o *object) done() error {
	for _, k := range o.keys() {
		if !o.seen[k] {
			return invalidf(o.field(k), "unknown field")
		}
	}
	return nil
}

func intValue(v any, path string) (int64, error) {
	n, ok, rangeErr := toInt64(v)
	if rangeErr {
		return 0, invalidf(path, "%v does not fit in a 64-bit integer", v)
	}
	if !ok {
		return 0, invalidf(path, "must be an integer, got %s", describe(v))
	}
	return n, nil
}

// describe renders a value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case json.Number, int64, int, float64:
		return fmt.Sprintf("%v", x)
	case string:
		return strconv.Quote(x)
	default:
		return jsonType(v)
	}
}

// sortedKeys lists a map's keys in order, for deterministic output: an
// empty list (never nil) when there are none, as answers render it.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
