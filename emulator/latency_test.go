package emulator

import (
	"context"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vkit "cloud.google.com/go/firestore/apiv1"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// recordedSleeps replaces srv's sleep with one that records each delay and
// returns at once, and fixes the uniform draw at u.
func recordedSleeps(t *testing.T, srv *Server, u float64) func() []time.Duration {
	t.Helper()
	var mu sync.Mutex
	var got []time.Duration
	srv.latency.mu.Lock()
	srv.latency.uniform = func() float64 { return u }
	srv.latency.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
		return nil
	}
	srv.latency.mu.Unlock()
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func TestLatencyQuantiles(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name            string
		latency, jitter time.Duration
		u               float64
		want            time.Duration
	}{
		{"median is the latency", 15 * time.Millisecond, 5 * time.Millisecond, 0.5, 15 * time.Millisecond},
		{"p90", 15 * time.Millisecond, 5 * time.Millisecond, 0.9, ms(15 + 5*math.Log(5))},
		{"p99", 15 * time.Millisecond, 5 * time.Millisecond, 0.99, ms(15 + 5*math.Log(50))},
		{"Cloud Firestore p50", 16 * time.Millisecond, ms(4.35), 0.5, 16 * time.Millisecond},
		{"Cloud Firestore p99", 16 * time.Millisecond, ms(4.35), 0.99, ms(16 + 4.35*math.Log(50))},
		{"floor", 15 * time.Millisecond, 5 * time.Millisecond, 0, ms(15 - 5*math.Ln2)},
		{"no jitter is constant", 15 * time.Millisecond, 0, 0.99, 15 * time.Millisecond},
		{"jitter alone has floor 0", 0, 10 * time.Millisecond, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := latencyQuantile(tt.latency, tt.jitter, tt.u)
			if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("latencyQuantile(%v, %v, %v) = %v, want %v", tt.latency, tt.jitter, tt.u, got, tt.want)
			}
		})
	}
	if p99 := latencyQuantile(16*time.Millisecond, ms(4.35), 0.99); p99.Round(time.Millisecond) != 33*time.Millisecond {
		t.Errorf("16ms/4.35ms p99 = %v, want ≈33ms", p99)
	}
}

func TestLatencyDelaysEveryCallOnce(t *testing.T) {
	srv, err := Start(Options{Latency: 15 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sleeps := recordedSleeps(t, srv, 0.5)
	project := testProject(t)
	c := newClientFor(t, srv, project)
	rc := &restClient{t: t, base: "http://" + srv.Addr() + "/v1/"}
	docs := "projects/" + project + "/databases/(default)/documents"
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"unary Commit", func() error {
			_, err := c.Doc("l/a").Set(ctx, map[string]any{"n": 1})
			return err
		}},
		{"server stream BatchGetDocuments", func() error {
			_, err := c.Doc("l/a").Get(ctx)
			return err
		}},
		{"server stream RunQuery with several results", func() error {
			if _, err := c.Doc("l/b").Set(ctx, map[string]any{"n": 2}); err != nil {
				return err
			}
			before := len(sleeps())
			docs, err := c.Collection("l").Documents(ctx).GetAll()
			if err == nil && (len(docs) != 2 || len(sleeps())-before != 1) {
				t.Errorf("query: %d documents, %d delays; want 2 documents, 1 delay", len(docs), len(sleeps())-before)
			}
			return err
		}},
		{"REST getDocument", func() error {
			rc.ok("GET", docs+"/l/a", "")
			return nil
		}},
		{"REST runQuery", func() error {
			rc.ok("POST", docs+":runQuery", `{"structuredQuery":{"from":[{"collectionId":"l"}]}}`)
			return nil
		}},
		{"bidirectional Listen", func() error {
			it := c.Doc("l/a").Snapshots(ctx)
			defer it.Stop()
			_, err := it.Next()
			if err == iterator.Done {
				err = nil
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(sleeps())
			if err := tt.call(); err != nil {
				t.Fatal(err)
			}
			got := sleeps()[before:]
			if len(got) == 0 {
				t.Fatal("no delay applied")
			}
			for _, d := range got {
				if d != 15*time.Millisecond {
					t.Errorf("delay %v, want 15ms", d)
				}
			}
		})
	}
	// One delay per RPC: as many delays as calls counted.
	var calls int64
	for _, n := range srv.Counters("").RPCs {
		calls += n
	}
	if got := int64(len(sleeps())); got != calls {
		t.Errorf("%d delays for %d RPCs, want one each", got, calls)
	}
}

func TestLatencyEndpoint(t *testing.T) {
	srv, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sleeps := recordedSleeps(t, srv, 0.99)
	send := func(method, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+srv.Addr()+"/emulator/v1/latency", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	tests := []struct {
		name, method, body string
		wantCode           int
		wantBody           string // substring
		wantLatency        [2]time.Duration
	}{
		{"off at start", "GET", "", 200, `{"latency":"0s","jitter":"0s"}`, [2]time.Duration{}},
		{"switch on", "PUT", `{"latency":"15ms","jitter":"5ms"}`, 200, `{"latency":"15ms","jitter":"5ms"}`, [2]time.Duration{15 * time.Millisecond, 5 * time.Millisecond}},
		{"nanoseconds", "PUT", `{"latency":16000000}`, 200, `{"latency":"16ms","jitter":"0s"}`, [2]time.Duration{16 * time.Millisecond, 0}},
		{"negative refused", "PUT", `{"latency":"-1ms"}`, 400, "latency -1ms is negative", [2]time.Duration{16 * time.Millisecond, 0}},
		{"too large refused", "PUT", `{"jitter":"2m"}`, 400, "jitter 2m0s is more than the maximum of 1m0s", [2]time.Duration{16 * time.Millisecond, 0}},
		{"not a duration", "PUT", `{"latency":"fast"}`, 400, `"fast" is not a duration`, [2]time.Duration{16 * time.Millisecond, 0}},
		{"unknown field", "PUT", `{"latencyMs":15}`, 400, `unknown field "latencyMs"`, [2]time.Duration{16 * time.Millisecond, 0}},
		{"switch off", "DELETE", "", 200, `{"latency":"0s","jitter":"0s"}`, [2]time.Duration{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := send(tt.method, tt.body)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tt.method, tt.body, code, body, tt.wantCode, tt.wantBody)
			}
			l, j := srv.Latency()
			if diff := cmp.Diff(tt.wantLatency, [2]time.Duration{l, j}); diff != "" {
				t.Errorf("latency, jitter (-want +got):\n%s", diff)
			}
		})
	}
	// Switched on at run time, the model delays the next call.
	if code, body := send("PUT", `{"latency":"15ms","jitter":"5ms"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	g, err := vkit.NewClient(context.Background(), option.WithGRPCConn(dial(t, srv)))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.BeginTransaction(context.Background(), &firestorepb.BeginTransactionRequest{Database: dbPath(testProject(t))}); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{latencyQuantile(15*time.Millisecond, 5*time.Millisecond, 0.99)}
	if diff := cmp.Diff(want, sleeps()); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
}

func TestStartRefusesBadLatency(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"negative latency", Options{Latency: -time.Millisecond}, "latency -1ms is negative"},
		{"negative jitter", Options{Jitter: -time.Millisecond}, "jitter -1ms is negative"},
		{"latency above the maximum", Options{Latency: 2 * time.Minute}, "latency 2m0s is more than the maximum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := Start(tt.opts)
			if err == nil {
				srv.Close()
				t.Fatal("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start: %v, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestLatencyModelReachesCloudFirestorePercentiles(t *testing.T) {
	srv, err := Start(Options{Latency: 16 * time.Millisecond, Jitter: 4350 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var got []time.Duration
	srv.latency.mu.Lock()
	srv.latency.sleep = func(ctx context.Context, d time.Duration) error { got = append(got, d); return nil }
	srv.latency.mu.Unlock()
	const n = 20000
	for range n {
		if err := srv.rpcDelay(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	for _, q := range []struct {
		name string
		at   float64
		want time.Duration
	}{{"p50", 0.50, 16 * time.Millisecond}, {"p99", 0.99, 33 * time.Millisecond}} {
		v := got[int(q.at*n)]
		if lo, hi := q.want*9/10, q.want*11/10; v < lo || v > hi {
			t.Errorf("%s = %v, want %v ± 10%%", q.name, v, q.want)
		}
	}
	if floor := latencyQuantile(16*time.Millisecond, 4350*time.Microsecond, 0); got[0] < floor {
		t.Errorf("shortest delay %v is below the floor %v", got[0], floor)
	}
}
