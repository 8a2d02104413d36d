// Package fstest runs the project's Firestore emulator for tests of the
// packages that store data in Firestore: one emulator per test binary, one
// project per test, so tests are isolated and can run in parallel.
package fstest

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

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
// a free loopback port. It lives until the test binary exits.
func Emulator(t testing.TB) *emulator.Server {
	t.Helper()
	startOnce.Do(func() {
		server, startErr = emulator.Start(emulator.Options{Addr: "127.0.0.1:0"})
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
