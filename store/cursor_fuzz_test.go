package store

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/savesync/savesync/save"
)

// cursorSeeds are cursors the service issues and the edges it must refuse.
func cursorSeeds() []string {
	b := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return []string{
		encodeCursor(auditCursor{At: time.Now().UnixMicro(), Version: 3}),
		encodeCursor(ledgerCursor{Before: 7}),
		encodeCursor(changesCursor{From: time.Now().UnixMicro(), Seen: []string{"0123456789ab"}}),
		b(`{"t":-62135596800000001,"v":1}`), b(`{"t":253402300800000000,"v":1}`), b(`{"v":0}`), b(`{"b":-1}`),
		b(`{"f":1,"s":["short"]}`), b("{\"f\":1,\"s\":[\"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\"]}"),
		b(`{"t":1e30,"v":1}`), b(`{"zz":1}`), b(`[]`), b(`null`), "!!!", "====", "",
	}
}

// FuzzDecodeCursors feeds every cursor decoder arbitrary text: none
// panics, each refuses with INVALID_ARGUMENT naming what to do, and what
// one accepts is a position Firestore can query.
func FuzzDecodeCursors(f *testing.F) {
	for _, s := range cursorSeeds() {
		f.Add(s)
	}
	changes := &Changes{}
	f.Fuzz(func(t *testing.T, s string) {
		refused := func(name string, err error) bool {
			t.Helper()
			if err == nil {
				return false
			}
			if e, ok := save.AsError(err); !ok || e.Code != save.CodeInvalidArgument || e.Message == "" {
				t.Fatalf("%s(%q) = %v, want INVALID_ARGUMENT with a message", name, s, err)
			}
			return true
		}
		if c, err := decodeAuditCursor(s); !refused("decodeAuditCursor", err) {
			if c.Version <= 0 || !inFirestoreRange(time.UnixMicro(c.At)) {
				t.Fatalf("decodeAuditCursor(%q) accepted %+v", s, c)
			}
		}
		if c, err := decodeLedgerCursor(s); !refused("decodeLedgerCursor", err) && c.Before <= 0 {
			t.Fatalf("decodeLedgerCursor(%q) accepted %+v", s, c)
		}
		if s == "" {
			return // an empty changes cursor starts from the store's clock
		}
		if c, err := changes.decodeCursor(s); !refused("Changes.decodeCursor", err) {
			if c.From <= 0 || !inFirestoreRange(time.UnixMicro(c.From)) {
				t.Fatalf("Changes.decodeCursor(%q) accepted %+v", s, c)
			}
		}
	})
}
