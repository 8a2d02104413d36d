package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/savesync/savesync/store"
)

func TestWaitForLink(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts store.WatchOptions
	}{
		{"listening", store.WatchOptions{}},
		{"polling", store.WatchOptions{Poll: true, PollInterval: 20 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st, _ := newLinkStore(t)
			code := mustLinkCode(t, st, "uid-w")
			got := make(chan store.Link, 1)
			errs := make(chan error, 1)
			go func() {
				l, ok, err := st.WaitForLink(ctx, "uid-w", tt.opts)
				if err == nil && !ok {
					t.Error("WaitForLink ended without a link")
				}
				errs <- err
				got <- l
			}()
			if _, err := st.RedeemLinkCode(ctx, code, 4801); err != nil {
				t.Fatal(err)
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			if l := <-got; l.UID != "uid-w" || l.UserID != 4801 {
				t.Errorf("WaitForLink = %+v, want uid-w linked to 4801", l)
			}

			// Linked already: at once. Ended context: not ok, no error.
			if l, ok, err := st.WaitForLink(ctx, "uid-w", tt.opts); err != nil || !ok || l.UserID != 4801 {
				t.Errorf("WaitForLink when linked = %+v %v %v", l, ok, err)
			}
			cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			if _, ok, err := st.WaitForLink(cctx, "uid-never", tt.opts); err != nil || ok {
				t.Errorf("WaitForLink past its context = %v %v, want not ok and no error", ok, err)
			}
		})
	}
}
