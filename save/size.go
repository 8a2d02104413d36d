package save

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// encodedSize returns len(json.Marshal(s.Encode())) without building either,
// since Apply checks the size of every result.
func encodedSize(s State) int {
	n := 2 // {}
	section := func(key string, body int) {
		n += quotedLen(key) + 1 + body
	}
	section(keyCurrencies, intMapSize(s.Currencies))
	section(keyStats, intMapSize(s.Stats))
	section(keyItems, intMapSize(s.Items))
	loadout := 2
	for k, v := range s.Loadout {
		loadout += quotedLen(k) + 1 + quotedLen(v) + 1
	}
	section(keyLoadout, loadout-commaFix(len(s.Loadout)))
	settings := 2
	for k, v := range s.Settings {
		settings += quotedLen(k) + 1 + valueSize(v) + 1
	}
	section(keySettings, settings-commaFix(len(s.Settings)))
	cols := 2
	for id, set := range s.Collections {
		body := 2
		for e, dots := range set {
			list := 2
			for _, d := range dots {
				// {"a":"…","v":N}
				list += len(`{"a":,"v":}`) + quotedLen(d.Actor) + intLen(d.Version) + 1
			}
			body += quotedLen(e) + 1 + list - commaFix(len(dots)) + 1
		}
		cols += quotedLen(id) + 1 + body - commaFix(len(set)) + 1
	}
	section(keyCollections, cols-commaFix(len(s.Collections)))
	return n + 5 // commas between the six sections
}

// commaFix undoes the trailing comma counted after the last of n entries.
func commaFix(n int) int {
	if n == 0 {
		return 0
	}
	return 1
}

func intMapSize(m map[string]int64) int {
	n := 2
	for k, v := range m {
		n += quotedLen(k) + 1 + intLen(v) + 1
	}
	return n - commaFix(len(m))
}

func intLen(v int64) int {
	var buf [20]byte
	return len(strconv.AppendInt(buf[:0], v, 10))
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return quotedLen(x)
	case int64:
		return intLen(x)
	case bool:
		if x {
			return 4
		}
		return 5
	case nil:
		return 4
	}
	data, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(data)
}

// quotedLen is the length of s as encoding/json quotes it (HTML-escaped).
func quotedLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\' || b == '\n' || b == '\r' || b == '\t':
				n += 2
			case b < 0x20 || b == '<' || b == '>' || b == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}
