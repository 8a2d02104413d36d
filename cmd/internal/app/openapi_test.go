package app

import (
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
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

	param := regexp.MustCompile(`:([A-Za-z]+)`)
	var served []string
	for _, r := range a.engine.Routes() {
		served = append(served, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	sort.Strings(served)

	spec, err := os.ReadFile("../../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	path := ""
	inPaths := false
	for _, line := range strings.Split(string(spec), "\n") {
		switch {
		case line == "paths:":
			inPaths = true
		case inPaths && len(line) > 0 && line[0] != ' ':
			inPaths = false
		case inPaths && strings.HasPrefix(line, "  /") && strings.HasSuffix(line, ":"):
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case inPaths && regexp.MustCompile(`^    (get|post|put|delete|patch):`).MatchString(line):
			documented = append(documented, strings.ToUpper(strings.TrimSuffix(strings.TrimSpace(line), ":"))+" "+path)
		}
	}
	sort.Strings(documented)
	if diff := cmp.Diff(documented, served); diff != "" {
		t.Errorf("openapi.yaml (-documented +served):\n%s", diff)
	}
}
