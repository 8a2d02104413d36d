package roblox_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// projectPaths returns every $path of a Rojo project tree.
func projectPaths(t *testing.T, file string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var project struct {
		Name string         `json:"name"`
		Tree map[string]any `json:"tree"`
	}
	if err := json.Unmarshal(raw, &project); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []string
	var walk func(node map[string]any)
	walk = func(node map[string]any) {
		for k, v := range node {
			if k == "$path" {
				out = append(out, v.(string))
			} else if child, ok := v.(map[string]any); ok {
				walk(child)
			}
		}
	}
	walk(project.Tree)
	return out
}

func TestPackaging(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-package")
	h.startGame("longPoll = false")

	wally, err := os.ReadFile("wally.toml")
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + ` = "([^"]*)"`).FindSubmatch(wally)
		if m == nil {
			return ""
		}
		return string(m[1])
	}
	if got := field("realm"); got != "server" {
		t.Errorf("wally.toml realm = %q, want server (the module must never reach clients)", got)
	}
	if got, want := field("version"), h.peek("SaveSync.VERSION"); got != want {
		t.Errorf("wally.toml version = %q, SaveSync.VERSION = %v: keep them equal", got, want)
	}
	if got := field("name"); !strings.Contains(got, "/") {
		t.Errorf("wally.toml name = %q, want scope/name", got)
	}

	for _, project := range []string{"default.project.json", "example/default.project.json"} {
		paths := projectPaths(t, project)
		if len(paths) == 0 {
			t.Errorf("%s names no files", project)
		}
		for _, p := range paths {
			if _, err := os.Stat(filepath.Join(filepath.Dir(project), p)); err != nil {
				t.Errorf("%s: $path %s: %v", project, p, err)
			}
		}
	}

	// Every script compiles under the tests' Lua 5.1.
	files, _ := filepath.Glob("*.lua")
	more, _ := filepath.Glob("example/src/*.lua")
	for _, f := range append(files, more...) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		L := lua.NewState()
		if _, err := L.LoadString(string(src)); err != nil {
			t.Errorf("%s does not compile: %v", f, err)
		}
		L.Close()
	}

	// Roblox names for the calls that yield.
	for _, pair := range [][2]string{{"JoinAsync", "Join"}, {"LeaveAsync", "Leave"}, {"CloseAsync", "Close"}} {
		if !h.truthy("SaveSync." + pair[0] + " == SaveSync." + pair[1] + " and SaveSync." + pair[0] + " ~= nil") {
			t.Errorf("SaveSync.%s is not SaveSync.%s", pair[0], pair[1])
		}
	}
	for _, name := range []string{"MutateAsync", "RedeemLinkCodeAsync", "EraseAsync"} {
		if !h.truthy("type(SaveSync." + name + ") == \"function\"") {
			t.Errorf("SaveSync.%s is missing", name)
		}
	}
}
