package store

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseSessionID feeds session ids to parseSessionID: it never panics,
// takes back apart every id of the issued form, and accepts only ids it
// would spell itself, so one lease never answers to two ids.
func FuzzParseSessionID(f *testing.F) {
	for _, s := range []string{
		"77.1.0123456789abcdef0123456789abcdef", "77.1", "77", ".1.abc", "-1.1.abc", "0.1.abc",
		"9223372036854775807.1.0123456789abcdef0123456789abcdef", "01.1.0123456789abcdef0123456789abcdef",
		"+7.1.0123456789abcdef0123456789abcdef", "7.01.0123456789abcdef0123456789abcdef",
		"9223372036854775808.1.x", "7\xff.1.x", "77.\xff", strings.Repeat("7", 300) + ".1", " 7.1.x", "",
		"77.1.0123456789ABCDEF0123456789abcdef",
	} {
		f.Add(s, int64(77), int64(1))
	}
	f.Fuzz(func(t *testing.T, id string, user, epoch int64) {
		if ref, err := parseSessionID(id); err == nil {
			spelled := strconv.FormatInt(ref.userID, 10) + "." + strconv.FormatInt(ref.epoch, 10) + "." + ref.secret
			if ref.userID <= 0 || ref.epoch <= 0 || spelled != id {
				t.Fatalf("parseSessionID(%q) = %+v, which is not the id", id, ref)
			}
		}
		if user <= 0 || epoch <= 0 {
			return
		}
		issued := strconv.FormatInt(user, 10) + "." + strconv.FormatInt(epoch, 10) + "." + leaseSecret("k", epoch)
		ref, err := parseSessionID(issued)
		if err != nil || ref.userID != user || ref.epoch != epoch {
			t.Fatalf("parseSessionID(%q) = %+v, %v; want user %d epoch %d", issued, ref, err, user, epoch)
		}
	})
}
