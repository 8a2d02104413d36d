package save

import (
	"unicode/utf8"
)

// normalizeSetting converts v to the setting's Go type (bool, int64, float64
// or string) and checks it against the setting's constraints.
func normalizeSetting(d SettingDef, v any, path string) (any, error) {
	var out any
	switch d.Type {
	case SettingBool:
		b, ok := v.(bool)
		if !ok {
			return nil, invalidf(path, "must be true or false, got %s", describe(v))
		}
		return b, nil
	case SettingInt:
		n, ok, _ := toInt64(v)
		if !ok {
			return nil, invalidf(path, "must be an integer, got %s", describe(v))
		}
		if d.Min != nil && float64(n) < *d.Min {
			return nil, invalidf(path, "must be ≥ %v, got %d", *d.Min, n)
		}
		if d.Max != nil && float64(n) > *d.Max {
			return nil, invalidf(path, "must be ≤ %v, got %d", *d.Max, n)
		}
		out = n
	case SettingNumber:
		f, ok := toFloat64(v)
		if !ok {
			return nil, invalidf(path, "must be a finite number, got %s", describe(v))
		}
		if d.Min != nil && f < *d.Min {
			return nil, invalidf(path, "must be ≥ %v, got %v", *d.Min, f)
		}
		if d.Max != nil && f > *d.Max {
			return nil, invalidf(path, "must be ≤ %v, got %v", *d.Max, f)
		}
		out = f
	case SettingString:
		s, ok := v.(string)
		if !ok {
			return nil, invalidf(path, "must be a string, got %s", describe(v))
		}
		if !utf8.ValidString(s) {
			return nil, invalidf(path, "must be valid UTF-8")
		}
		if d.MaxLength > 0 && utf8.RuneCountInString(s) > d.MaxLength {
			return nil, invalidf(path, "must be at most %d characters, got %d", d.MaxLength, utf8.RuneCountInString(s))
		}
		out = s
	default:
		return nil, invalidf(path, "setting has unknown type %q", d.Type)
	}
	if len(d.Enum) > 0 {
		for _, e := range d.Enum {
			if ne, err := normalizeSetting(SettingDef{Type: d.Type}, e, path); err == nil && ne == out {
				return out, nil
			}
		}
		return nil, invalidf(path, "must be one of %v, got %s", d.Enum, describe(out))
	}
	return out, nil
}
