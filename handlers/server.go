package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/savesync/savesync/save"
)

// ServeJSONErrors makes the answers that net/http writes by itself, without
// calling a handler, come in the service's JSON error shape. Those are the
// answers to requests it cannot parse: a request line or header block that
// is malformed (400), larger than srv.MaxHeaderBytes (431), with a transfer
// coding it does not know (501), an HTTP version it does not speak (505) or
// an Expect header other than 100-continue (417). net/http writes them
// straight to the connection as text/plain and closes it, so the only place
// to reshape them is the connection itself.
//
// It wraps srv.Handler, srv.ConnState and srv.ConnContext, and returns ln
// with its connections wrapped; serve srv on the returned listener. A
// connection knows whether a handler has started on its current request
// (set by the wrapped handler, cleared when the connection goes idle); a
// write while none has is net/http's own answer, and one of status 400 or
// above is replaced by an error body with the code errorCodeForStatus
// gives, "Connection: close" and the status of that code. Every such answer
// is logged at WARNING through logger, since no request log line is written
// for it.
func ServeJSONErrors(srv *http.Server, ln net.Listener, logger *slog.Logger) net.Listener {
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(errorShapeConnKey{}).(*errorShapeConn); ok {
			c.handling.Store(true)
		}
		next.ServeHTTP(w, r)
	})
	connState := srv.ConnState
	srv.ConnState = func(nc net.Conn, state http.ConnState) {
		if c, ok := nc.(*errorShapeConn); ok && state == http.StateIdle {
			c.handling.Store(false)
		}
		if connState != nil {
			connState(nc, state)
		}
	}
	connContext := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, nc net.Conn) context.Context {
		if connContext != nil {
			ctx = connContext(ctx, nc)
		}
		if c, ok := nc.(*errorShapeConn); ok {
			ctx = context.WithValue(ctx, errorShapeConnKey{}, c)
		}
		return ctx
	}
	return &errorShapeListener{Listener: ln, logger: logger, maxHeaderBytes: srv.MaxHeaderBytes}
}

// errorCodeForStatus is the error code of an answer net/http wrote by
// itself with the given status: HEADERS_TOO_LARGE for 431, and
// INVALID_ARGUMENT for every other refusal of a request it could not parse
// (the request is the client's to fix, whatever status net/http picked).
func errorCodeForStatus(status int) save.Code {
	if status == http.StatusRequestHeaderFieldsTooLarge {
		return save.CodeHeadersTooLarge
	}
	return save.CodeInvalidArgument
}

// errorShapeConnKey is the context key of a request's errorShapeConn.
type errorShapeConnKey struct{}

// errorShapeListener wraps each accepted connection in an errorShapeConn.
type errorShapeListener struct {
	net.Listener
	logger         *slog.Logger
	maxHeaderBytes int
}

func (l *errorShapeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &errorShapeConn{Conn: c, listener: l}, nil
}

// errorShapeConn rewrites the answers net/http writes without a handler.
type errorShapeConn struct {
	net.Conn
	listener *errorShapeListener
	// handling is true from the start of a handler until the connection
	// goes idle after its response.
	handling atomic.Bool
}

// Write passes a handler's response through and replaces net/http's own
// error answers (always a single write, followed by closing the
// connection).
func (c *errorShapeConn) Write(p []byte) (int, error) {
	if c.handling.Load() {
		return c.Conn.Write(p)
	}
	status, text, ok := parseOwnAnswer(p)
	if !ok || status < http.StatusBadRequest {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(c.jsonAnswer(status, text)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite half-closes the connection, as net/http does after a 431 so
// the client reads the answer before the reset.
func (c *errorShapeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// jsonAnswer renders the JSON error response that replaces net/http's
// answer of status with reason text.
func (c *errorShapeConn) jsonAnswer(status int, text string) []byte {
	code := errorCodeForStatus(status)
	var msg string
	switch {
	case code == save.CodeHeadersTooLarge:
		msg = fmt.Sprintf("the request headers are larger than %d bytes: send fewer or shorter headers", c.listener.maxHeaderBytes)
	case status == http.StatusNotImplemented:
		msg = "the Transfer-Encoding is not supported: send the body with Content-Length or chunked"
	case status == http.StatusHTTPVersionNotSupported:
		msg = "the HTTP version is not supported: send HTTP/1.1"
	case status == http.StatusExpectationFailed:
		msg = "the Expect header is not supported: send no Expect header, or Expect: 100-continue"
	case text != "":
		msg = "the request is not valid HTTP/1.1 (" + text + "): fix the request line and headers"
	default:
		msg = "the request is not valid HTTP/1.1: fix the request line and headers"
	}
	body, _ := json.Marshal(errorBody(save.Errorf(code, "%s", msg)))
	out := HTTPStatus(code)
	c.listener.logger.Warn("refused a request the HTTP server could not parse",
		slog.Int("status", out), slog.Int("serverStatus", status), slog.String("code", string(code)),
		slog.String("remoteIp", remoteHost(c.Conn.RemoteAddr())))
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		out, http.StatusText(out), len(body))
	b.Write(body)
	return b.Bytes()
}

// parseOwnAnswer reads the status line of an answer net/http wrote itself
// ("HTTP/1.1 400 Bad Request: reason\r\n…"), returning the status and the
// reason text after the status text, if any.
func parseOwnAnswer(p []byte) (status int, text string, ok bool) {
	line, _, found := bytes.Cut(p, []byte("\r\n"))
	rest, isHTTP := bytes.CutPrefix(line, []byte("HTTP/1."))
	if !found || !isHTTP || len(rest) < 6 || rest[1] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(rest[2:5]))
	if err != nil {
		return 0, "", false
	}
	reason := string(rest[5:])
	if _, t, hasText := bytes.Cut([]byte(reason), []byte(": ")); hasText {
		text = string(t)
	}
	return status, text, true
}

// remoteHost is the host of addr, for a log line.
func remoteHost(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}
