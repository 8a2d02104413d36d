package pubsub

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func TestChunkPlayersFillsMessagesWithinLimit(t *testing.T) {
	t.Parallel()
	players := func(n int, firstID, version int64) []playerVersion {
		out := make([]playerVersion, n)
		for i := range out {
			out[i] = playerVersion{userID: firstID + int64(i), version: version}
		}
		return out
	}
	tests := []struct {
		name       string
		players    []playerVersion
		perMessage int
		wantSizes  []int
	}{
		{"one player", players(1, 1, 1), 0, []int{1}},
		{"small ids fill one message", players(100, 1, 1), 0, []int{100}},
		{"long ids and versions split", players(200, 90_000_000_000, 9_000_000_000), 0, []int{43, 43, 43, 43, 28}},
		{"a cap per message", players(5, 1, 1), 2, []int{2, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := chunkPlayers(tt.players, tt.perMessage)
			var sizes []int
			next := 0
			for i, c := range chunks {
				sizes = append(sizes, len(c))
				msg := RobloxMessage{Type: RobloxInvalidationType}
				for _, p := range c {
					if p.userID != tt.players[next].userID {
						t.Fatalf("chunk %d: player %d out of order, want %d", i, p.userID, tt.players[next].userID)
					}
					next++
					msg.Users = append(msg.Users, p.userID)
					msg.Versions = append(msg.Versions, p.version)
				}
				text, err := json.Marshal(msg)
				if err != nil {
					t.Fatal(err)
				}
				if len(text) > MaxRobloxMessageLength {
					t.Errorf("chunk %d encodes to %d characters, over %d", i, len(text), MaxRobloxMessageLength)
				}
				if i < len(chunks)-1 && tt.perMessage == 0 {
					grown := msg
					grown.Users = append(grown.Users[:len(grown.Users):len(grown.Users)], tt.players[next].userID)
					grown.Versions = append(grown.Versions[:len(grown.Versions):len(grown.Versions)], tt.players[next].version)
					if more, _ := json.Marshal(grown); len(more) <= MaxRobloxMessageLength {
						t.Errorf("chunk %d has room for one more player (%d characters)", i, len(more))
					}
				}
			}
			if next != len(tt.players) {
				t.Errorf("chunks hold %d players, want %d", next, len(tt.players))
			}
			if len(sizes) != len(tt.wantSizes) {
				t.Fatalf("chunk sizes %v, want %v", sizes, tt.wantSizes)
			}
			for i := range sizes {
				if sizes[i] != tt.wantSizes[i] {
					t.Errorf("chunk sizes %v, want %v", sizes, tt.wantSizes)
					break
				}
			}
		})
	}
}

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
