package save

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// checkElement validates a collection element: non-empty UTF-8 without NUL
// within the collection's length limit, and not a name Firestore reserves
// (__x__), since elements become map keys in the stored document.
func (c *Config) checkElement(collection, element, path string) error {
	if element == "" {
		return invalidf(path, "required")
	}
	if !utf8.ValidString(element) {
		return invalidf(path, "must be valid UTF-8")
	}
	if strings.IndexByte(element, 0) >= 0 {
		return invalidf(path, "must not contain a NUL character")
	}
	if max := c.Collections[collection].MaxElementLength; len(element) > max {
		return invalidf(path, "must be at most %d bytes, got %d", max, len(element))
	}
	if len(element) >= 4 && strings.HasPrefix(element, "__") && strings.HasSuffix(element, "__") {
		return invalidf(path, "names of the form __x__ are reserved")
	}
	return nil
}

// addElement records an add of element by actor at version: it keeps one dot
// per actor (the newest), which bounds the dots per element by the number of
// writers without changing which removes the element survives, since a
// remove that covers an actor's newer add covers its older ones too.
func addElement(set map[string][]Dot, element string, dot Dot) {
	dots := set[element]
	for i, d := range dots {
		if d.Actor == dot.Actor {
			if d.Version < dot.Version {
				dots[i] = dot
			}
			set[element] = dots
			return
		}
	}
	dots = append(dots, dot)
	sortDots(dots)
	set[element] = dots
}

// removeElement drops the adds of element the remover had observed (dots
// with Version ≤ observed; observed 0 drops them all). Adds it had not seen
// survive, so an add concurrent with a remove wins. An element left with no
// dots is deleted.
func removeElement(set map[string][]Dot, element string, observed int64) {
	dots, ok := set[element]
	if !ok {
		return
	}
	kept := dots[:0:0]
	for _, d := range dots {
		if observed != 0 && d.Version > observed {
			kept = append(kept, d)
		}
	}
	if len(kept) == 0 {
		delete(set, element)
		return
	}
	set[element] = kept
}

func sortDots(dots []Dot) {
	sort.Slice(dots, func(i, j int) bool {
		if dots[i].Version != dots[j].Version {
			return dots[i].Version < dots[j].Version
		}
		return dots[i].Actor < dots[j].Actor
	})
}
