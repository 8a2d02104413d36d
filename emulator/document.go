package emulator

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strconv"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// autoIDChars are the characters of generated document ids.
const autoIDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newAutoID returns a random 20-character document id, as Firestore makes.
func newAutoID() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = autoIDChars[int(b[i])%len(autoIDChars)]
	}
	return string(b), nil
}

// commitOne commits one write on its own and returns the document as the
// commit left it (nil when it is missing).
func (s *Server) commitOne(ctx context.Context, db *database, w *firestorepb.Write, name string) (*firestorepb.Document, error) {
	resp, err := s.Commit(ctx, &firestorepb.CommitRequest{Database: db.name, Writes: []*firestorepb.Write{w}})
	if err != nil {
		return nil, err
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.getLocked(name, microsOf(resp.GetCommitTime())), nil
}

// CreateDocument creates a document, failing with ALREADY_EXISTS when it
// exists; an empty document_id gets a generated one.
func (s *Server) CreateDocument(ctx context.Context, req *firestorepb.CreateDocumentRequest) (*firestorepb.Document, error) {
	db, err := s.queryDatabase(req.GetParent())
	if err != nil {
		return nil, err
	}
	id := req.GetDocumentId()
	if id == "" {
		if id, err = newAutoID(); err != nil {
			return nil, status.Errorf(codes.Internal, "document id: %v", err)
		}
	}
	name := req.GetParent() + "/" + req.GetCollectionId() + "/" + id
	w := &firestorepb.Write{
		Operation:       &firestorepb.Write_Update{Update: &firestorepb.Document{Name: name, Fields: req.GetDocument().GetFields()}},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}},
	}
	d, err := s.commitOne(ctx, db, w, name)
	if err != nil {
		return nil, err
	}
	return s.maskResult(d, req.GetMask())
}

// UpdateDocument updates or inserts a document, like a one-write Commit.
func (s *Server) UpdateDocument(ctx context.Context, req *firestorepb.UpdateDocumentRequest) (*firestorepb.Document, error) {
	name := req.GetDocument().GetName()
	db, err := s.resourceDatabase(name)
	if err != nil {
		return nil, err
	}
	w := &firestorepb.Write{
		Operation:       &firestorepb.Write_Update{Update: req.GetDocument()},
		UpdateMask:      req.GetUpdateMask(),
		CurrentDocument: req.GetCurrentDocument(),
	}
	d, err := s.commitOne(ctx, db, w, name)
	if err != nil {
		return nil, err
	}
	return s.maskResult(d, req.GetMask())
}

// DeleteDocument deletes a document; deleting a missing one succeeds unless
// a precondition says otherwise.
func (s *Server) DeleteDocument(ctx context.Context, req *firestorepb.DeleteDocumentRequest) (*emptypb.Empty, error) {
	db, err := s.resourceDatabase(req.GetName())
	if err != nil {
		return nil, err
	}
	w := &firestorepb.Write{Operation: &firestorepb.Write_Delete{Delete: req.GetName()}, CurrentDocument: req.GetCurrentDocument()}
	if _, err := s.commitOne(ctx, db, w, req.GetName()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Server) maskResult(d *firestorepb.Document, m *firestorepb.DocumentMask) (*firestorepb.Document, error) {
	if d == nil {
		return nil, status.Errorf(codes.Internal, "document vanished after its commit")
	}
	if m == nil {
		return d, nil
	}
	mask, err := parseMask(m)
	if err != nil {
		return nil, err
	}
	return project(d, mask), nil
}

// Write is the streaming write protocol: a handshake that answers a stream
// id and token, then one Commit per request carrying writes.
func (s *Server) Write(stream firestorepb.Firestore_WriteServer) error {
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	db, err := s.database(first.GetDatabase())
	if err != nil {
		return err
	}
	if first.GetStreamId() != "" || len(first.GetWrites()) > 0 {
		return status.Errorf(codes.InvalidArgument, "the first request of a Write stream is a handshake: only database")
	}
	id, err := newAutoID()
	if err != nil {
		return status.Errorf(codes.Internal, "stream id: %v", err)
	}
	seq := 0
	token := func() []byte { return []byte(strconv.Itoa(seq)) }
	if err := stream.Send(&firestorepb.WriteResponse{StreamId: id, StreamToken: token()}); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.Commit(stream.Context(), &firestorepb.CommitRequest{Database: db.name, Writes: req.GetWrites()})
		if err != nil {
			return err
		}
		seq++
		if err := stream.Send(&firestorepb.WriteResponse{StreamId: id, StreamToken: token(), WriteResults: resp.GetWriteResults(), CommitTime: resp.GetCommitTime()}); err != nil {
			return err
		}
	}
}
