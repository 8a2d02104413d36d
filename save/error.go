package save

import (
	"errors"
	"fmt"
)

// Code is a stable, upper-case error code. Clients and game scripts branch on
// it, so a code never changes meaning once released. The HTTP status for each
// code is chosen by the handlers, not here.
type Code string

const (
	// CodeInvalidArgument means the request is malformed or names something the
	// game config does not declare; the message names the field to fix.
	CodeInvalidArgument Code = "INVALID_ARGUMENT"
	// CodeUnauthenticated means the caller presented no valid credentials.
	CodeUnauthenticated Code = "UNAUTHENTICATED"
	// CodePermissionDenied means the caller is known but may not do this, for
	// example a companion asking for an op reserved to game servers.
	CodePermissionDenied Code = "PERMISSION_DENIED"
	// CodeNotFound means the player, SKU or other named resource does not exist.
	CodeNotFound Code = "NOT_FOUND"
	// CodeVersionConflict means a versioned op was sent with an expectedVersion
	// that is no longer current; the caller refetches and retries.
	CodeVersionConflict Code = "VERSION_CONFLICT"
	// CodeInsufficientFunds means a balance, stat or item count would drop
	// below its floor.
	CodeInsufficientFunds Code = "INSUFFICIENT_FUNDS"
	// CodeLimitExceeded means a value would rise above its cap: a balance, a
	// stack, a unique item, a collection, the ops per mutation or the save size.
	CodeLimitExceeded Code = "LIMIT_EXCEEDED"
	// CodeNotOwned means an op needs an item the player does not hold: a
	// loadout.set of an item not owned, or whose every owned copy is already
	// equipped in another slot. Like the floors and caps, it depends on the
	// save's state, not on the request's form.
	CodeNotOwned Code = "NOT_OWNED"
	// CodeIdempotencyKeyReused means an Idempotency-Key was sent again with a
	// different request body.
	CodeIdempotencyKeyReused Code = "IDEMPOTENCY_KEY_REUSED"
	// CodeAlreadyApplied means the mutation does something that may happen
	// only once per player (refunding one purchase) and it has been done;
	// details name the ledger entry that did it.
	CodeAlreadyApplied Code = "ALREADY_APPLIED"
	// CodeFailedPrecondition means the thing asked for cannot happen in the
	// resource's present state, such as starting a bulk job that is
	// already running; details.state says what the state is.
	CodeFailedPrecondition Code = "FAILED_PRECONDITION"
	// CodeSelectionEmpty means a bulk job's selection matches no player, so
	// starting it would do nothing; change the selection.
	CodeSelectionEmpty Code = "SELECTION_EMPTY"
	// CodeSaveMigrationFailed means the stored save could not be migrated to the
	// current schema; details name the step and field. The stored save is untouched.
	CodeSaveMigrationFailed Code = "SAVE_MIGRATION_FAILED"
	// CodeSchemaTooNew means the stored save was written by a newer schema than
	// this server knows; the server must be upgraded before it may touch it.
	CodeSchemaTooNew Code = "SCHEMA_TOO_NEW"
	// CodeSessionHeld means another live game server holds the player's session lease.
	CodeSessionHeld Code = "SESSION_HELD"
	// CodeRequestTooLarge means the request body exceeds the accepted size.
	CodeRequestTooLarge Code = "REQUEST_TOO_LARGE"
	// CodeHeadersTooLarge means the request's headers exceed the accepted size.
	CodeHeadersTooLarge Code = "HEADERS_TOO_LARGE"
	// CodeRequestTimeout means the request body did not arrive in the time
	// allowed for it; send it again, faster or smaller.
	CodeRequestTimeout Code = "REQUEST_TIMEOUT"
	// CodeMethodNotAllowed means the path exists but not with this method;
	// the Allow header lists the methods it has.
	CodeMethodNotAllowed Code = "METHOD_NOT_ALLOWED"
	// CodeRateLimited means the caller made too many requests of this kind
	// in a short time; details.retryAfterSeconds (also the Retry-After
	// header) says when to try again and details.limit which limit it hit.
	CodeRateLimited Code = "RATE_LIMITED"
	// CodeResourceExhausted means the caller holds as many of something
	// (open event streams) as it may at once; it may retry after closing one,
	// or after details.retryAfterSeconds.
	CodeResourceExhausted Code = "RESOURCE_EXHAUSTED"
	// CodeUnavailable means a dependency is temporarily unreachable; retrying
	// the same request (with the same Idempotency-Key) is safe.
	CodeUnavailable Code = "UNAVAILABLE"
	// CodeInternal means an unexpected failure; its detail is logged, never shown.
	CodeInternal Code = "INTERNAL"
)

// Error is a domain error: a code callers branch on, a message that says what
// to fix, and optional structured details (the field, the balance, ...).
type Error struct {
	Code    Code
	Message string
	Details map[string]any
}

// Error returns the code and message, e.g. "INSUFFICIENT_FUNDS: ops[0]: ...".
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetail sets one detail on e and returns e, so calls chain.
func (e *Error) WithDetail(key string, value any) *Error {
	if e.Details == nil {
		e.Details = make(map[string]any)
	}
	e.Details[key] = value
	return e
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal
// for any other error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := AsError(err); ok {
		return e.Code
	}
	return CodeInternal
}

// AsError returns the first *Error in err's chain.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e, true
	}
	return nil, false
}

// fieldError builds an *Error whose message starts with the field path and
// whose details carry it, so every rejection says what to fix.
func fieldError(code Code, field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	e := &Error{Code: code, Message: msg}
	if field != "" {
		e.WithDetail("field", field)
	}
	return e
}

// invalidf is fieldError with CodeInvalidArgument.
func invalidf(field, format string, args ...any) *Error {
	return fieldError(CodeInvalidArgument, field, format, args...)
}
