package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/store"
)

// newInputEnv serves every API (game server, long-poll, companion, support)
// behind the middleware the service runs, over a fresh project.
func newInputEnv(t *testing.T) *testEnv {
	t.Helper()
	authEmulator(t)
	gin.SetMode(gin.TestMode)
	project := firestoretest.Project(t)
	clients := firestoretest.Dial(t, project)
	clock := firestoretest.NewClock(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	game := firestoretest.GameConfig(t)
	st := store.New(clients.Firestore, clients.GAPIC, project, game, store.Options{Now: clock.Now})
	keys, err := handlers.ParseServerKeys("1:" + handlers.HashKey(serverKey))
	if err != nil {
		t.Fatal(err)
	}
	fa, err := handlers.NewFirebaseAuth(context.Background(), authProject)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(handlers.LimitBody(64<<10), handlers.RefuseInvalidText())
	handlers.NewServerAPI(st, game, keys).Register(r)
	handlers.NewChangesAPI(store.NewChanges(st, store.ChangesOptions{MaxWait: time.Second})).Register(r, keys.RequireServerKey())
	handlers.NewCompanionAPI(st, game, fa, keys, handlers.CompanionOptions{}).Register(r)
	handlers.NewAdminAPI(st, fa, handlers.AdminOptions{ErasureKey: []byte("test-erasure-key"), RobloxWebhookSecret: webhookSecret}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &testEnv{t: t, url: srv.URL, store: st, clients: clients, emu: firestoretest.Emulator(t), project: project, clock: clock}
}

// sendBounded is send with a client that gives up after a while, so a
// request the service never answers fails the test instead of hanging it.
func sendBounded(t *testing.T, method, url, token, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// TestTextFirestoreCannotStoreIsRefusedWhereItEnters sends text that is
// not valid UTF-8 (or a lone surrogate escape, or a NUL where it would
// become an id or a field name) through every way into the service, and
// wants 400 INVALID_ARGUMENT naming the field, the documented error body,
// and nothing written.
func TestTextFirestoreCannotStoreIsRefusedWhereItEnters(t *testing.T) {
	t.Parallel()
	e := newInputEnv(t)
	admin := staff(t, handlers.RoleAdmin).IDToken
	user := signUp(t).IDToken
	const add = `{"op":"currency.add","currency":"coins","amount":1}`
	key := []string{"Idempotency-Key", "k-1"}

	tests := []struct {
		name    string
		method  string
		path    string // %d is the test's own player
		token   string // "" is the server key
		body    string
		headers []string
		in      string
		field   string
		message string // a part of the message
	}{
		{name: "Roblox-Job-Id header", method: "POST", path: "/v1/players/%d/mutations", body: `{"ops":[` + add + `]}`,
			headers: append([]string{"Roblox-Job-Id", "job-\xff"}, key...), in: "header", field: "Roblox-Job-Id", message: "the Roblox-Job-Id header is not valid UTF-8"},
		{name: "Idempotency-Key header", method: "POST", path: "/v1/players/%d/mutations", body: `{"ops":[` + add + `]}`,
			headers: []string{"Idempotency-Key", "\xc0\xaf"}, in: "header", field: "Idempotency-Key", message: "the Idempotency-Key header is not valid UTF-8"},
		{name: "Authorization header", method: "POST", path: "/v1/players/%d/mutations", body: `{"ops":[` + add + `]}`,
			headers: append([]string{"Authorization", "Bearer \xff"}, key...), in: "header", field: "Authorization", message: "the Authorization header"},
		{name: "Savesync-Schema-Version header", method: "POST", path: "/v1/players/%d/mutations", body: `{"ops":[` + add + `]}`,
			headers: append([]string{"Savesync-Schema-Version", "3\xff"}, key...), in: "header", field: "Savesync-Schema-Version", message: "the Savesync-Schema-Version header"},
		{name: "Last-Event-ID header", method: "GET", path: "/v1/me/events", token: user,
			headers: []string{"Last-Event-ID", "\xff"}, in: "header", field: "Last-Event-ID", message: "the Last-Event-ID header"},
		{name: "job id path segment", method: "GET", path: "/v1/servers/%%FF/changes",
			in: "path", field: "jobId", message: "path parameter jobId is not valid UTF-8"},
		{name: "session id path segment", method: "POST", path: "/v1/sessions/%%C0%%AF/renew",
			in: "path", field: "sessionId", message: "path parameter sessionId"},
		{name: "link code path segment", method: "POST", path: "/v1/link-codes/AB%%FFCD/redeem", body: `{"userId":1}`,
			in: "path", field: "code", message: "path parameter code"},
		{name: "setting key path segment", method: "PUT", path: "/v1/me/settings/%%FF", token: user, body: `{"value":true}`,
			in: "path", field: "key", message: "path parameter key"},
		{name: "NUL in a collection element path segment", method: "DELETE", path: "/v1/me/collections/badges/a%%00b", token: user,
			in: "path", field: "element", message: "path parameter element contains a NUL character"},
		{name: "version path segment", method: "GET", path: "/v1/admin/players/%d/versions/%%FF", token: admin,
			in: "path", field: "version", message: "path parameter version"},
		{name: "actorId query value", method: "GET", path: "/v1/admin/players/%d/ledger?actorId=%%FF", token: admin,
			in: "query", field: "actorId", message: "query parameter actorId is not valid UTF-8"},
		{name: "idempotencyKey query value", method: "GET", path: "/v1/admin/players/%d/ledger?idempotencyKey=%%C0%%AF", token: admin,
			in: "query", field: "idempotencyKey", message: "query parameter idempotencyKey"},
		{name: "NUL in the cursor query value", method: "GET", path: "/v1/servers/job-1/changes?cursor=%%00",
			in: "query", field: "cursor", message: "query parameter cursor contains a NUL character"},
		{name: "query name", method: "GET", path: "/v1/admin/players/%d/ledger?%%FF=1", token: admin,
			in: "query", field: `"\xff"`, message: "a query parameter name is not valid UTF-8"},
		{name: "JSON string value", method: "POST", path: "/v1/sessions", body: `{"userId":%d,"jobId":"job-` + "\xff" + `"}`,
			in: "body", field: "jobId", message: "jobId is not valid UTF-8"},
		{name: "JSON string value in a mutation", method: "POST", path: "/v1/players/%d/mutations", headers: key,
			body: `{"ops":[` + add + `],"reason":"` + "\xe2\x82" + `"}`, in: "body", field: "reason", message: "reason is not valid UTF-8"},
		{name: "JSON map key", method: "POST", path: "/v1/players/%d/mutations", headers: key,
			body: `{"expectedVersion":0,"ops":[{"op":"save.replace","save":{"currencies":{"co` + "\xff" + `ins":1}}}]}`,
			in:   "body", field: "ops[0].save.currencies", message: "an object key in ops[0].save.currencies is not valid UTF-8"},
		{name: "NUL in a JSON map key", method: "POST", path: "/v1/players/%d/mutations", headers: key,
			body: `{"expectedVersion":0,"ops":[{"op":"save.replace","save":{"currencies":{"coins\u0000":1}}}]}`,
			in:   "body", field: "ops[0].save.currencies", message: "an object key in ops[0].save.currencies contains a NUL character"},
		{name: "op name", method: "POST", path: "/v1/players/%d/mutations", headers: key,
			body: `{"ops":[{"op":"currency.add` + "\xff" + `","currency":"coins","amount":1}]}`, in: "body", field: "ops[0].op", message: "ops[0].op is not valid UTF-8"},
		{name: "collection element", method: "POST", path: "/v1/players/%d/mutations", headers: key,
			body: `{"ops":[{"op":"collection.add","collection":"badges","element":"gold` + "\xff" + `"}]}`, in: "body", field: "ops[0].element", message: "ops[0].element is not valid UTF-8"},
		{name: "lone surrogate escape", method: "POST", path: "/v1/players/%d/mutations", headers: key,
			body: `{"ops":[{"op":"collection.add","collection":"badges","element":"gold\ud800"}]}`, in: "body", field: "ops[0].element", message: `ops[0].element has a lone UTF-16 surrogate escape (\ud800)`},
		{name: "lone low surrogate escape", method: "POST", path: "/v1/sessions", body: `{"userId":%d,"jobId":"\udc00job"}`,
			in: "body", field: "jobId", message: "jobId has a lone UTF-16 surrogate escape"},
		{name: "high surrogate without its low half", method: "POST", path: "/v1/players/%d/mutations", headers: key,
			body: `{"ops":[` + add + `],"reason":"\ud83d\u0041"}`, in: "body", field: "reason", message: "reason has a lone UTF-16 surrogate escape"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			userID := int64(300 + i)
			// Paths are formats (%%FF is a literal %FF); bodies name the
			// player with %d only where they need it.
			path := strings.ReplaceAll(strings.ReplaceAll(tc.path, "%d", fmt.Sprint(userID)), "%%", "%")
			body := strings.ReplaceAll(tc.body, "%d", fmt.Sprint(userID))
			token := tc.token
			if token == "" {
				token = serverKey
			}
			r := sendBounded(t, tc.method, e.url+path, token, body, tc.headers...)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s %s: %d %s, want 400", tc.method, path, r.status, r.body)
			}
			var got struct {
				Error struct {
					Code    string         `json:"code"`
					Message string         `json:"message"`
					Details map[string]any `json:"details"`
				} `json:"error"`
			}
			dec := json.NewDecoder(strings.NewReader(string(r.body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("error body %s is not the documented shape: %v", r.body, err)
			}
			if got.Error.Code != "INVALID_ARGUMENT" || !strings.Contains(got.Error.Message, tc.message) {
				t.Errorf("error %s %q, want INVALID_ARGUMENT with a message containing %q", got.Error.Code, got.Error.Message, tc.message)
			}
			if diff := cmp.Diff(map[string]any{"field": tc.field, "in": tc.in}, got.Error.Details); diff != "" {
				t.Errorf("details (-want +got):\n%s", diff)
			}
			if _, err := e.clients.Firestore.Doc(fmt.Sprintf("players/%d", userID)).Get(context.Background()); status.Code(err) != codes.NotFound {
				t.Errorf("player %d document after a refused request: %v, want none", userID, err)
			}
			if n := e.ledgerCount(userID); n != 0 {
				t.Errorf("player %d has %d ledger entries after a refused request, want 0", userID, n)
			}
		})
	}
}

// TestValidTextStillPasses checks the refusals above are about the text:
// characters outside the Basic Multilingual Plane, sent as UTF-8 or as a
// surrogate pair, and NUL inside a string value, are stored and read back.
func TestValidTextStillPasses(t *testing.T) {
	t.Parallel()
	e := newInputEnv(t)
	body := `{"ops":[{"op":"collection.add","collection":"badges","element":"gold 🏅"},` +
		`{"op":"collection.add","collection":"badges","element":"silver \ud83e\udd48"}],"reason":"déjà\u0000vu"}`
	r := sendBounded(t, "POST", e.url+"/v1/players/400/mutations", serverKey, body, "Idempotency-Key", "ok-1", "Roblox-Job-Id", "job-ü")
	if r.status != http.StatusOK {
		t.Fatalf("mutation with valid text: %d %s", r.status, r.body)
	}
	got := savedOf(t, e.player(400)).Collections["badges"]
	want := []string{"gold 🏅", "silver 🥈"}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("badges (-want +got):\n%s", diff)
	}
	entries, err := e.clients.Firestore.Collection("players/400/ledger").Documents(context.Background()).GetAll()
	if err != nil || len(entries) != 1 {
		t.Fatalf("ledger: %d entries, %v", len(entries), err)
	}
	if got := entries[0].Data()["reason"]; got != "déjà\x00vu" {
		t.Errorf("stored reason = %q, want the NUL kept inside the string", got)
	}
	// A collection element becomes a map key of the stored save, so a NUL
	// in it is refused like one in any object key.
	nul := `{"ops":[{"op":"collection.add","collection":"badges","element":"a\u0000b"}]}`
	if r := sendBounded(t, "POST", e.url+"/v1/players/401/mutations", serverKey, nul, "Idempotency-Key", "nul-1"); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), `ops[0].element: must not contain a NUL character`) {
		t.Errorf("NUL in a collection element: %d %s, want 400 naming ops[0].element", r.status, r.body)
	}
	if r := sendBounded(t, "GET", e.url+"/v1/servers/job-%C3%BC/changes?timeout=0s&cursor=", serverKey, ""); r.status != http.StatusOK {
		t.Errorf("long-poll for a UTF-8 job id: %d %s", r.status, r.body)
	}
}
