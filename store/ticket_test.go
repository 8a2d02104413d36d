package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

func TestEventTicketLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, clock := newLinkStore(t)

	tk, err := st.CreateEventTicket(ctx, "uid-a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tk.ExpiresAt.Sub(clock.Now()), store.EventTicketTTL; got != want {
		t.Errorf("ticket lasts %s, want %s", got, want)
	}
	uid, err := st.RedeemEventTicket(ctx, tk.Ticket)
	if err != nil || uid != "uid-a" {
		t.Fatalf("RedeemEventTicket = %q, %v; want uid-a", uid, err)
	}
	_, err = st.RedeemEventTicket(ctx, tk.Ticket)
	wantReason(t, err, save.CodeUnauthenticated, store.ReasonTicketUsed)

	old, err := st.CreateEventTicket(ctx, "uid-a")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(store.EventTicketTTL)
	_, err = st.RedeemEventTicket(ctx, old.Ticket)
	wantReason(t, err, save.CodeUnauthenticated, store.ReasonTicketExpired)

	for name, bad := range map[string]string{
		"empty":     "",
		"garbage":   "not-a-ticket",
		"short":     "evt_AAAA",
		"unknown":   "evt_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"id token":  "eyJhbGciOiJSUzI1NiJ9.e30.sig",
		"tampered":  tk.Ticket[:len(tk.Ticket)-1] + "x",
		"with path": "evt_../../links/uid-a",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := st.RedeemEventTicket(ctx, bad)
			wantReason(t, err, save.CodeUnauthenticated, store.ReasonTicketInvalid)
		})
	}
	if _, err := st.CreateEventTicket(ctx, ""); err == nil {
		t.Error("CreateEventTicket without a uid succeeded")
	}
}

func TestEventTicketSingleUseUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newLinkStore(t)
	tk, err := st.CreateEventTicket(ctx, "uid-b")
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = st.RedeemEventTicket(ctx, tk.Ticket)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		wantReason(t, err, save.CodeUnauthenticated, store.ReasonTicketUsed)
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent redemptions succeeded, want exactly 1", won, n)
	}
}
