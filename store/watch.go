package store

import (
	"context"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"

	"github.com/savesync/savesync/save"
)

// DefaultPollInterval is how often WatchPlayer reads the player when the
// database cannot push changes.
const DefaultPollInterval = 500 * time.Millisecond

// WatchOptions tune WatchPlayer. Zero values take the defaults.
type WatchOptions struct {
	// PollInterval is the read interval when polling (DefaultPollInterval).
	PollInterval time.Duration
	// Poll skips the snapshot listener and reads the document on an interval.
	Poll bool
}

// PlayerChange is a player's document as a watcher sees it: the save
// (migrated in memory) with its version, and the linked companion user.
type PlayerChange struct {
	Player   PlayerView
	OwnerUID string
}

// WatchPlayer calls fn with the player's current state and then again each
// time its version or owner changes, whoever wrote it and through whichever
// instance of the service, until ctx ends (it returns nil) or fn returns an
// error (it returns that error).
//
// It listens to the player's document (Firestore's Listen, pushed by the
// database); if listening fails, for example on a database that does not
// implement it, it reads the document every PollInterval instead.
// Errors: those of fn, SAVE_MIGRATION_FAILED, SCHEMA_TOO_NEW.
func (s *Store) WatchPlayer(ctx context.Context, userID int64, opts WatchOptions, fn func(PlayerChange) error) error {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	w := &playerWatch{s: s, userID: userID, fn: fn}
	if !opts.Poll {
		err := w.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if w.final {
			return err
		}
	}
	err := w.poll(ctx, opts.PollInterval)
	if ctx.Err() != nil && !w.final {
		return nil
	}
	return err
}

// playerWatch is one WatchPlayer call: what it last reported, so each
// change is reported once whichever way it was noticed.
type playerWatch struct {
	s      *Store
	userID int64
	fn     func(PlayerChange) error
	sent   bool
	last   watchKey
	// final is set when the error returned is the watch's answer (from fn
	// or from the save itself), not a reason to fall back to polling.
	final bool
}

// watchKey is what makes a change worth reporting.
type watchKey struct {
	exists  bool
	version int64
	owner   string
}

// listen follows the document's snapshots until ctx ends or an error.
func (w *playerWatch) listen(ctx context.Context) error {
	it := w.s.fs.Doc(playerPath(w.userID)).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			return err
		}
		p, err := w.s.playerFromSnapshot(w.userID, snap)
		if err != nil {
			return err
		}
		if err := w.report(p); err != nil {
			return err
		}
	}
}

// poll reads the document every interval until ctx ends or an error.
func (w *playerWatch) poll(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p, err := w.s.readPlayer(ctx, w.userID)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := w.report(p); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// report calls fn when p differs from what was last reported.
func (w *playerWatch) report(p Player) error {
	key := watchKey{exists: p.Exists, version: p.Version, owner: p.OwnerUID}
	if w.sent && key == w.last {
		return nil
	}
	st, err := w.s.currentState(p)
	if err != nil {
		w.final = true
		return err
	}
	w.sent, w.last = true, key
	if err := w.fn(PlayerChange{Player: w.s.view(p, st), OwnerUID: p.OwnerUID}); err != nil {
		w.final = true
		return err
	}
	return nil
}

// playerFromSnapshot decodes a listener's snapshot of a player document.
func (s *Store) playerFromSnapshot(userID int64, snap *firestore.DocumentSnapshot) (Player, error) {
	if snap == nil || !snap.Exists() {
		return s.decodePlayer(userID, nil), nil
	}
	fields, err := encodeFields(snap.Data())
	if err != nil {
		return Player{}, err
	}
	return s.decodePlayer(userID, &firestorepb.Document{Fields: fields}), nil
}

// WaitForLink returns uid's link as soon as there is one: at once when uid
// is linked already, otherwise when a game server redeems one of uid's
// link codes, through whichever instance of the service. It listens to
// links/{uid} and falls back to reading it every PollInterval, as
// WatchPlayer does. ok is false when ctx ends first.
func (s *Store) WaitForLink(ctx context.Context, uid string, opts WatchOptions) (link Link, ok bool, err error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if uid == "" || strings.Contains(uid, "/") {
		return Link{}, false, save.Errorf(save.CodeInvalidArgument, "waiting for a link needs a signed-in user with a Firebase uid without '/'")
	}
	if !opts.Poll {
		it := s.fs.Doc(linkPath(uid)).Snapshots(ctx)
		for {
			snap, err := it.Next()
			if err != nil {
				break // fall back to polling, or ctx ended
			}
			if !snap.Exists() {
				continue
			}
			fields, err := encodeFields(snap.Data())
			if err != nil {
				it.Stop()
				return Link{}, false, err
			}
			it.Stop()
			return decodeLink(uid, fields), true, nil
		}
		it.Stop()
	}
	t := time.NewTicker(opts.PollInterval)
	defer t.Stop()
	for {
		if ctx.Err() != nil {
			return Link{}, false, nil
		}
		l, found, err := s.LinkOf(ctx, uid)
		if err != nil {
			if ctx.Err() != nil {
				return Link{}, false, nil
			}
			return Link{}, false, err
		}
		if found {
			return l, true, nil
		}
		select {
		case <-ctx.Done():
			return Link{}, false, nil
		case <-t.C:
		}
	}
}
