// Package firestoretest runs the project's Firestore emulator for tests of the
// packages that store data in Firestore: one emulator per test binary, one
// project per test, so tests are isolated and can run in parallel.
package firestoretest

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/savesync/savesync"
	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

var (
	startOnce sync.Once
	server    *emulator.Server
	startErr  error
	projects  atomic.Int64
)

// Emulator returns the test binary's emulator, starting it on first use on
// a free loopback port. It lives until the test binary exits. It checks
// indexes against the repository's firestore.indexes.json, so a query that
// Cloud Firestore would refuse for a missing index fails here too.
func Emulator(t testing.TB) *emulator.Server {
	t.Helper()
	startOnce.Do(func() {
		var indexes *emulator.IndexConfig
		if indexes, startErr = emulator.ParseIndexConfig(savesync.FirestoreIndexes); startErr != nil {
			return
		}
		server, startErr = emulator.Start(emulator.Options{Addr: "127.0.0.1:0", Indexes: indexes})
	})
	if startErr != nil {
		t.Fatalf("start the Firestore emulator: %v", startErr)
	}
	return server
}

// Project returns a project id no other test in this binary uses. It keeps
// to Google Cloud's project id rules (6 to 30 lowercase letters, digits and
// hyphens), so it also passes the service's configuration checks.
func Project(t testing.TB) string {
	t.Helper()
	clean := strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return -1
	}, strings.ToLower(strings.TrimPrefix(t.Name(), "Test")))
	id := fmt.Sprintf("t%d-%d-%s", os.Getpid()%10000, projects.Add(1), clean)
	if len(id) > 30 {
		id = id[:30]
	}
	return strings.TrimRight(id, "-")
}

// Dial connects both Firestore clients to the test emulator for a project
// and closes them when the test ends.
func Dial(t testing.TB, project string) store.Clients {
	t.Helper()
	srv := Emulator(t)
	c, err := store.Dial(context.Background(), project, srv.Addr())
	if err != nil {
		t.Fatalf("dial the emulator: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

//go:embed game.json
var gameJSON []byte

// GameConfig is the game config the store and handler tests run with:
// two currencies, a stat, unique and stackable items, two loadout slots,
// two settings, a collection, one SKU, and schema 3 with two migrations.
func GameConfig(t testing.TB) *save.Config {
	t.Helper()
	cfg, err := save.ParseConfig(gameJSON)
	if err != nil {
		t.Fatalf("parse the test game config: %v", err)
	}
	return cfg
}

// Clock is a settable clock for tests of leases, expiry and time ranges.
// It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Store returns a store with the test game config over a fresh emulator
// project, and the project's id.
func Store(t testing.TB, opts store.Options) (*store.Store, string) {
	t.Helper()
	project := Project(t)
	c := Dial(t, project)
	return store.New(c.Firestore, c.GAPIC, project, GameConfig(t), opts), project
}
