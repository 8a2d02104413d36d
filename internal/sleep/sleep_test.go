package sleep

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestForWaitsOrEndsWithTheContext(t *testing.T) {
	if err := For(context.Background(), time.Millisecond); err != nil {
		t.Errorf("For(1ms) = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := For(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("For(an hour) on a cancelled context = %v, want context.Canceled", err)
	}
}
