package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/internal/sleep"
	"github.com/savesync/savesync/save"
)

// txnBody computes the writes of one transaction attempt from the documents
// it read (missing documents are absent from the map). Returning no writes
// ends the transaction without a commit. It may run more than once, so it
// must not have side effects beyond its return values.
type txnBody func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error)

// errAbortAttempt is how a txnBody asks for a fresh attempt.
var errAbortAttempt = errors.New("store: retry transaction")

// runTxn runs body in a read-write transaction that begins inline with its
// first read (BatchGetDocuments with new_transaction), so a checked
// read-modify-write costs two round trips: the read and the commit.
//
// Contention (ABORTED) and transport failures (UNAVAILABLE, DEADLINE_EXCEEDED)
// are retried with jittered backoff. A commit whose response was lost is
// retried as a whole: the body runs again on fresh reads, which is why every
// body checks its own idempotency record before writing.
func (s *Store) runTxn(ctx context.Context, names []string, body txnBody) (*firestorepb.CommitResponse, error) {
	var prev []byte
	var lastErr error
	for attempt := 0; attempt < s.maxAttempts; attempt++ {
		if attempt > 0 {
			if err := s.backoff(ctx, attempt); err != nil {
				return nil, err
			}
		}
		resp, id, err := s.attemptTxn(ctx, names, prev, body)
		if err == nil {
			return resp, nil
		}
		if id != nil {
			prev = id
		}
		if !retryable(err) {
			return nil, err
		}
		s.metrics.retries.Add(1)
		s.observer.TransactionRetried(ctx)
		lastErr = err
	}
	return nil, save.Errorf(save.CodeUnavailable, "the save is busy; retry with the same Idempotency-Key").
		WithDetail("cause", status.Code(lastErr).String())
}

// attemptTxn is one attempt: read with a new transaction, run the body, commit.
func (s *Store) attemptTxn(ctx context.Context, names []string, prev []byte, body txnBody) (*firestorepb.CommitResponse, []byte, error) {
	docs, id, err := s.readInTxn(ctx, names, prev)
	if err != nil {
		return nil, id, err
	}
	writes, err := body(docs)
	if err != nil || len(writes) == 0 {
		s.rollback(id)
		if errors.Is(err, errAbortAttempt) {
			return nil, id, status.Error(codes.Aborted, "retry requested")
		}
		return nil, id, err
	}
	resp, err := s.gapic.Commit(ctx, &firestorepb.CommitRequest{
		Database:    s.database,
		Writes:      writes,
		Transaction: id,
	}, gax.WithRetry(nil))
	if err != nil {
		s.rollback(id)
		return nil, id, err
	}
	return resp, id, nil
}

// readInTxn reads names in a transaction begun by this very call.
func (s *Store) readInTxn(ctx context.Context, names []string, prev []byte) (map[string]*firestorepb.Document, []byte, error) {
	rw := &firestorepb.TransactionOptions_ReadWrite{RetryTransaction: prev}
	stream, err := s.gapic.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{
		Database:  s.database,
		Documents: names,
		ConsistencySelector: &firestorepb.BatchGetDocumentsRequest_NewTransaction{
			NewTransaction: &firestorepb.TransactionOptions{Mode: &firestorepb.TransactionOptions_ReadWrite_{ReadWrite: rw}},
		},
	}, gax.WithRetry(nil))
	if err != nil {
		return nil, nil, err
	}
	docs := make(map[string]*firestorepb.Document, len(names))
	var id []byte
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			if id != nil {
				s.rollback(id)
			}
			return nil, id, err
		}
		if len(r.GetTransaction()) > 0 {
			id = r.GetTransaction()
		}
		if d := r.GetFound(); d != nil {
			docs[d.GetName()] = d
		}
	}
	if id == nil {
		return nil, nil, fmt.Errorf("store: the database began no transaction")
	}
	return docs, id, nil
}

// rollback releases a transaction's locks without waiting for the answer
// on the caller's context, which may already be cancelled.
func (s *Store) rollback(id []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.gapic.Rollback(ctx, &firestorepb.RollbackRequest{Database: s.database, Transaction: id})
}

// backoff waits before the next attempt: exponential with full jitter,
// starting small. Firestore aborts a transaction only when an older one
// needs a lock it holds (wound-wait), and the retry names the aborted
// attempt (RetryTransaction), so it keeps its age and soon is the oldest.
func (s *Store) backoff(ctx context.Context, attempt int) error {
	ceiling := 10 * time.Millisecond << min(attempt, 6)
	return sleep.For(ctx, time.Duration(s.jitter(int64(ceiling))+1))
}

// retryable reports whether a transaction attempt may be run again.
// INTERNAL from the database is (Firestore asks for a retry), but not the
// INTERNAL the client reports for a request it could not encode, which was
// never sent and never will be.
func retryable(err error) bool {
	if _, ok := save.AsError(err); ok {
		return false
	}
	if unsendable(err) {
		return false
	}
	switch status.Code(err) {
	case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal:
		return true
	}
	return false
}

// unsendable reports a request the gRPC client could not encode (text that
// is not valid UTF-8 in a write): the client reports it as INTERNAL, like a
// server failure, though the database never saw it.
func unsendable(err error) bool {
	return err != nil && status.Code(err) == codes.Internal &&
		strings.HasPrefix(status.Convert(err).Message(), "grpc: error while marshaling")
}
