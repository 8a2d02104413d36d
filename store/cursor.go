package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"

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
