package store_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/savesync/savesync/store"
)

// FuzzSessionUser feeds session ids to SessionUser: it never panics,
// reads back the user of every id of the issued form, and what it accepts
// names the positive user id its first part spells (leniency there is
// harmless: leave and renew then compare the whole id with the lease).
func FuzzSessionUser(f *testing.F) {
	for _, s := range []string{
		"77.1.abc", "77.1", "77", ".1.abc", "-1.1.abc", "0.1.abc", "9223372036854775807.1.x", "01.",
		"9223372036854775808.1.x", "7\xff.1.x", "77.\xff", strings.Repeat("7", 300) + ".1", "+7.1.x", " 7.1.x", "",
	} {
		f.Add(s, int64(77), int64(1))
	}
	f.Fuzz(func(t *testing.T, id string, user, epoch int64) {
		if got, ok := store.SessionUser(id); ok {
			prefix, _, _ := strings.Cut(id, ".")
			if n, err := strconv.ParseInt(prefix, 10, 64); got <= 0 || err != nil || n != got || len(id) > 200 {
				t.Fatalf("SessionUser(%q) = %d, which the id does not name", id, got)
			}
		}
		if user <= 0 || epoch <= 0 {
			return
		}
		issued := strconv.FormatInt(user, 10) + "." + strconv.FormatInt(epoch, 10) + ".0123456789abcdef0123456789abcdef"
		if got, ok := store.SessionUser(issued); !ok || got != user {
			t.Fatalf("SessionUser(%q) = %d, %v; want %d", issued, got, ok, user)
		}
	})
}
