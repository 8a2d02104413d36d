package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// MaxLatency bounds Latency and Jitter: a larger standing delay would only
// trip client deadlines.
const MaxLatency = time.Minute

// latencyModel is the standing per-RPC delay. Each call waits
//
//	floor + E,  floor = max(0, Latency − Jitter·ln 2),  E ~ Exponential(mean Jitter)
//
// so the median delay is Latency and the tail is right-skewed: the q-quantile
// is Latency + Jitter·ln(1/(2(1−q))), i.e. p90 = Latency + 1.61·Jitter and
// p99 = Latency + 3.91·Jitter. Latency 16ms with Jitter 4.35ms gives Cloud
// Firestore's in-region p50 16 ms and p99 33 ms; Latency 15ms with Jitter 5ms
// gives p50 15 ms, p90 23 ms, p99 34.6 ms. With Jitter 0 every call waits
// exactly Latency. (When Jitter·ln 2 exceeds Latency the floor is 0 and the
// median is Jitter·ln 2.)
//
// A unary call waits once before it is handled; a streaming call waits once,
// when its first request arrives (before the first response), however many
// responses follow. The wait comes before injected faults, so a call that
// fails still costs its round trip, as in production.
type latencyModel struct {
	mu      sync.Mutex
	latency time.Duration
	jitter  time.Duration
	// uniform draws from [0, 1); sleep waits. Tests replace both.
	uniform func() float64
	sleep   func(ctx context.Context, d time.Duration) error
}

func (m *latencyModel) init() {
	m.uniform = rand.Float64
	m.sleep = sleepContext
}

// sleepContext waits d or until ctx is done.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// latencyQuantile is the delay at quantile u in [0, 1) of the model with the
// given median latency and jitter.
func latencyQuantile(latency, jitter time.Duration, u float64) time.Duration {
	floor := max(0, float64(latency)-float64(jitter)*math.Ln2)
	return time.Duration(floor - float64(jitter)*math.Log1p(-u))
}

// CheckLatency reports what is wrong with a latency model's settings: both
// must lie in [0, MaxLatency].
func CheckLatency(latency, jitter time.Duration) error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"latency", latency}, {"jitter", jitter}} {
		if f.d < 0 {
			return fmt.Errorf("%s %s is negative; give 0 (none) or a positive duration such as 15ms", f.name, f.d)
		}
		if f.d > MaxLatency {
			return fmt.Errorf("%s %s is more than the maximum of %s", f.name, f.d, MaxLatency)
		}
	}
	return nil
}

// SetLatency sets the standing latency model at run time: every RPC then
// waits a delay whose median is latency, with an exponential tail of mean
// jitter above its floor (see Options). Zero for both turns it off.
func (s *Server) SetLatency(latency, jitter time.Duration) error {
	if err := CheckLatency(latency, jitter); err != nil {
		return err
	}
	s.latency.mu.Lock()
	s.latency.latency, s.latency.jitter = latency, jitter
	s.latency.mu.Unlock()
	return nil
}

// Latency returns the standing latency model's median latency and jitter.
func (s *Server) Latency() (latency, jitter time.Duration) {
	s.latency.mu.Lock()
	defer s.latency.mu.Unlock()
	return s.latency.latency, s.latency.jitter
}

// rpcDelay waits one draw of the latency model.
func (s *Server) rpcDelay(ctx context.Context) error {
	m := &s.latency
	m.mu.Lock()
	if m.latency == 0 && m.jitter == 0 {
		m.mu.Unlock()
		return nil
	}
	d := latencyQuantile(m.latency, m.jitter, m.uniform())
	sleep := m.sleep
	m.mu.Unlock()
	if d <= 0 {
		return nil
	}
	if err := sleep(ctx, d); err != nil {
		return status.FromContextError(err).Err()
	}
	return nil
}

// latencyUnary delays a unary call before the rest of the chain sees it.
func (s *Server) latencyUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.rpcDelay(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// latencyStream delays a streaming call once, when its first request
// arrives.
func (s *Server) latencyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &latencyStream{ServerStream: ss, s: s})
}

// latencyStream waits the call's delay after the first RecvMsg.
type latencyStream struct {
	grpc.ServerStream
	s    *Server
	once sync.Once
}

// RecvMsg receives a request; after the first it waits the call's delay.
func (w *latencyStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	var err error
	w.once.Do(func() { err = w.s.rpcDelay(w.Context()) })
	return err
}

// latencyJSON is the body of the latency endpoint: Go duration strings
// ("15ms") or nanoseconds.
type latencyJSON struct {
	Latency jsonDuration `json:"latency"`
	Jitter  jsonDuration `json:"jitter"`
}

// jsonDuration is a duration written as a Go duration string and read from
// one or from a number of nanoseconds.
type jsonDuration time.Duration

// MarshalJSON writes the duration as a string such as "15ms".
func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "15ms" or 15000000.
func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		v, err := time.ParseDuration(str)
		if err != nil {
			return fmt.Errorf("%q is not a duration; write it like \"15ms\"", str)
		}
		*d = jsonDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%s is not a duration; write it like \"15ms\" or as nanoseconds", b)
	}
	*d = jsonDuration(n)
	return nil
}

// getLatency answers the current latency model.
func (s *Server) getLatency(w http.ResponseWriter, r *http.Request) {
	l, j := s.Latency()
	writeJSON(w, latencyJSON{Latency: jsonDuration(l), Jitter: jsonDuration(j)})
}

// putLatency sets the latency model from {"latency": "15ms", "jitter":
// "5ms"}; a field left out is 0.
func (s *Server) putLatency(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var v latencyJSON
	if err := dec.Decode(&v); err != nil {
		http.Error(w, `latency: want {"latency": "15ms", "jitter": "5ms"}: `+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.SetLatency(time.Duration(v.Latency), time.Duration(v.Jitter)); err != nil {
		http.Error(w, "latency: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.getLatency(w, r)
}

// deleteLatency turns the latency model off.
func (s *Server) deleteLatency(w http.ResponseWriter, r *http.Request) {
	_ = s.SetLatency(0, 0)
	s.getLatency(w, r)
}
