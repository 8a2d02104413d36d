package events

import (
	"encoding/json"
	"testing"

	"github.com/savesync/savesync/opencloud"
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
				if len(text) > opencloud.MaxMessageLength {
					t.Errorf("chunk %d encodes to %d characters, over %d", i, len(text), opencloud.MaxMessageLength)
				}
				if i < len(chunks)-1 && tt.perMessage == 0 {
					grown := msg
					grown.Users = append(grown.Users[:len(grown.Users):len(grown.Users)], tt.players[next].userID)
					grown.Versions = append(grown.Versions[:len(grown.Versions):len(grown.Versions)], tt.players[next].version)
					if more, _ := json.Marshal(grown); len(more) <= opencloud.MaxMessageLength {
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
