package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// sessionClock is the start of the session tests' settable clock.
var sessionClock = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// sessionEnv is a store on a settable clock with 90 s leases, and the
// Firestore client of its project for arranging and reading documents.
type sessionEnv struct {
	st    *store.Store
	fs    *firestore.Client
	clock *firestoretest.Clock
}

func newSessionEnv(t *testing.T) sessionEnv {
	t.Helper()
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	clock := firestoretest.NewClock(sessionClock)
	st := store.New(c.Firestore, c.GAPIC, project, firestoretest.GameConfig(t), store.Options{Now: clock.Now, LeaseTTL: 90 * time.Second, LedgerRetention: 24 * time.Hour})
	return sessionEnv{st: st, fs: c.Firestore, clock: clock}
}

// join grants a lease or fails the test.
func join(t *testing.T, st *store.Store, userID int64, job string, steal bool) store.Lease {
	t.Helper()
	res, err := st.JoinSession(context.Background(), store.JoinRequest{UserID: userID, JobID: job, ClientSchema: 3, Steal: steal})
	if err != nil {
		t.Fatalf("join %d on %s: %v", userID, job, err)
	}
	return res.Lease
}

// gameServer is the game-server actor of the session tests.
var gameServer = save.Actor{Kind: save.ActorServer, ID: "universe-1"}

// leave is a leave without a final flush.
func leave(sessionID, key string) store.LeaveRequest {
	return store.LeaveRequest{SessionID: sessionID, Actor: gameServer, IdempotencyKey: key}
}

func TestLeaseEpochIsMonotonicPerPlayer(t *testing.T) {
	t.Parallel()
	env := newSessionEnv(t)
	st, clock := env.st, env.clock
	ctx := context.Background()
	const user = 1000000001

	var epochs []int64
	a := join(t, st, user, "job-a", false)
	epochs = append(epochs, a.Epoch)
	if _, err := st.LeaveSession(ctx, leave(a.ID, "leave-a")); err != nil {
		t.Fatal(err)
	}
	b := join(t, st, user, "job-b", false)
	epochs = append(epochs, b.Epoch)
	// A renewal keeps the epoch; the next grant still counts from it.
	clock.Advance(30 * time.Second)
	renewed, err := st.RenewSession(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	epochs = append(epochs, renewed.Epoch)
	c := join(t, st, user, "job-c", true)
	epochs = append(epochs, c.Epoch)
	// An expired lease taken without steal, and a rejoin of the same job.
	clock.Advance(91 * time.Second)
	d := join(t, st, user, "job-d", false)
	epochs = append(epochs, d.Epoch)
	e := join(t, st, user, "job-d", false)
	epochs = append(epochs, e.Epoch)
	if _, err := st.LeaveSession(ctx, leave(e.ID, "leave-e")); err != nil {
		t.Fatal(err)
	}
	f := join(t, st, user, "job-a", false)
	epochs = append(epochs, f.Epoch)

	if diff := cmp.Diff([]int64{1, 2, 2, 3, 4, 5, 6}, epochs); diff != "" {
		t.Errorf("epochs of grants (-want +got):\n%s", diff)
	}
}

func TestLeaseEpochOfDocumentsWrittenBeforeTheField(t *testing.T) {
	t.Parallel()
	env := newSessionEnv(t)
	tests := []struct {
		name    string
		user    int64
		doc     map[string]any
		wantNew int64
	}{
		{
			name:    "a held session: continue from its epoch",
			user:    1000000011,
			doc:     map[string]any{"version": int64(3), "schemaVersion": int64(3), "session": map[string]any{"id": "1000000011.7.00000000000000000000000000000000", "jobId": "old", "epoch": int64(7), "expiresAt": sessionClock.Add(-time.Minute)}},
			wantNew: 8,
		},
		{
			name:    "no session: start at 1",
			user:    1000000012,
			doc:     map[string]any{"version": int64(3), "schemaVersion": int64(3), "session": nil},
			wantNew: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := env.fs.Doc(fmt.Sprintf("players/%d", tc.user)).Set(context.Background(), tc.doc); err != nil {
				t.Fatal(err)
			}
			if got := join(t, env.st, tc.user, "new", false).Epoch; got != tc.wantNew {
				t.Errorf("epoch of the first grant after the upgrade = %d, want %d", got, tc.wantNew)
			}
		})
	}
}

func TestSessionIdsFromBeforeDerivedIds(t *testing.T) {
	t.Parallel()
	env := newSessionEnv(t)
	ctx := context.Background()
	const user = 1000000021
	legacy := fmt.Sprintf("%d.4.%s", user, strings.Repeat("ab", 16))
	_, err := env.fs.Doc(fmt.Sprintf("players/%d", user)).Set(ctx, map[string]any{
		"version": int64(2), "schemaVersion": int64(3),
		"session": map[string]any{"id": legacy, "jobId": "old", "epoch": int64(4), "expiresAt": sessionClock.Add(time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	codeOf := func(err error) save.Code {
		if err == nil {
			return ""
		}
		e, ok := save.AsError(err)
		if !ok {
			t.Fatalf("not a domain error: %v", err)
		}
		return e.Code
	}
	renew := func(id string) save.Code {
		t.Helper()
		_, err := env.st.RenewSession(ctx, id)
		return codeOf(err)
	}
	zeros := strings.Repeat("0", 32)
	if got := renew(legacy); got != "" {
		t.Errorf("renew the held legacy session: %s, want renewed", got)
	}
	// An older legacy id cannot be told from a past lease: it is answered as one.
	if got := renew(fmt.Sprintf("%d.3.%s", user, zeros)); got != save.CodeSessionHeld {
		t.Errorf("renew an older legacy id: %s, want SESSION_HELD", got)
	}
	if got := renew(fmt.Sprintf("%d.5.%s", user, zeros)); got != save.CodeNotFound {
		t.Errorf("renew above the last epoch: %s, want NOT_FOUND", got)
	}
	next := join(t, env.st, user, "new", true)
	if next.Epoch != 5 {
		t.Fatalf("epoch after the legacy lease = %d, want 5", next.Epoch)
	}
	tests := []struct {
		id   string
		want save.Code
	}{
		{legacy, save.CodeSessionHeld},
		{fmt.Sprintf("%d.5.%s", user, zeros), save.CodeNotFound},
		{next.ID, ""},
	}
	for _, tc := range tests {
		if got := renew(tc.id); got != tc.want {
			t.Errorf("renew %s after the first derived grant: %q, want %q", tc.id, got, tc.want)
		}
	}
}

// TestJoinRefusesJobIDsThatCannotBePolled checks that a job id a later
// long-poll path could not carry (not UTF-8, or with a NUL) is refused at
// join, and that nothing is written for it.
func TestJoinRefusesJobIDsThatCannotBePolled(t *testing.T) {
	t.Parallel()
	env := newSessionEnv(t)
	ctx := context.Background()
	for i, job := range []string{"job\x00one", "job-\xff", "\xc0\xaf"} {
		userID := int64(8100000000 + i)
		_, err := env.st.JoinSession(ctx, store.JoinRequest{UserID: userID, JobID: job, ClientSchema: 3})
		if code := save.ErrorCode(err); code != save.CodeInvalidArgument || !strings.Contains(err.Error(), "jobId") {
			t.Errorf("join with job id %q: %v, want INVALID_ARGUMENT naming jobId", job, err)
		}
		snap, _ := env.fs.Doc(fmt.Sprintf("players/%d", userID)).Get(ctx)
		if snap != nil && snap.Exists() {
			t.Errorf("join with job id %q wrote the player document", job)
		}
	}
}
