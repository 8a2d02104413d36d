package app

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/logging"
)

// TestOpenAPIDescribesEveryRoute compares the routes the wired service
// serves with the operations openapi.yaml documents, both ways.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	// The companion routes are served only with a Firebase Auth to verify
	// tokens; an address is enough, nothing is called while wiring.
	t.Setenv(envAuthEmulatorHost, "127.0.0.1:9")
	gin.SetMode(gin.TestMode)
	vars := embeddedEnv(t)
	vars[envAuthEmulatorHost] = "127.0.0.1:9"
	cfg, err := loadConfig(env(vars))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(context.Background(), cfg, logging.New(io.Discard, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()

	var served []string
	for _, r := range a.engine.Routes() {
		served = append(served, r.Method+" "+specRoute(r.Path))
	}
	sort.Strings(served)

	var documented []string
	for _, o := range loadSpec(t).operations {
		documented = append(documented, o.route())
	}
	sort.Strings(documented)
	if diff := cmp.Diff(documented, served); diff != "" {
		t.Errorf("openapi.yaml (-documented +served):\n%s", diff)
	}
}
