package store_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/savesync/savesync/store"
)

// FuzzSessionUser feeds session ids to SessionUser: it never panics, and
// what it accepts names a positive user id that the id starts with.
func FuzzSessionUser(f *testing.F) {
	for _, s := range []string{
		"77.1.abc", "77.1", "77", ".1.abc", "-1.1.abc", "0.1.abc", "9223372036854775807.1.x",
		"9223372036854775808.1.x", "7\xff.1.x", "77.\xff", strings.Repeat("7", 300) + ".1", "+7.1.x", " 7.1.x", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		user, ok := store.SessionUser(id)
		if !ok {
			return
		}
		prefix, _, _ := strings.Cut(id, ".")
		if user <= 0 || strconv.FormatInt(user, 10) != strings.TrimPrefix(prefix, "+") && prefix != strconv.FormatInt(user, 10) {
			t.Fatalf("SessionUser(%q) = %d, which the id does not start with", id, user)
		}
		if len(id) > 200 {
			t.Fatalf("SessionUser accepted an id of %d bytes", len(id))
		}
	})
}
