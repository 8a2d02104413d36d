package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

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

// NewEngine returns the gin engine the API is served by: it trusts no proxy
// itself (ResolveClientIP decides who the client is), redirects nothing,
// answers unknown routes with NoRoute and known paths with another method
// with NoMethod, and lets handlers' contexts fall back to the request's.
func NewEngine() *gin.Engine {
	r := gin.New()
	r.ContextWithFallback = true
	// An API path has one spelling: a trailing slash or an unclean path is
	// answered 404 in the error shape, never redirected (a redirected
	// DELETE or POST is re-sent by some clients as a GET).
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	// Routes match the path as sent, so an escaped slash (%2F) stays inside
	// its parameter (a collection element "red/blue" in the remove route);
	// parameters are unescaped after matching.
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.NoMethod(NoMethod)
	// With no trusted proxy ClientIP is the RemoteAddr, which
	// ResolveClientIP has set; the error is only for unparsable CIDRs.
	_ = r.SetTrustedProxies(nil)
	r.NoRoute(NoRoute)
	return r
}

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
// The URL is logged as RedactURL writes it: session ids and link codes are
// bearer secrets and stay out of the logs.
// Responses of 500 and above log at ERROR, 4xx at WARNING, others at INFO.
// Put it after RequestID and after the tracing middleware, if any.
func RequestLogger(base *slog.Logger, project string) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		attrs := []any{slog.String("requestId", RequestIDFrom(c))}
		for _, a := range requestTraceAttrs(c, project) {
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
				slog.String("requestUrl", RedactURL(c.Request.URL)),
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

// requestTraceAttrs names the request's trace for its log lines: the
// server span's when tracing made one (its trace id is the caller's, read
// from the same headers), else the caller's trace headers as they are.
func requestTraceAttrs(c *gin.Context, project string) []slog.Attr {
	if sc := trace.SpanContextFromContext(c.Request.Context()); sc.IsValid() && !sc.IsRemote() {
		return logging.SpanAttrs(project, sc.TraceID().String(), sc.SpanID().String(), sc.IsSampled())
	}
	return logging.TraceAttrs(project, c.GetHeader("X-Cloud-Trace-Context"), c.GetHeader("traceparent"))
}

// redacted stands in for a secret in a logged URL.
const redacted = "REDACTED"

// secretSegmentAfter lists the path prefixes (as segments) whose next
// segment is a secret: a session id proves the lease, and a link code binds
// an account to a player until it is redeemed.
var secretSegmentAfter = [][]string{
	{"v1", "sessions"},
	{"v1", "link-codes"},
	{"v1", "me", "link-codes"},
}

// loggedQueryKeys are the query parameters of openapi.yaml whose values are
// no secret; any other parameter's value is redacted, so a secret sent in
// an unexpected parameter (?code=…) does not reach the logs either.
var loggedQueryKeys = map[string]bool{
	"cursor": true, "timeout": true, "observedVersion": true, "limit": true,
	"from": true, "to": true, "actorKind": true, "actorId": true, "op": true,
	"idempotencyKey": true, "format": true,
}

// secretQueryKeys are query parameters of openapi.yaml whose values are
// bearer secrets: always redacted, whatever loggedQueryKeys says.
var secretQueryKeys = map[string]bool{
	"ticket": true,
}

// RedactURL returns u's path and query for a log line, with the session id
// of /v1/sessions/{id}/…, the link code of /v1/link-codes/{code}/… and
// /v1/me/link-codes/{code}, and the value of every query parameter that is
// not one of the API's known ones replaced by REDACTED. Matched and
// unmatched paths are treated alike (a mistyped route still carries the
// secret), and empty segments are skipped when matching, so /v1//sessions/x
// is redacted too.
func RedactURL(u *url.URL) string {
	segments := strings.Split(u.EscapedPath(), "/")
	var seen []string // unescaped non-empty segments so far
	for i, seg := range segments {
		if seg == "" {
			continue
		}
		if followsSecretPrefix(seen) {
			segments[i] = redacted
		}
		name, err := url.PathUnescape(seg)
		if err != nil {
			name = seg
		}
		seen = append(seen, name)
	}
	out := strings.Join(segments, "/")
	if u.RawQuery == "" {
		return out
	}
	parts := strings.Split(u.RawQuery, "&")
	for i, part := range parts {
		key, _, hasValue := strings.Cut(part, "=")
		name, err := url.QueryUnescape(key)
		switch {
		case err == nil && loggedQueryKeys[name] && !secretQueryKeys[name]:
		case hasValue:
			parts[i] = key + "=" + redacted
		default: // a bare ?CODE is a value without a name
			parts[i] = redacted
		}
	}
	return out + "?" + strings.Join(parts, "&")
}

// followsSecretPrefix reports whether the segments seen so far are exactly
// one of secretSegmentAfter, so the next one is a secret.
func followsSecretPrefix(seen []string) bool {
	for _, prefix := range secretSegmentAfter {
		if slices.Equal(seen, prefix) {
			return true
		}
	}
	return false
}

// ClientAddress says which address of a request is the client's, for the
// logs and anything else that reads gin's ClientIP: X-Forwarded-For is
// written by whoever sends the request, so only the entries added by proxies
// of our own are believed.
type ClientAddress struct {
	// BehindPlatformProxy means every connection comes from the platform's
	// proxy (Cloud Run's front end), which appends the address it saw to
	// X-Forwarded-For: the rightmost entry that is not a trusted proxy is
	// the client, and what the client wrote to the left of it is ignored.
	BehindPlatformProxy bool
	// TrustedProxies are further proxies (a load balancer in front of the
	// service): a connection from one of them, and an X-Forwarded-For entry
	// naming one, is passed over to the entry on its left.
	TrustedProxies []netip.Prefix
}

// forwardedForHeader is the header proxies append the client address to.
const forwardedForHeader = "X-Forwarded-For"

// ResolveClientIP sets the request's RemoteAddr to the client's address as
// a says, keeping the peer's port, so c.ClientIP() (with gin trusting no
// proxy itself, see NewEngine) and the request log name the client. With
// the zero ClientAddress the peer is the client and X-Forwarded-For is
// ignored. Put it first.
func ResolveClientIP(a ClientAddress) gin.HandlerFunc {
	return func(c *gin.Context) {
		peer, port, err := net.SplitHostPort(c.Request.RemoteAddr)
		if err == nil {
			if ip := a.clientIP(peer, c.Request.Header.Values(forwardedForHeader)); ip != peer {
				c.Request.RemoteAddr = net.JoinHostPort(ip, port)
			}
		}
		c.Next()
	}
}

// clientIP walks X-Forwarded-For from the right, past trusted proxies, when
// the peer is a proxy of ours; an entry that is not an address ends the walk
// at the last believed hop.
func (a ClientAddress) clientIP(peer string, forwarded []string) string {
	peerIP, err := netip.ParseAddr(peer)
	if err != nil || !(a.BehindPlatformProxy || a.trusted(peerIP)) {
		return peer
	}
	var hops []string
	for _, h := range forwarded {
		hops = append(hops, strings.Split(h, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = ip.Unmap().String()
		if !a.trusted(ip) {
			break
		}
	}
	return client
}

// trusted reports whether ip is one of the trusted proxies.
func (a ClientAddress) trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
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
			writeLoggedInternal(c)
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

// NoMethod answers a request whose path exists only with other methods with
// 405 METHOD_NOT_ALLOWED (gin has set the Allow header). Install it with
// engine.NoMethod and HandleMethodNotAllowed.
func NoMethod(c *gin.Context) {
	writeError(c, save.Errorf(save.CodeMethodNotAllowed, "%s is not a method of %s: use one of %s", c.Request.Method, c.Request.URL.Path, c.Writer.Header().Get("Allow")))
}

// MaxHeaderBytes is the largest request header block accepted: the request
// line and every header line. ID tokens and trace headers need a few KiB.
// Serve with http.Server.MaxHeaderBytes above it, so that LimitHeaders, not
// net/http, answers most oversized requests, with a request id and a log
// line.
const MaxHeaderBytes = 32 << 10

// LimitHeaders answers 431 HEADERS_TOO_LARGE to a request whose request line
// and headers take more than maxBytes bytes on the wire.
func LimitHeaders(maxBytes int) gin.HandlerFunc {
	return func(c *gin.Context) {
		if headerBytes(c.Request) > maxBytes {
			writeError(c, save.Errorf(save.CodeHeadersTooLarge, "the request headers are larger than %d bytes: send fewer or shorter headers", maxBytes))
			return
		}
		c.Next()
	}
}

// headerBytes is the size of r's request line and header block as sent.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	if r.Host != "" && r.Header.Get("Host") == "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + len(v) + 4
		}
	}
	return n + 2
}

// BoundBodyRead gives a request's body limit to arrive, counted from the
// moment its handler starts: a body trickling in (a byte a second) would
// otherwise hold its connection and handler for ever, as only the headers
// have a read timeout. http.Server.ReadTimeout would do the same for every
// request, but it also stays armed after the body, which ends long-polls
// and event streams; this deadline is set only for requests with a body and
// lifted once the body has been read to its end. A read past the deadline
// fails with an error for which IsBodyReadTimeout is true (answered 408
// REQUEST_TIMEOUT), and the connection is closed after the answer. Where
// the connection offers no read deadline (a test recorder) it does nothing.
func BoundBodyRead(limit time.Duration) gin.HandlerFunc {
	return func(c *gin.Context) {
		if limit <= 0 || c.Request.Body == nil || c.Request.Body == http.NoBody {
			c.Next()
			return
		}
		rc := http.NewResponseController(c.Writer)
		if err := rc.SetReadDeadline(time.Now().Add(limit)); err != nil {
			c.Next()
			return
		}
		c.Request.Body = &timedBody{ReadCloser: c.Request.Body, c: c, rc: rc, limit: limit}
		c.Next()
	}
}

// IsBodyReadTimeout reports whether err comes from a body that did not
// arrive within the limit of BoundBodyRead.
func IsBodyReadTimeout(err error) bool {
	var t *bodyReadTimeoutError
	return errors.As(err, &t)
}

// bodyReadTimeoutError is the error of a body read past its deadline.
type bodyReadTimeoutError struct {
	limit time.Duration
	err   error
}

func (e *bodyReadTimeoutError) Error() string {
	return fmt.Sprintf("the request body did not arrive within %s: send it again, at once", e.limit)
}

func (e *bodyReadTimeoutError) Unwrap() error { return e.err }

// timedBody lifts the read deadline at the end of the body and reports a
// read past it as a bodyReadTimeoutError.
type timedBody struct {
	io.ReadCloser
	c     *gin.Context
	rc    *http.ResponseController
	limit time.Duration
	done  bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		// The connection now waits for the next request or the client
		// closing it; only the server's own timeouts apply to that.
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.c.Header("Connection", "close")
		err = &bodyReadTimeoutError{limit: b.limit, err: err}
	}
	return n, err
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
