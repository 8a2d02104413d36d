package opencloud

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// tokenBucket paces Open Cloud publishes so that no 60-second window holds
// more than the limit: a bucket of burst tokens refilled at
// (limit − burst) per minute allows at most burst + (limit − burst) = limit
// requests in any minute.
type tokenBucket struct {
	mu       sync.Mutex
	capacity float64
	perNanos float64 // tokens added per nanosecond
	tokens   float64
	last     time.Time
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
}

// newTokenBucket returns a full bucket for limit requests per minute.
func newTokenBucket(limit int, now func() time.Time, sleep func(context.Context, time.Duration) error) *tokenBucket {
	burst := min(max(limit/10, 1), 10)
	return &tokenBucket{
		capacity: float64(burst),
		perNanos: float64(limit-burst) / float64(time.Minute),
		tokens:   float64(burst),
		last:     now(),
		now:      now,
		sleep:    sleep,
	}
}

// errClockStuck is returned when sleeping does not make time pass.
var errClockStuck = errors.New("opencloud: the clock did not advance while waiting for the rate limit")

// wait takes one token, sleeping until one is available.
func (b *tokenBucket) wait(ctx context.Context) error {
	_, err := b.waitFor(ctx)
	return err
}

// waitFor is wait that also says how long it slept.
func (b *tokenBucket) waitFor(ctx context.Context) (time.Duration, error) {
	var waited time.Duration
	for range 8 {
		b.mu.Lock()
		now := b.now()
		if now.After(b.last) {
			b.tokens = math.Min(b.capacity, b.tokens+float64(now.Sub(b.last))*b.perNanos)
			b.last = now
		}
		if b.tokens >= 1 {
			b.tokens--
			b.mu.Unlock()
			return waited, nil
		}
		need := time.Duration(math.Ceil((1-b.tokens)/b.perNanos)) + time.Nanosecond
		b.mu.Unlock()
		if err := b.sleep(ctx, need); err != nil {
			return waited, err
		}
		waited += need
	}
	return waited, errClockStuck
}
