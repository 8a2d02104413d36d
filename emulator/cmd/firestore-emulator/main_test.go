package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// With childEnv set, the test binary runs the command itself, so tests can
// kill it with SIGKILL.
const childEnv = "FIRESTORE_EMULATOR_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(childEnv); ok {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := run(ctx, strings.Fields(args), os.Stdout, os.Stderr); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// readHost reads the export line and returns the emulator address.
func readHost(t *testing.T, r io.Reader) string {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("read export line: %v", err)
	}
	const prefix = "export FIRESTORE_EMULATOR_HOST="
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("first line %q, want %s...", line, prefix)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, prefix))
}

func client(t *testing.T, addr string) *firestore.Client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := firestore.NewClient(context.Background(), "cmd-test", option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--port", "0"}, pw, io.Discard) }()
	addr := readHost(t, pr)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("address %q, want 127.0.0.1:PORT", addr)
	}
	c := client(t, addr)
	if _, err := c.Doc("a/b").Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	badIndexes := filepath.Join(t.TempDir(), "bad.indexes.json")
	if err := os.WriteFile(badIndexes, []byte(`{"indexes":[{"collectionGroup":"c","fields":[{"fieldPath":"a","order":"UP"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := [][]string{{"--port", "70000"}, {"extra"}, {"--nope"}, {"--port", "0", "--indexes", filepath.Join(t.TempDir(), "missing.json")}, {"--port", "0", "--indexes", badIndexes}}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
				t.Errorf("run(%q) succeeded, want an error", args)
			}
		})
	}
}

func TestRunChecksIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firestore.indexes.json")
	indexes := `{"indexes":[{"collectionGroup":"cities","queryScope":"COLLECTION","fields":[
		{"fieldPath":"country","order":"ASCENDING"},{"fieldPath":"population","order":"DESCENDING"}]}]}`
	if err := os.WriteFile(path, []byte(indexes), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--port", "0", "--indexes", path}, pw, io.Discard) }()
	c := client(t, readHost(t, pr))
	cities := c.Collection("cities")
	tests := []struct {
		name string
		q    firestore.Query
		want codes.Code
	}{
		{"declared", cities.Where("country", "==", "USA").OrderBy("population", firestore.Desc), codes.OK},
		{"undeclared", cities.Where("country", "==", "USA").OrderBy("population", firestore.Asc), codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.q.Documents(ctx).GetAll(); status.Code(err) != tt.want {
				t.Errorf("err = %v, want code %v", err, tt.want)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=--port 0 --data-dir "+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, readHost(t, out)
}

func TestKillNineKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cmd, addr := startChild(t, dir)
	c := client(t, addr)
	for i := 1; i <= 20; i++ {
		if _, err := c.Doc("k/a").Set(ctx, map[string]any{"n": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	_, addr2 := startChild(t, dir)
	snap, err := client(t, addr2).Doc("k/a").Get(ctx)
	if err != nil {
		t.Fatalf("Get after kill -9: %v", err)
	}
	if n, _ := snap.DataAt("n"); n != int64(20) {
		t.Errorf("n = %v, want 20", n)
	}
}

func TestRunLatencyFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--port", "0", "--latency", "15ms", "--jitter", "5ms"}, pw, io.Discard)
	}()
	addr := readHost(t, pr)
	resp, err := http.Get("http://" + addr + "/emulator/v1/latency")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := strings.TrimSpace(string(body)), `{"latency":"15ms","jitter":"5ms"}`; got != want {
		t.Errorf("latency model %s, want %s", got, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestRunRefusesBadLatencyFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error or on stderr
	}{
		{[]string{"--latency", "-5ms"}, "--latency -5ms is negative"},
		{[]string{"--jitter", "-1ms"}, "--jitter -1ms is negative"},
		{[]string{"--latency", "2m"}, "--latency 2m0s is more than the maximum of 1m0s"},
		{[]string{"--jitter", "fast"}, `invalid value "fast" for flag -jitter`},
		{[]string{"--latency", "15"}, `invalid value "15" for flag -latency`},
		{[]string{"--version-retention", "30s"}, "--version-retention 30s is below the minimum 1m0s"},
		{[]string{"--version-retention", "-1h"}, "--version-retention -1h0m0s is below the minimum 1m0s"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			err := run(context.Background(), append([]string{"--port", "0"}, tt.args...), io.Discard, &stderr)
			if err == nil {
				t.Fatalf("run(%q) succeeded, want an error", tt.args)
			}
			if msg := err.Error() + "\n" + stderr.String(); !strings.Contains(msg, tt.want) {
				t.Errorf("run(%q): %v (stderr %q), want it to say %q", tt.args, err, stderr.String(), tt.want)
			}
		})
	}
}
