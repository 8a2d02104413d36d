package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/logging"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines to write
// while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// embeddedEnv is the environment of a run on embedded defaults in a fresh
// data directory, listening on a free port.
func embeddedEnv(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		envPort:    "0",
		envDataDir: t.TempDir(),
	}
}

// startRun starts run in the background and returns the base URL once the
// server listens, and a channel that yields run's result.
func startRun(t *testing.T, ctx context.Context, vars map[string]string, stdout io.Writer) (string, <-chan error) {
	t.Helper()
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, env(vars), stdout, WithHost("127.0.0.1"), WithListening(func(addr string) { addrs <- addr }))
	}()
	select {
	case addr := <-addrs:
		return "http://" + addr, done
	case err := <-done:
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not listen within 30 s")
	}
	return "", nil
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestRunServesHealthAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedBuffer
	base, done := startRun(t, ctx, embeddedEnv(t), &logs)

	for _, path := range []string{"/healthz", "/readyz"} {
		code, header, body := get(t, base+path)
		if code != http.StatusOK || body != `{"status":"ok"}` {
			t.Errorf("GET %s = %d %s, want 200 {\"status\":\"ok\"}", path, code, body)
		}
		if header.Get("X-Request-Id") == "" {
			t.Errorf("GET %s: no X-Request-Id in the response", path)
		}
	}
	code, _, body := get(t, base+"/nowhere")
	if code != http.StatusNotFound || !strings.Contains(body, `"code":"NOT_FOUND"`) {
		t.Errorf("GET /nowhere = %d %s, want 404 NOT_FOUND", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within Cloud Run's 10 s after cancel")
	}

	out := logs.String()
	for _, want := range []string{
		`"message":"started the embedded Firestore emulator"`,
		`"message":"started the in-process Pub/Sub (pstest)"`,
		`"severity":"WARNING","message":"no SAVESYNC_SERVER_KEYS set`,
		`"message":"GET /healthz"`,
		`"message":"GET /readyz"`,
		`"message":"shutting down"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line %d is not JSON: %v\n%s", i+1, err, line)
		}
	}
}

// TestRunStartsAnywhere starts the service from an empty working directory
// with no configuration but a free port: the sample game built into the
// binary is the default, and the data directory is made where it runs.
func TestRunStartsAnywhere(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedBuffer
	base, done := startRun(t, ctx, map[string]string{envPort: "0"}, &logs)

	if code, _, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d %s, want 200", code, body)
	}
	// The sample game's starting save: 250 coins.
	code, body := post(t, base+"/v1/sessions", "", `{"userId":79,"jobId":"job-1","schemaVersion":3}`)
	if code != http.StatusOK || !strings.Contains(body, `"coins":250`) {
		t.Errorf("join = %d %s, want 200 with the sample game's 250 coins", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	if !strings.Contains(logs.String(), `"path":"built-in config/sample-game.json"`) {
		t.Errorf("logs do not say the built-in sample game was loaded:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".data")); err != nil {
		t.Errorf("no data directory in the working directory: %v", err)
	}
}

// TestRunListensOnLoopbackWithDevelopmentCredentials runs without a host
// option, as main does: with the development key the service listens on
// 127.0.0.1 and says so; with configured keys on Cloud Run, everywhere.
func TestRunListensOnLoopbackWithDevelopmentCredentials(t *testing.T) {
	tests := []struct {
		name     string
		vars     map[string]string
		wantHost string
		wantLog  string
	}{
		{"development key", nil, "127.0.0.1", `"severity":"WARNING","message":"listening on loopback (127.0.0.1) only: development credentials are in force (the public development server key`},
		{"Cloud Run", map[string]string{envServerKeys: "1:" + validHash, envCloudRunService: "savesync"}, "::", `"message":"savesync listening"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := embeddedEnv(t)
			for k, v := range tt.vars {
				vars[k] = v
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var logs lockedBuffer
			addrs := make(chan string, 1)
			done := make(chan error, 1)
			go func() { done <- Run(ctx, env(vars), &logs, WithListening(func(a string) { addrs <- a })) }()
			var addr string
			select {
			case addr = <-addrs:
			case err := <-done:
				t.Fatalf("run returned before listening: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("run did not listen within 30 s")
			}
			host, _, err := net.SplitHostPort(addr)
			if err != nil || host != tt.wantHost {
				t.Errorf("listening on %s, want host %s", addr, tt.wantHost)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("run = %v", err)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("logs lack %s:\n%s", tt.wantLog, logs.String())
			}
		})
	}
}

// TestRunLogsThePeerNotForwardedFor sends a spoofed X-Forwarded-For to the
// running service off Cloud Run: the log names the real peer.
func TestRunLogsThePeerNotForwardedFor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedBuffer
	base, done := startRun(t, ctx, embeddedEnv(t), &logs)
	req, _ := http.NewRequest("GET", base+"/healthz", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	out := logs.String()
	if strings.Contains(out, "203.0.113.9") || !strings.Contains(out, `"remoteIp":"127.0.0.1"`) {
		t.Errorf("want remoteIp 127.0.0.1 and no trace of the spoofed address:\n%s", out)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	vars := embeddedEnv(t)
	vars[envShutdownTimeout] = "30s"
	var logs lockedBuffer
	err := Run(context.Background(), env(vars), &logs, WithHost("127.0.0.1"))
	if err == nil || !strings.Contains(err.Error(), envShutdownTimeout) {
		t.Fatalf("run = %v, want an error naming %s", err, envShutdownTimeout)
	}
}

// TestNewAppEmbedded checks the embedded wiring: Firestore data lands in the
// data directory and survives a restart, and both topics exist.
func TestNewAppEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := loadConfig(env(embeddedEnv(t)))
	if err != nil {
		t.Fatal(err)
	}
	logger := logging.New(io.Discard, slog.LevelInfo)

	a, err := newApp(ctx, cfg, logger)
	if err != nil {
		t.Fatalf("newApp = %v", err)
	}
	if a.emulator == nil || a.pubsubServer == nil {
		t.Fatalf("embedded mode started emulator=%v pubsub=%v, want both", a.emulator != nil, a.pubsubServer != nil)
	}
	for _, topic := range []string{cfg.invalidationTopic, cfg.auditTopic} {
		name := "projects/" + cfg.project + "/topics/" + topic
		if _, err := a.pubsub.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name}); err != nil {
			t.Errorf("topic %s: %v", name, err)
		}
	}
	want := map[string]any{"coins": int64(7)}
	if _, err := a.firestore.Doc("restart/check").Set(ctx, want); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := a.close(); err != nil {
		t.Fatalf("close = %v", err)
	}
	if err := a.close(); err != nil {
		t.Errorf("second close = %v, want nil", err)
	}

	a, err = newApp(ctx, cfg, logger)
	if err != nil {
		t.Fatalf("newApp after restart = %v", err)
	}
	defer a.close()
	snap, err := a.firestore.Doc("restart/check").Get(ctx)
	if err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if diff := cmp.Diff(want, snap.Data()); diff != "" {
		t.Errorf("document after restart (-want +got):\n%s", diff)
	}
	if err := a.checkFirestore(ctx); err != nil {
		t.Errorf("checkFirestore = %v", err)
	}
}

// post sends a JSON request with the development server key.
func post(t *testing.T, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+devServerKey)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSaveSurvivesRestart writes through the running service on embedded
// defaults, stops it, starts it again on the same data directory and
// reads the save back.
func TestSaveSurvivesRestart(t *testing.T) {
	vars := embeddedEnv(t)
	stop := func(cancel context.CancelFunc, done <-chan error) {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("run did not stop")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	base, done := startRun(t, ctx, vars, io.Discard)
	if code, body := post(t, base+"/v1/sessions", "", `{"userId":77,"jobId":"job-1","schemaVersion":3}`); code != 200 {
		t.Fatalf("join = %d %s", code, body)
	}
	if code, body := post(t, base+"/v1/players/77/mutations", "earn-1", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`); code != 200 {
		t.Fatalf("mutation = %d %s", code, body)
	}
	stop(cancel, done)

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	base, done = startRun(t, ctx, vars, io.Discard)
	req, _ := http.NewRequest("GET", base+"/v1/players/77", nil)
	req.Header.Set("Authorization", "Bearer "+devServerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Version int64 `json:"version"`
		Save    struct {
			Currencies map[string]int64 `json:"currencies"`
		} `json:"save"`
	}
	err = json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.Save.Currencies["coins"] != 255 {
		t.Errorf("after restart: version %d coins %d, want 1 and 255 (250 start + 5)", p.Version, p.Save.Currencies["coins"])
	}
	// A retry of the write after the restart is still recognised.
	if code, body := post(t, base+"/v1/players/77/mutations", "earn-1", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`); code != 200 || !strings.Contains(body, `"version":1`) {
		t.Errorf("replay after restart = %d %s, want the original answer", code, body)
	}
	stop(cancel, done)
}

// TestShutdownEndsLongPollsAndRelayPublishes checks the background wiring:
// the outbox relay publishes a committed mutation's events (its ledger
// entry is marked published), and a long-poll in flight ends as shutdown
// begins instead of holding it to its deadline.
func TestShutdownEndsLongPollsAndRelayPublishes(t *testing.T) {
	vars := embeddedEnv(t)
	project := firestoretest.Project(t)
	vars[envFirestoreEmulatorHost] = firestoretest.Emulator(t).Addr()
	vars[envProject] = project
	fs := firestoretest.Dial(t, project).Firestore
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startRun(t, ctx, vars, io.Discard)
	if code, body := post(t, base+"/v1/sessions", "", `{"userId":78,"jobId":"job-1","schemaVersion":3}`); code != 200 {
		t.Fatalf("join = %d %s", code, body)
	}
	if code, body := post(t, base+"/v1/players/78/mutations", "earn-1", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`); code != 200 {
		t.Fatalf("mutation = %d %s", code, body)
	}

	published := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !published; time.Sleep(50 * time.Millisecond) {
		docs, err := fs.Collection("players/78/ledger").Documents(ctx).GetAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			published, _ = d.Data()["outbox"].(map[string]any)["published"].(bool)
		}
	}
	if !published {
		t.Error("the relay did not publish the mutation's events within 10 s")
	}

	// The write came without Roblox-Job-Id, so it counts as someone else's
	// change to job-1's player: the first poll returns it and a cursor.
	req, _ := http.NewRequest("GET", base+"/v1/servers/job-1/changes?timeout=1s", nil)
	req.Header.Set("Authorization", "Bearer "+devServerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Changes []struct {
			UserID int64 `json:"userId"`
		} `json:"changes"`
		Cursor string `json:"cursor"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Changes) != 1 || page.Changes[0].UserID != 78 || page.Cursor == "" {
		t.Fatalf("first poll = %+v, %v; want player 78's change and a cursor", page, err)
	}

	polled := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/v1/servers/job-1/changes?timeout=25s&cursor="+page.Cursor, nil)
		req.Header.Set("Authorization", "Bearer "+devServerKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- -1
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case code := <-polled:
		t.Fatalf("the long-poll returned %d before shutdown; it should wait for a change", code)
	default:
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(9 * time.Second):
		t.Fatal("run did not stop")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s with a long-poll open; streams should end at once", took)
	}
	select {
	case code := <-polled:
		t.Logf("the long-poll ended with status %d", code)
	case <-time.After(time.Second):
		t.Error("the long-poll was still open after shutdown")
	}
}
