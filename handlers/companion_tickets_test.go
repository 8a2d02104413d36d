package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/auth"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/store"
)

// issueTicket asks for an event ticket as u and returns it.
func (e *companionEnv) issueTicket(u *fbUser) string {
	e.t.Helper()
	r := e.me(u, "POST", "/events/tickets", nil)
	if r.status != http.StatusCreated {
		e.t.Fatalf("POST /v1/me/events/tickets: %d %s", r.status, r.body)
	}
	obj := r.object(e.t)
	ticket, _ := obj["ticket"].(string)
	if ticket == "" || obj["expiresInSeconds"] != float64(60) || obj["expiresAt"] == nil {
		e.t.Fatalf("ticket answer %s, want a ticket, expiresAt and expiresInSeconds 60", r.body)
	}
	return ticket
}

// eventsWithTicket is the stream's path with a ticket in the query.
func eventsWithTicket(ticket string) string {
	return "/v1/me/events?ticket=" + url.QueryEscape(ticket)
}

func TestEventTicketOpensTheStreamOnce(t *testing.T) {
	t.Parallel()
	clock := firestoretest.NewClock(time.Now())
	e := newCompanionEnvWith(t, store.Options{Now: clock.Now})
	u := signUp(t)
	const userID = 4711
	e.link(u, userID)

	// Issued by one instance, redeemed by the other, without a header.
	ticket := e.issueTicket(u)
	events, resp := e.openEventsAt(e.other+eventsWithTicket(ticket), "")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("events with a ticket: %d %q, want 200 text/event-stream", resp.StatusCode, ct)
	}
	if first := nextEvent(t, events, "save"); first.id != "0" {
		t.Errorf("first event id %q, want 0", first.id)
	}
	r := e.call(e.url, "POST", fmt.Sprintf("/v1/players/%d/mutations", userID), companionKey,
		`{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`, "Idempotency-Key", "ticket-1")
	if r.status != http.StatusOK {
		t.Fatalf("server write: %d %s", r.status, r.body)
	}
	if ev := nextEvent(t, events, "save"); ev.id != "1" || !strings.Contains(ev.data, `"coins":105`) {
		t.Errorf("event after the server write: id %q data %s, want version 1 with 105 coins", ev.id, ev.data)
	}

	// The header form still works beside it.
	if _, resp := e.openEvents(e.url, u); resp.StatusCode != http.StatusOK {
		t.Errorf("events with the ID token: %d, want 200", resp.StatusCode)
	}

	expired := e.issueTicket(u)
	clock.Advance(store.EventTicketTTL)
	tests := []struct {
		name, path, reason string
	}{
		{"used again", eventsWithTicket(ticket), store.ReasonTicketUsed},
		{"expired", eventsWithTicket(expired), store.ReasonTicketExpired},
		{"garbage", eventsWithTicket("garbage"), store.ReasonTicketInvalid},
		{"empty", eventsWithTicket(""), store.ReasonTicketInvalid},
		{"an ID token as ticket", eventsWithTicket(u.IDToken), store.ReasonTicketInvalid},
		{"forged", eventsWithTicket("evt_" + strings.Repeat("A", 43)), store.ReasonTicketInvalid},
		{"tampered", eventsWithTicket(ticket[:len(ticket)-2] + "xy"), store.ReasonTicketInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call(e.url, "GET", tt.path, "", nil)
			if code, reason := r.failure(t); r.status != http.StatusUnauthorized || code != "UNAUTHENTICATED" || reason != tt.reason {
				t.Errorf("GET %s: %d %s/%s, want 401 UNAUTHENTICATED/%s", tt.path, r.status, code, reason, tt.reason)
			}
		})
	}

	// No ticket or token reaches the request log.
	logs := e.logs.String()
	for _, secret := range []string{ticket, expired, u.IDToken} {
		if strings.Contains(logs, secret) || strings.Contains(logs, url.QueryEscape(secret)) {
			t.Errorf("a ticket or token reached the logs:\n%s", logs)
		}
	}
	if !strings.Contains(logs, "/v1/me/events?ticket=REDACTED") {
		t.Errorf("the stream's request line is missing or not redacted:\n%s", logs)
	}
}

func TestEventTicketIsBoundToItsUser(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	alice, bob := signUp(t), signUp(t)
	e.link(alice, 4721)
	e.link(bob, 4722)

	// Bob's ticket opens Bob's stream, never Alice's, whoever sends it.
	events, resp := e.openEventsAt(e.url+eventsWithTicket(e.issueTicket(bob)), alice.IDToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %d, want 200", resp.StatusCode)
	}
	if ev := nextEvent(t, events, "save"); !strings.Contains(ev.data, `"userId":4722`) {
		t.Errorf("a ticket of Bob's opened %s, want Bob's player 4722", ev.data)
	}
}

func TestEventTicketChecksTheAccountAgain(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	admin := authAdmin(t)
	ctx := context.Background()
	disabled, deleted := signUp(t), signUp(t)
	e.link(disabled, 4732)

	off := e.issueTicket(disabled)
	gone := e.issueTicket(deleted)
	if err := admin.DeleteUser(ctx, deleted.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateUser(ctx, disabled.UID, (&auth.UserToUpdate{}).Disabled(true)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ticket     string
		status           int
		code, wantReason string
	}{
		{"deleted since", gone, http.StatusUnauthorized, "UNAUTHENTICATED", "USER_NOT_FOUND"},
		{"disabled since", off, http.StatusUnauthorized, "UNAUTHENTICATED", "USER_DISABLED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call(e.url, "GET", eventsWithTicket(tt.ticket), "", nil)
			if code, reason := r.failure(t); r.status != tt.status || code != tt.code || reason != tt.wantReason {
				t.Errorf("events: %d %s/%s, want %d %s/%s", r.status, code, reason, tt.status, tt.code, tt.wantReason)
			}
		})
	}
	if r := e.call(e.url, "POST", "/v1/me/events/tickets", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("a ticket without signing in: %d, want 401", r.status)
	}
}

func TestEventTicketsAreRateLimited(t *testing.T) {
	t.Parallel()
	clock := firestoretest.NewClock(time.Now())
	e := newCompanionEnv(t, func(o *handlers.CompanionOptions) {
		o.EventTicketIssue = handlers.RateLimit{Burst: 2, Every: 2 * time.Second}
		o.Now = clock.Now
	})
	u, other := signUp(t), signUp(t)
	e.issueTicket(u)
	e.issueTicket(u)
	r := e.me(u, "POST", "/events/tickets", nil)
	if code, _ := r.failure(t); r.status != http.StatusTooManyRequests || code != "RATE_LIMITED" || r.header.Get("Retry-After") == "" {
		t.Fatalf("third ticket: %d %s (Retry-After %q), want 429 RATE_LIMITED with Retry-After", r.status, code, r.header.Get("Retry-After"))
	}
	if !strings.Contains(string(r.body), "EVENT_TICKETS_PER_ACCOUNT") {
		t.Errorf("refusal %s does not name the limit", r.body)
	}
	e.issueTicket(other) // per account
	clock.Advance(2 * time.Second)
	e.issueTicket(u)
}
