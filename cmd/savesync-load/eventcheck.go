package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/savesync/savesync/events"
)

// EventsReport is what the relay and the forwarder delivered, measured
// from the commit times in the ledger.
type EventsReport struct {
	// Published is the Pub/Sub side (pstest): every ledger entry is an
	// audit message; invalidations are the entries someone must hear of.
	AuditMessages        int `json:"auditMessages"`
	InvalidationMessages int `json:"invalidationMessages"`
	DuplicatePublishes   int `json:"duplicatePublishes"`
	// AuditMissing counts ledger entries with no audit message.
	AuditMissing           int        `json:"auditMissing"`
	CommitToPubSub         RouteStats `json:"commitToPubSub"`
	CommitToInvalidation   RouteStats `json:"commitToInvalidation"`
	UnpublishedAtEnd       int        `json:"unpublishedAtEnd"`
	DrainSeconds           float64    `json:"drainSeconds"`
	OpenCloudMessages      int        `json:"openCloudMessages"`
	OpenCloudThrottled     int64      `json:"openCloudThrottled"`
	OpenCloudRefused       int64      `json:"openCloudRefused"`
	CommitToOpenCloud      RouteStats `json:"commitToOpenCloud"`
	CommitToLongPoll       RouteStats `json:"commitToLongPoll"`
	HeldCompanionWrites    int        `json:"heldCompanionWrites"`
	ReachedOpenCloud       int        `json:"reachedOpenCloud"`
	MissingOpenCloud       int        `json:"missingOpenCloud"`
	ReachedLongPoll        int        `json:"reachedLongPoll"`
	MissingLongPoll        int        `json:"missingLongPoll"`
	MissingOpenCloudSample []string   `json:"missingOpenCloudSample,omitempty"`
}

// heldWrite is a companion write committed while a game server held the
// player: that server must hear of it.
type heldWrite struct {
	userID    int64
	version   int64
	holder    string
	committed time.Time
}

// waitDrained waits until no ledger entry of the project is unpublished
// and every companion write to a held player has reached the Open Cloud
// stand-in, at most timeout. A forwarder killed with invalidations in hand
// had not acknowledged them, so Pub/Sub redelivers them to another
// instance once their ack deadline passes. It returns the unpublished
// entries left.
func waitDrained(ctx context.Context, fs *firestore.Client, oc *openCloudStandIn, timeout time.Duration) (int, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		// The relay's own query shape, so it uses the index the relay
		// needs (firestore.indexes.json).
		docs, err := fs.CollectionGroup("ledger").Where("outbox.published", "==", false).
			OrderBy("committedAt", firestore.Asc).OrderBy("userId", firestore.Asc).OrderBy("version", firestore.Asc).
			Limit(1000).Documents(ctx).GetAll()
		if err != nil {
			return 0, 0, fmt.Errorf("read the outbox: %w", err)
		}
		missing := 0
		if len(docs) == 0 {
			companion, err := fs.CollectionGroup("ledger").Where("actor.kind", "==", "companion").
				OrderBy("committedAt", firestore.Desc).Documents(ctx).GetAll()
			if err != nil {
				return 0, 0, fmt.Errorf("read the companion writes: %w", err)
			}
			reached := oc.reached()
			for _, d := range companion {
				l := decodeLedger(d)
				uid, _ := d.Data()["userId"].(int64)
				if l.holder != "" && !slices.ContainsFunc(reached[uid], func(x openCloudDelivery) bool { return x.Versions[0] >= l.version }) {
					missing++
				}
			}
		}
		if (len(docs) == 0 && missing == 0) || time.Now().After(deadline) {
			return len(docs), time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return len(docs), time.Since(start), ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// eventsReport measures the delivery of the run's events.
func eventsReport(st *stack, exp *expectations, held []heldWrite, ledgerEntries int) EventsReport {
	var r EventsReport
	seen := map[string]bool{}
	var toPubSub, toInv []time.Duration
	for _, m := range st.pubsub.Messages() {
		switch {
		case strings.HasSuffix(m.Topic, "/"+events.DefaultAuditTopic):
			var e struct {
				UserID      int64     `json:"userId"`
				Version     int64     `json:"version"`
				CommittedAt time.Time `json:"committedAt"`
			}
			if json.Unmarshal(m.Data, &e) != nil {
				continue
			}
			r.AuditMessages++
			k := fmt.Sprint(e.UserID, "/", e.Version)
			if seen[k] {
				r.DuplicatePublishes++
				continue
			}
			seen[k] = true
			toPubSub = append(toPubSub, m.PublishTime.Sub(e.CommittedAt))
		case strings.HasSuffix(m.Topic, "/"+events.DefaultInvalidationTopic):
			var inv events.Invalidation
			if json.Unmarshal(m.Data, &inv) != nil {
				continue
			}
			r.InvalidationMessages++
			toInv = append(toInv, m.PublishTime.Sub(inv.CommittedAt))
		}
	}
	r.AuditMissing = max(0, ledgerEntries-len(seen))
	r.CommitToPubSub = routeStats("commit → Pub/Sub audit publish", toPubSub)
	r.CommitToInvalidation = routeStats("commit → Pub/Sub invalidation publish", toInv)

	accepted, throttled, refused, _ := st.openCloud.counts()
	r.OpenCloudMessages, r.OpenCloudThrottled, r.OpenCloudRefused = accepted, throttled, refused
	reached := st.openCloud.reached()
	var toOC, toPoll []time.Duration
	r.HeldCompanionWrites = len(held)
	for _, h := range held {
		// A message naming a later version covers this one: the server
		// refetches the newest save.
		i := slices.IndexFunc(reached[h.userID], func(d openCloudDelivery) bool { return d.Versions[0] >= h.version })
		if i < 0 {
			r.MissingOpenCloud++
			if len(r.MissingOpenCloudSample) < 10 {
				r.MissingOpenCloudSample = append(r.MissingOpenCloudSample, fmt.Sprintf("player %d version %d (held by %s)", h.userID, h.version, h.holder))
			}
		} else {
			r.ReachedOpenCloud++
			toOC = append(toOC, reached[h.userID][i].At.Sub(h.committed))
		}
		exp.mu.Lock()
		at, ok := exp.seenAt[h.holder][fmt.Sprintf("%d/%d", h.userID, h.version)]
		exp.mu.Unlock()
		if ok {
			r.ReachedLongPoll++
			toPoll = append(toPoll, at.Sub(h.committed))
		} else {
			r.MissingLongPoll++
		}
	}
	r.CommitToOpenCloud = routeStats("commit → Open Cloud publish", toOC)
	r.CommitToLongPoll = routeStats("commit → long-poll wake-up", toPoll)
	return r
}

// LeaseReport is what the samples of the relay lease document showed.
type LeaseReport struct {
	Samples   int `json:"samples"`
	Holders   int `json:"holders"`
	Handovers int `json:"handovers"`
	// Overlaps counts handovers to a new holder before the previous
	// holder's lease had expired without a release: two relays at once.
	Overlaps  int      `json:"overlaps"`
	ReadFails int      `json:"readFails"`
	Details   []string `json:"details,omitempty"`
}

// leaseSampler reads relay/lease every 50 ms.
type leaseSampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	rep    LeaseReport
}

func startLeaseSampler(ctx context.Context, fs *firestore.Client) *leaseSampler {
	sctx, cancel := context.WithCancel(ctx)
	ls := &leaseSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ls.done)
		type lease struct {
			Holder    string    `firestore:"holder"`
			Epoch     int64     `firestore:"epoch"`
			ExpiresAt time.Time `firestore:"expiresAt"`
			UpdatedAt time.Time `firestore:"updatedAt"`
		}
		var prev lease
		holders := map[string]bool{}
		for sctx.Err() == nil {
			snap, err := fs.Doc("relay/lease").Get(sctx)
			var cur lease
			if err == nil {
				err = snap.DataTo(&cur)
			}
			ls.mu.Lock()
			switch {
			case err != nil:
				if snap == nil || snap.Exists() {
					ls.rep.ReadFails++
				}
			default:
				ls.rep.Samples++
				if cur.Holder != "" {
					holders[cur.Holder] = true
				}
				ls.rep.Holders = len(holders)
				if cur.Holder != "" && prev.Holder != "" && cur.Holder != prev.Holder {
					ls.rep.Handovers++
					if cur.Epoch <= prev.Epoch || cur.UpdatedAt.Before(prev.ExpiresAt) {
						ls.rep.Overlaps++
						if len(ls.rep.Details) < 10 {
							ls.rep.Details = append(ls.rep.Details, fmt.Sprintf("epoch %d → %d taken at %s, previous lease ran to %s",
								prev.Epoch, cur.Epoch, cur.UpdatedAt.Format(time.RFC3339Nano), prev.ExpiresAt.Format(time.RFC3339Nano)))
						}
					}
				}
				if cur.Holder != "" || cur.Epoch > prev.Epoch {
					prev = cur
				} else if cur.Holder == "" {
					// Released: the next holder may take it at once.
					prev = lease{}
				}
			}
			ls.mu.Unlock()
			select {
			case <-sctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return ls
}

func (ls *leaseSampler) stop() LeaseReport {
	ls.cancel()
	<-ls.done
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.rep
}
