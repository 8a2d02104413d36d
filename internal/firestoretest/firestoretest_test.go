package firestoretest

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The test emulator needs the indexes of firestore.indexes.json, so a
// store query that Cloud Firestore would refuse fails in tests too.
func TestEmulatorNeedsDeclaredIndexes(t *testing.T) {
	c := Dial(t, Project(t))
	ctx := context.Background()
	ledger := c.Firestore.Collection("players/1/ledger")
	if _, err := ledger.Doc("e1").Set(ctx, map[string]any{"actor": map[string]any{"kind": "server", "id": "k"}, "version": 1}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	tests := []struct {
		name string
		q    firestore.Query
		want codes.Code
	}{
		{"declared composite", ledger.Where("actor.kind", "==", "server").OrderBy("committedAt", firestore.Desc).OrderBy("version", firestore.Desc), codes.OK},
		{"automatic single-field index", ledger.OrderBy("version", firestore.Desc), codes.OK},
		{"undeclared composite", ledger.Where("actor.kind", "==", "server").OrderBy("version", firestore.Asc), codes.FailedPrecondition},
		{"exempted field", ledger.Where("ops", "==", "x"), codes.FailedPrecondition},
		{"collection group without its index", c.Firestore.CollectionGroup("ledger").Where("version", "==", 1), codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.q.Documents(ctx).GetAll()
			if status.Code(err) != tt.want {
				t.Fatalf("err = %v, want code %v", err, tt.want)
			}
			if err != nil && !strings.Contains(status.Convert(err).Message(), "You can create it here: https://console.firebase.google.com/") {
				t.Errorf("message %q lacks the index-creation link", status.Convert(err).Message())
			}
		})
	}
}
