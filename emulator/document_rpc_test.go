package emulator

import (
	"context"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func intValue(n int64) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: n}}
}

func TestSingleDocumentRPCs(t *testing.T) {
	p := testProject(t)
	ctx := context.Background()
	g := newGAPIC(t)
	defer g.Close()
	root := dbPath(p) + "/documents"
	created, err := g.CreateDocument(ctx, &firestorepb.CreateDocumentRequest{Parent: root, CollectionId: "c", DocumentId: "d", Document: &firestorepb.Document{Fields: map[string]*firestorepb.Value{"n": intValue(1)}}})
	if err != nil {
		t.Fatalf("CreateDocument: %v", err)
	}
	if created.GetName() != root+"/c/d" || created.GetCreateTime() == nil {
		t.Errorf("created %v, want name %s with times", created, root+"/c/d")
	}
	if _, err := g.CreateDocument(ctx, &firestorepb.CreateDocumentRequest{Parent: root, CollectionId: "c", DocumentId: "d", Document: &firestorepb.Document{}}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second CreateDocument: %v, want AlreadyExists", err)
	}
	auto, err := g.CreateDocument(ctx, &firestorepb.CreateDocumentRequest{Parent: root, CollectionId: "c", Document: &firestorepb.Document{}})
	if err != nil || len(auto.GetName()) != len(root+"/c/")+20 {
		t.Errorf("CreateDocument with generated id: %v, %v", auto.GetName(), err)
	}
	upd, err := g.UpdateDocument(ctx, &firestorepb.UpdateDocumentRequest{
		Document:   &firestorepb.Document{Name: root + "/c/d", Fields: map[string]*firestorepb.Value{"m": intValue(2)}},
		UpdateMask: &firestorepb.DocumentMask{FieldPaths: []string{"m"}},
	})
	if err != nil {
		t.Fatalf("UpdateDocument: %v", err)
	}
	if upd.GetFields()["n"].GetIntegerValue() != 1 || upd.GetFields()["m"].GetIntegerValue() != 2 {
		t.Errorf("updated fields %v, want n=1 m=2", upd.GetFields())
	}
	got, err := g.GetDocument(ctx, &firestorepb.GetDocumentRequest{Name: root + "/c/d", Mask: &firestorepb.DocumentMask{FieldPaths: []string{"m"}}})
	if err != nil {
		t.Fatalf("GetDocument: %v", err)
	}
	if len(got.GetFields()) != 1 || got.GetFields()["m"].GetIntegerValue() != 2 {
		t.Errorf("masked get %v, want only m=2", got.GetFields())
	}
	if err := g.DeleteDocument(ctx, &firestorepb.DeleteDocumentRequest{Name: root + "/c/d"}); err != nil {
		t.Fatalf("DeleteDocument: %v", err)
	}
	if _, err := g.GetDocument(ctx, &firestorepb.GetDocumentRequest{Name: root + "/c/d"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetDocument after delete: %v, want NotFound", err)
	}
}

func TestWriteStream(t *testing.T) {
	p := testProject(t)
	ctx := context.Background()
	g := newGAPIC(t)
	defer g.Close()
	st, err := g.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&firestorepb.WriteRequest{Database: dbPath(p)}); err != nil {
		t.Fatal(err)
	}
	hs, err := st.Recv()
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if hs.GetStreamId() == "" || len(hs.GetStreamToken()) == 0 {
		t.Fatalf("handshake %v, want a stream id and token", hs)
	}
	name := dbPath(p) + "/documents/ws/a"
	if err := st.Send(&firestorepb.WriteRequest{StreamToken: hs.GetStreamToken(), Writes: []*firestorepb.Write{{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{"n": intValue(3)}}},
	}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if len(resp.GetWriteResults()) != 1 || resp.GetCommitTime() == nil {
		t.Errorf("write response %v, want one result and a commit time", resp)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	d, err := g.GetDocument(ctx, &firestorepb.GetDocumentRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetFields()["n"].GetIntegerValue() != 3 {
		t.Errorf("n = %v, want 3", d.GetFields()["n"])
	}
}
