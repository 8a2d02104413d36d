package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
)

// newTestEngine returns an engine with the service's middleware chain in the
// order cmd/savesync installs it, logging into the returned buffer.
func newTestEngine(t *testing.T, maxBody int64) (*gin.Engine, *bytes.Buffer) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	var logs bytes.Buffer
	r := NewEngine()
	r.Use(RequestID(), RequestLogger(logging.New(&logs, slog.LevelDebug), "proj-1"), Recover(), LimitBody(maxBody))
	return r, &logs
}

func serve(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// logLines decodes every JSON line in buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, raw := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, raw)
		}
		lines = append(lines, m)
	}
	return lines
}

// decodeErrorBody decodes {"error":{"code":…,"message":…}}.
func decodeErrorBody(t *testing.T, rec *httptest.ResponseRecorder) (code, message string) {
	t.Helper()
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body is not the JSON error shape: %v\n%s", err, rec.Body.String())
	}
	return body.Error.Code, body.Error.Message
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name     string
		incoming string
		keep     bool
	}{
		{"none", "", false},
		{"uuid kept", "6f1c2a52-52a3-4d0e-9c6e-0a4c8f3e1b2d", true},
		{"token kept", "job_42.req:7", true},
		{"spaces replaced", "id with spaces", false},
		{"newline replaced", "id\nforged", false},
		{"too long replaced", strings.Repeat("a", 129), false},
		{"longest kept", strings.Repeat("a", 128), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestEngine(t, 1024)
			var seen string
			r.GET("/x", func(c *gin.Context) { seen = RequestIDFrom(c) })
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			if tt.incoming != "" {
				req.Header[RequestIDHeader] = []string{tt.incoming}
			}
			rec := serve(t, r, req)
			got := rec.Header().Get(RequestIDHeader)
			if got != seen {
				t.Errorf("response id %q != handler id %q", got, seen)
			}
			if tt.keep {
				if got != tt.incoming {
					t.Errorf("id = %q, want incoming %q", got, tt.incoming)
				}
				return
			}
			if _, err := uuid.Parse(got); err != nil {
				t.Errorf("id = %q, want a generated UUID: %v", got, err)
			}
		})
	}
}

func TestRequestLoggerLine(t *testing.T) {
	const trace = "105445aa7843bc8bf206b12000100000"
	r, logs := newTestEngine(t, 1024)
	r.GET("/players/:id", func(c *gin.Context) {
		logging.FromContext(c.Request.Context()).Info("inside handler")
		c.String(http.StatusTeapot, "short and stout")
	})
	req := httptest.NewRequest(http.MethodGet, "/players/42?limit=1&x=1", nil)
	req.Header.Set(RequestIDHeader, "req-1")
	req.Header.Set("X-Cloud-Trace-Context", trace+"/10;o=1")
	rec := serve(t, r, req)
	if rec.Code != http.StatusTeapot {
		t.Fatalf("status = %d, want %d", rec.Code, http.StatusTeapot)
	}

	lines := logLines(t, logs)
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2 (handler, request):\n%s", len(lines), logs)
	}
	for _, line := range lines {
		for _, k := range []string{"time", "severity", "message"} {
			if _, ok := line[k]; !ok {
				t.Errorf("line lacks %q: %v", k, line)
			}
		}
		if got, want := line[logging.TraceKey], "projects/proj-1/traces/"+trace; got != want {
			t.Errorf("trace = %v, want %v", got, want)
		}
		if got, want := line[logging.SpanIDKey], "000000000000000a"; got != want {
			t.Errorf("spanId = %v, want %v", got, want)
		}
		if got := line["requestId"]; got != "req-1" {
			t.Errorf("requestId = %v, want req-1", got)
		}
	}

	reqLine := lines[1]
	httpReq, _ := reqLine["httpRequest"].(map[string]any)
	latency, _ := httpReq["latency"].(string)
	if !strings.HasSuffix(latency, "s") {
		t.Errorf("latency = %q, want seconds with an s suffix", latency)
	}
	delete(httpReq, "latency")
	got := map[string]any{
		"severity":    reqLine["severity"],
		"message":     reqLine["message"],
		"route":       reqLine["route"],
		"httpRequest": httpReq,
	}
	want := map[string]any{
		"severity": "WARNING",
		"message":  "GET /players/:id",
		"route":    "/players/:id",
		"httpRequest": map[string]any{
			"requestMethod": "GET",
			"requestUrl":    "/players/42?limit=1&x=REDACTED",
			"status":        float64(http.StatusTeapot),
			"responseSize":  fmt.Sprint(len("short and stout")),
			"remoteIp":      "192.0.2.1",
			"userAgent":     "",
			"protocol":      "HTTP/1.1",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request line (-want +got):\n%s", diff)
	}
}

// TestRequestLoggerRedactsSecrets checks that session ids and link codes,
// which act as bearer secrets, never reach the logged request URL, on
// matched routes and on mistyped ones alike.
func TestRequestLoggerRedactsSecrets(t *testing.T) {
	const secret = "SECRET7Q"
	tests := []struct {
		method, target, want string
	}{
		{"POST", "/v1/sessions/42-3-" + secret + "/leave", "/v1/sessions/REDACTED/leave"},
		{"POST", "/v1/sessions/42-3-" + secret + "/renew", "/v1/sessions/REDACTED/renew"},
		{"POST", "/v1/link-codes/" + secret + "/redeem", "/v1/link-codes/REDACTED/redeem"},
		{"POST", "/v1/link-codes/" + secret + "/redeem/", "/v1/link-codes/REDACTED/redeem/"},
		{"POST", "/v1//link-codes/" + secret, "/v1//link-codes/REDACTED"},
		{"POST", "/v1/link%2Dcodes/" + secret, "/v1/link%2Dcodes/REDACTED"},
		{"DELETE", "/v1/me/link-codes/" + secret, "/v1/me/link-codes/REDACTED"},
		{"POST", "/v1/batch/sessions/renew", "/v1/batch/sessions/renew"},
		{"POST", "/v1/sessions", "/v1/sessions"},
		{"POST", "/v1/me/link-codes", "/v1/me/link-codes"},
		{"GET", "/v1/me/link?code=" + secret, "/v1/me/link?code=REDACTED"},
		{"GET", "/v1/servers/job-1/changes?timeout=25s&sessionId=" + secret + "&" + secret, "/v1/servers/job-1/changes?timeout=25s&sessionId=REDACTED&REDACTED"},
		{"GET", "/v1/me/events?ticket=evt_" + secret, "/v1/me/events?ticket=REDACTED"},
		{"GET", "/v1/me/events?%74icket=evt_" + secret + "&limit=3", "/v1/me/events?%74icket=REDACTED&limit=3"},
		{"GET", "/v1/me/events?ticket=evt_" + secret + "&ticket=" + secret, "/v1/me/events?ticket=REDACTED&ticket=REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			r, logs := newTestEngine(t, 1024)
			r.POST("/v1/sessions/:sessionId/leave", func(c *gin.Context) { c.Status(http.StatusOK) })
			r.POST("/v1/link-codes/:code/redeem", func(c *gin.Context) { c.Status(http.StatusOK) })
			r.NoRoute(NoRoute)
			serve(t, r, httptest.NewRequest(tt.method, tt.target, nil))
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the secret reached the log:\n%s", logs)
			}
			lines := logLines(t, logs)
			if len(lines) != 1 {
				t.Fatalf("got %d log lines, want 1:\n%s", len(lines), logs)
			}
			httpReq, _ := lines[0]["httpRequest"].(map[string]any)
			if got := httpReq["requestUrl"]; got != tt.want {
				t.Errorf("requestUrl = %v, want %s", got, tt.want)
			}
		})
	}
}

// TestTicketIsAlwaysRedacted checks that the ticket of /v1/me/events, a
// documented parameter, is a secret whatever the logged parameters say.
func TestTicketIsAlwaysRedacted(t *testing.T) {
	for name := range secretQueryKeys {
		if loggedQueryKeys[name] {
			t.Errorf("%s is both logged and secret", name)
		}
		u := &url.URL{Path: "/v1/me/events", RawQuery: name + "=evt_SECRET"}
		if got := RedactURL(u); strings.Contains(got, "SECRET") {
			t.Errorf("RedactURL(%s) = %s, the secret shows", u, got)
		}
	}
	if !secretQueryKeys["ticket"] {
		t.Error("ticket is not among the secret query parameters")
	}
}

// TestResolveClientIP checks that a client cannot choose the address that
// is logged and that ClientIP returns by sending X-Forwarded-For.
func TestResolveClientIP(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("35.191.0.0/16")}
	tests := []struct {
		name      string
		addr      ClientAddress
		peer      string
		forwarded []string
		want      string
	}{
		{"no proxy: header ignored", ClientAddress{}, "192.0.2.1:4000", []string{"203.0.113.9"}, "192.0.2.1"},
		{"no proxy: no header", ClientAddress{}, "192.0.2.1:4000", nil, "192.0.2.1"},
		{"Cloud Run: the entry its front end appended", ClientAddress{BehindPlatformProxy: true}, "169.254.1.1:4000", []string{"203.0.113.9, 198.51.100.7"}, "198.51.100.7"},
		{"Cloud Run: several header lines", ClientAddress{BehindPlatformProxy: true}, "169.254.1.1:4000", []string{"203.0.113.9", "198.51.100.7"}, "198.51.100.7"},
		{"Cloud Run: no header", ClientAddress{BehindPlatformProxy: true}, "169.254.1.1:4000", nil, "169.254.1.1"},
		{"Cloud Run: garbage", ClientAddress{BehindPlatformProxy: true}, "169.254.1.1:4000", []string{"not-an-ip"}, "169.254.1.1"},
		{"Cloud Run behind a load balancer", ClientAddress{BehindPlatformProxy: true, TrustedProxies: lb}, "169.254.1.1:4000", []string{"203.0.113.9, 198.51.100.7, 35.191.3.4"}, "198.51.100.7"},
		{"trusted proxy peer", ClientAddress{TrustedProxies: lb}, "35.191.3.4:4000", []string{"203.0.113.9, 198.51.100.7"}, "198.51.100.7"},
		{"untrusted peer with a header", ClientAddress{TrustedProxies: lb}, "192.0.2.1:4000", []string{"198.51.100.7"}, "192.0.2.1"},
		{"IPv6 client", ClientAddress{BehindPlatformProxy: true}, "169.254.1.1:4000", []string{"2001:db8::1"}, "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gin.SetMode(gin.TestMode)
			var logs bytes.Buffer
			r := NewEngine()
			r.Use(ResolveClientIP(tt.addr), RequestID(), RequestLogger(logging.New(&logs, slog.LevelInfo), "proj-1"))
			var seen string
			r.GET("/x", func(c *gin.Context) { seen = c.ClientIP() })
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			req.RemoteAddr = tt.peer
			req.Header[forwardedForHeader] = tt.forwarded
			serve(t, r, req)
			lines := logLines(t, &logs)
			if len(lines) != 1 {
				t.Fatalf("got %d log lines, want 1", len(lines))
			}
			httpReq, _ := lines[0]["httpRequest"].(map[string]any)
			if diff := cmp.Diff([]any{tt.want, tt.want}, []any{httpReq["remoteIp"], seen}); diff != "" {
				t.Errorf("logged remoteIp, ClientIP (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestLoggerSeverityByStatus(t *testing.T) {
	tests := []struct {
		status   int
		severity string
	}{
		{http.StatusOK, "INFO"},
		{http.StatusNotFound, "WARNING"},
		{http.StatusServiceUnavailable, "ERROR"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			r, logs := newTestEngine(t, 1024)
			r.GET("/s", func(c *gin.Context) { c.Status(tt.status) })
			serve(t, r, httptest.NewRequest(http.MethodGet, "/s", nil))
			lines := logLines(t, logs)
			if len(lines) != 1 {
				t.Fatalf("got %d lines, want 1", len(lines))
			}
			if got := lines[0]["severity"]; got != tt.severity {
				t.Errorf("severity = %v, want %s", got, tt.severity)
			}
			if _, ok := lines[0][logging.TraceKey]; ok {
				t.Errorf("trace logged without a trace header: %v", lines[0])
			}
		})
	}
}

func TestRequestLoggerUnmatchedRoute(t *testing.T) {
	r, logs := newTestEngine(t, 1024)
	r.NoRoute(NoRoute)
	rec := serve(t, r, httptest.NewRequest(http.MethodGet, "/nowhere", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status = %d, want 404", rec.Code)
	}
	if code, msg := decodeErrorBody(t, rec); code != "NOT_FOUND" || !strings.Contains(msg, "/nowhere") {
		t.Errorf("body = %s, want NOT_FOUND naming the path", rec.Body.String())
	}
	lines := logLines(t, logs)
	if len(lines) != 1 || lines[0]["route"] != "unmatched" {
		t.Errorf("lines = %v, want one with route unmatched", lines)
	}
}

func TestRecover(t *testing.T) {
	tests := []struct {
		name  string
		panic any
	}{
		{"string", "secret database password in panic"},
		{"error", errors.New("secret database password in panic")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, logs := newTestEngine(t, 1024)
			r.GET("/boom", func(c *gin.Context) { panic(tt.panic) })
			rec := serve(t, r, httptest.NewRequest(http.MethodGet, "/boom", nil))
			if rec.Code != http.StatusInternalServerError {
				t.Fatalf("status = %d, want 500", rec.Code)
			}
			want := `{"error":{"code":"INTERNAL","message":"internal error"}}`
			if got := rec.Body.String(); got != want {
				t.Errorf("body = %s, want %s", got, want)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("panic text leaked to client: %s", rec.Body.String())
			}
			lines := logLines(t, logs)
			if len(lines) != 2 {
				t.Fatalf("got %d log lines, want 2 (panic, request):\n%s", len(lines), logs)
			}
			if lines[0]["severity"] != "ERROR" || !strings.Contains(fmt.Sprint(lines[0]["panic"]), "secret") {
				t.Errorf("panic line = %v, want ERROR with the panic value", lines[0])
			}
			if stack, _ := lines[0]["stack"].(string); !strings.Contains(stack, "TestRecover") {
				t.Errorf("panic line stack does not show the panicking function: %q", stack)
			}
			if lines[1]["severity"] != "ERROR" {
				t.Errorf("request line severity = %v, want ERROR", lines[1]["severity"])
			}
		})
	}
}

func TestRecoverRepanicsAbortHandler(t *testing.T) {
	r, _ := newTestEngine(t, 1024)
	r.GET("/abort", func(c *gin.Context) { panic(http.ErrAbortHandler) })
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler re-panicked", v)
		}
	}()
	serve(t, r, httptest.NewRequest(http.MethodGet, "/abort", nil))
}

func TestLimitBody(t *testing.T) {
	const limit = 16
	small := strings.Repeat("a", limit)
	large := strings.Repeat("a", limit+1)
	// readAndMap reads the body and maps the error as the error mapper does.
	readAndMap := func(c *gin.Context) {
		b, err := io.ReadAll(c.Request.Body)
		if IsBodyTooLarge(err) {
			writeError(c, err)
			return
		}
		if err != nil {
			writeError(c, save.Errorf(save.CodeInvalidArgument, "unreadable body"))
			return
		}
		c.String(http.StatusOK, "%d", len(b))
	}
	// readAndIgnore reads the body, drops the error and writes nothing.
	readAndIgnore := func(c *gin.Context) { _, _ = io.ReadAll(c.Request.Body) }

	tests := []struct {
		name     string
		body     string
		chunked  bool
		handler  gin.HandlerFunc
		status   int
		wantCode string
	}{
		{"at limit", small, false, readAndMap, http.StatusOK, ""},
		{"at limit chunked", small, true, readAndMap, http.StatusOK, ""},
		{"content-length over limit", large, false, readAndMap, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE"},
		{"chunked over limit mapped", large, true, readAndMap, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE"},
		{"chunked over limit unmapped", large, true, readAndIgnore, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestEngine(t, limit)
			called := false
			r.POST("/b", func(c *gin.Context) { called = true; tt.handler(c) })
			req := httptest.NewRequest(http.MethodPost, "/b", strings.NewReader(tt.body))
			if tt.chunked {
				req.ContentLength = -1
				req.Body = io.NopCloser(strings.NewReader(tt.body))
			}
			rec := serve(t, r, req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body.String())
			}
			if tt.wantCode == "" {
				return
			}
			if code, _ := decodeErrorBody(t, rec); code != tt.wantCode {
				t.Errorf("code = %q, want %q", code, tt.wantCode)
			}
			if !tt.chunked && called {
				t.Errorf("handler ran although Content-Length exceeded the limit")
			}
		})
	}
}

func TestIsBodyTooLarge(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"other", io.ErrUnexpectedEOF, false},
		{"direct", &http.MaxBytesError{Limit: 1}, true},
		{"wrapped", fmt.Errorf("decode: %w", &http.MaxBytesError{Limit: 1}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsBodyTooLarge(tt.err); got != tt.want {
				t.Errorf("IsBodyTooLarge(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
