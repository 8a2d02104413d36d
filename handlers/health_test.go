package handlers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthz(t *testing.T) {
	r, _ := newTestEngine(t, 1024)
	r.GET("/healthz", Healthz)
	rec := serve(t, r, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if got, want := rec.Body.String(), `{"status":"ok"}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name     string
		check    func(ctx context.Context) error
		status   int
		wantCode string
		// requestTimeout, when set, is the request's own deadline, which
		// Readyz must honour; it keeps the hung case short.
		requestTimeout time.Duration
	}{
		{"nil check", nil, http.StatusOK, "", 0},
		{"ok", func(context.Context) error { return nil }, http.StatusOK, "", 0},
		{"failing", func(context.Context) error { return errors.New("dial tcp 10.0.0.1: refused") }, http.StatusServiceUnavailable, "UNAVAILABLE", 0},
		{"sees deadline", func(ctx context.Context) error {
			deadline, ok := ctx.Deadline()
			if left := time.Until(deadline); !ok || left > ReadinessTimeout || left < ReadinessTimeout-time.Second {
				return errors.New("no readiness deadline")
			}
			return nil
		}, http.StatusOK, "", 0},
		{"hung dependency", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}, http.StatusServiceUnavailable, "UNAVAILABLE", 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, logs := newTestEngine(t, 1024)
			r.GET("/readyz", Readyz(tt.check))
			req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
			if tt.requestTimeout > 0 {
				ctx, cancel := context.WithTimeout(req.Context(), tt.requestTimeout)
				defer cancel()
				req = req.WithContext(ctx)
			}
			rec := serve(t, r, req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body.String())
			}
			if tt.wantCode == "" {
				if got, want := rec.Body.String(), `{"status":"ok"}`; got != want {
					t.Errorf("body = %s, want %s", got, want)
				}
				return
			}
			if code, _ := decodeErrorBody(t, rec); code != tt.wantCode {
				t.Errorf("code = %q, want %q", code, tt.wantCode)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.1") || strings.Contains(rec.Body.String(), "deadline") {
				t.Errorf("check detail leaked to client: %s", rec.Body.String())
			}
			if !strings.Contains(logs.String(), "readiness check failed") {
				t.Errorf("failure not logged:\n%s", logs)
			}
		})
	}
}
