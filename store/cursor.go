package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/savesync/savesync/save"
)

// maxCursorBytes bounds a cursor a caller sends back.
const maxCursorBytes = 4096

// encodeCursor makes an opaque page cursor of a position.
func encodeCursor(position any) string {
	b, _ := json.Marshal(position)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor made by encodeCursor into position. A cursor
// that is not one this service issued is INVALID_ARGUMENT with bad's message.
func decodeCursor(s string, position any, bad *save.Error) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > maxCursorBytes {
		return bad
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(position); err != nil {
		return bad
	}
	return nil
}

// The times Firestore can store and compare: years 1 to 9999.
var (
	minFirestoreTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxFirestoreTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// inFirestoreRange reports whether t can be sent to Firestore in a query.
func inFirestoreRange(t time.Time) bool {
	return !t.Before(minFirestoreTime) && !t.After(maxFirestoreTime)
}
