package roblox_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/authtest"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/store"
)

// authProject is the Firebase project of the Auth emulator (a demo-
// project never reaches a real one).
const authProject = "demo-savesync"

var companionUsers atomic.Int64

// newLinkService is the service with the companion routes, whose link
// codes game servers redeem, over the Firebase Auth emulator.
func newLinkService(t *testing.T) *service {
	t.Helper()
	authtest.Host(t, authProject)
	fa, err := handlers.NewFirebaseAuth(context.Background(), authProject)
	if err != nil {
		t.Fatal(err)
	}
	return newServiceWith(t, func(r gin.IRouter, st *store.Store, keys *handlers.ServerKeys, clock *virtualClock) {
		handlers.NewCompanionAPI(st, firestoretest.GameConfig(t), fa, keys, handlers.CompanionOptions{Now: clock.Now}).Register(r)
	})
}

// companionCode creates a companion account on the Auth emulator and a
// link code for it; it returns the account's uid and the code.
func companionCode(t *testing.T, svc *service) (string, string) {
	t.Helper()
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: authProject})
	if err != nil {
		t.Fatal(err)
	}
	client, err := app.Auth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := client.CreateUser(ctx, (&auth.UserToCreate{}).Email(fmt.Sprintf("roblox-link-%d-%d@example.com", time.Now().UnixNano(), companionUsers.Add(1))).Password("secret-123"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := svc.store.CreateLinkCode(ctx, u.UID)
	if err != nil {
		t.Fatal(err)
	}
	return u.UID, code.Code
}

// redeem calls RedeemLinkCodeAsync for a joined player; it returns ok, the
// error code, its reason and the message for the player.
func (h *harness) redeem(userID int64, code string) (bool, string, string, string) {
	h.t.Helper()
	r := h.do(fmt.Sprintf(`local ok, res = sync:RedeemLinkCodeAsync(__harness.player(%d), %q)
		if ok then return true, "", "", "" end
		return false, res.code, res.details.reason or "", res.playerMessage`, userID, code))
	s := func(v any) string { x, _ := v.(string); return x }
	return r[0] == true, s(r[1]), s(r[2]), s(r[3])
}

func TestRedeemLinkCode(t *testing.T) {
	t.Parallel()
	svc := newLinkService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-link")
	h.startGame("longPoll = false")
	player, other, guesser := uid(2201), uid(2202), uid(2203)
	for _, u := range []int64{player, other, guesser} {
		h.mustJoin(u)
	}
	uidA, code := companionCode(t, svc)

	// Typed as a player might: lower case, with a dash.
	typed := code[:4] + "-" + code[4:]
	if ok, c, _, _ := h.redeem(player, strings.ToLower(typed)); !ok {
		t.Fatalf("redeeming a fresh code = %s, want linked", c)
	}
	if l, ok, err := svc.store.LinkOf(context.Background(), uidA); err != nil || !ok || l.UserID != player {
		t.Errorf("link of the companion account = %+v %v %v, want player %d", l, ok, err, player)
	}
	if ok, c, _, _ := h.redeem(player, code); !ok {
		t.Errorf("the same player redeeming the same code again = %s, want linked (a retry)", c)
	}

	_, expiring := companionCode(t, svc)
	tests := []struct {
		name, code           string
		user                 int64
		wantCode, wantReason string
		wantSent             bool
	}{
		{name: "used by another player", code: code, user: other, wantCode: "NOT_FOUND", wantReason: "LINK_CODE_USED", wantSent: true},
		{name: "unknown", code: "ABCD-EFGH", user: other, wantCode: "NOT_FOUND", wantReason: "LINK_CODE_UNKNOWN", wantSent: true},
		{name: "not a code", code: "hello!", user: other, wantCode: "INVALID_ARGUMENT", wantSent: false},
	}
	for _, tc := range tests {
		sentBefore := len(svc.proxy.exchanges("/v1/link-codes/"))
		ok, c, reason, msg := h.redeem(tc.user, tc.code)
		if ok || c != tc.wantCode || reason != tc.wantReason || msg == "" {
			t.Errorf("%s: redeem = %v %s %s %q, want %s %s and a message for the player", tc.name, ok, c, reason, msg, tc.wantCode, tc.wantReason)
		}
		if sent := len(svc.proxy.exchanges("/v1/link-codes/")) > sentBefore; sent != tc.wantSent {
			t.Errorf("%s: request sent = %v, want %v", tc.name, sent, tc.wantSent)
		}
	}

	// Codes last 10 minutes.
	h.runFor(11 * 60)
	if ok, c, reason, _ := h.redeem(other, expiring); ok || c != "NOT_FOUND" || reason != "LINK_CODE_EXPIRED" {
		t.Errorf("redeeming an expired code = %v %s %s, want NOT_FOUND LINK_CODE_EXPIRED", ok, c, reason)
	}

	// A client guessing codes: after 5 failures the module stops sending.
	for i := 0; i < 5; i++ {
		h.redeem(guesser, fmt.Sprintf("ZZZZZZZ%d", i+2))
	}
	sentBefore := len(svc.proxy.exchanges("/v1/link-codes/"))
	if ok, c, _, _ := h.redeem(guesser, "ZZZZZZZZ"); ok || c != "RATE_LIMITED" {
		t.Errorf("sixth wrong code = %v %s, want RATE_LIMITED", ok, c)
	}
	if n := len(svc.proxy.exchanges("/v1/link-codes/")) - sentBefore; n != 0 {
		t.Errorf("the sixth wrong code sent %d requests, want none", n)
	}
}
