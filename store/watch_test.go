package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// watchSeen is what a watcher reports, reduced for comparison.
type watchSeen struct {
	Version int64
	Owner   string
	Volume  any
}

func TestWatchPlayerSeesOtherInstances(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts store.WatchOptions
	}{
		{"listener", store.WatchOptions{PollInterval: 20 * time.Millisecond}},
		{"polling", store.WatchOptions{Poll: true, PollInterval: 20 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			project := firestoretest.Project(t)
			cfg := firestoretest.GameConfig(t)
			ca, cb := firestoretest.Dial(t, project), firestoretest.Dial(t, project)
			watcher := store.New(ca.Firestore, ca.GAPIC, project, cfg, store.Options{})
			writer := store.New(cb.Firestore, cb.GAPIC, project, cfg, store.Options{})

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			seen := make(chan watchSeen, 16)
			done := make(chan error, 1)
			go func() {
				done <- watcher.WatchPlayer(ctx, 77, tt.opts, func(pc store.PlayerChange) error {
					settings, _ := pc.Player.Save["settings"].(map[string]any)
					seen <- watchSeen{Version: pc.Player.Version, Owner: pc.OwnerUID, Volume: settings["volume"]}
					return nil
				})
			}()
			next := func() watchSeen {
				t.Helper()
				select {
				case s := <-seen:
					return s
				case <-ctx.Done():
					t.Fatal("no change reported within the deadline")
					return watchSeen{}
				}
			}

			if diff := cmp.Diff(watchSeen{Version: 0, Volume: int64(80)}, next()); diff != "" {
				t.Errorf("first report (-want +got):\n%s", diff)
			}
			if _, err := writer.ApplyMutation(ctx, store.MutationRequest{UserID: 77, Actor: save.Actor{Kind: save.ActorServer, ID: "universe/1"}, IdempotencyKey: "w1",
				Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(30)}}}}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(watchSeen{Version: 1, Volume: int64(30)}, next()); diff != "" {
				t.Errorf("after a write elsewhere (-want +got):\n%s", diff)
			}
			lc, err := writer.CreateLinkCode(ctx, "uid-watch")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := writer.RedeemLinkCode(ctx, lc.Code, 77); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(watchSeen{Version: 1, Owner: "uid-watch", Volume: int64(30)}, next()); diff != "" {
				t.Errorf("after linking (-want +got):\n%s", diff)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("WatchPlayer after cancel = %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("WatchPlayer did not return after its context ended")
			}
		})
	}
}

func TestWatchPlayerStopsOnCallbackError(t *testing.T) {
	t.Parallel()
	st, _ := newLinkStore(t)
	stop := errors.New("enough")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := 0
	err := st.WatchPlayer(ctx, 5, store.WatchOptions{Poll: true, PollInterval: 10 * time.Millisecond}, func(store.PlayerChange) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("WatchPlayer = %v after %d calls, want the callback's error after 1", err, calls)
	}
}
