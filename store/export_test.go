package store

// SetBeforeApply makes s call f before it applies each mutation of a group
// commit, inside the transaction and after every check of the request, so
// tests can make one member fail in ways no request can (a panic, text that
// slipped past the checks).
func SetBeforeApply(s *Store, f func(*MutationRequest)) { s.beforeApply = f }
