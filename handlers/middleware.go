package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
)

// RequestIDHeader carries the request id in both directions, so a caller can
// quote it in a support request and find the matching log lines.
const RequestIDHeader = "X-Request-Id"

// requestIDKey is the gin context key under which RequestID stores the id.
const requestIDKey = "savesync.requestID"

// maxRequestIDLength bounds an accepted incoming request id.
const maxRequestIDLength = 128

// RequestID accepts a sane incoming X-Request-Id (1 to 128 characters from
// [A-Za-z0-9._:-]) or generates a random UUID, stores it for RequestIDFrom
// and echoes it in the response header. Anything else in the header is
// replaced rather than trusted, because it ends up in logs.
func RequestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if !isSaneRequestID(id) {
			id = uuid.NewString()
		}
		c.Set(requestIDKey, id)
		c.Header(RequestIDHeader, id)
		c.Next()
	}
}

// RequestIDFrom returns the id RequestID assigned to the request, or "" when
// the middleware did not run.
func RequestIDFrom(c *gin.Context) string {
	return c.GetString(requestIDKey)
}

// RequestLogger puts a per-request logger, carrying the request id and the
// Cloud Logging trace of project, into the request's context (read it with
// logging.FromContext) and writes one line per request once it is answered:
// route, request id and an httpRequest group (method, URL, status, response
// size, latency, remote IP, user agent) that Cloud Logging shows as a request.
// Responses of 500 and above log at ERROR, 4xx at WARNING, others at INFO.
// Put it after RequestID.
func RequestLogger(base *slog.Logger, project string) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		attrs := []any{slog.String("requestId", RequestIDFrom(c))}
		for _, a := range logging.TraceAttrs(project, c.GetHeader("X-Cloud-Trace-Context"), c.GetHeader("traceparent")) {
			attrs = append(attrs, a)
		}
		logger := base.With(attrs...)
		c.Request = c.Request.WithContext(logging.WithContext(c.Request.Context(), logger))

		c.Next()

		status := c.Writer.Status()
		level := slog.LevelInfo
		switch {
		case status >= http.StatusInternalServerError:
			level = slog.LevelError
		case status >= http.StatusBadRequest:
			level = slog.LevelWarn
		}
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		size := c.Writer.Size()
		if size < 0 {
			size = 0
		}
		logger.LogAttrs(c.Request.Context(), level, c.Request.Method+" "+route,
			slog.String("route", route),
			slog.Group("httpRequest",
				slog.String("requestMethod", c.Request.Method),
				slog.String("requestUrl", c.Request.URL.RequestURI()),
				slog.Int("status", status),
				slog.String("responseSize", strconv.Itoa(size)),
				slog.String("latency", formatLatency(time.Since(start))),
				slog.String("remoteIp", c.ClientIP()),
				slog.String("userAgent", c.Request.UserAgent()),
				slog.String("protocol", c.Request.Proto),
			),
		)
	}
}

// Recover turns a panic in a later handler into a 500 with the plain body
// {"error":{"code":"INTERNAL","message":"internal error"}} and logs the panic
// value with its stack at ERROR through the request's logger. The panic text
// never reaches the client: it may hold internal detail. http.ErrAbortHandler
// is re-panicked so net/http aborts the connection as intended.
func Recover() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			logging.FromContext(c.Request.Context()).ErrorContext(c.Request.Context(), "panic while handling request",
				slog.String("panic", fmt.Sprint(v)),
				slog.String("stack", string(debug.Stack())),
			)
			if c.Writer.Written() {
				c.Abort()
				return
			}
			writeError(c, save.Errorf(save.CodeInternal, "internal error"))
		}()
		c.Next()
	}
}

// LimitBody caps request bodies at maxBytes bytes. A request whose Content-Length
// already exceeds maxBytes is answered 413 REQUEST_TOO_LARGE before any handler
// runs; otherwise the body is wrapped in http.MaxBytesReader, so a handler
// reading past maxBytes gets an error for which IsBodyTooLarge reports true. If a
// handler hits the limit and writes nothing, LimitBody answers the 413 itself.
func LimitBody(maxBytes int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > maxBytes {
			writeError(c, save.Errorf(save.CodeRequestTooLarge, "%s", bodyTooLargeMessage(maxBytes)))
			return
		}
		if c.Request.Body == nil || c.Request.Body == http.NoBody {
			c.Next()
			return
		}
		body := &limitedBody{ReadCloser: http.MaxBytesReader(c.Writer, c.Request.Body, maxBytes)}
		c.Request.Body = body
		c.Next()
		if body.exceeded && !c.Writer.Written() {
			writeError(c, save.Errorf(save.CodeRequestTooLarge, "%s", bodyTooLargeMessage(maxBytes)))
		}
	}
}

// NoRoute answers requests that match no route with 404 NOT_FOUND in the
// usual JSON error body, instead of gin's plain-text page. Install it with
// engine.NoRoute.
func NoRoute(c *gin.Context) {
	writeError(c, save.Errorf(save.CodeNotFound, "no route for %s %s: check the method and the path", c.Request.Method, c.Request.URL.Path))
}

// IsBodyTooLarge reports whether err comes from reading a body past the limit
// set by LimitBody, so the error mapper can answer 413 REQUEST_TOO_LARGE
// instead of a generic bad request.
func IsBodyTooLarge(err error) bool {
	var tooLarge *http.MaxBytesError
	return errors.As(err, &tooLarge)
}

// limitedBody records whether a read hit the MaxBytesReader limit.
type limitedBody struct {
	io.ReadCloser
	exceeded bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if IsBodyTooLarge(err) {
		b.exceeded = true
	}
	return n, err
}

func bodyTooLargeMessage(maxBytes int64) string {
	return fmt.Sprintf("request body is larger than %d bytes: send a smaller request", maxBytes)
}

func isSaneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case ch == '.', ch == '_', ch == ':', ch == '-':
		default:
			return false
		}
	}
	return true
}

// formatLatency writes d the way Cloud Logging's httpRequest.latency expects
// ("0.012345s").
func formatLatency(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) + "s"
}

// StopStreamsOnShutdown ends the long-lived requests of the given routes
// (long-polls, event streams) when stop is closed, so a graceful shutdown
// does not wait for them until its deadline. Clients reconnect, to another
// instance. Other requests keep their context and finish normally.
func StopStreamsOnShutdown(stop <-chan struct{}, routes ...string) gin.HandlerFunc {
	streaming := make(map[string]bool, len(routes))
	for _, r := range routes {
		streaming[r] = true
	}
	return func(c *gin.Context) {
		if !streaming[c.FullPath()] {
			c.Next()
			return
		}
		ctx, cancel := context.WithCancel(c.Request.Context())
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		c.Request = c.Request.WithContext(ctx)
		c.Next()
	}
}
