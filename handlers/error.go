package handlers

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
)

// statusByCode is the one table from error codes to HTTP statuses.
var statusByCode = map[save.Code]int{
	save.CodeInvalidArgument:      http.StatusBadRequest,
	save.CodeUnauthenticated:      http.StatusUnauthorized,
	save.CodePermissionDenied:     http.StatusForbidden,
	save.CodeNotFound:             http.StatusNotFound,
	save.CodeVersionConflict:      http.StatusConflict,
	save.CodeSessionHeld:          http.StatusConflict,
	save.CodeSchemaTooNew:         http.StatusConflict,
	save.CodeInsufficientFunds:    http.StatusUnprocessableEntity,
	save.CodeLimitExceeded:        http.StatusUnprocessableEntity,
	save.CodeNotOwned:             http.StatusUnprocessableEntity,
	save.CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
	save.CodeAlreadyApplied:       http.StatusConflict,
	save.CodeFailedPrecondition:   http.StatusConflict,
	save.CodeSelectionEmpty:       http.StatusUnprocessableEntity,
	save.CodeSaveMigrationFailed:  http.StatusUnprocessableEntity,
	save.CodeRequestTooLarge:      http.StatusRequestEntityTooLarge,
	save.CodeHeadersTooLarge:      http.StatusRequestHeaderFieldsTooLarge,
	save.CodeRequestTimeout:       http.StatusRequestTimeout,
	save.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	save.CodeRateLimited:          http.StatusTooManyRequests,
	save.CodeResourceExhausted:    http.StatusTooManyRequests,
	save.CodeUnavailable:          http.StatusServiceUnavailable,
	save.CodeInternal:             http.StatusInternalServerError,
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the error inside ErrorBody.
type ErrorDetail struct {
	Code    save.Code      `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// HTTPStatus maps an error code to its HTTP status.
func HTTPStatus(code save.Code) int {
	if s, ok := statusByCode[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// toDomainError turns any error into the domain error a client may see.
// Errors that are not domain errors, and domain errors that are INTERNAL,
// are logged with their detail and reported as a plain internal error: no
// database text or internal detail reaches a client.
func toDomainError(ctx context.Context, err error) *save.Error {
	if e, ok := save.AsError(err); ok && e.Code != save.CodeInternal {
		return e
	}
	if IsBodyTooLarge(err) {
		return save.Errorf(save.CodeRequestTooLarge, "the request body is too large; send fewer mutations per request")
	}
	if IsBodyReadTimeout(err) {
		return save.Errorf(save.CodeRequestTimeout, "%s", err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return save.Errorf(save.CodeUnavailable, "the request timed out; retry it (with the same Idempotency-Key for mutations)")
	}
	logging.FromContext(ctx).Error("internal error", "error", err.Error())
	return save.Errorf(save.CodeInternal, "internal error")
}

// writeError is the one place errors become responses.
func writeError(c *gin.Context, err error) {
	e := toDomainError(c.Request.Context(), err)
	if n, ok := e.Details[detailRetryAfter].(int64); ok && n > 0 {
		c.Header("Retry-After", strconv.FormatInt(n, 10))
	}
	c.Set(errorCodeKey, string(e.Code))
	c.AbortWithStatusJSON(HTTPStatus(e.Code), errorBody(e))
}

// writeLoggedInternal answers a failure whose detail is logged already
// (a recovered panic) with the plain internal error.
func writeLoggedInternal(c *gin.Context) {
	e := save.Errorf(save.CodeInternal, "internal error")
	c.Set(errorCodeKey, string(e.Code))
	c.AbortWithStatusJSON(HTTPStatus(e.Code), errorBody(e))
}

// detailRetryAfter is the detail of a refusal that says, in whole seconds,
// when to retry; writeError copies it into the Retry-After header.
const detailRetryAfter = "retryAfterSeconds"

// errorBody renders a domain error.
func errorBody(e *save.Error) ErrorBody {
	return ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message, Details: e.Details}}
}

// handle adapts a handler that returns an error to gin.
func handle(fn func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := fn(c); err != nil {
			writeError(c, err)
		}
	}
}
