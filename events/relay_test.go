package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/opencloud"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

var (
	companion  = save.Actor{Kind: save.ActorCompanion, ID: "uid-events"}
	gameServer = save.Actor{Kind: save.ActorServer, ID: "universe/1"}
)

// newEventStore returns a store over a fresh emulator project.
func newEventStore(t *testing.T) *store.Store {
	t.Helper()
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	return store.New(c.Firestore, c.GAPIC, project, firestoretest.GameConfig(t), store.Options{})
}

func join(t *testing.T, st *store.Store, userID int64, job string) {
	t.Helper()
	if _, err := st.JoinSession(context.Background(), store.JoinRequest{UserID: userID, JobID: job}); err != nil {
		t.Fatalf("join %d: %v", userID, err)
	}
}

func mutate(t *testing.T, st *store.Store, userID int64, actor save.Actor, job, key string, op save.Op) {
	t.Helper()
	_, err := st.ApplyMutation(context.Background(), store.MutationRequest{
		UserID: userID, Actor: actor, JobID: job, IdempotencyKey: key, Mutation: save.Mutation{Ops: []save.Op{op}},
	})
	if err != nil {
		t.Fatalf("mutate %d (%s): %v", userID, key, err)
	}
}

func volume(v int64) save.Op {
	return save.Op{Kind: save.OpSettingsSet, Key: "volume", Value: v}
}

// published lists the (user, version) pairs published on a topic, in
// publish order, by ordering key.
func published(srv *pstest.Server, topic string) map[string][]int64 {
	out := map[string][]int64{}
	for _, m := range srv.Messages() {
		if m.Topic != "projects/"+testProject+"/topics/"+topic {
			continue
		}
		v, _ := strconv.ParseInt(m.Attributes[events.AttrVersion], 10, 64)
		out[m.OrderingKey] = append(out[m.OrderingKey], v)
	}
	return out
}

func TestCompanionWriteReachesGameServerAfterRelayRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newEventStore(t)
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	fake, url := newFakeOpenCloud(t, testUniverse, testAPIKey, robloxTopic, 1000, time.Now)
	startForwarder(t, client, opencloud.Options{BaseURL: url, ConcurrentPlayers: 1000}, events.ForwarderOptions{Coalesce: 20 * time.Millisecond})

	join(t, st, 81, "job-a")
	// An instance took the relay lease and died before publishing.
	if l, err := st.ClaimRelay(ctx, "dead-instance", time.Second); err != nil || !l.Held {
		t.Fatalf("claim for the dead instance: %+v %v", l, err)
	}
	mutate(t, st, 81, companion, "", "c-1", volume(10))                                                    // must reach job-a
	mutate(t, st, 81, gameServer, "job-a", "s-1", volume(11))                                              // job-a's own write: nobody to tell
	mutate(t, st, 82, companion, "", "c-2", volume(12))                                                    // nobody holds 82
	mutate(t, st, 81, companion, "", "c-3", save.Op{Kind: save.OpSettingsSet, Key: "music", Value: false}) // reaches job-a

	// The long-poll sees the companion writes at once, relay or not.
	changes := store.NewChanges(st, store.ChangesOptions{PollInterval: 20 * time.Millisecond})
	page, err := changes.Wait(ctx, "job-a", "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var polled []string
	for _, c := range page.Changes {
		polled = append(polled, fmt.Sprintf("%d@%d", c.UserID, c.Version))
	}
	if diff := cmp.Diff([]string{"81@1", "81@3"}, polled); diff != "" {
		t.Errorf("long-poll (-want +got):\n%s", diff)
	}

	// A new relay takes over once the dead instance's lease expires.
	relay := events.NewRelay(st, client, events.RelayOptions{InvalidationTopic: invTopic, AuditTopic: auditTopic, PollInterval: 50 * time.Millisecond, LeaseTTL: 5 * time.Second})
	runInBackground(t, "relay", relay.Run)
	waitFor(t, 20*time.Second, "player 81 v3 at Open Cloud", func() bool {
		vs := fake.deliveredVersions()[81]
		return len(vs) > 0 && vs[len(vs)-1] == 3
	})
	waitFor(t, 10*time.Second, "the outbox drained", func() bool {
		pending, err := st.PendingEvents(ctx, 10)
		return err == nil && len(pending) == 0
	})
	fake.checkClean(t)

	if got := fake.deliveredVersions(); got[82] != nil {
		t.Errorf("player 82 (held by no server) was sent to Open Cloud: %v", got[82])
	}
	if diff := cmp.Diff(map[string][]int64{"81": {1, 3}, "82": {1}}, published(srv, invTopic)); diff != "" {
		t.Errorf("invalidations published (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string][]int64{"81": {1, 2, 3}, "82": {1}}, published(srv, auditTopic)); diff != "" {
		t.Errorf("audit messages published (-want +got):\n%s", diff)
	}
	for _, m := range srv.Messages() {
		if m.Topic == "projects/"+testProject+"/topics/"+invTopic {
			// Invalidations reach game servers: the companion's kind, not its uid.
			var inv events.Invalidation
			if err := json.Unmarshal(m.Data, &inv); err != nil {
				t.Fatalf("invalidation body: %v", err)
			}
			if want := (save.Actor{Kind: save.ActorCompanion}); inv.Actor != want || strings.Contains(string(m.Data), companion.ID) {
				t.Errorf("invalidation of %d v%d names actor %+v (%s), want %+v", inv.UserID, inv.Version, inv.Actor, m.Data, want)
			}
			continue
		}
		if m.Topic != "projects/"+testProject+"/topics/"+auditTopic || m.Attributes[events.AttrVersion] != "1" || m.OrderingKey != "81" {
			continue
		}
		var e save.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("audit body: %v", err)
		}
		if e.UserID != 81 || e.Actor != companion || !e.Invalidate || e.HolderJobID != "job-a" || len(e.Changes) != 1 || m.Attributes[events.AttrEntryID] != e.EntryID {
			t.Errorf("audit message of 81 v1 = %s %v", m.Data, m.Attributes)
		}
	}
}

// killedBeforeMark is the store as an instance sees it when it dies after
// publishing a batch and before recording that: the first MarkPublished
// never happens.
type killedBeforeMark struct {
	*store.Store
	killed atomic.Bool
}

func (k *killedBeforeMark) MarkPublished(ctx context.Context, events []save.Event) error {
	if k.killed.CompareAndSwap(false, true) {
		return errors.New("instance killed before marking the batch")
	}
	return k.Store.MarkPublished(ctx, events)
}

func TestRelayRepublishesAfterCrashAndConsumersSeeOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newEventStore(t)
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	fake, url := newFakeOpenCloud(t, testUniverse, testAPIKey, robloxTopic, 1000, time.Now)

	users := []int64{91, 92, 93}
	for _, u := range users {
		join(t, st, u, "job-o")
	}
	const versions = 5
	for v := 1; v <= versions; v++ {
		for _, u := range users {
			mutate(t, st, u, companion, "", fmt.Sprintf("o-%d-%d", u, v), volume(int64(v)))
		}
	}

	opts := events.RelayOptions{InvalidationTopic: invTopic, AuditTopic: auditTopic, PollInterval: 50 * time.Millisecond, LeaseTTL: 300 * time.Millisecond}
	first := events.NewRelay(&killedBeforeMark{Store: st}, client, opts)
	n, err := first.Drain(ctx)
	if err == nil || n != 0 {
		t.Fatalf("first relay: published %d, err %v; want 0 marked and the kill", n, err)
	}
	if pending, err := st.PendingEvents(ctx, 100); err != nil || len(pending) != len(users)*versions {
		t.Fatalf("after the kill %d entries pending (%v), want all %d", len(pending), err, len(users)*versions)
	}

	// The restarted instance republishes everything once the lease lapses.
	opts.Holder = "restarted"
	runInBackground(t, "relay", events.NewRelay(st, client, opts).Run)
	waitFor(t, 20*time.Second, "the outbox drained", func() bool {
		pending, err := st.PendingEvents(ctx, 10)
		return err == nil && len(pending) == 0
	})

	// Every message went out twice, each time in version order per player.
	twice := []int64{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}
	for _, topic := range []string{invTopic, auditTopic} {
		got := published(srv, topic)
		for _, u := range users {
			if diff := cmp.Diff(twice, got[strconv.FormatInt(u, 10)]); diff != "" {
				t.Errorf("%s messages of player %d (-want +got):\n%s", topic, u, diff)
			}
		}
	}

	// The forwarder dedupes: each version reaches Open Cloud at most once,
	// in increasing order, and the last one arrives.
	f := startForwarder(t, client, opencloud.Options{BaseURL: url, ConcurrentPlayers: 1000}, events.ForwarderOptions{Coalesce: 10 * time.Millisecond})
	waitFor(t, 20*time.Second, "every invalidation received and every second copy dropped", func() bool {
		s := f.Stats()
		return s.Received == int64(2*len(users)*versions) && s.Duplicates >= int64(len(users)*versions)
	})
	fake.checkClean(t)
	for u, vs := range fake.deliveredVersions() {
		for i := 1; i < len(vs); i++ {
			if vs[i] <= vs[i-1] {
				t.Errorf("player %d reached Open Cloud as versions %v, want strictly increasing", u, vs)
				break
			}
		}
		if len(vs) == 0 || vs[len(vs)-1] != versions {
			t.Errorf("player %d reached Open Cloud as versions %v, want the last to be %d", u, vs, versions)
		}
	}
	if got := len(fake.deliveredVersions()); got != len(users) {
		t.Errorf("%d players reached Open Cloud, want %d", got, len(users))
	}
	if s := f.Stats(); s.Duplicates < int64(len(users)*versions) {
		t.Errorf("stats %+v, want at least %d duplicates dropped", s, len(users)*versions)
	}

	// A consumer deduping on (userId, version) sees each version once, in order.
	d := events.NewDeduper(10)
	for key, vs := range published(srv, auditTopic) {
		uid, _ := strconv.ParseInt(key, 10, 64)
		var fresh []int64
		for _, v := range vs {
			if d.Observe(uid, v) {
				fresh = append(fresh, v)
			}
		}
		if diff := cmp.Diff([]int64{1, 2, 3, 4, 5}, fresh); diff != "" {
			t.Errorf("deduped audit stream of player %s (-want +got):\n%s", key, diff)
		}
	}
}

func TestRelayPublishesOnlyUnderTheLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newEventStore(t)
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	mutate(t, st, 95, companion, "", "l-1", volume(1))
	if l, err := st.ClaimRelay(ctx, "other-instance", time.Minute); err != nil || !l.Held {
		t.Fatalf("claim for another instance: %+v %v", l, err)
	}
	relay := events.NewRelay(st, client, events.RelayOptions{InvalidationTopic: invTopic, AuditTopic: auditTopic})
	n, err := relay.Drain(ctx)
	if err != nil || n != 0 {
		t.Errorf("Drain without the lease = %d, %v; want 0, nil", n, err)
	}
	if got := len(srv.Messages()); got != 0 {
		t.Errorf("%d messages published without the lease", got)
	}
	if err := st.ReleaseRelay(ctx, "other-instance"); err != nil {
		t.Fatal(err)
	}
	n, err = relay.Drain(ctx)
	if err != nil || n != 1 {
		t.Errorf("Drain with the lease free = %d, %v; want 1, nil", n, err)
	}
}

func TestRelayNotifyPublishesWithoutWaitingForThePoll(t *testing.T) {
	t.Parallel()
	st := newEventStore(t)
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	// The poll interval is far longer than the test: only Notify can wake it.
	relay := events.NewRelay(st, client, events.RelayOptions{InvalidationTopic: invTopic, AuditTopic: auditTopic, PollInterval: time.Hour})
	mutate(t, st, 96, companion, "", "n-1", volume(1))
	runInBackground(t, "relay", relay.Run)
	waitFor(t, 10*time.Second, "the first round's audit message", func() bool { return len(published(srv, auditTopic)["96"]) == 1 })
	mutate(t, st, 96, companion, "", "n-2", volume(2))
	relay.Notify()
	waitFor(t, 10*time.Second, "the notified round's audit message", func() bool { return len(published(srv, auditTopic)["96"]) == 2 })
}

// relayTTL is the relay lease TTL of the tests that move the clock.
const relayTTL = 30 * time.Second

// commitVersions commits versions from..to (inclusive) of each user, one
// version of every user before the next version of any.
func commitVersions(t *testing.T, st *store.Store, users []int64, from, to int) {
	t.Helper()
	for v := from; v <= to; v++ {
		for _, u := range users {
			mutate(t, st, u, companion, "", fmt.Sprintf("v-%d-%d", u, v), volume(int64(v)))
		}
	}
}

// versionsUpTo is 1..n.
func versionsUpTo(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// leaseTransactions counts the project's transactions so far: in a relay
// test, the lease claims (the outbox query and the marks use none).
func leaseTransactions(t *testing.T, project string) int64 {
	t.Helper()
	return firestoretest.Emulator(t).Counters(project).RPCs["BeginTransaction"]
}

// checkPublishedOnceInOrder checks that each user's versions 1..n went out
// on both topics exactly once, in version order.
func checkPublishedOnceInOrder(t *testing.T, srv *pstest.Server, users []int64, n int) {
	t.Helper()
	for _, topic := range []string{invTopic, auditTopic} {
		got := published(srv, topic)
		for _, u := range users {
			if diff := cmp.Diff(versionsUpTo(n), got[strconv.FormatInt(u, 10)]); diff != "" {
				t.Errorf("%s messages of player %d (-want +got):\n%s", topic, u, diff)
			}
		}
	}
}

func TestRelayClaimsTheLeaseOnlyWhenLessThanHalfIsLeft(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := firestoretest.NewClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	st, project := firestoretest.Store(t, store.Options{Now: clock.Now})
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	users := []int64{101, 102, 103}
	for _, u := range users {
		join(t, st, u, "job-lease")
	}
	// Five versions of three players are three full batches of five.
	relay := events.NewRelay(st, client, events.RelayOptions{
		InvalidationTopic: invTopic, AuditTopic: auditTopic, BatchSize: 5, LeaseTTL: relayTTL, Now: clock.Now,
	})

	steps := []struct {
		name    string
		advance time.Duration // before the drain
		want    int64         // lease transactions of the drain
		renewed bool          // the lease runs TTL from now after it
	}{
		{name: "first drain claims once for three batches", want: 1, renewed: true},
		{name: "16 s of 30 s left: no claim", advance: 14 * time.Second, want: 0},
		{name: "15 s left: renews", advance: time.Second, want: 1, renewed: true},
		{name: "20 s left after the renewal: no claim", advance: 10 * time.Second, want: 0},
		{name: "lapsed with nobody else waiting: claims again", advance: 21 * time.Second, want: 1, renewed: true},
	}
	for i, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			clock.Advance(step.advance)
			commitVersions(t, st, users, 5*i+1, 5*i+5)
			before := leaseTransactions(t, project)
			n, err := relay.Drain(ctx)
			if err != nil || n != 15 {
				t.Fatalf("Drain = %d, %v; want 15, nil", n, err)
			}
			if got := leaseTransactions(t, project) - before; got != step.want {
				t.Errorf("lease transactions in the drain = %d, want %d", got, step.want)
			}
			if !step.renewed {
				return
			}
			// Another instance sees the lease held, running a full TTL from now.
			l, err := st.ClaimRelay(ctx, "onlooker", relayTTL)
			if err != nil {
				t.Fatal(err)
			}
			if l.Held || !l.ExpiresAt.Equal(clock.Now().Add(relayTTL)) {
				t.Errorf("lease as another instance sees it: held %v, expires %v; want not held, expires %v", l.Held, l.ExpiresAt, clock.Now().Add(relayTTL))
			}
		})
	}
	checkPublishedOnceInOrder(t, srv, users, 5*len(steps))
}

// relayHook is a RelayObserver that runs onRead after each read of the
// outbox, while the relay is between reading a batch and publishing it.
type relayHook struct {
	onRead func()
}

func (h relayHook) RelayBacklog(context.Context, int)             { h.onRead() }
func (h relayHook) EventPublished(context.Context, time.Duration) {}

func TestRelayWhoseLeaseLapsedMidDrainPublishesNothingMore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := firestoretest.NewClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	st, _ := firestoretest.Store(t, store.Options{Now: clock.Now})
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	users := []int64{111, 112, 113}
	for _, u := range users {
		join(t, st, u, "job-lapse")
	}
	commitVersions(t, st, users, 1, 5)

	// Relay a stalls after its first read for longer than the TTL, and
	// relay b takes the lapsed lease meanwhile.
	var stalls atomic.Int64
	opts := events.RelayOptions{InvalidationTopic: invTopic, AuditTopic: auditTopic, BatchSize: 5, LeaseTTL: relayTTL, Now: clock.Now}
	a := opts
	a.Holder = "relay-a"
	a.Observer = relayHook{onRead: func() {
		if stalls.Add(1) != 1 {
			return
		}
		clock.Advance(relayTTL + time.Second)
		if l, err := st.ClaimRelay(ctx, "relay-b", relayTTL); err != nil || !l.Held {
			t.Errorf("relay b's claim after a's lease lapsed: %+v %v", l, err)
		}
	}}
	relayA := events.NewRelay(st, client, a)
	b := opts
	b.Holder = "relay-b"
	relayB := events.NewRelay(st, client, b)

	n, err := relayA.Drain(ctx)
	if err != nil || n != 0 {
		t.Errorf("relay a's drain across the lapse = %d, %v; want 0, nil", n, err)
	}
	if got := len(srv.Messages()); got != 0 {
		t.Errorf("%d messages published after relay a's lease lapsed, want 0", got)
	}

	// Relay b drains the backlog; relay a, asking again before b's lease
	// is due for renewal, still publishes nothing.
	steps := []struct {
		name     string
		relay    *events.Relay
		versions [2]int // committed before the drain
		want     int
	}{
		{"relay b takes over the backlog", relayB, [2]int{1, 0}, 15},
		{"relay a asks again while b holds the lease", relayA, [2]int{6, 6}, 0},
		{"relay b drains what a left", relayB, [2]int{1, 0}, 3},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			commitVersions(t, st, users, step.versions[0], step.versions[1])
			n, err := step.relay.Drain(ctx)
			if err != nil || n != step.want {
				t.Errorf("Drain = %d, %v; want %d, nil", n, err, step.want)
			}
		})
	}
	checkPublishedOnceInOrder(t, srv, users, 6)
}

// backlogReads is a RelayObserver that records each read's size.
type backlogReads struct {
	mu    sync.Mutex
	sizes []int
}

func (b *backlogReads) RelayBacklog(_ context.Context, pending int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sizes = append(b.sizes, pending)
}

func (b *backlogReads) EventPublished(context.Context, time.Duration) {}

func TestRelayReadsFiveHundredEntriesABatchByDefault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newEventStore(t)
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	users := []int64{121, 122, 123, 124, 125, 126}
	const versions = 85 // 510 entries
	errs := make(chan error, len(users))
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			for v := 1; v <= versions; v++ {
				_, err := st.ApplyMutation(ctx, store.MutationRequest{
					UserID: u, Actor: companion, IdempotencyKey: fmt.Sprintf("d-%d-%d", u, v),
					Mutation: save.Mutation{Ops: []save.Op{volume(int64(v))}},
				})
				if err != nil {
					errs <- fmt.Errorf("mutate %d v%d: %w", u, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	reads := &backlogReads{}
	relay := events.NewRelay(st, client, events.RelayOptions{InvalidationTopic: invTopic, AuditTopic: auditTopic, Observer: reads})
	n, err := relay.Drain(ctx)
	if err != nil || n != len(users)*versions {
		t.Fatalf("Drain = %d, %v; want %d, nil", n, err, len(users)*versions)
	}
	if diff := cmp.Diff([]int{500, 10}, reads.sizes); diff != "" {
		t.Errorf("entries per outbox read (-want +got):\n%s", diff)
	}
	got := published(srv, auditTopic)
	for _, u := range users {
		if diff := cmp.Diff(versionsUpTo(versions), got[strconv.FormatInt(u, 10)]); diff != "" {
			t.Errorf("audit messages of player %d (-want +got):\n%s", u, diff)
		}
	}
}
