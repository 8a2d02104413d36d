package store_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// TestDatabaseErrorsNameTheOperation makes the database refuse a commit
// outright and checks that the error says which operation failed, for the
// internal-error log line, while keeping the database's status.
func TestDatabaseErrorsNameTheOperation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		op   func(st *store.Store) error
		want string
	}{
		{"mutation", func(st *store.Store) error {
			_, err := st.ApplyMutation(context.Background(), store.MutationRequest{UserID: 31, Actor: save.Actor{Kind: save.ActorServer, ID: "universe/1"},
				IdempotencyKey: "k-1", Mutation: coinsAdd(1)})
			return err
		}, "store.ApplyMutation(31, "},
		{"join", func(st *store.Store) error {
			_, err := st.JoinSession(context.Background(), store.JoinRequest{UserID: 32, JobID: "job-1"})
			return err
		}, "store.JoinSession(32)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, project := firestoretest.Store(t, store.Options{})
			firestoretest.Emulator(t).InjectFault(emulator.Fault{Project: project, Method: "Commit", Code: codes.PermissionDenied})
			err := tt.op(st)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v, want one starting %q", err, tt.want)
			}
			if got := status.Code(err); got != codes.PermissionDenied {
				t.Errorf("status %v, want the database's PermissionDenied", got)
			}
			if _, domain := save.AsError(err); domain {
				t.Errorf("error %v is a domain error, want the database's", err)
			}
		})
	}
}

// TestUnavailableDatabaseAsksForARetry makes the database unreachable for a
// while under operations that read outside a retried transaction, and
// checks the caller is told UNAVAILABLE (a 503 to retry), not an internal
// error.
func TestUnavailableDatabaseAsksForARetry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		op   func(st *store.Store, project string) error
	}{
		{"leave with a final flush", func(st *store.Store, project string) error {
			lease := join(t, st, 41, "job-1", false)
			// The join read comes first; the faults then meet the leave.
			firestoretest.Emulator(t).InjectFault(emulator.Fault{Project: project, Method: "BatchGetDocuments", Code: codes.Unavailable, Count: 50})
			m := coinsAdd(1)
			_, err := st.LeaveSession(context.Background(), store.LeaveRequest{SessionID: lease.ID, Actor: gameServer, IdempotencyKey: "leave-1", Final: &m})
			return err
		}},
		{"ledger search", func(st *store.Store, project string) error {
			firestoretest.Emulator(t).InjectFault(emulator.Fault{Project: project, Method: "RunQuery", Code: codes.Unavailable, Count: 50})
			_, err := st.SearchLedger(context.Background(), 42, store.AuditQuery{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, project := firestoretest.Store(t, store.Options{})
			err := tt.op(st, project)
			e, ok := save.AsError(err)
			if !ok || e.Code != save.CodeUnavailable {
				t.Fatalf("error %v, want the domain error %s", err, save.CodeUnavailable)
			}
			if got := e.Details["cause"]; got != "Unavailable" {
				t.Errorf("cause %v, want Unavailable", got)
			}
		})
	}
}
