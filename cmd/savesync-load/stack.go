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
	"net/http"
	"os"
	"time"

	"github.com/savesync/savesync"
	"github.com/savesync/savesync/cmd/internal/app"
	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// stack is what a run drives and inspects: the service's base URL, the
// Firestore emulator behind it, and Firestore clients on that emulator.
type stack struct {
	baseURL    string
	serverKey  string
	emuAddr    string
	project    string
	cfg        *save.Config
	clients    store.Clients
	authHost   string
	companions bool // the companion routes are served
	changes    bool // the changes long-poll is served

	// store is the in-process service's store (nil with --url): its
	// counters give transaction retries exactly.
	store *store.Store

	emu     *emulator.Server
	closers []func() error
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
	if s.emuAddr == "" {
		indexes, err := emulator.ParseIndexConfig(savesync.FirestoreIndexes)
		if err != nil {
			return nil, fmt.Errorf("the built-in firestore.indexes.json: %w", err)
		}
		s.emu, err = emulator.Start(emulator.Options{Addr: "127.0.0.1:0", Indexes: indexes})
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

	if p.URL != "" {
		s.baseURL, s.serverKey = p.URL, p.ServerKey
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
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	s.serverKey = hex.EncodeToString(key)
	vars := map[string]string{
		"PORT":                    "0",
		"GOOGLE_CLOUD_PROJECT":    p.Project,
		"FIRESTORE_EMULATOR_HOST": s.emuAddr,
		"SAVESYNC_SERVER_KEYS":    "7:" + handlers.HashKey(s.serverKey),
		"SAVESYNC_GAME_CONFIG":    p.GameConfig,
		// The relay's queries and marks would mix with the mutations'
		// round trips in the emulator's counters; invalidations are
		// checked through the ledger outbox and the long-poll instead.
		"SAVESYNC_OUTBOX_RELAY": "off",
	}
	if p.AuthEmulator != "" {
		// The Admin SDK finds the Auth emulator through the process environment.
		if err := os.Setenv("FIREBASE_AUTH_EMULATOR_HOST", p.AuthEmulator); err != nil {
			return err
		}
		vars["FIREBASE_AUTH_EMULATOR_HOST"] = p.AuthEmulator
		s.companions = true
	}
	s.changes = true

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		// Request logs are formatted as in production and then discarded,
		// so their cost is in the figures without flooding the terminal.
		done <- app.Run(runCtx, func(k string) string { return vars[k] }, io.Discard,
			app.WithHost("127.0.0.1"),
			app.WithStarted(func(a *app.App) { s.store = a.Store() }),
			app.WithListening(func(addr string) { listening <- addr }))
	}()
	select {
	case addr := <-listening:
		s.baseURL = "http://" + addr
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
