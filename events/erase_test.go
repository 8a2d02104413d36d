package events_test

import (
	"testing"

	"github.com/savesync/savesync/events"
)

// TestEraseMessage is the message the Luau module acts on: t "erase" and
// the erased user ids in u.
func TestEraseMessage(t *testing.T) {
	if got, want := events.EraseMessage(1234567890), `{"t":"erase","u":[1234567890],"v":[]}`; got != want {
		t.Errorf("EraseMessage = %s, want %s", got, want)
	}
}
