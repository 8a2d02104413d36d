package handlers

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/savesync/savesync/save"
)

// RateLimit is the shape of a token bucket: Burst requests at once, then
// one more every Every. The limits of this package are kept in memory, so
// they hold per instance of the service: n instances together allow n
// times as much.
type RateLimit struct {
	Burst int
	Every time.Duration
}

// orDefault returns l, or def when l is not set.
func (l RateLimit) orDefault(def RateLimit) RateLimit {
	if l.Burst <= 0 || l.Every <= 0 {
		return def
	}
	return l
}

// keyedLimiter is one token bucket per key (an account, a game server, a
// universe). Buckets that have refilled are forgotten, so memory follows
// the keys seen recently, not all keys ever seen.
type keyedLimiter struct {
	mu      sync.Mutex
	limit   RateLimit
	now     func() time.Time
	buckets map[string]*tokenBucket
	calls   int
}

// tokenBucket is the state of one key: tokens as of last.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// sweepEvery is how many calls pass between sweeps of refilled buckets.
const sweepEvery = 1024

// newKeyedLimiter returns a limiter whose buckets start full.
func newKeyedLimiter(limit RateLimit, now func() time.Time) *keyedLimiter {
	return &keyedLimiter{limit: limit, now: now, buckets: map[string]*tokenBucket{}}
}

// allow takes one token of key's bucket when it has one; otherwise it
// takes nothing and says how long until it will.
func (l *keyedLimiter) allow(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key)
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return l.untilToken(b), false
}

// wait says how long until key's bucket holds a token (0: it does now),
// taking nothing.
func (l *keyedLimiter) wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key)
	if b.tokens >= 1 {
		return 0
	}
	return l.untilToken(b)
}

// take takes one token of key's bucket, even when it has none: concurrent
// requests that all passed wait are all counted, and the debt (at most
// Burst) delays the next request that much longer.
func (l *keyedLimiter) take(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key)
	b.tokens = math.Max(b.tokens-1, -float64(l.limit.Burst))
}

// bucket returns key's bucket refilled up to now. The caller holds mu.
func (l *keyedLimiter) bucket(key string) *tokenBucket {
	now := l.now()
	l.calls++
	if l.calls%sweepEvery == 0 {
		for k, b := range l.buckets {
			if l.refill(b, now); b.tokens >= float64(l.limit.Burst) {
				delete(l.buckets, k)
			}
		}
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &tokenBucket{tokens: float64(l.limit.Burst), last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	return b
}

// refill adds the tokens earned since b.last.
func (l *keyedLimiter) refill(b *tokenBucket, now time.Time) {
	if !now.After(b.last) {
		return
	}
	earned := float64(now.Sub(b.last)) / float64(l.limit.Every)
	b.tokens = math.Min(float64(l.limit.Burst), b.tokens+earned)
	b.last = now
}

// untilToken is how long until b holds one whole token.
func (l *keyedLimiter) untilToken(b *tokenBucket) time.Duration {
	return time.Duration(math.Ceil((1 - b.tokens) * float64(l.limit.Every)))
}

// concurrencyLimit counts what each key holds open at once (event
// streams of an account) against a maximum, per instance.
type concurrencyLimit struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

// newConcurrencyLimit returns a limit of perKey open at once per key.
func newConcurrencyLimit(perKey int) *concurrencyLimit {
	return &concurrencyLimit{max: perKey, open: map[string]int{}}
}

// acquire counts one more open for key, unless key is at the maximum.
func (l *concurrencyLimit) acquire(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] >= l.max {
		return false
	}
	l.open[key]++
	return true
}

// release counts one fewer open for key.
func (l *concurrencyLimit) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] <= 1 {
		delete(l.open, key)
		return
	}
	l.open[key]--
}

// refusal builds a 429 refusal: code RATE_LIMITED or RESOURCE_EXHAUSTED,
// details naming the limit and the whole seconds to wait (at least one),
// which writeError also sends as Retry-After.
func refusal(code save.Code, limit string, wait time.Duration, format string, args ...any) error {
	secs := max(int64(math.Ceil(wait.Seconds())), 1)
	msg := fmt.Sprintf(format, args...)
	return save.Errorf(code, "%s; retry in %d s", msg, secs).
		WithDetail("limit", limit).WithDetail(detailRetryAfter, secs)
}
