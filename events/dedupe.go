package events

import (
	"container/list"
	"sync"
)

// Deduper remembers the highest version handled per player, for consumers
// of at-least-once messages: a message whose version is not above the
// remembered one is a duplicate or is superseded (the consumer refetches
// the latest save anyway). It keeps at most a fixed number of players,
// forgetting the least recently used; a forgotten player's next message
// is simply handled again. It is safe for concurrent use.
type Deduper struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *dedupeEntry, most recent first
	byID  map[int64]*list.Element
}

type dedupeEntry struct {
	userID  int64
	version int64
}

// NewDeduper returns a Deduper that remembers up to capacity players
// (100,000 when capacity ≤ 0).
func NewDeduper(capacity int) *Deduper {
	if capacity <= 0 {
		capacity = 100_000
	}
	return &Deduper{max: capacity, order: list.New(), byID: make(map[int64]*list.Element)}
}

// Fresh reports whether version is above the highest version recorded for
// the player.
func (d *Deduper) Fresh(userID, version int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.byID[userID]
	return !ok || version > el.Value.(*dedupeEntry).version
}

// Record remembers that the player's version was handled. Recording an
// older version than the one remembered changes nothing.
func (d *Deduper) Record(userID, version int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record(userID, version)
}

// record raises the player's version, reporting whether it rose; d.mu is held.
func (d *Deduper) record(userID, version int64) bool {
	if el, ok := d.byID[userID]; ok {
		d.order.MoveToFront(el)
		e := el.Value.(*dedupeEntry)
		if version <= e.version {
			return false
		}
		e.version = version
		return true
	}
	d.byID[userID] = d.order.PushFront(&dedupeEntry{userID: userID, version: version})
	for d.order.Len() > d.max {
		last := d.order.Back()
		d.order.Remove(last)
		delete(d.byID, last.Value.(*dedupeEntry).userID)
	}
	return true
}

// Len is the number of players remembered.
func (d *Deduper) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.order.Len()
}
