package app

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRunBringsUpTheLocalStack runs what `make run` runs
// (scripts/dev.sh, the README's first command) on free ports: the page,
// its config.json naming the service and the Auth emulator, the service
// answering the page's origin, and an account the emulator signs up linked
// by the README's curl; the support console beside it, its origin allowed
// too and its staff accounts made. SIGTERM stops all of it.
func TestMakeRunBringsUpTheLocalStack(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	api, page, support, auth := freePort(t), freePort(t), freePort(t), freePort(t)
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "dev.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PORT="+api, "COMPANION_PORT="+page, "SUPPORT_PORT="+support, "AUTH_EMULATOR_PORT="+auth,
		"SAVESYNC_DATA_DIR="+t.TempDir(), "FIREBASE_AUTH_EMULATOR_HOST=", "SAVESYNC_LOG_LEVEL=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	logged := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
		close(logged)
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})

	pageURL := "http://127.0.0.1:" + page
	apiURL := "http://127.0.0.1:" + api
	var cfg struct {
		APIBase         string `json:"apiBase"`
		AuthEmulatorURL string `json:"authEmulatorUrl"`
	}
	waitUntil(t, 4*time.Minute, "the page's config.json and the service", func() bool {
		r, err := http.Get(pageURL + "/config.json")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		if json.NewDecoder(r.Body).Decode(&cfg) != nil || cfg.AuthEmulatorURL == "" {
			return false
		}
		h, err := http.Get(apiURL + "/healthz")
		if err != nil {
			return false
		}
		h.Body.Close()
		return h.StatusCode == http.StatusOK
	})
	if cfg.APIBase != apiURL || cfg.AuthEmulatorURL != "http://127.0.0.1:"+auth {
		t.Errorf("config.json = %+v, want apiBase %s and the emulator on port %s", cfg, apiURL, auth)
	}
	supportURL := "http://127.0.0.1:" + support
	for _, u := range []string{pageURL, supportURL} {
		if r, err := http.Get(u + "/"); err != nil || r.StatusCode != http.StatusOK {
			t.Errorf("the page %s: %v %v", u, err, r)
		} else {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if !strings.Contains(string(b), "app.js") {
				t.Errorf("the page %s does not load app.js: %.200s", u, b)
			}
		}
	}

	// The page's origin is allowed, and the journey of the README works:
	// sign up on the emulator, ask for a code, redeem it as the game server.
	for origin, path := range map[string]string{pageURL: "/v1/me/link-codes", supportURL: "/v1/admin/players/42/ledger"} {
		pre, _ := http.NewRequest("OPTIONS", apiURL+path, nil)
		pre.Header.Set("Origin", origin)
		pre.Header.Set("Access-Control-Request-Method", "POST")
		pre.Header.Set("Access-Control-Request-Headers", "authorization")
		if r, err := http.DefaultClient.Do(pre); err != nil || r.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("preflight from %s: %v %v", origin, err, r)
		}
	}
	s := &apiStack{t: t, base: apiURL, authHost: "127.0.0.1:" + auth, client: &http.Client{Timeout: requestTimeout}}
	u := s.signUp()
	code, _ := s.call("POST", "/v1/me/link-codes", bearerOf(u.IDToken), nil).object()["code"].(string)
	if r := s.call("POST", "/v1/link-codes/"+code+"/redeem", bearerOf("dev-server-key"), map[string]any{"userId": 42}); r.status != http.StatusOK {
		t.Errorf("redeem as in the README: %s %s", r.summary(), r.body)
	}
	// The staff accounts the script prints answer the support routes.
	for _, role := range []string{"support", "admin"} {
		staff := &fbUser{Email: role + "@example.com", Password: "staff-123"}
		s.signIn(staff)
		if r := s.call("GET", "/v1/admin/players/42/ledger", bearerOf(staff.IDToken), nil); r.status != http.StatusOK {
			t.Errorf("the ledger as %s: %s %s", staff.Email, r.summary(), r.body)
		}
	}

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { <-logged; done <- cmd.Wait() }()
	select {
	case <-done:
		stopped = true
	case <-time.After(30 * time.Second):
		t.Fatalf("scripts/dev.sh did not stop within 30 s of SIGTERM; its output:\n%s", log.String())
	}
	for _, port := range []string{api, page, support, auth} {
		if c, err := (&http.Client{Timeout: time.Second}).Get("http://127.0.0.1:" + port + "/"); err == nil {
			c.Body.Close()
			t.Errorf("port %s still answers after the stop", port)
		}
	}
	if t.Failed() {
		t.Logf("scripts/dev.sh output:\n%s", log.String())
	}
}

// waitUntil polls ok until it holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s not up within %s", what, d)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
