package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// newLinkStore returns a store over a fresh emulator project and its clock.
func newLinkStore(t *testing.T) (*store.Store, *firestoretest.Clock) {
	t.Helper()
	clock := firestoretest.NewClock(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	st, _ := firestoretest.Store(t, store.Options{Now: clock.Now})
	return st, clock
}

// mustLinkCode issues a link code for uid.
func mustLinkCode(t *testing.T, st *store.Store, uid string) string {
	t.Helper()
	lc, err := st.CreateLinkCode(context.Background(), uid)
	if err != nil {
		t.Fatalf("CreateLinkCode(%s): %v", uid, err)
	}
	return lc.Code
}

// wantReason checks an error's code and details.reason.
func wantReason(t *testing.T, err error, code save.Code, reason string) {
	t.Helper()
	e, ok := save.AsError(err)
	if !ok {
		t.Fatalf("error = %v, want %s/%s", err, code, reason)
	}
	if e.Code != code || e.Details["reason"] != reason {
		t.Fatalf("error = %s %v, want %s with reason %s", e.Code, e.Details, code, reason)
	}
}

func TestLinkLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, clock := newLinkStore(t)

	lc, err := st.CreateLinkCode(ctx, "uid-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(lc.Code) != store.LinkCodeLength || strings.Trim(lc.Code, store.LinkCodeAlphabet) != "" {
		t.Errorf("code %q: want %d characters from %s", lc.Code, store.LinkCodeLength, store.LinkCodeAlphabet)
	}
	if want := clock.Now().Add(store.LinkCodeTTL); !lc.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", lc.ExpiresAt, want)
	}

	// The player was never seen: redeeming creates it at version 0.
	typed := strings.ToLower(lc.Code[:4]) + "-" + lc.Code[4:]
	link, err := st.RedeemLinkCode(ctx, typed, 501)
	if err != nil {
		t.Fatalf("RedeemLinkCode: %v", err)
	}
	want := store.Link{UID: "uid-a", UserID: 501, LinkedAt: clock.Now()}
	if diff := cmp.Diff(want, link); diff != "" {
		t.Errorf("link (-want +got):\n%s", diff)
	}
	got, ok, err := st.LinkOf(ctx, "uid-a")
	if err != nil || !ok {
		t.Fatalf("LinkOf = %v, %v, %v", got, ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LinkOf (-want +got):\n%s", diff)
	}
	p, err := st.GetPlayer(ctx, 501)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Linked || p.Version != 0 {
		t.Errorf("player after link: linked %v version %d, want linked at version 0", p.Linked, p.Version)
	}

	// A game server retrying the redemption gets the same link.
	again, err := st.RedeemLinkCode(ctx, lc.Code, 501)
	if err != nil {
		t.Fatalf("RedeemLinkCode again: %v", err)
	}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("repeated redemption (-want +got):\n%s", diff)
	}
	// Codes are single-use for anyone else.
	_, err = st.RedeemLinkCode(ctx, lc.Code, 502)
	wantReason(t, err, save.CodeNotFound, store.ReasonCodeUsed)
	// A linked user gets no new code.
	_, err = st.CreateLinkCode(ctx, "uid-a")
	wantReason(t, err, save.CodePermissionDenied, store.ReasonAlreadyLinked)

	// Mutations leave the owner in place.
	if _, err := st.ApplyMutation(ctx, store.MutationRequest{UserID: 501, Actor: save.Actor{Kind: save.ActorCompanion, ID: "uid-a"}, IdempotencyKey: "k1",
		Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(5)}}}}); err != nil {
		t.Fatal(err)
	}
	if p, _ := st.GetPlayer(ctx, 501); !p.Linked || p.Version != 1 {
		t.Errorf("player after a mutation: linked %v version %d, want linked at version 1", p.Linked, p.Version)
	}

	removed, ok, err := st.Unlink(ctx, "uid-a")
	if err != nil || !ok || removed.UserID != 501 {
		t.Fatalf("Unlink = %v, %v, %v; want the link to 501", removed, ok, err)
	}
	if _, ok, _ := st.LinkOf(ctx, "uid-a"); ok {
		t.Error("LinkOf after unlink: still linked")
	}
	if p, _ := st.GetPlayer(ctx, 501); p.Linked || p.Version != 1 {
		t.Errorf("player after unlink: linked %v version %d, want unlinked at version 1", p.Linked, p.Version)
	}
	if _, ok, err := st.Unlink(ctx, "uid-a"); err != nil || ok {
		t.Errorf("second Unlink = %v, %v; want nothing to do", ok, err)
	}

	// After unlinking, the player can link another account.
	if _, err := st.RedeemLinkCode(ctx, mustLinkCode(t, st, "uid-b"), 501); err != nil {
		t.Fatalf("relink to another account: %v", err)
	}
}

func TestRedeemLinkCodeRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, clock := newLinkStore(t)

	expiring := mustLinkCode(t, st, "uid-late")
	clock.Advance(store.LinkCodeTTL)
	// uid-owner owns player 601; uid-other is linked to player 602 and
	// holds a second code from before it linked.
	if _, err := st.RedeemLinkCode(ctx, mustLinkCode(t, st, "uid-owner"), 601); err != nil {
		t.Fatal(err)
	}
	otherCode := mustLinkCode(t, st, "uid-other")
	secondOtherCode := mustLinkCode(t, st, "uid-other")
	if _, err := st.RedeemLinkCode(ctx, otherCode, 602); err != nil {
		t.Fatal(err)
	}
	fresh2 := mustLinkCode(t, st, "uid-fresh2")

	tests := []struct {
		name   string
		code   string
		userID int64
		want   save.Code
		reason string
	}{
		{"unknown code", "ABCDEFGH", 603, save.CodeNotFound, store.ReasonCodeUnknown},
		{"expired code", expiring, 603, save.CodeNotFound, store.ReasonCodeExpired},
		{"player owned by another account", fresh2, 601, save.CodePermissionDenied, store.ReasonPlayerLinked},
		{"account linked to another player", secondOtherCode, 604, save.CodePermissionDenied, store.ReasonAlreadyLinked},
		{"malformed code", "ABC", 603, save.CodeInvalidArgument, ""},
		{"ambiguous characters", "ABCDEF01", 603, save.CodeInvalidArgument, ""},
		{"bad user id", fresh2, 0, save.CodeInvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.RedeemLinkCode(ctx, tt.code, tt.userID)
			if got := save.ErrorCode(err); got != tt.want {
				t.Fatalf("code = %s (%v), want %s", got, err, tt.want)
			}
			if tt.reason != "" {
				wantReason(t, err, tt.want, tt.reason)
			}
		})
	}
	// None of the refusals changed anything.
	if l, _, _ := st.LinkOf(ctx, "uid-fresh2"); l.UserID != 0 {
		t.Errorf("uid-fresh2 linked to %d after refusals", l.UserID)
	}
	if l, _, _ := st.LinkOf(ctx, "uid-other"); l.UserID != 602 {
		t.Errorf("uid-other linked to %d, want 602", l.UserID)
	}
}

func TestRedeemLinkCodeConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 6

	tests := []struct {
		name   string
		codes  func(t *testing.T, st *store.Store) []string // one per redemption
		users  func(i int) int64
		reason string
	}{
		{
			name: "one code, many players",
			codes: func(t *testing.T, st *store.Store) []string {
				c := mustLinkCode(t, st, "uid-shared")
				out := make([]string, n)
				for i := range out {
					out[i] = c
				}
				return out
			},
			users:  func(i int) int64 { return int64(700 + i) },
			reason: store.ReasonCodeUsed,
		},
		{
			name: "many accounts, one player",
			codes: func(t *testing.T, st *store.Store) []string {
				out := make([]string, n)
				for i := range out {
					out[i] = mustLinkCode(t, st, fmt.Sprintf("uid-%d", i))
				}
				return out
			},
			users:  func(int) int64 { return 800 },
			reason: store.ReasonPlayerLinked,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := newLinkStore(t)
			codes := tt.codes(t, st)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = st.RedeemLinkCode(ctx, codes[i], tt.users(i))
				}()
			}
			wg.Wait()
			wins := 0
			for i, err := range errs {
				if err == nil {
					wins++
					continue
				}
				e, ok := save.AsError(err)
				if !ok || e.Details["reason"] != tt.reason {
					t.Errorf("redemption %d: %v, want success or reason %s", i, err, tt.reason)
				}
			}
			if wins != 1 {
				t.Errorf("%d redemptions succeeded, want exactly 1", wins)
			}
		})
	}
}

func TestNormalizeLinkCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"ABCD2345", "ABCD2345", true},
		{"abcd-2345", "ABCD2345", true},
		{" ab cd 23 45 ", "ABCD2345", true},
		{"ABCD234", "", false},
		{"ABCD23456", "", false},
		{"ABCDO234", "", false},
		{"ABCD/234", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := store.NormalizeLinkCode(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("NormalizeLinkCode(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestCreateLinkCodeKeepsTheNewestLive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, clock := newLinkStore(t)
	var codes []string
	for range store.MaxLiveLinkCodes + 2 {
		codes = append(codes, mustLinkCode(t, st, "uid-many"))
		clock.Advance(time.Second)
	}
	kept := mustLinkCode(t, st, "uid-other")
	var live []string
	for i, code := range codes {
		_, err := st.RedeemLinkCode(ctx, code, 5101)
		switch e, _ := save.AsError(err); {
		case err == nil:
			live = append(live, fmt.Sprint(i))
		case e == nil || e.Details["reason"] != store.ReasonCodeUnknown:
			t.Errorf("code %d: %v, want it redeemed or revoked (LINK_CODE_UNKNOWN)", i, err)
		}
	}
	if diff := cmp.Diff([]string{"2", "3", "4", "5", "6"}, live); diff != "" {
		t.Errorf("codes still live, by issue order (-want +got):\n%s", diff)
	}
	if _, err := st.RedeemLinkCode(ctx, kept, 5102); err != nil {
		t.Errorf("another account's code: %v, want untouched by the first's revocations", err)
	}

	// Expired codes are deleted by the next issue, and do not count.
	st2, clock2 := newLinkStore(t)
	old := mustLinkCode(t, st2, "uid-late")
	clock2.Advance(store.LinkCodeTTL)
	fresh := mustLinkCode(t, st2, "uid-late")
	_, err := st2.RedeemLinkCode(ctx, old, 5103)
	wantReason(t, err, save.CodeNotFound, store.ReasonCodeUnknown)
	if _, err := st2.RedeemLinkCode(ctx, fresh, 5103); err != nil {
		t.Errorf("the fresh code: %v", err)
	}
}
