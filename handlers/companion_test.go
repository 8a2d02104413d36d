package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"firebase.google.com/go/v4/auth"
	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/store"
)

// companionKey is the game-server key of the companion tests.
const companionKey = "companion-test-server-key"

// companionEnv is the service with the companion API over a fresh
// emulator project; a second instance (other) shares the project, as two
// Cloud Run instances share one database.
type companionEnv struct {
	t     *testing.T
	url   string
	other string
	store *store.Store
	logs  *syncBuffer // both instances' request log lines
}

// companionReply is a decoded HTTP answer.
type companionReply = response

// failure returns an error response's code and details.reason.
func (r companionReply) failure(t *testing.T) (code, reason string) {
	t.Helper()
	e, _ := r.object(t)["error"].(map[string]any)
	code, _ = e["code"].(string)
	d, _ := e["details"].(map[string]any)
	reason, _ = d["reason"].(string)
	return code, reason
}

// newCompanionEnv serves the companion API; tune, when given, changes its
// options (limits, clock) on both instances.
func newCompanionEnv(t *testing.T, tune ...func(*handlers.CompanionOptions)) *companionEnv {
	t.Helper()
	return newCompanionEnvWith(t, store.Options{}, tune...)
}

// newCompanionEnvWith is newCompanionEnv with the stores' options (clock).
func newCompanionEnvWith(t *testing.T, storeOpts store.Options, tune ...func(*handlers.CompanionOptions)) *companionEnv {
	t.Helper()
	logs := &syncBuffer{}
	authEmulator(t)
	gin.SetMode(gin.TestMode)
	project := firestoretest.Project(t)
	cfg := firestoretest.GameConfig(t)
	keys, err := handlers.ParseServerKeys("1:" + handlers.HashKey(companionKey))
	if err != nil {
		t.Fatal(err)
	}
	fa, err := handlers.NewFirebaseAuth(context.Background(), authProject)
	if err != nil {
		t.Fatal(err)
	}
	serve := func() (string, *store.Store) {
		c := firestoretest.Dial(t, project)
		st := store.New(c.Firestore, c.GAPIC, project, cfg, storeOpts)
		r := gin.New()
		r.Use(handlers.RequestID(), handlers.RequestLogger(logging.New(logs, slog.LevelInfo), "proj-1"), handlers.LimitBody(64<<10))
		handlers.NewServerAPI(st, cfg, keys).Register(r)
		opts := handlers.CompanionOptions{
			Heartbeat: 100 * time.Millisecond,
			Watch:     store.WatchOptions{PollInterval: 50 * time.Millisecond},
		}
		for _, f := range tune {
			f(&opts)
		}
		handlers.NewCompanionAPI(st, cfg, fa, keys, opts).Register(r)
		r.GET("/v1/test/support", fa.RequireUser(), handlers.RequireRole(handlers.RoleSupport, handlers.RoleAdmin), func(c *gin.Context) {
			u, _ := handlers.FirebaseUserFrom(c)
			c.JSON(http.StatusOK, gin.H{"uid": u.UID, "role": u.Role})
		})
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		return srv.URL, st
	}
	url, st := serve()
	other, _ := serve()
	return &companionEnv{t: t, url: url, other: other, store: st, logs: logs}
}

// syncBuffer is a log sink that handlers on several goroutines share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// call sends a request to base; token "" sends no Authorization header.
func (e *companionEnv) call(base, method, path, token string, body any, headers ...string) companionReply {
	e.t.Helper()
	return send(e.t, method, base+path, token, body, headers...)
}

// me calls a /v1/me route as u.
func (e *companionEnv) me(u *fbUser, method, path string, body any, headers ...string) companionReply {
	e.t.Helper()
	return e.call(e.url, method, "/v1/me"+path, u.IDToken, body, headers...)
}

// link links u to a Roblox player the way the product does: a code from
// the companion, redeemed by the game server, then a fresh sign-in.
func (e *companionEnv) link(u *fbUser, userID int64) {
	e.t.Helper()
	r := e.me(u, "POST", "/link-codes", nil)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create link code: %d %s", r.status, r.body)
	}
	code, _ := r.object(e.t)["code"].(string)
	r = e.call(e.url, "POST", "/v1/link-codes/"+code+"/redeem", companionKey, map[string]any{"userId": userID})
	if r.status != http.StatusOK {
		e.t.Fatalf("redeem link code: %d %s", r.status, r.body)
	}
	u.signIn(e.t)
}

// meSave reads u's save through the API.
// meSaved is a save as /v1/me/save and events show it.
type meSaved struct {
	Currencies  map[string]int64    `json:"currencies"`
	Items       map[string]int64    `json:"items"`
	Settings    map[string]any      `json:"settings"`
	Collections map[string][]string `json:"collections"`
}

func (e *companionEnv) meSave(u *fbUser) (version int64, s meSaved) {
	e.t.Helper()
	r := e.me(u, "GET", "/save", nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET /v1/me/save: %d %s", r.status, r.body)
	}
	var v struct {
		Version int64   `json:"version"`
		Save    meSaved `json:"save"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		e.t.Fatal(err)
	}
	return v.Version, v.Save
}

func TestLinkingEndToEnd(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	const userID = 4101

	if code, reason := e.me(u, "GET", "/save", nil).failure(t); code != "PERMISSION_DENIED" || reason != "NOT_LINKED" {
		t.Fatalf("unlinked GET /v1/me/save: %s/%s, want PERMISSION_DENIED/NOT_LINKED", code, reason)
	}
	r := e.me(u, "POST", "/link-codes", nil)
	if r.status != http.StatusCreated {
		t.Fatalf("create link code: %d %s", r.status, r.body)
	}
	code, _ := r.object(t)["code"].(string)
	if len(code) != store.LinkCodeLength {
		t.Fatalf("code %q: want %d characters", code, store.LinkCodeLength)
	}

	// Only a game server can redeem.
	if r := e.call(e.url, "POST", "/v1/link-codes/"+code+"/redeem", u.IDToken, map[string]any{"userId": userID}); r.status != http.StatusUnauthorized {
		t.Fatalf("redeem with an ID token: %d %s, want 401", r.status, r.body)
	}
	r = e.call(e.url, "POST", "/v1/link-codes/"+strings.ToLower(code)+"/redeem", companionKey, map[string]any{"userId": userID})
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	if got := r.object(t); got["userId"] != float64(userID) || got["linked"] != true || got["uid"] != nil {
		t.Errorf("redeem answered %v, want the user id, linked, and no companion uid", got)
	}
	if r := e.call(e.url, "POST", "/v1/link-codes/"+code+"/redeem", companionKey, map[string]any{"userId": userID + 1}); r.status != http.StatusNotFound {
		t.Errorf("second redemption for another player: %d %s, want 404 LINK_CODE_USED", r.status, r.body)
	}

	// The old token has no claim; the service still knows the link.
	if _, ok := u.claims(t)["robloxUserId"]; ok {
		t.Error("the token from before linking has a robloxUserId claim")
	}
	u.signIn(t)
	if got := u.claims(t)["robloxUserId"]; got != float64(userID) {
		t.Errorf("robloxUserId claim after signing in again = %v, want %d", got, userID)
	}
	version, s := e.meSave(u)
	if version != 0 || s.Currencies["coins"] != 100 {
		t.Errorf("linked save: version %d coins %d, want the starting save at version 0", version, s.Currencies["coins"])
	}
	if diff := cmp.Diff(map[string]any{"linked": true, "userId": float64(userID)}, withoutKey(e.me(u, "GET", "/link", nil).object(t), "linkedAt")); diff != "" {
		t.Errorf("GET /v1/me/link (-want +got):\n%s", diff)
	}

	// Unlink: the link, the claim and the access go.
	if r := e.me(u, "DELETE", "/link", nil); r.status != http.StatusOK || r.object(t)["unlinked"] != true {
		t.Fatalf("unlink: %d %s", r.status, r.body)
	}
	if code, reason := e.me(u, "GET", "/save", nil).failure(t); code != "PERMISSION_DENIED" || reason != "NOT_LINKED" {
		t.Errorf("GET /v1/me/save with the pre-unlink token: %s/%s, want NOT_LINKED", code, reason)
	}
	u.signIn(t)
	if got, ok := u.claims(t)["robloxUserId"]; ok {
		t.Errorf("robloxUserId claim after unlinking = %v, want none", got)
	}
	if r := e.me(u, "DELETE", "/link", nil); r.status != http.StatusOK || r.object(t)["unlinked"] != false {
		t.Errorf("second unlink: %d %s, want 200 with unlinked false", r.status, r.body)
	}
}

func TestLinkingOneToOne(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	a, b := signUp(t), signUp(t)
	e.link(a, 4201)

	// a is linked: no second code.
	if code, reason := e.me(a, "POST", "/link-codes", nil).failure(t); code != "PERMISSION_DENIED" || reason != store.ReasonAlreadyLinked {
		t.Errorf("second code for a linked account: %s/%s, want ALREADY_LINKED", code, reason)
	}
	// b cannot take a's player.
	code, _ := e.me(b, "POST", "/link-codes", nil).object(t)["code"].(string)
	r := e.call(e.url, "POST", "/v1/link-codes/"+code+"/redeem", companionKey, map[string]any{"userId": 4201})
	if c, reason := r.failure(t); r.status != http.StatusForbidden || c != "PERMISSION_DENIED" || reason != store.ReasonPlayerLinked {
		t.Errorf("redeem for a player linked elsewhere: %d %s/%s, want 403 %s", r.status, c, reason, store.ReasonPlayerLinked)
	}
}

func TestAuthenticationRefusals(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	admin := authAdmin(t)
	ctx := context.Background()

	revoked := signUp(t)
	disabled := signUp(t)
	deleted := signUp(t)
	expired := signUp(t)
	time.Sleep(1100 * time.Millisecond) // revocation compares whole seconds
	if err := admin.RevokeRefreshTokens(ctx, revoked.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateUser(ctx, disabled.UID, (&auth.UserToUpdate{}).Disabled(true)); err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteUser(ctx, deleted.UID); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	base := map[string]any{
		"iss": "https://securetoken.google.com/" + authProject, "aud": authProject,
		"sub": expired.UID, "user_id": expired.UID, "auth_time": now - 7200, "iat": now - 7200, "exp": now - 3600,
	}
	foreign := map[string]any{}
	for k, v := range base {
		foreign[k] = v
	}
	foreign["aud"], foreign["iss"], foreign["exp"], foreign["iat"] = "someone-else", "https://securetoken.google.com/someone-else", now+3600, now

	tests := []struct {
		name   string
		header string
		reason string
	}{
		{"no header", "", "MISSING_TOKEN"},
		{"not bearer", "Basic abc", "MISSING_TOKEN"},
		{"garbage", "Bearer not-a-token", "ID_TOKEN_INVALID"},
		{"expired", "Bearer " + unsignedToken(t, base), "ID_TOKEN_EXPIRED"},
		{"another project", "Bearer " + unsignedToken(t, foreign), "ID_TOKEN_INVALID"},
		{"revoked", "Bearer " + revoked.IDToken, "ID_TOKEN_REVOKED"},
		{"disabled", "Bearer " + disabled.IDToken, "USER_DISABLED"},
		{"deleted account", "Bearer " + deleted.IDToken, "USER_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call(e.url, "GET", "/v1/me/save", "", nil, "Authorization", tt.header)
			code, reason := r.failure(t)
			if r.status != http.StatusUnauthorized || code != "UNAUTHENTICATED" || reason != tt.reason {
				t.Errorf("got %d %s/%s, want 401 UNAUTHENTICATED/%s: %s", r.status, code, reason, tt.reason, r.body)
			}
		})
	}
}

func TestPurchaseAndReplay(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	e.link(u, 4301)

	// The client's price is ignored: the catalog charges 50 coins.
	first := e.me(u, "POST", "/purchases", map[string]any{"sku": "starter", "price": map[string]any{"coins": 0}}, "Idempotency-Key", "buy-1")
	if first.status != http.StatusOK {
		t.Fatalf("purchase: %d %s", first.status, first.body)
	}
	if _, s := e.meSave(u); s.Currencies["coins"] != 50 || s.Items["potion"] != 2 {
		t.Errorf("after purchase: coins %d potions %d, want 50 and 2", s.Currencies["coins"], s.Items["potion"])
	}
	replay := e.me(u, "POST", "/purchases", map[string]any{"sku": "starter", "price": map[string]any{"coins": 0}}, "Idempotency-Key", "buy-1")
	if replay.status != http.StatusOK || replay.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(replay.body, first.body) {
		t.Errorf("replay: %d replayed=%q body %s, want 200, replayed, the first body %s", replay.status, replay.header.Get("Idempotent-Replayed"), replay.body, first.body)
	}
	if v, s := e.meSave(u); v != 1 || s.Currencies["coins"] != 50 {
		t.Errorf("after replay: version %d coins %d, want version 1 and 50 coins", v, s.Currencies["coins"])
	}
	if r := e.me(u, "POST", "/purchases", map[string]any{"sku": "starter"}, "Idempotency-Key", "buy-2"); r.status != http.StatusOK {
		t.Fatalf("second purchase: %d %s", r.status, r.body)
	}

	tests := []struct {
		name   string
		body   any
		key    string
		status int
		code   string
	}{
		{"insufficient funds", map[string]any{"sku": "starter"}, "buy-3", http.StatusUnprocessableEntity, "INSUFFICIENT_FUNDS"},
		{"unknown sku", map[string]any{"sku": "mega"}, "buy-4", http.StatusNotFound, "NOT_FOUND"},
		{"no sku", map[string]any{}, "buy-5", http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"grants from the client", map[string]any{"sku": "starter", "grants": []any{}}, "buy-6", http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"no idempotency key", map[string]any{"sku": "starter"}, "", http.StatusBadRequest, "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []string
			if tt.key != "" {
				h = []string{"Idempotency-Key", tt.key}
			}
			r := e.me(u, "POST", "/purchases", tt.body, h...)
			if code, _ := r.failure(t); r.status != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s: %s", r.status, code, tt.status, tt.code, r.body)
			}
		})
	}
	// A key names one request of this user, whichever route it came through.
	if r := e.me(u, "PUT", "/settings/volume", map[string]any{"value": 5}, "Idempotency-Key", "buy-1"); r.status != http.StatusUnprocessableEntity {
		t.Errorf("key reused for another request: %d %s, want 422 IDEMPOTENCY_KEY_REUSED", r.status, r.body)
	}
	if v, s := e.meSave(u); v != 2 || s.Currencies["coins"] != 0 || s.Items["potion"] != 4 {
		t.Errorf("final save: version %d coins %d potions %d, want version 2, 0 coins, 4 potions", v, s.Currencies["coins"], s.Items["potion"])
	}
}

func TestCompanionReachesOnlyItsOwnPlayer(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	a, b := signUp(t), signUp(t)
	e.link(a, 4401)
	e.link(b, 4402)
	if r := e.me(b, "PUT", "/settings/volume", map[string]any{"value": 7}, "Idempotency-Key", "b-vol"); r.status != http.StatusOK {
		t.Fatalf("b sets volume: %d %s", r.status, r.body)
	}

	if _, s := e.meSave(a); s.Settings["volume"] != float64(80) {
		t.Errorf("a's volume = %v, want a's own 80, untouched by b", s.Settings["volume"])
	}
	// The server routes that name a player need a server key, not an ID token.
	for _, path := range []string{"/v1/players/4402", "/v1/players/4401"} {
		if r := e.call(e.url, "GET", path, a.IDToken, nil); r.status != http.StatusUnauthorized {
			t.Errorf("GET %s with an ID token: %d, want 401", path, r.status)
		}
	}
	// Server-only ops are refused and change nothing.
	for _, op := range []string{
		`{"op":"currency.add","currency":"coins","amount":1000}`,
		`{"op":"item.grant","item":"sword","count":1}`,
		`{"op":"save.replace","save":{}}`,
	} {
		r := e.me(a, "POST", "/mutations", `{"expectedVersion":0,"ops":[`+op+`]}`, "Idempotency-Key", "grant-"+op[7:15])
		if code, _ := r.failure(t); r.status != http.StatusForbidden || code != "PERMISSION_DENIED" {
			t.Errorf("%s: %d %s, want 403 PERMISSION_DENIED", op, r.status, r.body)
		}
	}
	if v, s := e.meSave(a); v != 0 || s.Currencies["coins"] != 100 || s.Items["sword"] != 0 {
		t.Errorf("a's save after refused ops: version %d coins %d swords %d, want untouched", v, s.Currencies["coins"], s.Items["sword"])
	}
	// Companion ops through the general route are fine.
	if r := e.me(a, "POST", "/mutations", `{"ops":[{"op":"settings.set","key":"music","value":false}]}`, "Idempotency-Key", "a-music"); r.status != http.StatusOK {
		t.Errorf("settings.set through /v1/me/mutations: %d %s", r.status, r.body)
	}
}

func TestRoleClaimGuardsSupportRoutes(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	if code, reason := e.call(e.url, "GET", "/v1/test/support", u.IDToken, nil).failure(t); code != "PERMISSION_DENIED" || reason != "ROLE_REQUIRED" {
		t.Errorf("player on a support route: %s/%s, want PERMISSION_DENIED/ROLE_REQUIRED", code, reason)
	}
	if err := authAdmin(t).SetCustomUserClaims(context.Background(), u.UID, map[string]any{"role": "support"}); err != nil {
		t.Fatal(err)
	}
	u.signIn(t)
	r := e.call(e.url, "GET", "/v1/test/support", u.IDToken, nil)
	if diff := cmp.Diff(map[string]any{"uid": u.UID, "role": "support"}, r.object(t)); r.status != http.StatusOK || diff != "" {
		t.Errorf("support user: %d (-want +got):\n%s", r.status, diff)
	}
	// Linking keeps the role claim.
	e.link(u, 4501)
	if got := u.claims(t); got["role"] != "support" || got["robloxUserId"] != float64(4501) {
		t.Errorf("claims after linking a support user = %v, want role and robloxUserId", got)
	}
}

func TestSettingsCollectionsAndLedger(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	e.link(u, 4601)

	steps := []struct {
		name   string
		method string
		path   string
		body   any
		status int
	}{
		{"set volume", "PUT", "/settings/volume", map[string]any{"value": 30}, http.StatusOK},
		{"volume out of range", "PUT", "/settings/volume", map[string]any{"value": 500}, http.StatusBadRequest},
		{"unknown setting", "PUT", "/settings/colour", map[string]any{"value": "red"}, http.StatusBadRequest},
		{"no value", "PUT", "/settings/music", map[string]any{}, http.StatusBadRequest},
		{"add a badge", "POST", "/collections/badges", map[string]any{"element": "gold"}, http.StatusOK},
		{"add another badge", "POST", "/collections/badges", map[string]any{"element": "silver"}, http.StatusOK},
		{"unknown collection", "POST", "/collections/stamps", map[string]any{"element": "x"}, http.StatusBadRequest},
		{"remove without observedVersion", "DELETE", "/collections/badges/gold", nil, http.StatusBadRequest},
		{"remove gold as seen at version 3", "DELETE", "/collections/badges/gold?observedVersion=3", nil, http.StatusOK},
	}
	for i, s := range steps {
		r := e.me(u, s.method, s.path, s.body, "Idempotency-Key", fmt.Sprintf("step-%d", i))
		if r.status != s.status {
			t.Errorf("%s: %d %s, want %d", s.name, r.status, r.body, s.status)
		}
	}
	v, s := e.meSave(u)
	if v != 4 || s.Settings["volume"] != float64(30) {
		t.Errorf("save: version %d volume %v, want version 4 and volume 30", v, s.Settings["volume"])
	}
	if diff := cmp.Diff([]string{"silver"}, s.Collections["badges"]); diff != "" {
		t.Errorf("badges (-want +got):\n%s", diff)
	}

	// History, newest first, two at a time.
	var pages [][]int64
	cursor := ""
	for range 4 {
		r := e.me(u, "GET", "/ledger?limit=2&cursor="+cursor, nil)
		if r.status != http.StatusOK {
			t.Fatalf("ledger: %d %s", r.status, r.body)
		}
		var page struct {
			Entries []struct {
				Version int64 `json:"version"`
				Actor   struct {
					Kind string `json:"kind"`
					ID   string `json:"id"`
				} `json:"actor"`
			} `json:"entries"`
			NextCursor string `json:"nextCursor"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		var vs []int64
		for _, en := range page.Entries {
			vs = append(vs, en.Version)
			if en.Actor.Kind != "companion" || en.Actor.ID != u.UID {
				t.Errorf("entry %d actor = %+v, want the companion user", en.Version, en.Actor)
			}
		}
		pages = append(pages, vs)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff([][]int64{{4, 3}, {2, 1}}, pages); diff != "" {
		t.Errorf("ledger pages (-want +got):\n%s", diff)
	}
	if r := e.me(u, "GET", "/ledger?cursor=bogus", nil); r.status != http.StatusBadRequest {
		t.Errorf("bogus cursor: %d, want 400", r.status)
	}
	if r := e.me(u, "GET", "/ledger?limit=x", nil); r.status != http.StatusBadRequest {
		t.Errorf("bad limit: %d, want 400", r.status)
	}
}

// TestOwnLedgerNamesNoOtherActor: the player's own ledger shows who else
// changed the save by kind only, and collection elements without the
// observed-remove tags that carry the adders' ids.
func TestOwnLedgerNamesNoOtherActor(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	e.link(u, 4603)
	game := map[string]any{"ops": []any{map[string]any{"op": "collection.add", "collection": "badges", "element": "fromGame"}}}
	if r := e.call(e.url, "POST", "/v1/players/4603/mutations", companionKey, game, "Idempotency-Key", "game-1", "Roblox-Job-Id", "job-secret-7"); r.status != http.StatusOK {
		t.Fatalf("game mutation: %d %s", r.status, r.body)
	}
	if r := e.me(u, "POST", "/collections/badges", map[string]any{"element": "fromPage"}, "Idempotency-Key", "page-1"); r.status != http.StatusOK {
		t.Fatalf("companion add: %d %s", r.status, r.body)
	}
	r := e.me(u, "GET", "/ledger", nil)
	if r.status != http.StatusOK {
		t.Fatalf("ledger: %d %s", r.status, r.body)
	}
	for _, leak := range []string{"job-secret-7", `"a":`} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("own ledger contains %s: %s", leak, r.body)
		}
	}
	var page struct {
		Entries []struct {
			Actor   map[string]string `json:"actor"`
			Changes []map[string]any  `json:"changes"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Entries) < 2 {
		t.Fatalf("ledger page: %v %s", err, r.body)
	}
	want := []map[string]string{{"kind": "companion", "id": u.UID}, {"kind": "server", "id": ""}}
	got := []map[string]string{page.Entries[0].Actor, page.Entries[1].Actor}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("actors, newest first (-want +got):\n%s", diff)
	}
	wantChange := []map[string]any{{"path": "collections.badges.fromPage", "old": nil, "new": true}}
	if diff := cmp.Diff(wantChange, page.Entries[0].Changes); diff != "" {
		t.Errorf("the companion's change (-want +got):\n%s", diff)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name, id, data string
}

// openEvents opens u's event stream on base and delivers its events until
// the test ends. comments counts keep-alive comments.
func (e *companionEnv) openEvents(base string, u *fbUser) (<-chan sseEvent, *http.Response) {
	e.t.Helper()
	return e.openEventsAt(base+"/v1/me/events", u.IDToken)
}

// openEventsAt opens the event stream at url, with the ID token when
// token is not "" (a ticket in url stands for it), as openEvents does.
func (e *companionEnv) openEventsAt(url, token string) (<-chan sseEvent, *http.Response) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	events := make(chan sseEvent, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ": "):
				events <- sseEvent{name: "comment", data: line[2:]}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	return events, resp
}

// nextEvent waits for the next event named name, skipping others.
func nextEvent(t *testing.T, events <-chan sseEvent, name string) sseEvent {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before a %q event", name)
			}
			if ev.name == name {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q event within 15 s", name)
		}
	}
}

func TestEventsDeliverWritesFromAnyInstance(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	const userID = 4701
	e.link(u, userID)

	events, resp := e.openEvents(e.url, u)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("events: %d %q, want 200 text/event-stream", resp.StatusCode, ct)
	}
	first := nextEvent(t, events, "save")
	if first.id != "0" || !strings.Contains(first.data, `"version":0`) {
		t.Errorf("first event id %q data %s, want the current version 0", first.id, first.data)
	}

	// A game server's write, served by the other instance.
	r := e.call(e.other, "POST", fmt.Sprintf("/v1/players/%d/mutations", userID), companionKey,
		`{"ops":[{"op":"currency.add","currency":"coins","amount":25}]}`, "Idempotency-Key", "server-1")
	if r.status != http.StatusOK {
		t.Fatalf("server write: %d %s", r.status, r.body)
	}
	ev := nextEvent(t, events, "save")
	var got struct {
		UserID  int64   `json:"userId"`
		Version int64   `json:"version"`
		Save    meSaved `json:"save"`
	}
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
		t.Fatalf("event data %s: %v", ev.data, err)
	}
	if ev.id != "1" || got.UserID != userID || got.Version != 1 || got.Save.Currencies["coins"] != 125 {
		t.Errorf("event after the server write: id %q %+v, want version 1 with 125 coins", ev.id, got)
	}
	if strings.Contains(ev.data, `"session"`) {
		t.Errorf("event shows the game server's session: %s", ev.data)
	}

	// The companion's own write shows too; keep-alives flow meanwhile.
	if r := e.me(u, "PUT", "/settings/volume", map[string]any{"value": 12}, "Idempotency-Key", "vol"); r.status != http.StatusOK {
		t.Fatalf("companion write: %d %s", r.status, r.body)
	}
	if ev := nextEvent(t, events, "save"); ev.id != "2" {
		t.Errorf("event after the companion write: id %q, want 2", ev.id)
	}
	nextEvent(t, events, "comment")

	// Unlinking ends the stream with an unlinked event.
	if r := e.me(u, "DELETE", "/link", nil); r.status != http.StatusOK {
		t.Fatalf("unlink: %d %s", r.status, r.body)
	}
	nextEvent(t, events, "unlinked")
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-events:
		case <-deadline:
			t.Fatal("the stream stayed open after the unlinked event")
		}
	}
}

func TestEventsFollowAPendingLink(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	const userID = 4741

	// An unlinked user's stream (a browser's, with a ticket) says the link
	// is pending, then sees it complete through the other instance.
	events, resp := e.openEventsAt(e.url+"/v1/me/events?ticket="+e.issueTicket(u), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events of an unlinked user: %d, want 200", resp.StatusCode)
	}
	if ev := nextEvent(t, events, "pending"); ev.data != `{"linked":false}` {
		t.Errorf("pending event data %s, want {\"linked\":false}", ev.data)
	}
	nextEvent(t, events, "comment")
	r := e.me(u, "POST", "/link-codes", nil)
	if r.status != http.StatusCreated {
		t.Fatalf("create link code: %d %s", r.status, r.body)
	}
	code, _ := r.object(t)["code"].(string)
	if r := e.call(e.other, "POST", "/v1/link-codes/"+code+"/redeem", companionKey, map[string]any{"userId": userID}); r.status != http.StatusOK {
		t.Fatalf("redeem link code: %d %s", r.status, r.body)
	}
	if ev := nextEvent(t, events, "linked"); !strings.Contains(ev.data, `"linked":true`) || !strings.Contains(ev.data, fmt.Sprintf(`"userId":%d`, userID)) {
		t.Errorf("linked event data %s, want linked true and userId %d", ev.data, userID)
	}
	if ev := nextEvent(t, events, "save"); ev.id != "0" {
		t.Errorf("first save event id %q, want 0", ev.id)
	}
	w := e.call(e.other, "POST", fmt.Sprintf("/v1/players/%d/mutations", userID), companionKey,
		`{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`, "Idempotency-Key", "pending-1")
	if w.status != http.StatusOK {
		t.Fatalf("server write: %d %s", w.status, w.body)
	}
	if ev := nextEvent(t, events, "save"); ev.id != "1" {
		t.Errorf("save event after the server write: id %q, want 1", ev.id)
	}
	if r := e.call(e.url, "GET", "/v1/me/events", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("anonymous events: %d, want 401", r.status)
	}
}

// withoutKey returns m without one key, for comparing the stable part.
func withoutKey(m map[string]any, key string) map[string]any {
	delete(m, key)
	return m
}
