package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process the tool runs (a service instance or the
// emulator) and restarts after killing it. Its output is not kept: lines
// are counted by severity, and the last error lines are remembered.
type proc struct {
	name  string
	bin   string
	args  []string
	env   []string
	ready func(ctx context.Context) error

	mu          sync.Mutex
	cmd         *exec.Cmd
	exited      chan struct{}
	incarnation int
	logs        *logTally
}

// start runs the process and waits until ready answers, at most 60 s.
func (p *proc) start(ctx context.Context) error {
	p.mu.Lock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	// The children die with the tool, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	p.incarnation++
	p.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if err := p.ready(rctx); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited while starting; its last lines:\n%s", p.name, p.logs.tail())
		case <-rctx.Done():
			return fmt.Errorf("%s not ready within 60s; its last lines:\n%s", p.name, p.logs.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop sends SIGTERM, as Cloud Run does, and SIGKILL after 15 s.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// pid is the running process's id and incarnation (0 when not running).
func (p *proc) pid() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0, p.incarnation
	}
	select {
	case <-p.exited:
		return 0, p.incarnation
	default:
	}
	return p.cmd.Process.Pid, p.incarnation
}

// logTally counts a child's output lines by severity (Cloud Logging's
// "severity" of the service, slog's "level" of the emulator).
type logTally struct {
	mu      sync.Mutex
	partial []byte
	counts  map[string]int64
	errs    []string
	last    []string
}

func newLogTally() *logTally { return &logTally{counts: map[string]int64{}} }

func (l *logTally) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	data := append(l.partial, b...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		l.line(data[:i])
		data = data[i+1:]
	}
	l.partial = append([]byte(nil), data...)
	return len(b), nil
}

func (l *logTally) line(b []byte) {
	sev := "OTHER"
	for _, s := range []string{"ERROR", "WARNING", "WARN", "INFO", "DEBUG"} {
		if bytes.Contains(b, []byte(`"severity":"`+s+`"`)) || bytes.Contains(b, []byte(`"level":"`+s+`"`)) {
			sev = s
			break
		}
	}
	if sev == "WARN" {
		sev = "WARNING"
	}
	l.counts[sev]++
	text := string(b)
	if len(text) > 400 {
		text = text[:400] + "…"
	}
	if sev == "ERROR" && len(l.errs) < 20 {
		l.errs = append(l.errs, text)
	}
	l.last = append(l.last, text)
	if len(l.last) > 20 {
		l.last = l.last[1:]
	}
}

func (l *logTally) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "\n")
}

func (l *logTally) snapshot() (map[string]int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(map[string]int64, len(l.counts))
	for k, v := range l.counts {
		c[k] = v
	}
	return c, append([]string(nil), l.errs...)
}

// buildBinaries builds cmd/savesync and the emulator's command into dir,
// from the module that holds the working directory.
func buildBinaries(ctx context.Context, dir string) (service, emu string, err error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("find the module (go env GOMOD): %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if _, err := os.Stat(filepath.Join(root, "emulator", "go.mod")); err != nil {
		return "", "", fmt.Errorf("run the tool inside the savesync repository (%s has no emulator module): %w", root, err)
	}
	service, emu = filepath.Join(dir, "savesync"), filepath.Join(dir, "firestore-emulator")
	for _, b := range []struct{ dir, out, pkg string }{
		{root, service, "./cmd/savesync"},
		{filepath.Join(root, "emulator"), emu, "./cmd/firestore-emulator"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return service, emu, nil
}

// freePort asks the kernel for a free loopback port. A process started on
// it keeps it across restarts, like an instance behind a fixed address.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// httpReady returns a readiness check that wants 200 from url.
func httpReady(url string) func(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d", url, resp.StatusCode)
		}
		return nil
	}
}

// baseEnv is what every child inherits from the tool's environment.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// dirSize is the total size of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// crashEvent is one kill -9 and restart.
type crashEvent struct {
	At        time.Time `json:"at"`
	Target    string    `json:"target"`
	RestartMs float64   `json:"restartMs"`
	Error     string    `json:"error,omitempty"`
	// PortRetries counts starts tried again because a port of the
	// process was taken by another socket meanwhile.
	PortRetries int `json:"portRetries,omitempty"`
}

// crasher kills a process every interval and restarts it, until stopped.
type crasher struct {
	mu     sync.Mutex
	events []crashEvent
	cancel context.CancelFunc
	done   chan struct{}
}

// startCrashes kills targets in turn every interval.
func startCrashes(ctx context.Context, every time.Duration, targets []*proc) *crasher {
	cctx, cancel := context.WithCancel(ctx)
	c := &crasher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
			}
			p := targets[i%len(targets)]
			ev := crashEvent{At: time.Now().UTC(), Target: p.name}
			p.kill()
			start := time.Now()
			// A restart is not cut short by the end of the phase: the
			// run goes on against every instance.
			err := p.start(context.WithoutCancel(cctx))
			// The instance's ports are fixed across restarts, and the
			// kernel may have handed one to an outgoing connection in the
			// meantime: a harness collision, not a service failure, so
			// the start is tried again (a few times) after a pause.
			for try := 0; err != nil && strings.Contains(err.Error(), "address already in use") && try < 5; try++ {
				ev.PortRetries++
				time.Sleep(time.Second)
				err = p.start(context.WithoutCancel(cctx))
			}
			if err != nil {
				ev.Error = err.Error()
			}
			ev.RestartMs = float64(time.Since(start).Microseconds()) / 1000
			c.mu.Lock()
			c.events = append(c.events, ev)
			c.mu.Unlock()
		}
	}()
	return c
}

// count is the number of crashes so far.
func (c *crasher) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// stop ends the crashes; the last restart has finished when it returns.
func (c *crasher) stop() []crashEvent {
	if c == nil {
		return nil
	}
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]crashEvent(nil), c.events...)
}

// itoa formats an int64.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }
