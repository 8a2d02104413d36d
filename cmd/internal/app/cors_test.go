package app

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// corsOf picks the CORS headers of an answer, leaving out absent ones.
func corsOf(h http.Header) map[string]string {
	out := map[string]string{}
	for _, name := range []string{
		"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
		"Access-Control-Max-Age", "Access-Control-Expose-Headers", "Access-Control-Allow-Credentials", "Vary",
	} {
		if v := h.Values(name); len(v) > 0 {
			out[name] = strings.Join(v, ", ")
		}
	}
	return out
}

// TestRunAnswersCORS runs the service as the binary does, with no
// SAVESYNC_CORS_ORIGINS (so the local companion's origins are allowed),
// and checks that CORS is answered in front of authentication, the 404
// handler and the body limit on the companion and admin routes, and on no
// other route.
func TestRunAnswersCORS(t *testing.T) {
	s := startAPIStack(t)
	const page = "http://localhost:5173"
	const stranger = "https://evil.example.net"
	user := s.signUp()
	linked := s.signUp()
	support := s.staff("support")
	if r := s.link(linked, 9_130_000+contractUsers.Add(1)); r.status != http.StatusOK {
		t.Fatalf("link: %s %s", r.summary(), r.body)
	}

	preflight := func(origin, method, headers string) []string {
		h := []string{"Origin", origin, "Access-Control-Request-Method", method}
		if headers != "" {
			h = append(h, "Access-Control-Request-Headers", headers)
		}
		return h
	}
	grant := map[string]string{
		"Access-Control-Allow-Origin":  page,
		"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
		"Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, X-Request-Id, Last-Event-ID",
		"Access-Control-Max-Age":       "600",
		"Vary":                         "Origin",
	}
	exposed := map[string]string{
		"Access-Control-Allow-Origin":   page,
		"Access-Control-Expose-Headers": "Idempotent-Replayed, X-Request-Id, Retry-After",
		"Vary":                          "Origin",
	}
	onlyVary := map[string]string{"Vary": "Origin"}
	none := map[string]string{}
	big := strings.Repeat("x", 2<<20)

	tests := []struct {
		name       string
		method     string
		target     string
		creds      credentials
		body       any
		header     []string
		raw        string // a raw body instead of body
		wantStatus int
		wantCORS   map[string]string
		wantCode   string
	}{
		{name: "preflight to a companion route before auth", method: http.MethodOptions, target: "/v1/me/purchases",
			header:     preflight(page, "POST", "authorization, content-type, idempotency-key"),
			wantStatus: http.StatusNoContent, wantCORS: grant},
		{name: "preflight to the event stream", method: http.MethodOptions, target: "/v1/me/events",
			header:     preflight("http://127.0.0.1:5173", "GET", "authorization, last-event-id"),
			wantStatus: http.StatusNoContent, wantCORS: mapWith(grant, "Access-Control-Allow-Origin", "http://127.0.0.1:5173")},
		{name: "preflight to an admin route before auth", method: http.MethodOptions, target: "/v1/admin/players/42",
			header:     preflight(page, "GET", "authorization"),
			wantStatus: http.StatusNoContent, wantCORS: grant},
		{name: "preflight from an origin not on the list", method: http.MethodOptions, target: "/v1/me/purchases",
			header:     preflight(stranger, "POST", "authorization"),
			wantStatus: http.StatusNoContent, wantCORS: onlyVary},
		{name: "preflight asking for a header not on the list", method: http.MethodOptions, target: "/v1/me/purchases",
			header:     preflight(page, "POST", "authorization, x-debug"),
			wantStatus: http.StatusNoContent, wantCORS: onlyVary},
		{name: "401 without a token carries the grant", method: http.MethodGet, target: "/v1/me/save",
			header: []string{"Origin", page}, wantStatus: http.StatusUnauthorized, wantCORS: exposed, wantCode: "UNAUTHENTICATED"},
		{name: "403 of an unlinked user carries the grant", method: http.MethodGet, target: "/v1/me/save", creds: bearerOf(user.IDToken),
			header: []string{"Origin", page}, wantStatus: http.StatusForbidden, wantCORS: exposed, wantCode: "PERMISSION_DENIED"},
		{name: "200 of a linked user carries the grant", method: http.MethodGet, target: "/v1/me/save", creds: bearerOf(linked.IDToken),
			header: []string{"Origin", page}, wantStatus: http.StatusOK, wantCORS: exposed},
		{name: "404 of a companion path carries the grant", method: http.MethodGet, target: "/v1/me/nothing-here", creds: bearerOf(linked.IDToken),
			header: []string{"Origin", page}, wantStatus: http.StatusNotFound, wantCORS: exposed, wantCode: "NOT_FOUND"},
		{name: "413 of the body limit carries the grant", method: http.MethodPost, target: "/v1/me/purchases", creds: bearerOf(linked.IDToken),
			raw: big, header: []string{"Origin", page, "Idempotency-Key", "cors-big"}, wantStatus: http.StatusRequestEntityTooLarge, wantCORS: exposed, wantCode: "REQUEST_TOO_LARGE"},
		{name: "403 of an admin route carries the grant", method: http.MethodGet, target: "/v1/admin/players/42/ledger", creds: bearerOf(user.IDToken),
			header: []string{"Origin", page}, wantStatus: http.StatusForbidden, wantCORS: exposed, wantCode: "PERMISSION_DENIED"},
		{name: "200 of an admin route to support staff carries the grant", method: http.MethodGet, target: "/v1/admin/players/42/ledger", creds: bearerOf(support.IDToken),
			header: []string{"Origin", page}, wantStatus: http.StatusOK, wantCORS: exposed},
		{name: "an origin not on the list gets no grant", method: http.MethodGet, target: "/v1/me/save", creds: bearerOf(linked.IDToken),
			header: []string{"Origin", stranger}, wantStatus: http.StatusOK, wantCORS: onlyVary},
		{name: "game-server route: no CORS to an allowed origin", method: http.MethodPost, target: "/v1/sessions", creds: bearerOf(contractKey),
			body:   map[string]any{"userId": 9_129_999, "jobId": "cors-job", "steal": true, "schemaVersion": s.game.SchemaVersion},
			header: []string{"Origin", page}, wantStatus: http.StatusOK, wantCORS: none},
		{name: "game-server route: OPTIONS stays 405", method: http.MethodOptions, target: "/v1/sessions",
			header: preflight(page, "POST", "authorization"), wantStatus: http.StatusMethodNotAllowed, wantCORS: none, wantCode: "METHOD_NOT_ALLOWED"},
		{name: "game-server route: OPTIONS of a player stays 405", method: http.MethodOptions, target: "/v1/players/42/mutations",
			header: preflight(page, "POST", "authorization"), wantStatus: http.StatusMethodNotAllowed, wantCORS: none, wantCode: "METHOD_NOT_ALLOWED"},
		{name: "webhook route: OPTIONS stays 405", method: http.MethodOptions, target: "/v1/webhooks/roblox",
			header: preflight(page, "POST", ""), wantStatus: http.StatusMethodNotAllowed, wantCORS: none, wantCode: "METHOD_NOT_ALLOWED"},
		{name: "health route: no CORS", method: http.MethodGet, target: "/healthz",
			header: []string{"Origin", page}, wantStatus: http.StatusOK, wantCORS: none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got answer
			if tt.raw != "" {
				r := apiRequest{method: tt.method, target: tt.target, header: http.Header{}, body: []byte(tt.raw)}
				r.header.Set("Content-Type", "application/json")
				for i := 0; i+1 < len(tt.header); i += 2 {
					r.header.Set(tt.header[i], tt.header[i+1])
				}
				tt.creds.apply(&r)
				got = s.do(r)
			} else {
				got = s.call(tt.method, tt.target, tt.creds, tt.body, tt.header...)
			}
			if got.err != nil {
				t.Fatalf("no answer: %v", got.err)
			}
			if got.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", got.status, tt.wantStatus, got.body)
			}
			if diff := cmp.Diff(tt.wantCORS, corsOf(got.header)); diff != "" {
				t.Errorf("CORS headers (-want +got):\n%s", diff)
			}
			if code := got.errorCode(); code != tt.wantCode {
				t.Errorf("error code = %q, want %q; body %s", code, tt.wantCode, got.body)
			}
		})
	}
}

// mapWith is a copy of m with key set to value.
func mapWith(m map[string]string, key, value string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	out[key] = value
	return out
}
