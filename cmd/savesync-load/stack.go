package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/savesync/savesync"
	"github.com/savesync/savesync/cmd/internal/app"
	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// stack is what a run drives and inspects: the service's base URLs (one
// per instance), the Firestore emulator behind them, and Firestore clients
// on that emulator.
type stack struct {
	baseURL string
	bases   []string
	// metricsURLs are the instances' Prometheus endpoints
	// (SAVESYNC_METRICS=prometheus), where the report's store counters
	// come from, as an operator would read them.
	metricsURLs []string
	serverKey   string
	emuAddr     string
	project     string
	cfg         *save.Config
	clients     store.Clients
	authHost    string
	companions  bool // the companion routes are served
	changes     bool // the changes long-poll is served

	// store is the in-process service's store (nil with --url): its
	// counters give transaction retries exactly.
	store *store.Store

	emu     *emulator.Server
	closers []func() error

	// procs are the service and emulator processes (nil in-process).
	procs *procStack
	// pubsub and openCloud receive the events when --events is on.
	pubsub    *pstest.Server
	openCloud *openCloudStandIn
	events    bool
}

// procStack is the --instances layout: one standalone emulator process
// with a data directory, and N processes of cmd/savesync on it.
type procStack struct {
	dir       string
	dataDir   string
	emulator  *proc
	instances []*proc
}

// all lists every process, the emulator first.
func (ps *procStack) all() []*proc {
	return append([]*proc{ps.emulator}, ps.instances...)
}

// startStack starts the emulator and the service on loopback, or connects
// to the ones named by --url and --emulator.
func startStack(ctx context.Context, p params) (_ *stack, err error) {
	cfg, err := save.LoadConfig(p.GameConfig)
	if err != nil {
		return nil, fmt.Errorf("game config %s: %w", p.GameConfig, err)
	}
	s := &stack{project: p.Project, cfg: cfg, authHost: p.AuthEmulator}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()

	s.emuAddr = p.Emulator
	switch {
	case p.Instances > 0:
		if err := s.startEmulatorProcess(ctx, p); err != nil {
			return nil, err
		}
	case s.emuAddr == "":
		// The in-process emulator checks queries against the indexes the
		// service is built with, and adds the run's latency model
		// (emulatorLatencyArgs gives the standalone one the same).
		indexes, err := emulator.ParseIndexConfig(savesync.FirestoreIndexes)
		if err != nil {
			return nil, fmt.Errorf("the built-in firestore.indexes.json: %w", err)
		}
		s.emu, err = emulator.Start(emulator.Options{Addr: "127.0.0.1:0", Indexes: indexes, Latency: p.Latency, Jitter: p.Jitter})
		if err != nil {
			return nil, fmt.Errorf("start the Firestore emulator: %w", err)
		}
		s.closers = append(s.closers, s.emu.Close)
		s.emuAddr = s.emu.Addr()
	}
	s.clients, err = store.Dial(ctx, p.Project, s.emuAddr)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() error { s.clients.Close(); return nil })

	if p.Events {
		if err := s.startEvents(ctx, p); err != nil {
			return nil, err
		}
	}
	if p.Instances > 0 {
		if err := s.startInstances(ctx, p); err != nil {
			return nil, err
		}
		s.baseURL = s.bases[0]
		return s, nil
	}
	if p.URL != "" {
		s.baseURL, s.serverKey = p.URL, p.ServerKey
		s.bases = []string{s.baseURL}
		if err := waitReady(ctx, s.baseURL); err != nil {
			return nil, err
		}
		s.companions = p.AuthEmulator != "" && s.routeExists(ctx, "GET", "/v1/me/catalog")
		s.changes = s.routeExists(ctx, "GET", "/v1/servers/probe-job/changes?timeout=0")
		return s, nil
	}
	if err := s.serveInProcess(ctx, p); err != nil {
		return nil, err
	}
	return s, waitReady(ctx, s.baseURL)
}

// serveInProcess runs the service itself, with the same wiring as the
// savesync command (cmd/internal/app), pointed at the run's emulator and
// listening on 127.0.0.1 only.
func (s *stack) serveInProcess(ctx context.Context, p params) error {
	vars, err := s.serviceVars(p, 1)
	if err != nil {
		return err
	}
	vars["PORT"] = "0"
	vars["SAVESYNC_METRICS"] = "prometheus"
	vars["SAVESYNC_METRICS_ADDR"] = "127.0.0.1:0"
	metricsAt := make(chan string, 1)
	if p.AuthEmulator != "" {
		// The Admin SDK finds the Auth emulator through the process environment.
		if err := os.Setenv("FIREBASE_AUTH_EMULATOR_HOST", p.AuthEmulator); err != nil {
			return err
		}
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		// Request logs are formatted as in production and then discarded,
		// so their cost is in the figures without flooding the terminal.
		done <- app.Run(runCtx, func(k string) string { return vars[k] }, io.Discard,
			app.WithHost("127.0.0.1"),
			app.WithStarted(func(a *app.App) { s.store = a.Store() }),
			app.WithListening(func(addr string) { listening <- addr }),
			app.WithMetricsListening(func(addr string) { metricsAt <- addr }))
	}()
	select {
	case addr := <-listening:
		s.baseURL = "http://" + addr
		s.bases = []string{s.baseURL}
		select {
		case m := <-metricsAt:
			s.metricsURLs = []string{"http://" + m + "/metrics"}
		case <-time.After(10 * time.Second):
			cancel()
			return fmt.Errorf("start the service: its metrics endpoint did not open")
		}
	case err := <-done:
		cancel()
		return fmt.Errorf("start the service: %w", err)
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
	s.closers = append(s.closers, func() error {
		cancel()
		return <-done
	})
	return nil
}

// serviceVars is the environment of a service instance, one of n: the
// run's emulator and project, a fresh server key, the game config, and
// with --events the tool's Pub/Sub and Open Cloud stand-in.
func (s *stack) serviceVars(p params, n int) (map[string]string, error) {
	if s.serverKey == "" {
		key := make([]byte, 24)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		s.serverKey = hex.EncodeToString(key)
	}
	vars := map[string]string{
		"GOOGLE_CLOUD_PROJECT":    p.Project,
		"FIRESTORE_EMULATOR_HOST": s.emuAddr,
		"SAVESYNC_SERVER_KEYS":    strconv.FormatInt(loadUniverse, 10) + ":" + handlers.HashKey(s.serverKey),
		"SAVESYNC_GAME_CONFIG":    p.GameConfig,
		// Without --events the relay's queries and marks would mix with
		// the mutations' round trips in the emulator's counters;
		// invalidations are checked through the ledger outbox and the
		// long-poll instead.
		"SAVESYNC_OUTBOX_RELAY": "off",
	}
	if s.events {
		vars["SAVESYNC_OUTBOX_RELAY"] = "on"
		vars["PUBSUB_EMULATOR_HOST"] = s.pubsub.Addr
		vars["ROBLOX_OPEN_CLOUD_API_KEY"] = s.openCloud.key
		vars["ROBLOX_UNIVERSE_ID"] = strconv.FormatInt(loadUniverse, 10)
		vars["ROBLOX_OPEN_CLOUD_URL"] = s.openCloud.url
		vars["ROBLOX_CONCURRENT_PLAYERS"] = strconv.Itoa(playersPerInstance(p.Players, n))
	}
	if p.AuthEmulator != "" {
		vars["FIREBASE_AUTH_EMULATOR_HOST"] = p.AuthEmulator
		s.companions = true
	}
	s.changes = true
	return vars, nil
}

// loadUniverse is the Roblox universe of the run's server key.
const loadUniverse = 7

// playersPerInstance is the ROBLOX_CONCURRENT_PLAYERS each of n instances
// gets so that their forwarders together stay within the universe's
// 50 + 5 × players publishes a minute (the README's advice: divide by
// the instance count). Each forwarder's floor is 50 a minute, so above
// (50 + 5 × players) / 50 instances they can exceed it and the stand-in
// answers 429.
func playersPerInstance(players, n int) int {
	share := (50 + 5*players) / max(n, 1)
	return max(0, (share-50)/5)
}

// startEvents starts what the events go to: Pub/Sub (pstest, in this
// process, with the service's topics and the forwarder's subscription)
// and the Open Cloud stand-in.
func (s *stack) startEvents(ctx context.Context, p params) error {
	s.events = true
	s.pubsub = pstest.NewServerWithAddress("127.0.0.1:0")
	s.closers = append(s.closers, s.pubsub.Close)
	conn, err := grpc.NewClient(s.pubsub.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	client, err := pubsub.NewClient(ctx, p.Project, option.WithGRPCConn(conn))
	if err != nil {
		return err
	}
	defer client.Close()
	// Created once here, not by every instance at once.
	if err := events.EnsureTopics(ctx, client, events.DefaultInvalidationTopic, events.DefaultAuditTopic, events.DefaultDeadLetterTopic); err != nil {
		return err
	}
	if err := events.EnsureSubscriptions(ctx, client, events.SubscriptionConfig{
		Name: events.DefaultInvalidationSubscription, Topic: events.DefaultInvalidationTopic, Ordered: true,
		AckDeadlineSeconds: int32(p.AckDeadline / time.Second),
	}); err != nil {
		return err
	}
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	s.openCloud, err = startOpenCloudStandIn(loadUniverse, hex.EncodeToString(key), p.Players)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, s.openCloud.Close)
	return nil
}

// startEmulatorProcess builds the binaries and starts the standalone
// emulator with a data directory, on a port it keeps across restarts.
func (s *stack) startEmulatorProcess(ctx context.Context, p params) error {
	dir, err := os.MkdirTemp("", "savesync-load-")
	if err != nil {
		return err
	}
	s.closers = append(s.closers, func() error { return os.RemoveAll(dir) })
	serviceBin, emuBin, err := buildBinaries(ctx, dir)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.emuAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ps := &procStack{dir: dir, dataDir: filepath.Join(dir, "firestore-data")}
	// The standalone emulator checks queries against the indexes the
	// service is built with, as the in-process one does.
	indexesPath := filepath.Join(dir, "firestore.indexes.json")
	if err := os.WriteFile(indexesPath, savesync.FirestoreIndexes, 0o600); err != nil {
		return err
	}
	ps.emulator = &proc{
		name:  "emulator",
		bin:   emuBin,
		args:  append([]string{"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--data-dir", ps.dataDir, "--indexes", indexesPath}, emulatorLatencyArgs(p)...),
		env:   baseEnv(),
		ready: httpReady("http://" + s.emuAddr + "/emulator/v1/counters?project=" + p.Project),
		logs:  newLogTally(),
	}
	// serviceBin is kept for startInstances.
	ps.instances = []*proc{{bin: serviceBin}}
	s.procs = ps
	s.closers = append(s.closers, func() error { ps.emulator.stop(); return nil })
	return ps.emulator.start(ctx)
}

// startInstances starts --instances processes of cmd/savesync on the
// emulator, each on its own loopback port.
func (s *stack) startInstances(ctx context.Context, p params) error {
	ps := s.procs
	bin := ps.instances[0].bin
	ps.instances = nil
	vars, err := s.serviceVars(p, p.Instances)
	if err != nil {
		return err
	}
	if gc, err := filepath.Abs(p.GameConfig); err == nil {
		vars["SAVESYNC_GAME_CONFIG"] = gc
	}
	for i := range p.Instances {
		port, err := freePort()
		if err != nil {
			return err
		}
		env := baseEnv()
		for k, v := range vars {
			env = append(env, k+"="+v)
		}
		metricsPort, err := freePort()
		if err != nil {
			return err
		}
		env = append(env, "SAVESYNC_METRICS=prometheus", "SAVESYNC_METRICS_ADDR="+net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)))
		s.metricsURLs = append(s.metricsURLs, "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort))+"/metrics")
		env = append(env, "PORT="+strconv.Itoa(port), "SAVESYNC_LISTEN_HOST=127.0.0.1",
			"SAVESYNC_DATA_DIR="+filepath.Join(ps.dir, fmt.Sprintf("instance-%d", i+1)))
		base := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ps.instances = append(ps.instances, &proc{
			name:  fmt.Sprintf("instance-%d", i+1),
			bin:   bin,
			env:   env,
			ready: httpReady(base + "/readyz"),
			logs:  newLogTally(),
		})
		s.bases = append(s.bases, base)
	}
	s.closers = append(s.closers, func() error {
		var wg sync.WaitGroup
		for _, in := range ps.instances {
			wg.Go(in.stop)
		}
		wg.Wait()
		return nil
	})
	for _, in := range ps.instances {
		if err := in.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close stops what startStack started, in reverse order.
func (s *stack) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

// waitReady polls /readyz for up to 30 s.
func waitReady(ctx context.Context, base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, "GET", base+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s/readyz did not answer 200 within 30s", base)
}

// routeExists reports whether the service serves a route (anything but 404).
func (s *stack) routeExists(ctx context.Context, method, path string) bool {
	req, err := http.NewRequestWithContext(ctx, method, s.baseURL+path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+s.serverKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

// counters reads the emulator's counters of the project over its HTTP API,
// which works the same for an in-process and an external emulator.
func (s *stack) counters(ctx context.Context) (emulator.Counters, error) {
	var c emulator.Counters
	err := s.emulatorCall(ctx, "GET", "/emulator/v1/counters?project="+s.project, nil, &c)
	if c.RPCs == nil {
		c.RPCs = map[string]int64{}
	}
	return c, err
}

// countersOf reads the counters of another project.
func (s *stack) countersOf(ctx context.Context, project string) (emulator.Counters, error) {
	var c emulator.Counters
	err := s.emulatorCall(ctx, "GET", "/emulator/v1/counters?project="+project, nil, &c)
	if c.RPCs == nil {
		c.RPCs = map[string]int64{}
	}
	return c, err
}

// injectFault adds a fault for the run's project.
func (s *stack) injectFault(ctx context.Context, f emulator.Fault) error {
	f.Project = s.project
	return s.emulatorCall(ctx, "PUT", "/emulator/v1/faults", f, nil)
}

// clearFaults removes every injected fault.
func (s *stack) clearFaults(ctx context.Context) error {
	return s.emulatorCall(ctx, "DELETE", "/emulator/v1/faults", nil, nil)
}

func (s *stack) emulatorCall(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.emuAddr+path, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("emulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("emulator %s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
