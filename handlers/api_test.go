package handlers_test

import (
	"bytes"
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

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/store"
)

// serverKey is the game-server key the tests authenticate with.
const serverKey = "test-server-key"

// testEnv is the service over a fresh emulator project.
type testEnv struct {
	t       testing.TB
	url     string
	store   *store.Store
	clients store.Clients
	emu     *emulator.Server
	project string
	clock   *firestoretest.Clock
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	gin.SetMode(gin.TestMode)
	project := firestoretest.Project(t)
	clients := firestoretest.Dial(t, project)
	clock := firestoretest.NewClock(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	game := firestoretest.GameConfig(t)
	st := store.New(clients.Firestore, clients.GAPIC, project, game, store.Options{Now: clock.Now, LeaseTTL: 90 * time.Second, LedgerRetention: 24 * time.Hour})
	keys, err := handlers.ParseServerKeys("1:" + handlers.HashKey(serverKey))
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(handlers.LimitBody(64 << 10))
	handlers.NewServerAPI(st, game, keys).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &testEnv{t: t, url: srv.URL, store: st, clients: clients, emu: firestoretest.Emulator(t), project: project, clock: clock}
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not JSON: %v: %s", r.status, err, r.body)
	}
	return m
}

// object decodes a JSON object body (the name the companion and admin
// tests use).
func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	return r.json(t)
}

// errorCode returns the error code of an error response.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// send makes one request with a JSON body (a string, bytes, or a value to
// marshal) and answers the decoded response. token "" sends no
// Authorization header; headers are name/value pairs, and an empty value
// removes that header.
func send(t testing.TB, method, url, token string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
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
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// do sends a request with the server key unless headers override it.
func (e *testEnv) do(method, path string, body any, headers map[string]string) response {
	e.t.Helper()
	var pairs []string
	for k, v := range headers {
		pairs = append(pairs, k, v)
	}
	return send(e.t, method, e.url+path, serverKey, body, pairs...)
}

// mutate posts one mutation with an idempotency key.
func (e *testEnv) mutate(userID int64, key string, mutation string, extra ...string) response {
	e.t.Helper()
	h := map[string]string{"Idempotency-Key": key}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return e.do("POST", fmt.Sprintf("/v1/players/%d/mutations", userID), mutation, h)
}

// join starts a session for a player on a job.
func (e *testEnv) join(userID int64, job string, steal bool) response {
	e.t.Helper()
	return e.do("POST", "/v1/sessions", map[string]any{"userId": userID, "jobId": job, "schemaVersion": 3, "steal": steal}, nil)
}

// player reads the stored player document through the Firestore client.
func (e *testEnv) player(userID int64) store.PlayerView {
	e.t.Helper()
	p, err := e.store.GetPlayer(context.Background(), userID)
	if err != nil {
		e.t.Fatalf("GetPlayer(%d): %v", userID, err)
	}
	return p
}

// ledgerCount counts a player's ledger entries.
func (e *testEnv) ledgerCount(userID int64) int {
	e.t.Helper()
	docs, err := e.clients.Firestore.Collection(fmt.Sprintf("players/%d/ledger", userID)).Documents(context.Background()).GetAll()
	if err != nil {
		e.t.Fatal(err)
	}
	return len(docs)
}

// saved is a save view decoded for assertions.
type saved struct {
	Currencies  map[string]int64    `json:"currencies"`
	Stats       map[string]int64    `json:"stats"`
	Items       map[string]int64    `json:"items"`
	Loadout     map[string]string   `json:"loadout"`
	Settings    map[string]any      `json:"settings"`
	Collections map[string][]string `json:"collections"`
}

// savedOf decodes a view's save.
func savedOf(t *testing.T, p store.PlayerView) saved {
	t.Helper()
	raw, err := json.Marshal(p.Save)
	if err != nil {
		t.Fatal(err)
	}
	var v saved
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode save %s: %v", raw, err)
	}
	return v
}

// balance reads a currency balance from a view.
func balance(t *testing.T, p store.PlayerView, currency string) int64 {
	t.Helper()
	return savedOf(t, p).Currencies[currency]
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}
