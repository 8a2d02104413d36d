package emulator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestErrorTexts checks the codes and messages of the common write and read
// errors against Cloud Firestore's wording (as production returns them, e.g.
// "No document to update: projects/…/documents/c/d"), since client code
// matches on them.
func TestErrorTexts(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	root := dbPath(p) + "/documents/"
	wr, err := c.Doc("e/exists").Set(ctx, map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	stale := wr.UpdateTime.Add(-time.Second)
	g := newGAPIC(t)
	defer g.Close()
	ro, err := g.BeginTransaction(ctx, &firestorepb.BeginTransactionRequest{Database: dbPath(p), Options: &firestorepb.TransactionOptions{
		Mode: &firestorepb.TransactionOptions_ReadOnly_{ReadOnly: &firestorepb.TransactionOptions_ReadOnly{}},
	}})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"update missing", func() error {
			_, err := c.Doc("e/missing").Update(ctx, []firestore.Update{{Path: "n", Value: 2}})
			return err
		}, codes.NotFound, "No document to update: " + root + "e/missing"},
		{"create existing", func() error {
			_, err := c.Doc("e/exists").Create(ctx, map[string]any{"n": 2})
			return err
		}, codes.AlreadyExists, "Document already exists: " + root + "e/exists"},
		{"delete missing with exists", func() error {
			_, err := c.Doc("e/missing").Delete(ctx, firestore.Exists)
			return err
		}, codes.NotFound, "No document to update: " + root + "e/missing"},
		{"stale update time", func() error {
			_, err := c.Doc("e/exists").Update(ctx, []firestore.Update{{Path: "n", Value: 2}}, firestore.LastUpdateTime(stale))
			return err
		}, codes.FailedPrecondition, fmt.Sprintf("the stored version (%d) does not match the required base version (%d)", wr.UpdateTime.UnixMicro(), stale.UnixMicro())},
		{"update time of missing", func() error {
			_, err := c.Doc("e/missing").Delete(ctx, firestore.LastUpdateTime(stale))
			return err
		}, codes.FailedPrecondition, fmt.Sprintf("the stored version (0) does not match the required base version (%d)", stale.UnixMicro())},
		{"get missing", func() error {
			_, err := g.GetDocument(ctx, &firestorepb.GetDocumentRequest{Name: root + "e/missing"})
			return err
		}, codes.NotFound, `Document "` + root + `e/missing" not found.`},
		{"write in read-only transaction", func() error {
			_, err := g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: ro.Transaction, Writes: []*firestorepb.Write{{
				Operation: &firestorepb.Write_Delete{Delete: root + "e/exists"},
			}}})
			return err
		}, codes.InvalidArgument, "Cannot modify entities in a read-only transaction."},
		{"read time too old", func() error {
			_, err := g.GetDocument(ctx, &firestorepb.GetDocumentRequest{Name: root + "e/exists",
				ConsistencySelector: &firestorepb.GetDocumentRequest_ReadTime{ReadTime: timestamppb.New(time.Now().Add(-2 * time.Hour))}})
			return err
		}, codes.FailedPrecondition, "The requested snapshot version is too old."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(tt.call())
			got := fmt.Sprintf("%v: %s", st.Code(), st.Message())
			want := fmt.Sprintf("%v: %s", tt.code, tt.msg)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
