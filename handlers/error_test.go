package handlers

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
)

// TestInternalErrorsAreMaskedAndLogged checks that an internal failure,
// whether a domain INTERNAL error or any other error, answers the plain
// internal error and leaves its detail in the log, once.
func TestInternalErrorsAreMaskedAndLogged(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"domain error", save.Errorf(save.CodeInternal, "ledger entry e-1 has no readable response")},
		{"wrapped domain error", fmt.Errorf("store.Replay(7): %w", save.Errorf(save.CodeInternal, "ledger entry e-1 has no readable response"))},
		{"other error", fmt.Errorf("store.GetPlayer(7): %w", fmt.Errorf("ledger entry e-1 has no readable response"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, logs := newTestEngine(t, 1024)
			r.GET("/fail", handle(func(*gin.Context) error { return tt.err }))
			rec := serve(t, r, httptest.NewRequest(http.MethodGet, "/fail", nil))
			if rec.Code != http.StatusInternalServerError {
				t.Fatalf("status = %d, want 500", rec.Code)
			}
			if want := `{"error":{"code":"INTERNAL","message":"internal error"}}`; rec.Body.String() != want {
				t.Errorf("body = %s, want %s", rec.Body.String(), want)
			}
			var logged []string
			for _, line := range logLines(t, logs) {
				if line["message"] == "internal error" {
					logged = append(logged, fmt.Sprint(line["error"]))
				}
			}
			if len(logged) != 1 || !strings.Contains(logged[0], "ledger entry e-1 has no readable response") {
				t.Errorf("internal-error log lines %q, want one with the detail", logged)
			}
		})
	}
}
