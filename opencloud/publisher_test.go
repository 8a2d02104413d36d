package opencloud_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/opencloud"
)

// openCloud answers publishes with a script of statuses (then 200) and
// records what it was sent.
type openCloud struct {
	mu     sync.Mutex
	script []int
	got    []map[string]string
	keys   []string
	paths  []string
}

func (o *openCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]string
	_ = json.NewDecoder(r.Body).Decode(&body)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, body)
	o.keys = append(o.keys, r.Header.Get("x-api-key"))
	o.paths = append(o.paths, r.URL.Path)
	status := http.StatusOK
	if len(o.script) > 0 {
		status, o.script = o.script[0], o.script[1:]
	}
	w.WriteHeader(status)
}

func TestPublish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		script    []int
		wantErr   *opencloud.Undelivered
		wantStats opencloud.Stats
	}{
		{name: "accepted", wantStats: opencloud.Stats{Attempts: 1, Published: 1}},
		{name: "server errors retried", script: []int{503, 500}, wantStats: opencloud.Stats{Attempts: 3, Published: 1}},
		{name: "refused at once", script: []int{403},
			wantErr:   &opencloud.Undelivered{Attempts: 1, LastStatus: 403, Reason: "Open Cloud answered 403"},
			wantStats: opencloud.Stats{Attempts: 1}},
		{name: "every attempt failed", script: []int{429, 503, 502},
			wantErr:   &opencloud.Undelivered{Attempts: 3, LastStatus: 502, Reason: "Open Cloud answered 502"},
			wantStats: opencloud.Stats{Attempts: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &openCloud{script: tt.script}
			srv := httptest.NewServer(fake)
			t.Cleanup(srv.Close)
			var waited []time.Duration
			p, err := opencloud.NewPublisher(opencloud.Options{
				BaseURL: srv.URL, UniverseID: 4242, APIKey: "key", MaxAttempts: 3,
				Sleep:  func(_ context.Context, d time.Duration) error { waited = append(waited, d); return nil },
				Jitter: func(n int64) int64 { return n - 1 },
			})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Publish(context.Background(), "savesync", `{"t":"inv"}`)
			var got *opencloud.Undelivered
			if errors.As(err, &got) != (tt.wantErr != nil) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Publish: %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantErr, got); diff != "" {
				t.Errorf("undelivered (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStats, p.Stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			for i, body := range fake.got {
				if want := map[string]string{"topic": "savesync", "message": `{"t":"inv"}`}; !cmp.Equal(want, body) ||
					fake.keys[i] != "key" || fake.paths[i] != "/cloud/v2/universes/4242:publishMessage" {
					t.Errorf("request %d: %v key %q path %q", i, body, fake.keys[i], fake.paths[i])
				}
			}
			// One backoff between attempts, none after the last.
			if want := max(len(fake.got)-1, 0); len(waited) != want {
				t.Errorf("%d waits %v for %d requests, want %d", len(waited), waited, len(fake.got), want)
			}
		})
	}
}

func TestNewPublisherRefusesIncompleteOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]opencloud.Options{
		"no universe":      {APIKey: "key"},
		"no key":           {UniverseID: 1},
		"negative players": {UniverseID: 1, APIKey: "key", ConcurrentPlayers: -1},
	} {
		if _, err := opencloud.NewPublisher(opts); err == nil {
			t.Errorf("%s: NewPublisher accepted %+v", name, opts)
		}
	}
}
