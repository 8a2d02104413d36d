package store_test

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// TestTimesOutsideFirestoreRangeAreRefused sends times Firestore cannot
// compare (past the year 9999) in search bounds and cursors: each is a
// clear INVALID_ARGUMENT, not a database error.
func TestTimesOutsideFirestoreRangeAreRefused(t *testing.T) {
	t.Parallel()
	st, _ := firestoretest.Store(t, store.Options{})
	ctx := context.Background()
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := st.SearchLedger(ctx, 1, store.AuditQuery{From: far}); save.ErrorCode(err) != save.CodeInvalidArgument {
		t.Errorf("search from the year 10000: %v, want INVALID_ARGUMENT", err)
	}
	cursor := base64.RawURLEncoding.EncodeToString([]byte(`{"f":9223372036854775807}`))
	ch := store.NewChanges(st, store.ChangesOptions{})
	if _, err := ch.Wait(ctx, "job-1", cursor, 0); save.ErrorCode(err) != save.CodeInvalidArgument {
		t.Errorf("long-poll cursor past the year 9999: %v, want INVALID_ARGUMENT", err)
	}
}
