package emulator

import (
	"context"
	"fmt"
	"path"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
)

func TestListenDocument(t *testing.T) {
	c, _ := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	doc := c.Doc("live/a")
	it := doc.Snapshots(ctx)
	defer it.Stop()
	next := func() *firestore.DocumentSnapshot {
		t.Helper()
		snap, err := it.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		return snap
	}
	if s := next(); s.Exists() {
		t.Fatalf("initial snapshot exists: %v", s.Data())
	}
	steps := []struct {
		name   string
		write  func() error
		exists bool
		n      any
	}{
		{"create", func() error { _, err := doc.Set(ctx, map[string]any{"n": int64(1)}); return err }, true, int64(1)},
		{"update", func() error {
			_, err := doc.Update(ctx, []firestore.Update{{Path: "n", Value: firestore.Increment(1)}})
			return err
		}, true, int64(2)},
		{"delete", func() error { _, err := doc.Delete(ctx); return err }, false, nil},
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		s := next()
		if s.Exists() != st.exists {
			t.Fatalf("%s: exists = %v, want %v", st.name, s.Exists(), st.exists)
		}
		if st.exists {
			if n, _ := s.DataAt("n"); n != st.n {
				t.Errorf("%s: n = %v, want %v", st.name, n, st.n)
			}
		}
	}
}

func TestListenQuery(t *testing.T) {
	c, _ := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seed(t, c, map[string]map[string]any{"q/a": {"team": "red", "n": 1}, "q/b": {"team": "blue", "n": 2}})
	it := c.Collection("q").Where("team", "==", "red").Snapshots(ctx)
	defer it.Stop()
	type change struct {
		Kind firestore.DocumentChangeKind
		ID   string
	}
	next := func() ([]string, []change) {
		t.Helper()
		qs, err := it.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		snaps, err := qs.Documents.GetAll()
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, s := range snaps {
			ids = append(ids, s.Ref.ID)
		}
		var chs []change
		for _, ch := range qs.Changes {
			chs = append(chs, change{ch.Kind, ch.Doc.Ref.ID})
		}
		return ids, chs
	}
	steps := []struct {
		name    string
		write   func() error
		want    []string
		changes []change
	}{
		{"initial", func() error { return nil }, []string{"a"}, []change{{firestore.DocumentAdded, "a"}}},
		{"add match", func() error { _, err := c.Doc("q/c").Set(ctx, map[string]any{"team": "red"}); return err }, []string{"a", "c"}, []change{{firestore.DocumentAdded, "c"}}},
		{"modify", func() error {
			_, err := c.Doc("q/a").Update(ctx, []firestore.Update{{Path: "n", Value: 5}})
			return err
		}, []string{"a", "c"}, []change{{firestore.DocumentModified, "a"}}},
		{"leave the query", func() error {
			_, err := c.Doc("q/a").Update(ctx, []firestore.Update{{Path: "team", Value: "blue"}})
			return err
		}, []string{"c"}, []change{{firestore.DocumentRemoved, "a"}}},
		{"delete", func() error { _, err := c.Doc("q/c").Delete(ctx); return err }, []string{}, []change{{firestore.DocumentRemoved, "c"}}},
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		ids, chs := next()
		if diff := cmp.Diff(st.want, ids); diff != "" {
			t.Errorf("%s: ids (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.changes, chs); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestListenProtocolSequence(t *testing.T) {
	p := testProject(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := newClientFor(t, testSrv, p)
	if _, err := c.Doc("seq/a").Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	g := newGAPIC(t)
	defer g.Close()
	name := dbPath(p) + "/documents/seq/a"
	describe := func(r *firestorepb.ListenResponse) string {
		switch rt := r.GetResponseType().(type) {
		case *firestorepb.ListenResponse_TargetChange:
			tc := rt.TargetChange
			return fmt.Sprintf("%s%v rt=%v", tc.GetTargetChangeType(), tc.GetTargetIds(), tc.GetReadTime() != nil)
		case *firestorepb.ListenResponse_DocumentChange:
			return fmt.Sprintf("change %s%v", path.Base(rt.DocumentChange.GetDocument().GetName()), rt.DocumentChange.GetTargetIds())
		case *firestorepb.ListenResponse_DocumentDelete:
			return fmt.Sprintf("delete %s%v", path.Base(rt.DocumentDelete.GetDocument()), rt.DocumentDelete.GetRemovedTargetIds())
		}
		return "other"
	}
	recv := func(st firestorepb.Firestore_ListenClient, n int) []string {
		t.Helper()
		var out []string
		for i := 0; i < n; i++ {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			out = append(out, describe(r))
		}
		return out
	}
	target := &firestorepb.Target{TargetId: 7, TargetType: &firestorepb.Target_Documents{Documents: &firestorepb.Target_DocumentsTarget{Documents: []string{name}}}}
	st, err := g.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&firestorepb.ListenRequest{Database: dbPath(p), TargetChange: &firestorepb.ListenRequest_AddTarget{AddTarget: target}}); err != nil {
		t.Fatal(err)
	}
	want := []string{"ADD[7] rt=false", "change a[7]", "CURRENT[7] rt=true", "NO_CHANGE[] rt=true"}
	if diff := cmp.Diff(want, recv(st, 4)); diff != "" {
		t.Errorf("initial sequence (-want +got):\n%s", diff)
	}
	if _, err := c.Doc("seq/a").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"delete a[7]", "NO_CHANGE[] rt=true"}, recv(st, 2)); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
	if err := st.Send(&firestorepb.ListenRequest{Database: dbPath(p), TargetChange: &firestorepb.ListenRequest_RemoveTarget{RemoveTarget: 7}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"REMOVE[7] rt=false"}, recv(st, 1)); diff != "" {
		t.Errorf("after remove_target (-want +got):\n%s", diff)
	}
	// A resumed target is answered with RESET and the full state.
	resumed := &firestorepb.Target{TargetId: 8, ResumeType: &firestorepb.Target_ResumeToken{ResumeToken: []byte{1}},
		TargetType: &firestorepb.Target_Documents{Documents: &firestorepb.Target_DocumentsTarget{Documents: []string{name}}}}
	if err := st.Send(&firestorepb.ListenRequest{Database: dbPath(p), TargetChange: &firestorepb.ListenRequest_AddTarget{AddTarget: resumed}}); err != nil {
		t.Fatal(err)
	}
	want = []string{"ADD[8] rt=false", "RESET[8] rt=false", "CURRENT[8] rt=true", "NO_CHANGE[] rt=true"}
	if diff := cmp.Diff(want, recv(st, 4)); diff != "" {
		t.Errorf("resume sequence (-want +got):\n%s", diff)
	}
}
