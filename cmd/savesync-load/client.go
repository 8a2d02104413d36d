package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/savesync/savesync/internal/sleep"
)

// recorder collects what callers saw in one phase: latency per route
// (each HTTP attempt), answers by status and error code, and retries.
type recorder struct {
	mu        sync.Mutex
	latency   map[string][]time.Duration
	codes     map[string]int64
	requests  int64
	retries   int64
	failures  int64 // calls that still failed after every attempt
	mutations int64 // mutations committed (not replays)
	replays   int64 // mutations answered from the idempotency record
}

func newRecorder() *recorder {
	return &recorder{latency: map[string][]time.Duration{}, codes: map[string]int64{}}
}

func (r *recorder) attempt(route string, d time.Duration, code string) {
	r.mu.Lock()
	r.requests++
	r.latency[route] = append(r.latency[route], d)
	if code != "" {
		r.codes[code]++
	}
	r.mu.Unlock()
}

// note counts an answer code that is not an HTTP attempt of its own
// (one item of a batch, an unreadable body).
func (r *recorder) note(code string) {
	r.mu.Lock()
	r.codes[code]++
	r.mu.Unlock()
}

func (r *recorder) add(field *int64, n int64) {
	r.mu.Lock()
	*field += n
	r.mu.Unlock()
}

// requestCount is the number of HTTP attempts so far.
func (r *recorder) requestCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// mutationCount is the number of mutations committed so far.
func (r *recorder) mutationCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mutations
}

// RouteStats is the latency of one route over every HTTP attempt.
type RouteStats struct {
	Route string  `json:"route"`
	Count int     `json:"count"`
	P50ms float64 `json:"p50ms"`
	P95ms float64 `json:"p95ms"`
	P99ms float64 `json:"p99ms"`
	MaxMs float64 `json:"maxMs"`
}

// routes summarises latency per route, sorted by route.
func (r *recorder) routes() []RouteStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RouteStats, 0, len(r.latency))
	for route, ds := range r.latency {
		out = append(out, routeStats(route, ds))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Route < out[j].Route })
	return out
}

func routeStats(route string, ds []time.Duration) RouteStats {
	s := slices.Clone(ds)
	slices.Sort(s)
	return RouteStats{Route: route, Count: len(s), P50ms: quantileMS(s, 0.50), P95ms: quantileMS(s, 0.95), P99ms: quantileMS(s, 0.99), MaxMs: quantileMS(s, 1)}
}

// quantileMS is the nearest-rank quantile of sorted durations, in ms.
func quantileMS(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}

// caller sends HTTP requests like the Luau module does: on a 5xx answer or
// a lost connection it tries again with the same headers (so the same
// Idempotency-Key), with exponential backoff and full jitter.
//
// With several service instances it spreads calls across them in turn, as
// Cloud Run's front end does, and sends a retry after a lost connection to
// the next instance. Each instance has at most `concurrency` requests in
// flight (Cloud Run's per-instance concurrency); further calls wait for a
// slot, and that wait is not part of the recorded latency.
type caller struct {
	bases    []string
	slots    []chan struct{}
	next     atomic.Uint64
	client   *http.Client
	attempts int

	mu  sync.Mutex
	rng *rand.Rand
}

func newCaller(bases []string, concurrency, attempts int, conns int, seed uint64) *caller {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns * 2
	tr.MaxIdleConnsPerHost = conns * 2
	c := &caller{
		bases:    bases,
		client:   &http.Client{Transport: tr, Timeout: 60 * time.Second},
		attempts: attempts,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	for range bases {
		c.slots = append(c.slots, make(chan struct{}, concurrency))
	}
	return c
}

// pick returns the index of the instance for the next call.
func (c *caller) pick() int {
	return int((c.next.Add(1) - 1) % uint64(len(c.bases)))
}

// intN returns a random number in [0, n) from the caller's seeded source.
func (c *caller) intN(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.IntN(n)
}

// answer is a call's final HTTP answer.
type answer struct {
	Status int
	Body   []byte
	Header http.Header
	// Code is the error code of a non-2xx answer ("" on success).
	Code string
	// Attempts is how many HTTP requests the call took.
	Attempts int
}

// ok reports a 2xx answer.
func (a answer) ok() bool { return a.Status >= 200 && a.Status < 300 }

// errTransport marks calls that never got an HTTP answer.
var errTransport = errors.New("no HTTP answer")

// call sends one request, retrying as described on caller, and records
// every attempt under route. It returns errTransport (wrapped) when the
// last attempt got no answer at all.
func (c *caller) call(ctx context.Context, rec *recorder, route, method, path string, hdr http.Header, body any) (answer, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return answer{}, err
		}
	}
	var lastAns answer
	var lastErr error
	inst := c.pick()
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			rec.add(&rec.retries, 1)
			if err := c.backoff(ctx, attempt); err != nil {
				return lastAns, err
			}
			if lastErr != nil {
				// The instance did not answer (it may have crashed): the
				// front end sends the retry to another one.
				inst = (inst + 1) % len(c.bases)
			}
		}
		a, err := c.once(ctx, rec, inst, route, method, path, hdr, raw)
		a.Attempts = attempt
		lastAns, lastErr = a, err
		if err == nil && a.Status < 500 {
			return a, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	rec.add(&rec.failures, 1)
	last := "transport"
	if lastErr == nil {
		last = strconv.Itoa(lastAns.Status) + " " + lastAns.Code
	}
	rec.note("gave up after " + strconv.Itoa(c.attempts) + " attempts: " + route + " (last: " + last + ")")
	return lastAns, lastErr
}

func (c *caller) once(ctx context.Context, rec *recorder, inst int, route, method, path string, hdr http.Header, raw []byte) (answer, error) {
	select {
	case c.slots[inst] <- struct{}{}:
	case <-ctx.Done():
		return answer{}, ctx.Err()
	}
	defer func() { <-c.slots[inst] }()
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.bases[inst]+path, rd)
	if err != nil {
		return answer{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		rec.attempt(route, time.Since(start), "transport")
		return answer{}, fmt.Errorf("%s %s: %w: %v", method, path, errTransport, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		rec.attempt(route, d, "transport")
		return answer{}, fmt.Errorf("%s %s: %w: %v", method, path, errTransport, err)
	}
	a := answer{Status: resp.StatusCode, Body: b, Header: resp.Header}
	code := ""
	if !a.ok() {
		a.Code = errorCode(b)
		code = strconv.Itoa(a.Status) + " " + a.Code
	}
	rec.attempt(route, d, code)
	return a, nil
}

// backoff waits 20 ms · 2^attempt at most, with full jitter, capped at 1 s.
func (c *caller) backoff(ctx context.Context, attempt int) error {
	ceiling := min(20*time.Millisecond<<min(attempt, 10), time.Second)
	wait := time.Duration(c.intN(int(ceiling))) + time.Millisecond
	return sleep.For(ctx, wait)
}

// errorCode extracts the code of savesync's error body.
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return "UNPARSEABLE"
	}
	return e.Error.Code
}

// errorDetails extracts the details of savesync's error body.
func errorDetails(body []byte) map[string]any {
	var e struct {
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Details
}
