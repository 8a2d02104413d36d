package store

import "context"

// SetBeforeApply makes s call f before it applies each mutation of a group
// commit, inside the transaction and after every check of the request, so
// tests can make one member fail in ways no request can (a panic, text that
// slipped past the checks).
func SetBeforeApply(s *Store, f func(*MutationRequest)) { s.beforeApply = f }

// ClaimBulkJob makes r take a running job's lease without working on it,
// as a runner that dies right after claiming would leave it.
func ClaimBulkJob(ctx context.Context, r *BulkRunner, jobID string) (bool, error) {
	_, ok, err := r.claim(ctx, jobID)
	return ok, err
}
