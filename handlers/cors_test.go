package handlers

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
)

const (
	allowedOrigin = "https://app.example.com"
	otherOrigin   = "https://evil.example.net"
)

// corsHeaderNames are the CORS headers a response may carry.
var corsHeaderNames = []string{
	"Access-Control-Allow-Origin",
	"Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers",
	"Access-Control-Max-Age",
	"Access-Control-Expose-Headers",
	"Access-Control-Allow-Credentials",
	"Vary",
}

// corsHeaders picks the CORS headers of h, leaving out absent ones.
func corsHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for _, name := range corsHeaderNames {
		if v := h.Values(name); len(v) > 0 {
			out[name] = strings.Join(v, ", ")
		}
	}
	return out
}

// newCORSServer serves an engine with the service's chain (CORS before
// the body limit), a companion route behind a refusing authentication, an
// admin route, a rate-limited companion route and a game-server route.
func newCORSServer(t *testing.T) (*httptest.Server, *bytes.Buffer) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	var logs bytes.Buffer
	r := NewEngine()
	r.Use(RequestID(), RequestLogger(logging.New(&logs, slog.LevelDebug), "proj-1"), Recover(),
		CORS([]string{allowedOrigin}), LimitBody(1024))
	refuse := func(c *gin.Context) {
		writeError(c, save.Errorf(save.CodeUnauthenticated, "send an ID token"))
	}
	me := r.Group("/v1/me", refuse)
	me.GET("/save", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	me.POST("/purchases", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	r.GET("/v1/admin/players/:userId", func(c *gin.Context) {
		c.Header(headerReplayed, "true")
		c.JSON(http.StatusOK, gin.H{})
	})
	r.GET("/v1/me-limited", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	r.POST("/v1/admin/limited", func(c *gin.Context) {
		writeError(c, save.Errorf(save.CodeRateLimited, "slow down").WithDetail(detailRetryAfter, int64(3)))
	})
	r.POST("/v1/sessions", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	r.POST("/v1/webhooks/roblox/erasure", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	r.GET("/healthz", Healthz)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, &logs
}

func TestCORS(t *testing.T) {
	srv, logs := newCORSServer(t)
	preflightGrant := map[string]string{
		"Access-Control-Allow-Origin":  allowedOrigin,
		"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
		"Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, X-Request-Id, Last-Event-ID",
		"Access-Control-Max-Age":       "600",
		"Vary":                         "Origin",
	}
	realGrant := map[string]string{
		"Access-Control-Allow-Origin":   allowedOrigin,
		"Access-Control-Expose-Headers": "Idempotent-Replayed, X-Request-Id, Retry-After",
		"Vary":                          "Origin",
	}
	onlyVary := map[string]string{"Vary": "Origin"}
	none := map[string]string{}
	tests := []struct {
		name        string
		method      string
		path        string
		headers     map[string]string
		body        string
		wantStatus  int
		wantHeaders map[string]string
		wantCode    string // the error code of the JSON body, "" for none
	}{
		{
			name: "preflight from an allowed origin before auth", method: http.MethodOptions, path: "/v1/me/purchases",
			headers: map[string]string{
				"Origin": allowedOrigin, "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
			},
			wantStatus: http.StatusNoContent, wantHeaders: preflightGrant,
		},
		{
			name: "preflight to an unknown companion path", method: http.MethodOptions, path: "/v1/me/nothing-here",
			headers:    map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "Last-Event-ID, X-Request-Id"},
			wantStatus: http.StatusNoContent, wantHeaders: preflightGrant,
		},
		{
			name: "preflight to an admin route", method: http.MethodOptions, path: "/v1/admin/players/42",
			headers:    map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "DELETE"},
			wantStatus: http.StatusNoContent, wantHeaders: preflightGrant,
		},
		{
			name: "preflight from an origin not on the list", method: http.MethodOptions, path: "/v1/me/purchases",
			headers:    map[string]string{"Origin": otherOrigin, "Access-Control-Request-Method": "POST"},
			wantStatus: http.StatusNoContent, wantHeaders: onlyVary,
		},
		{
			name: "preflight asking for a header not on the list", method: http.MethodOptions, path: "/v1/me/purchases",
			headers:    map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, x-custom"},
			wantStatus: http.StatusNoContent, wantHeaders: onlyVary,
		},
		{
			name: "preflight asking for a method not of the API", method: http.MethodOptions, path: "/v1/me/purchases",
			headers:    map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "PATCH"},
			wantStatus: http.StatusNoContent, wantHeaders: onlyVary,
		},
		{
			name: "401 to an allowed origin carries the grant", method: http.MethodGet, path: "/v1/me/save",
			headers:    map[string]string{"Origin": allowedOrigin},
			wantStatus: http.StatusUnauthorized, wantHeaders: realGrant, wantCode: "UNAUTHENTICATED",
		},
		{
			name: "404 to an allowed origin carries the grant", method: http.MethodGet, path: "/v1/me/nothing-here",
			headers:    map[string]string{"Origin": allowedOrigin},
			wantStatus: http.StatusNotFound, wantHeaders: realGrant, wantCode: "NOT_FOUND",
		},
		{
			name: "413 to an allowed origin carries the grant", method: http.MethodPost, path: "/v1/me/purchases",
			headers:    map[string]string{"Origin": allowedOrigin},
			body:       strings.Repeat("x", 2048),
			wantStatus: http.StatusRequestEntityTooLarge, wantHeaders: realGrant, wantCode: "REQUEST_TOO_LARGE",
		},
		{
			name: "429 to an allowed origin carries the grant", method: http.MethodPost, path: "/v1/admin/limited",
			headers:    map[string]string{"Origin": allowedOrigin},
			wantStatus: http.StatusTooManyRequests, wantHeaders: realGrant, wantCode: "RATE_LIMITED",
		},
		{
			name: "200 of an admin route to an allowed origin", method: http.MethodGet, path: "/v1/admin/players/42",
			headers:    map[string]string{"Origin": allowedOrigin},
			wantStatus: http.StatusOK, wantHeaders: realGrant,
		},
		{
			name: "an origin not on the list gets no grant", method: http.MethodGet, path: "/v1/me/save",
			headers:    map[string]string{"Origin": otherOrigin},
			wantStatus: http.StatusUnauthorized, wantHeaders: onlyVary, wantCode: "UNAUTHENTICATED",
		},
		{
			name: "a request without Origin gets no grant", method: http.MethodGet, path: "/v1/me/save",
			wantStatus: http.StatusUnauthorized, wantHeaders: onlyVary, wantCode: "UNAUTHENTICATED",
		},
		{
			name: "a path that only starts like a companion route", method: http.MethodGet, path: "/v1/me-limited",
			headers:    map[string]string{"Origin": allowedOrigin},
			wantStatus: http.StatusOK, wantHeaders: none,
		},
		{
			name: "game-server route: no CORS to an allowed origin", method: http.MethodPost, path: "/v1/sessions",
			headers:    map[string]string{"Origin": allowedOrigin},
			wantStatus: http.StatusOK, wantHeaders: none,
		},
		{
			name: "game-server route: OPTIONS stays 405", method: http.MethodOptions, path: "/v1/sessions",
			headers:    map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "POST"},
			wantStatus: http.StatusMethodNotAllowed, wantHeaders: none, wantCode: "METHOD_NOT_ALLOWED",
		},
		{
			name: "game-server path: OPTIONS stays 404", method: http.MethodOptions, path: "/v1/players/42/mutations",
			headers:    map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "POST"},
			wantStatus: http.StatusNotFound, wantHeaders: none, wantCode: "NOT_FOUND",
		},
		{
			name: "webhook route: OPTIONS stays 405", method: http.MethodOptions, path: "/v1/webhooks/roblox/erasure",
			headers:    map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "POST"},
			wantStatus: http.StatusMethodNotAllowed, wantHeaders: none, wantCode: "METHOD_NOT_ALLOWED",
		},
		{
			name: "health route: no CORS", method: http.MethodGet, path: "/healthz",
			headers:    map[string]string{"Origin": allowedOrigin},
			wantStatus: http.StatusOK, wantHeaders: none,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			rec := httptest.NewRecorder()
			rec.Code = resp.StatusCode
			_, _ = rec.Body.ReadFrom(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, rec.Body.String())
			}
			if diff := cmp.Diff(tt.wantHeaders, corsHeaders(resp.Header)); diff != "" {
				t.Errorf("CORS headers (-want +got):\n%s", diff)
			}
			switch {
			case tt.wantCode != "":
				if code, _ := decodeErrorBody(t, rec); code != tt.wantCode {
					t.Errorf("error code = %q, want %q", code, tt.wantCode)
				}
			case tt.wantStatus == http.StatusNoContent && rec.Body.Len() != 0:
				t.Errorf("preflight body = %q, want none", rec.Body.String())
			}
		})
	}
	t.Run("a refused preflight is logged at debug with the reason", func(t *testing.T) {
		var found bool
		for _, line := range logLines(t, logs) {
			if line["message"] == "CORS preflight refused" && line["origin"] == otherOrigin {
				found = true
				if line["severity"] != "DEBUG" {
					t.Errorf("severity = %v, want DEBUG", line["severity"])
				}
			}
		}
		if !found {
			t.Errorf("no debug line for the refused preflight from %s in:\n%s", otherOrigin, logs.String())
		}
	})
}

func TestParseCORSOrigins(t *testing.T) {
	tests := []struct {
		spec    string
		want    []string
		wantErr string
	}{
		{spec: "", want: nil},
		{spec: "https://app.example.com", want: []string{"https://app.example.com"}},
		{spec: " https://App.Example.com , http://localhost:5173,https://app.example.com", want: []string{"https://app.example.com", "http://localhost:5173"}},
		{spec: "https://app.example.com:443,http://x.example:80,http://[::1]:5173", want: []string{"https://app.example.com", "http://x.example", "http://[::1]:5173"}},
		{spec: "*", wantErr: "wildcards"},
		{spec: "https://*.example.com", wantErr: "wildcards"},
		{spec: "https://app.example.com/", wantErr: "path"},
		{spec: "https://app.example.com/app", wantErr: "path"},
		{spec: "https://app.example.com?x=1", wantErr: "query"},
		{spec: "app.example.com", wantErr: "scheme"},
		{spec: "ftp://app.example.com", wantErr: "scheme"},
		{spec: "null", wantErr: "scheme"},
		{spec: "https://", wantErr: "scheme://host"},
		{spec: "https://user:pw@app.example.com", wantErr: "user name"},
		{spec: "https://app.example.com:99999", wantErr: "port"},
		{spec: "https://app.example.com:", wantErr: "port"},
		{spec: "%zz", wantErr: "scheme://host"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseCORSOrigins(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCORSOrigins(%q) error = %v, want one mentioning %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCORSOrigins(%q): %v", tt.spec, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCORSOrigins(%q) (-want +got):\n%s", tt.spec, diff)
			}
		})
	}
}
