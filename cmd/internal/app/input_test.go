package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestServiceRefusesTextFirestoreCannotStore checks the wiring: the
// service's middleware chain refuses a path segment, a query value and a
// header that are not UTF-8 before any route reads them (the handler
// tests cover every way in).
func TestServiceRefusesTextFirestoreCannotStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startRun(t, ctx, embeddedEnv(t), io.Discard)
	defer func() {
		cancel()
		<-done
	}()
	tests := []struct {
		name, path string
		header     []string
		details    map[string]any
	}{
		{"path", "/v1/servers/%FF/changes", nil, map[string]any{"field": "jobId", "in": "path"}},
		{"query", "/v1/servers/job-1/changes?cursor=%C0%AF", nil, map[string]any{"field": "cursor", "in": "query"}},
		{"header", "/v1/players/7", []string{"Roblox-Job-Id", "\xff"}, map[string]any{"field": "Roblox-Job-Id", "in": "header"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+devServerKey)
			if tc.header != nil {
				req.Header.Set(tc.header[0], tc.header[1])
			}
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", tc.path, err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct {
					Code    string         `json:"code"`
					Details map[string]any `json:"details"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || body.Error.Code != "INVALID_ARGUMENT" {
				t.Errorf("GET %s: %d %s, want 400 INVALID_ARGUMENT", tc.path, resp.StatusCode, body.Error.Code)
			}
			if diff := cmp.Diff(tc.details, body.Error.Details); diff != "" {
				t.Errorf("details (-want +got):\n%s", diff)
			}
		})
	}
}
