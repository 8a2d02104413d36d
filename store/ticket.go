package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// EventTicketTTL is how long an event-stream ticket can be redeemed after
// it is issued: long enough for a page to open its stream, short enough
// that a ticket seen in a URL is soon worthless.
const EventTicketTTL = 60 * time.Second

// eventTicketBytes is the randomness of a ticket (256 bits).
const eventTicketBytes = 32

// eventTicketPrefix starts every ticket, so a ticket is recognisable (and
// not mistaken for an ID token) wherever it turns up.
const eventTicketPrefix = "evt_"

// Reasons in the details of refused event-stream tickets (UNAUTHENTICATED).
const (
	// ReasonTicketInvalid: the ticket is malformed or was never issued.
	ReasonTicketInvalid = "TICKET_INVALID"
	// ReasonTicketExpired: the ticket is older than EventTicketTTL.
	ReasonTicketExpired = "TICKET_EXPIRED"
	// ReasonTicketUsed: the ticket opened a stream already (tickets are single-use).
	ReasonTicketUsed = "TICKET_USED"
)

// EventTicket is a newly issued event-stream ticket.
type EventTicket struct {
	Ticket    string
	ExpiresAt time.Time
}

// CreateEventTicket issues a single-use ticket that opens uid's event
// stream within EventTicketTTL, for clients (browsers' EventSource) that
// cannot send an Authorization header. Only the ticket's SHA-256 is
// stored, in eventTickets/{hash}, with an expireAt for a Firestore TTL
// policy to delete it; the ticket itself exists only in the answer.
// Errors: INVALID_ARGUMENT (empty uid or one with '/').
func (s *Store) CreateEventTicket(ctx context.Context, uid string) (_ EventTicket, err error) {
	defer wrapOp(&err, "store.CreateEventTicket")
	if uid == "" || strings.Contains(uid, "/") {
		return EventTicket{}, save.Errorf(save.CodeInvalidArgument, "an event ticket needs a signed-in user with a Firebase uid without '/'")
	}
	raw := make([]byte, eventTicketBytes)
	if _, err := rand.Read(raw); err != nil {
		return EventTicket{}, err
	}
	ticket := eventTicketPrefix + base64.RawURLEncoding.EncodeToString(raw)
	now := s.now().UTC().Truncate(time.Microsecond)
	t := EventTicket{Ticket: ticket, ExpiresAt: now.Add(EventTicketTTL)}
	_, err = s.fs.Doc(eventTicketPath(ticket)).Create(ctx, map[string]any{
		"uid":       uid,
		"createdAt": now,
		"expiresAt": t.ExpiresAt,
		// expireAt is the field of the TTL policy; the ticket is refused
		// from expiresAt on, whenever Firestore gets round to deleting it.
		"expireAt": t.ExpiresAt.Add(time.Hour),
	})
	if err != nil {
		return EventTicket{}, err
	}
	return t, nil
}

// RedeemEventTicket uses up a ticket and returns the uid it was issued to.
// The ticket is marked used with a precondition on the document's update
// time, so of concurrent redemptions on any number of instances exactly
// one succeeds.
// Errors: UNAUTHENTICATED with details.reason TICKET_INVALID (malformed or
// unknown), TICKET_EXPIRED or TICKET_USED; UNAVAILABLE.
func (s *Store) RedeemEventTicket(ctx context.Context, ticket string) (_ string, err error) {
	defer wrapOp(&err, "store.RedeemEventTicket")
	if !wellFormedTicket(ticket) {
		return "", ticketError(ReasonTicketInvalid, "this is not an event ticket: get one with POST /v1/me/events/tickets")
	}
	ref := s.fs.Doc(eventTicketPath(ticket))
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		return "", ticketError(ReasonTicketInvalid, "no such event ticket: get one with POST /v1/me/events/tickets")
	}
	if err != nil {
		return "", err
	}
	data := snap.Data()
	uid, _ := data["uid"].(string)
	if uid == "" {
		return "", ticketError(ReasonTicketInvalid, "no such event ticket: get one with POST /v1/me/events/tickets")
	}
	if _, used := data["usedAt"]; used {
		return "", ticketError(ReasonTicketUsed, "this event ticket opened a stream already (tickets are single-use): get a new one with POST /v1/me/events/tickets")
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	if exp, _ := data["expiresAt"].(time.Time); !now.Before(exp) {
		return "", ticketError(ReasonTicketExpired, "this event ticket has expired (tickets last %s): get a new one with POST /v1/me/events/tickets", EventTicketTTL)
	}
	_, err = ref.Update(ctx, []firestore.Update{{Path: "usedAt", Value: now}}, firestore.LastUpdateTime(snap.UpdateTime))
	if c := status.Code(err); c == codes.FailedPrecondition || c == codes.NotFound {
		return "", ticketError(ReasonTicketUsed, "this event ticket opened a stream already (tickets are single-use): get a new one with POST /v1/me/events/tickets")
	}
	if err != nil {
		return "", err
	}
	return uid, nil
}

// wellFormedTicket reports whether t has the shape CreateEventTicket gives.
func wellFormedTicket(t string) bool {
	rest, ok := strings.CutPrefix(t, eventTicketPrefix)
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil && len(raw) == eventTicketBytes
}

func ticketError(reason, format string, args ...any) error {
	return save.Errorf(save.CodeUnauthenticated, format, args...).WithDetail("reason", reason)
}
