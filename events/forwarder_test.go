package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/opencloud"
	"github.com/savesync/savesync/save"
)

const (
	testUniverse = 4242
	testAPIKey   = "open-cloud-test-key"
	robloxTopic  = "savesync-test"
)

// publishInvalidation puts an invalidation for a held player on the topic,
// as the relay would.
func publishInvalidation(t *testing.T, srv *pstest.Server, userID, version int64, holder string) {
	t.Helper()
	body, err := json.Marshal(events.Invalidation{
		UserID: userID, Version: version, EntryID: fmt.Sprintf("e-%d-%d", userID, version),
		ChangedPaths: []string{"settings.volume"}, Actor: save.Actor{Kind: save.ActorCompanion, ID: "uid"},
		CommittedAt: time.Now().UTC(), HolderJobID: holder,
	})
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.FormatInt(userID, 10)
	srv.PublishOrdered("projects/"+testProject+"/topics/"+invTopic, body,
		map[string]string{events.AttrUserID: uid, events.AttrVersion: strconv.FormatInt(version, 10)}, uid)
}

// lastVersion is the last version of a player the fake server accepted (0: none).
func lastVersion(fake *fakeOpenCloud, userID int64) int64 {
	vs := fake.deliveredVersions()[userID]
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1]
}

// startForwarder runs a forwarder until the test ends.
func startForwarder(t *testing.T, client *pubsub.Client, oc opencloud.Options, opts events.ForwarderOptions) *events.Forwarder {
	t.Helper()
	oc.UniverseID = testUniverse
	oc.APIKey = testAPIKey
	publisher, err := opencloud.NewPublisher(oc)
	if err != nil {
		t.Fatal(err)
	}
	opts.Subscription = fwdSub
	opts.DeadLetterTopic = deadTopic
	opts.Topic = robloxTopic
	f, err := events.NewForwarder(client, publisher, opts)
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, "forwarder", f.Run)
	return f
}

func TestForwarderStaysUnderRateLimitInBurst(t *testing.T) {
	t.Parallel()
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	clock := newTestClock()
	const players = 2 // 60 publishes a minute
	fake, url := newFakeOpenCloud(t, testUniverse, testAPIKey, robloxTopic, players, clock.Now)
	const burst = 150
	for u := range int64(burst) {
		publishInvalidation(t, srv, 1000+u, 1, "job-1")
	}
	start := clock.Now()
	startForwarder(t, client,
		opencloud.Options{BaseURL: url, ConcurrentPlayers: players, Now: clock.Now, Sleep: clock.Sleep},
		events.ForwarderOptions{MaxUsersPerMessage: 1, Sleep: clock.Sleep})
	waitFor(t, 30*time.Second, "every player forwarded", func() bool { return len(fake.deliveredVersions()) == burst })
	fake.checkClean(t)

	requests, _, _, _ := fake.snapshot()
	if len(requests) != burst {
		t.Errorf("%d Open Cloud requests, want %d (one per player, none retried)", len(requests), burst)
	}
	for u, vs := range fake.deliveredVersions() {
		if len(vs) != 1 || vs[0] != 1 {
			t.Errorf("player %d delivered versions %v, want [1]", u, vs)
		}
	}
	// 150 publishes at 60 a minute cannot take less than 90 s; the pacing
	// must have spread them (the fake server checked every window).
	if elapsed := clock.Now().Sub(start); elapsed < 90*time.Second {
		t.Errorf("the burst went out in %v of clock time, want at least 90 s at 60 a minute", elapsed)
	}
}

func TestForwarderCoalescesPlayersIntoFewMessages(t *testing.T) {
	t.Parallel()
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	fake, url := newFakeOpenCloud(t, testUniverse, testAPIKey, robloxTopic, 1000, time.Now)
	const n = 300
	for u := range int64(n) {
		publishInvalidation(t, srv, 9_000_000_000+u, 12, "job-1")
	}
	// The coalescing wait lasts until every invalidation has arrived, so
	// the forwarder has all of them in hand for its first publish.
	var fwd atomic.Pointer[events.Forwarder]
	gather := func(ctx context.Context, _ time.Duration) error {
		for range 1000 {
			if f := fwd.Load(); f != nil && f.Stats().Received >= n {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil
	}
	fwd.Store(startForwarder(t, client, opencloud.Options{BaseURL: url, ConcurrentPlayers: 1000, Sleep: gather}, events.ForwarderOptions{Sleep: gather}))
	waitFor(t, 30*time.Second, "every player forwarded", func() bool { return len(fake.deliveredVersions()) == n })
	waitFor(t, 10*time.Second, "5 publishes counted", func() bool { return fwd.Load().Stats().Published == 5 })
	fake.checkClean(t)
	// The frame {"t":"inv","u":[],"v":[]} takes 25 characters and a player
	// 14 ("9000000123," and "12,", one comma fewer for the first), so 71
	// fit in 1,024 characters (1,017) and 72 do not (1,031): 300 players
	// need 5 messages.
	requests, accepted, _, _ := fake.snapshot()
	if len(requests) != 5 {
		t.Errorf("%d Open Cloud requests for %d players, want 5", len(requests), n)
	}
	var sizes []int
	for _, d := range accepted {
		sizes = append(sizes, len(d.msg.Users))
	}
	if diff := cmp.Diff([]int{71, 71, 71, 71, 16}, sizes); diff != "" {
		t.Errorf("players per message (-want +got):\n%s", diff)
	}
	if s := fwd.Load().Stats(); s.Received != n || s.Published != 5 {
		t.Errorf("stats %+v, want %d received and 5 published", s, n)
	}
}

func TestForwarderSkipsDuplicatesAndUnheldPlayers(t *testing.T) {
	t.Parallel()
	srv, client := newPubsub(t)
	ensureEventTopics(t, client)
	fake, url := newFakeOpenCloud(t, testUniverse, testAPIKey, robloxTopic, 0, time.Now)
	publishInvalidation(t, srv, 5, 1, "job-1")
	publishInvalidation(t, srv, 5, 1, "job-1") // redelivered copy
	publishInvalidation(t, srv, 5, 2, "job-1")
	publishInvalidation(t, srv, 6, 1, "") // nobody holds player 6
	f := startForwarder(t, client, opencloud.Options{BaseURL: url}, events.ForwarderOptions{Coalesce: 10 * time.Millisecond})
	waitFor(t, 20*time.Second, "all four messages handled", func() bool {
		s := f.Stats()
		return s.Received == 4 && s.Duplicates+s.NotHeld == 2 && lastVersion(fake, 5) == 2
	})
	fake.checkClean(t)
	got := fake.deliveredVersions()
	if diff := cmp.Diff(map[int64][]int64{5: {1, 2}}, got); diff != "" {
		t.Errorf("delivered versions (-want +got):\n%s", diff)
	}
	if s := f.Stats(); s.Duplicates != 1 || s.NotHeld != 1 {
		t.Errorf("stats %+v, want 1 duplicate and 1 not held", s)
	}
}

func TestForwarderRetriesThenDeadLetters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		script        []scriptedAnswer
		wantRequests  int
		wantDelivered bool
		wantDead      *events.DeadLetter
		// wantGaps are the least clock time between consecutive requests.
		wantGaps []time.Duration
	}{
		{
			name:          "throttled then accepted honours Retry-After",
			script:        []scriptedAnswer{{status: 429, retryAfter: "7"}},
			wantRequests:  2,
			wantDelivered: true,
			wantGaps:      []time.Duration{7 * time.Second},
		},
		{
			name:          "server errors back off exponentially then succeed",
			script:        []scriptedAnswer{{status: 503}, {status: 500}},
			wantRequests:  3,
			wantDelivered: true,
			wantGaps:      []time.Duration{time.Second, 2 * time.Second},
		},
		{
			name:         "server errors until the last attempt dead-letter",
			script:       []scriptedAnswer{{status: 503}, {status: 502}, {status: 503}},
			wantRequests: 3,
			wantDead:     &events.DeadLetter{UniverseID: testUniverse, Topic: robloxTopic, Message: `{"t":"inv","u":[77],"v":[3]}`, Users: []int64{77}, Versions: []int64{3}, Attempts: 3, LastStatus: 503, Error: "Open Cloud answered 503"},
			wantGaps:     []time.Duration{time.Second, 2 * time.Second},
		},
		{
			name:         "a refused request dead-letters at once",
			script:       []scriptedAnswer{{status: 403}},
			wantRequests: 1,
			wantDead:     &events.DeadLetter{UniverseID: testUniverse, Topic: robloxTopic, Message: `{"t":"inv","u":[77],"v":[3]}`, Users: []int64{77}, Versions: []int64{3}, Attempts: 1, LastStatus: 403, Error: "Open Cloud answered 403"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, client := newPubsub(t)
			ensureEventTopics(t, client)
			clock := newTestClock()
			fake, url := newFakeOpenCloud(t, testUniverse, testAPIKey, robloxTopic, 0, clock.Now)
			fake.script = tt.script
			publishInvalidation(t, srv, 77, 3, "job-9")
			f := startForwarder(t, client, opencloud.Options{
				BaseURL: url, MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Minute,
				Now: clock.Now, Sleep: clock.Sleep,
				Jitter: func(n int64) int64 { return n - 1 }, // the whole backoff ceiling
			}, events.ForwarderOptions{Sleep: clock.Sleep})

			var dead []events.DeadLetter
			var deadMu sync.Mutex
			if tt.wantDead != nil {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() {
					_ = client.Subscriber(deadSub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
						var d events.DeadLetter
						if err := json.Unmarshal(m.Data, &d); err != nil {
							t.Errorf("dead letter %s: %v", m.Data, err)
						}
						deadMu.Lock()
						dead = append(dead, d)
						deadMu.Unlock()
						m.Ack()
					})
				}()
				waitFor(t, 20*time.Second, "the dead letter", func() bool {
					deadMu.Lock()
					defer deadMu.Unlock()
					return len(dead) > 0
				})
				deadMu.Lock()
				if diff := cmp.Diff([]events.DeadLetter{*tt.wantDead}, dead); diff != "" {
					t.Errorf("dead letters (-want +got):\n%s", diff)
				}
				deadMu.Unlock()
			} else {
				waitFor(t, 20*time.Second, "the delivery", func() bool { return len(fake.deliveredVersions()[77]) > 0 })
			}
			wantDead := int64(0)
			if tt.wantDead != nil {
				wantDead = 1
			}
			waitFor(t, 10*time.Second, "the outcome counted", func() bool {
				s := f.Stats()
				return s.Published+s.DeadLettered == 1
			})
			// The Pub/Sub message was acknowledged: nothing is retried later.
			time.Sleep(200 * time.Millisecond)
			requests, accepted, _, problems := fake.snapshot()
			if len(requests) != tt.wantRequests {
				t.Errorf("%d requests, want %d", len(requests), tt.wantRequests)
			}
			if got := len(accepted) > 0; got != tt.wantDelivered {
				t.Errorf("delivered = %v, want %v", got, tt.wantDelivered)
			}
			if len(problems) != 0 {
				t.Errorf("request shape problems: %v", problems)
			}
			for i, want := range tt.wantGaps {
				if i+1 >= len(requests) {
					break
				}
				if gap := requests[i+1].Sub(requests[i]); gap < want {
					t.Errorf("wait before request %d = %v, want at least %v", i+2, gap, want)
				}
			}
			s := f.Stats()
			if s.Received != 1 || s.Attempts != int64(tt.wantRequests) || s.DeadLettered != wantDead {
				t.Errorf("stats %+v", s)
			}
		})
	}
}
