package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/opencloud"
)

// testProject is the Pub/Sub project of the tests (each test has its own
// pstest server).
const testProject = "events-test"

// newPubsub starts a pstest server on loopback and a client for it.
func newPubsub(t testing.TB) (*pstest.Server, *pubsub.Client) {
	t.Helper()
	srv := pstest.NewServerWithAddress("127.0.0.1:0")
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := pubsub.NewClient(context.Background(), testProject, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return srv, client
}

// Topic and subscription ids of the tests.
const (
	invTopic   = "inv"
	auditTopic = "audit"
	deadTopic  = "dead"
	fwdSub     = "inv-forwarder"
	deadSub    = "dead-reader"
)

// ensureEventTopics creates the topics and subscriptions the relay and
// forwarder use.
func ensureEventTopics(t testing.TB, client *pubsub.Client) {
	t.Helper()
	ctx := context.Background()
	if err := events.EnsureTopics(ctx, client, invTopic, auditTopic, deadTopic); err != nil {
		t.Fatal(err)
	}
	err := events.EnsureSubscriptions(ctx, client,
		events.SubscriptionConfig{Name: fwdSub, Topic: invTopic, Ordered: true},
		events.SubscriptionConfig{Name: deadSub, Topic: deadTopic},
	)
	if err != nil {
		t.Fatal(err)
	}
}

// testClock is a fake clock whose Sleep advances it at once, so rate
// limits and backoff are exercised without real waiting.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return nil
}

// scriptedAnswer is a response the fake Open Cloud gives instead of
// accepting a request.
type scriptedAnswer struct {
	status     int
	retryAfter string
}

// delivered is a message the fake Open Cloud accepted.
type delivered struct {
	at  time.Time
	msg events.RobloxMessage
}

// fakeOpenCloud is a local Open Cloud messaging endpoint. It checks the
// documented request shape (path, method, x-api-key, JSON body with topic
// ≤ 80 and message ≤ 1,024 characters) and the universe's limit of
// 50 + 5 × players publishes in any 60 seconds, answering 429 above it.
type fakeOpenCloud struct {
	universe int64
	key      string
	topic    string
	limit    int
	now      func() time.Time

	mu        sync.Mutex
	requests  []time.Time
	accepted  []delivered
	throttled int
	problems  []string
	script    []scriptedAnswer
}

func newFakeOpenCloud(t *testing.T, universe int64, key, topic string, players int, now func() time.Time) (*fakeOpenCloud, string) {
	t.Helper()
	f := &fakeOpenCloud{universe: universe, key: key, topic: topic, limit: opencloud.PublishLimit(players), now: now}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeOpenCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	problem := func(format string, args ...any) {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
		http.Error(w, `{"code":"INVALID_ARGUMENT"}`, http.StatusBadRequest)
	}
	if want := fmt.Sprintf("/cloud/v2/universes/%d:publishMessage", f.universe); r.Method != http.MethodPost || r.URL.Path != want {
		problem("request %s %s, want POST %s", r.Method, r.URL.Path, want)
		return
	}
	if r.Header.Get("x-api-key") != f.key {
		f.problems = append(f.problems, "wrong x-api-key")
		http.Error(w, `{"code":"UNAUTHENTICATED"}`, http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		problem("content type %q", ct)
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		problem("body: %v", err)
		return
	}
	var body struct {
		Topic   *string `json:"topic"`
		Message *string `json:"message"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Topic == nil || body.Message == nil {
		problem("body %s is not {topic, message}: %v", raw, err)
		return
	}
	if n := utf8.RuneCountInString(*body.Topic); n == 0 || n > 80 || *body.Topic != f.topic {
		problem("topic %q (%d characters)", *body.Topic, n)
		return
	}
	if n := utf8.RuneCountInString(*body.Message); n > 1024 {
		problem("message of %d characters", n)
		return
	}
	var msg events.RobloxMessage
	if err := json.Unmarshal([]byte(*body.Message), &msg); err != nil || msg.Type != "inv" || len(msg.Users) == 0 || len(msg.Users) != len(msg.Versions) {
		problem("message %q is not a documented invalidation", *body.Message)
		return
	}

	// Every request counts against the universe's budget.
	inWindow := 0
	for _, at := range f.requests {
		if at.After(now.Add(-time.Minute)) {
			inWindow++
		}
	}
	f.requests = append(f.requests, now)
	if inWindow >= f.limit {
		f.throttled++
		w.Header().Set("Retry-After", "10")
		http.Error(w, `{"code":"RESOURCE_EXHAUSTED"}`, http.StatusTooManyRequests)
		return
	}
	if len(f.script) > 0 {
		a := f.script[0]
		f.script = f.script[1:]
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		http.Error(w, `{"code":"scripted"}`, a.status)
		return
	}
	f.accepted = append(f.accepted, delivered{at: now, msg: msg})
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}")
}

// snapshot returns copies of what the fake server recorded.
func (f *fakeOpenCloud) snapshot() (requests []time.Time, accepted []delivered, throttled int, problems []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.requests...), append([]delivered(nil), f.accepted...), f.throttled, append([]string(nil), f.problems...)
}

// deliveredVersions lists, per user, the versions the fake server accepted, in order.
func (f *fakeOpenCloud) deliveredVersions() map[int64][]int64 {
	_, accepted, _, _ := f.snapshot()
	out := map[int64][]int64{}
	for _, d := range accepted {
		for i, u := range d.msg.Users {
			out[u] = append(out[u], d.msg.Versions[i])
		}
	}
	return out
}

// checkClean fails the test if the forwarder broke the request shape or
// the rate limit.
func (f *fakeOpenCloud) checkClean(t *testing.T) {
	t.Helper()
	_, _, throttled, problems := f.snapshot()
	if throttled != 0 {
		t.Errorf("the forwarder went over the rate limit %d times", throttled)
	}
	for _, p := range problems {
		t.Errorf("request shape: %s", p)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runInBackground runs fn until the test ends and checks it stopped cleanly.
func runInBackground(t *testing.T, name string, fn func(ctx context.Context) error) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	})
	return cancel
}
