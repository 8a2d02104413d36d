// Package authtest runs the Firebase Auth emulator (npm firebase-tools,
// installed by `npm ci`) for the tests that verify real ID tokens: the one
// named by FIREBASE_AUTH_EMULATOR_HOST, or one started once per test binary
// from scripts/auth-emulator.sh on free loopback ports.
package authtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// HostEnv is the variable the Admin SDK reads to find the emulator.
const HostEnv = "FIREBASE_AUTH_EMULATOR_HOST"

var (
	once    sync.Once
	host    string
	err     error
	process *exec.Cmd
)

// Host returns the emulator's host:port for project, starting it on first
// use when the environment names none, and sets HostEnv for the Admin SDK.
// Without it the test fails: the routes it guards are tested against
// nothing less.
func Host(t testing.TB, project string) string {
	t.Helper()
	once.Do(func() {
		if h := os.Getenv(HostEnv); h != "" {
			host = h
			return
		}
		host, err = start(project)
		if err == nil {
			err = os.Setenv(HostEnv, host)
		}
	})
	if err != nil {
		t.Fatalf("the Firebase Auth emulator is needed (run `npm ci` once, or set %s): %v", HostEnv, err)
	}
	return host
}

// start runs scripts/auth-emulator.sh in its own process group and waits
// for it to print the emulator's address.
func start(project string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "auth-emulator.sh"))
	cmd.Env = append(os.Environ(), fmt.Sprintf("AUTH_EMULATOR_WATCH_PID=%d", os.Getpid()), "AUTH_EMULATOR_PROJECT="+project)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	process = cmd
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if h, ok := strings.CutPrefix(sc.Text(), HostEnv+"="); ok {
				found <- h
			}
		}
		close(found)
	}()
	select {
	case h, ok := <-found:
		if !ok {
			_ = cmd.Wait()
			process = nil
			return "", fmt.Errorf("scripts/auth-emulator.sh exited: %s", strings.TrimSpace(stderr.String()))
		}
		return h, nil
	case <-time.After(3 * time.Minute):
		Stop()
		return "", fmt.Errorf("scripts/auth-emulator.sh printed no address within 3 minutes: %s", strings.TrimSpace(stderr.String()))
	}
}

// Stop stops the emulator this test binary started, if any; call it from
// TestMain after the tests ran.
func Stop() {
	if process == nil || process.Process == nil {
		return
	}
	pgid := process.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = process.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	process = nil
}

// repoRoot is the directory holding go.mod, above the test's directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		dir = filepath.Dir(dir)
	}
	return "", fmt.Errorf("no go.mod above the test directory")
}
