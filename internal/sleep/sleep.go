// Package sleep waits for a while unless the context ends first: the one
// timer-and-select of the retry and backoff loops.
package sleep

import (
	"context"
	"time"
)

// For waits d, or until ctx is done, whichever comes first; it returns
// ctx.Err() in the second case.
func For(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
