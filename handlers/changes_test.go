package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// changesKey is the server key of the long-poll tests.
const changesKey = "changes-test-key"

// changesEnv serves the long-poll over a fresh project.
type changesEnv struct {
	t     *testing.T
	url   string
	store *store.Store
}

func newChangesEnv(t *testing.T) *changesEnv {
	t.Helper()
	gin.SetMode(gin.TestMode)
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	st := store.New(c.Firestore, c.GAPIC, project, firestoretest.GameConfig(t), store.Options{})
	keys, err := handlers.ParseServerKeys("1:" + handlers.HashKey(changesKey))
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	ch := store.NewChanges(st, store.ChangesOptions{PollInterval: 20 * time.Millisecond, MaxWait: 3 * time.Second})
	handlers.NewChangesAPI(ch).Register(r, keys.RequireServerKey())
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &changesEnv{t: t, url: srv.URL, store: st}
}

// poll sends GET /v1/servers/{job}/changes with the query parameters.
func (e *changesEnv) poll(job string, query url.Values, key string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.url+"/v1/servers/"+url.PathEscape(job)+"/changes?"+query.Encode(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestChangesLongPollReturnsCompanionWrite(t *testing.T) {
	t.Parallel()
	e := newChangesEnv(t)
	ctx := context.Background()
	if _, err := e.store.JoinSession(ctx, store.JoinRequest{UserID: 61, JobID: "job-lp"}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = e.store.ApplyMutation(ctx, store.MutationRequest{
			UserID: 61, Actor: save.Actor{Kind: save.ActorCompanion, ID: "uid-61"}, IdempotencyKey: "lp-1",
			Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "music", Value: false}}},
		})
	}()
	status, body := e.poll("job-lp", url.Values{"timeout": {"3s"}}, changesKey)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var page struct {
		Changes []struct {
			UserID       int64      `json:"userId"`
			Version      int64      `json:"version"`
			ChangedPaths []string   `json:"changedPaths"`
			Actor        save.Actor `json:"actor"`
			CommittedAt  time.Time  `json:"committedAt"`
		} `json:"changes"`
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("answer is not the documented JSON: %v: %s", err, body)
	}
	if len(page.Changes) != 1 || page.Cursor == "" {
		t.Fatalf("answer = %s, want one change and a cursor", body)
	}
	got := page.Changes[0]
	if got.UserID != 61 || got.Version != 1 || got.Actor.Kind != save.ActorCompanion || got.CommittedAt.IsZero() {
		t.Errorf("change = %+v, want player 61 at version 1 by the companion", got)
	}
	if diff := cmp.Diff([]string{"settings.music"}, got.ChangedPaths); diff != "" {
		t.Errorf("changedPaths (-want +got):\n%s", diff)
	}

	status, body = e.poll("job-lp", url.Values{"timeout": {"0"}, "cursor": {page.Cursor}}, changesKey)
	if status != http.StatusOK {
		t.Fatalf("second poll status %d: %s", status, body)
	}
	var again struct {
		Changes []any `json:"changes"`
	}
	if err := json.Unmarshal(body, &again); err != nil || again.Changes == nil || len(again.Changes) != 0 {
		t.Errorf("second poll = %s, want an empty changes list", body)
	}
}

func TestChangesLongPollRefusesBadRequests(t *testing.T) {
	t.Parallel()
	e := newChangesEnv(t)
	tests := []struct {
		name       string
		query      url.Values
		key        string
		wantStatus int
		wantCode   string
	}{
		{"no server key", url.Values{"timeout": {"0"}}, "", http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"wrong server key", url.Values{"timeout": {"0"}}, "nope", http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"timeout not a duration", url.Values{"timeout": {"soon"}}, changesKey, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"negative timeout", url.Values{"timeout": {"-1s"}}, changesKey, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"forged cursor", url.Values{"timeout": {"0"}, "cursor": {"bm90LWEtY3Vyc29y"}}, changesKey, http.StatusBadRequest, "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.poll("job-bad", tt.query, tt.key)
			var eb handlers.ErrorBody
			_ = json.Unmarshal(body, &eb)
			if status != tt.wantStatus || string(eb.Error.Code) != tt.wantCode {
				t.Errorf("got %d %s, want %d %s", status, body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestChangesLongPollCapsTheWait(t *testing.T) {
	t.Parallel()
	e := newChangesEnv(t)
	start := time.Now()
	status, body := e.poll("job-idle", url.Values{"timeout": {"10m"}}, changesKey)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	// MaxWait is 3 s in this environment: a 10-minute request must come
	// back empty well before 10 minutes.
	if waited := time.Since(start); waited > time.Minute {
		t.Errorf("the long-poll waited %v, want about the 3 s maximum", waited)
	}
}

func TestChangesLongPollNamesNoAccount(t *testing.T) {
	t.Parallel()
	e := newChangesEnv(t)
	ctx := context.Background()
	const userID = 62
	if _, err := e.store.JoinSession(ctx, store.JoinRequest{UserID: userID, JobID: "job-anon"}); err != nil {
		t.Fatal(err)
	}
	writers := []save.Actor{
		{Kind: save.ActorCompanion, ID: "firebase-uid-of-the-player"},
		{Kind: save.ActorAdmin, ID: "firebase-uid-of-support"},
		{Kind: save.ActorServer, ID: "universe/2"},
	}
	for i, a := range writers {
		if _, err := e.store.ApplyMutation(ctx, store.MutationRequest{
			UserID: userID, Actor: a, IdempotencyKey: "anon-" + string(a.Kind),
			Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(10 + i)}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	status, body := e.poll("job-anon", url.Values{"timeout": {"0"}}, changesKey)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var page struct {
		Changes []struct {
			Version int64          `json:"version"`
			Actor   map[string]any `json:"actor"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	got := map[int64]map[string]any{}
	for _, c := range page.Changes {
		got[c.Version] = c.Actor
	}
	want := map[int64]map[string]any{
		1: {"kind": "companion", "id": ""},
		2: {"kind": "admin", "id": ""},
		3: {"kind": "server", "id": "universe/2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("actors in the long-poll by version (-want +got):\n%s", diff)
	}
	for _, a := range writers[:2] {
		if strings.Contains(string(body), a.ID) {
			t.Errorf("the long-poll answer names %s: %s", a.ID, body)
		}
	}
}
