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
//	event: unlinked  the account was unlinked; the stream ends
//	event: error     the save cannot be read (body as in error responses); the stream ends
//	: keep-alive     a comment every Heartbeat
//
// Each save event's id is the version, so a reconnecting EventSource sends
// Last-Event-ID; the first event after a reconnect is the current save anyway.
const (
	eventSave     = "save"
	eventUnlinked = "unlinked"
	eventError    = "error"
)

// sseRetry is the reconnect delay suggested to EventSource, in milliseconds.
const sseRetry = 2000

// errStreamDone ends a watch whose stream has nothing more to send.
var errStreamDone = errors.New("handlers: event stream done")

// streamEvents streams the linked player's save as it changes.
func (a *CompanionAPI) streamEvents(c *gin.Context) error {
	u, _ := FirebaseUserFrom(c)
	userID := linkedUser(c)
	if !a.streams.acquire(u.UID) {
		return refusal(save.CodeResourceExhausted, limitEventStreams, streamRetryAfter,
			"this account has %d event streams open on this server already; close one (one per browser tab is enough)", a.opts.MaxStreams)
	}
	defer a.streams.release(u.UID)
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.opts.MaxStream)
	defer cancel()

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

	sse := &sseWriter{c: c}
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
