package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// Server-Sent Events of GET /v1/me/events:
//
//	event: save      the save and its version: first on connect, then after
//	                 every committed change by any writer (game server,
//	                 companion, support), also one served by another instance
//	event: pending   the account has no linked player yet (first event,
//	                 data {"linked":false}); the stream waits for the link
//	event: linked    a link code was redeemed (data {"linked":true,
//	                 "userId":…,"linkedAt":…}); save events follow
//	event: unlinked  the account was unlinked; the stream ends
//	event: error     the save cannot be read (body as in error responses); the stream ends
//	: keep-alive     a comment every Heartbeat
//
// Each save event's id is the version, so a reconnecting EventSource sends
// Last-Event-ID; the first event after a reconnect is the current save anyway.
const (
	eventSave     = "save"
	eventUnlinked = "unlinked"
	eventPending  = "pending"
	eventLinked   = "linked"
	eventError    = "error"
)

// sseRetry is the reconnect delay suggested to EventSource, in milliseconds.
const sseRetry = 2000

// errStreamDone ends a watch whose stream has nothing more to send.
var errStreamDone = errors.New("handlers: event stream done")

// ticketQuery is the query parameter of GET /v1/me/events that carries an
// event-stream ticket instead of the Authorization header.
const ticketQuery = "ticket"

// eventTicketView is a new event-stream ticket and how long it lasts.
type eventTicketView struct {
	Ticket           string    `json:"ticket"`
	ExpiresAt        time.Time `json:"expiresAt"`
	ExpiresInSeconds int64     `json:"expiresInSeconds"`
}

// createEventTicket issues a single-use ticket that opens the signed-in
// user's event stream within store.EventTicketTTL, for browsers, whose
// EventSource cannot send the ID token in a header. Any signed-in user may
// ask; the stream applies its own checks (a linked player) when opened.
func (a *CompanionAPI) createEventTicket(c *gin.Context) error {
	u, _ := FirebaseUserFrom(c)
	if wait, ok := a.tickets.allow(u.UID); !ok {
		return refusal(save.CodeRateLimited, limitEventTickets, wait, "too many event tickets asked for by this account; open the stream with the last one")
	}
	t, err := a.store.CreateEventTicket(c.Request.Context(), u.UID)
	if err != nil {
		return err
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, eventTicketView{Ticket: t.Ticket, ExpiresAt: t.ExpiresAt, ExpiresInSeconds: int64(store.EventTicketTTL / time.Second)})
	return nil
}

// requireStreamUser admits the user of an event stream: by the ticket in
// ?ticket= when there is one (used up by this request, whatever follows),
// otherwise by the ID token in the Authorization header as RequireUser
// does. A ticket's account is checked again (disabled, deleted) since the
// ticket was issued.
func (a *CompanionAPI) requireStreamUser(c *gin.Context) {
	ticket, ok := c.GetQuery(ticketQuery)
	if !ok {
		a.auth.RequireUser()(c)
		return
	}
	uid, err := a.store.RedeemEventTicket(c.Request.Context(), ticket)
	if err != nil {
		writeError(c, err)
		return
	}
	user, err := a.auth.User(c.Request.Context(), uid)
	if err != nil {
		writeError(c, err)
		return
	}
	admitUser(c, user)
}

// streamEvents streams the linked player's save as it changes.
func (a *CompanionAPI) streamEvents(c *gin.Context) error {
	u, _ := FirebaseUserFrom(c)
	link, linked, err := a.store.LinkOf(c.Request.Context(), u.UID)
	if err != nil {
		return err
	}
	if !a.streams.acquire(u.UID) {
		return refusal(save.CodeResourceExhausted, limitEventStreams, streamRetryAfter,
			"this account has %d event streams open on this server already; close one (one per browser tab is enough)", a.opts.MaxStreams)
	}
	defer a.streams.release(u.UID)
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.opts.MaxStream)
	defer cancel()

	sse := &sseWriter{c: c}
	if !linked {
		var ok bool
		if link, ok, err = a.awaitLink(ctx, c, sse, u.UID); err != nil || !ok {
			return err
		}
	}
	userID := link.UserID

	changes := make(chan store.PlayerChange)
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- a.store.WatchPlayer(ctx, userID, a.opts.Watch, func(pc store.PlayerChange) error {
			select {
			case changes <- pc:
				return nil
			case <-ctx.Done():
				return errStreamDone
			}
		})
	}()

	heartbeat := time.NewTicker(a.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchErr:
			if err == nil || errors.Is(err, errStreamDone) {
				return nil
			}
			if !sse.started {
				return err
			}
			e := toDomainError(c.Request.Context(), err)
			_ = sse.event(eventError, "", errorBody(e))
			return nil
		case pc := <-changes:
			if pc.OwnerUID != u.UID {
				_ = sse.event(eventUnlinked, "", gin.H{"userId": userID})
				return nil
			}
			pc.Player.Session = nil
			if err := sse.event(eventSave, strconv.FormatInt(pc.Player.Version, 10), pc.Player); err != nil {
				logging.FromContext(c.Request.Context()).Debug("event stream closed", "error", err.Error())
				return nil
			}
		case <-heartbeat.C:
			if err := sse.comment("keep-alive"); err != nil {
				return nil
			}
		}
	}
}

// awaitLink tells an unlinked user's stream that the link is pending and
// waits, with keep-alives, until one of the user's link codes is redeemed
// (it sends the linked event and reports the link) or the stream ends (ok
// is false).
func (a *CompanionAPI) awaitLink(ctx context.Context, c *gin.Context, sse *sseWriter, uid string) (link store.Link, ok bool, err error) {
	if err := sse.event(eventPending, "", linkView{}); err != nil {
		return store.Link{}, false, nil
	}
	type result struct {
		link store.Link
		ok   bool
		err  error
	}
	done := make(chan result, 1)
	waitCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		l, ok, err := a.store.WaitForLink(waitCtx, uid, a.opts.Watch)
		done <- result{l, ok, err}
	}()
	heartbeat := time.NewTicker(a.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return store.Link{}, false, nil
		case r := <-done:
			if r.err != nil {
				_ = sse.event(eventError, "", errorBody(toDomainError(c.Request.Context(), r.err)))
				return store.Link{}, false, nil
			}
			if !r.ok {
				return store.Link{}, false, nil
			}
			t := r.link.LinkedAt
			if err := sse.event(eventLinked, "", linkView{Linked: true, UserID: r.link.UserID, LinkedAt: &t}); err != nil {
				return store.Link{}, false, nil
			}
			return r.link, true, nil
		case <-heartbeat.C:
			if err := sse.comment("keep-alive"); err != nil {
				return store.Link{}, false, nil
			}
		}
	}
}

// sseWriter writes Server-Sent Events to a response, sending the headers
// with the first event so that a failure before it is a normal JSON error.
type sseWriter struct {
	c       *gin.Context
	started bool
}

// start sends the stream's headers and the reconnect delay.
func (w *sseWriter) start() error {
	if w.started {
		return nil
	}
	w.started = true
	h := w.c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.c.Writer.WriteHeader(http.StatusOK)
	_, err := fmt.Fprintf(w.c.Writer, "retry: %d\n\n", sseRetry)
	return w.flush(err)
}

// event sends one event whose data is v as one line of JSON.
func (w *sseWriter) event(name, id string, v any) error {
	if err := w.start(); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg := "event: " + name + "\n"
	if id != "" {
		msg += "id: " + id + "\n"
	}
	msg += "data: " + string(data) + "\n\n"
	_, err = w.c.Writer.WriteString(msg)
	return w.flush(err)
}

// comment sends a comment line, which clients ignore: a keep-alive.
func (w *sseWriter) comment(text string) error {
	if err := w.start(); err != nil {
		return err
	}
	_, err := w.c.Writer.WriteString(": " + text + "\n\n")
	return w.flush(err)
}

func (w *sseWriter) flush(err error) error {
	if err != nil {
		return err
	}
	w.c.Writer.Flush()
	return nil
}
