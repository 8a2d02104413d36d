package opencloud

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 30 ", 30 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"99999", time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			if got := retryAfter(tt.header, now); got != tt.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func TestTokenBucketNeverExceedsLimitInAnyMinute(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{50, 55, 60, 550} {
		now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
		clock := func() time.Time { return now }
		b := newTokenBucket(limit, clock, func(_ context.Context, d time.Duration) error { now = now.Add(d); return nil })
		var sent []time.Time
		for range 3 * limit {
			if err := b.wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, now)
		}
		for i := range sent {
			n := 0
			for _, s := range sent[i:] {
				if s.Sub(sent[i]) < time.Minute {
					n++
				}
			}
			if n > limit {
				t.Fatalf("limit %d: %d requests in the minute from %v", limit, n, sent[i])
			}
		}
		if span := sent[len(sent)-1].Sub(sent[0]); span < time.Minute {
			t.Errorf("limit %d: %d requests went out within %v", limit, 3*limit, span)
		}
	}
}
