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
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/logging"
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
	httpSrv *http.Server
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
		s.emu, err = emulator.Start(emulator.Options{Addr: "127.0.0.1:0"})
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

// serveInProcess wires the service's store and routes as cmd/savesync does
// (same middleware, same handlers) and serves them on 127.0.0.1.
func (s *stack) serveInProcess(ctx context.Context, p params) error {
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	s.serverKey = hex.EncodeToString(key)
	keys, err := handlers.ParseServerKeys(fmt.Sprintf("7:%s", handlers.HashKey(s.serverKey)))
	if err != nil {
		return err
	}
	s.store = store.New(s.clients.Firestore, s.clients.GAPIC, p.Project, s.cfg, store.Options{LedgerRetention: 9600 * time.Hour})

	gin.SetMode(gin.ReleaseMode)
	// Request logs are formatted as in production and then discarded, so
	// their cost is in the figures without flooding the terminal.
	logger := logging.New(io.Discard, slog.LevelInfo)
	r := gin.New()
	r.ContextWithFallback = true
	r.Use(handlers.RequestID(), handlers.RequestLogger(logger, p.Project), handlers.Recover(), handlers.LimitBody(1<<20))
	r.NoRoute(handlers.NoRoute)
	r.GET("/healthz", handlers.Healthz)
	r.GET("/readyz", handlers.Readyz(s.store.Ping))
	handlers.NewAPI(s.store, keys).Register(r)
	handlers.NewChangesAPI(store.NewChanges(s.store, store.ChangesOptions{PollInterval: 100 * time.Millisecond, MaxWait: 5 * time.Second})).
		Register(r, keys.RequireServerKey())
	s.changes = true
	if p.AuthEmulator != "" {
		// The Admin SDK finds the Auth emulator through the environment.
		if err := os.Setenv("FIREBASE_AUTH_EMULATOR_HOST", p.AuthEmulator); err != nil {
			return err
		}
		auth, err := handlers.NewFirebaseAuth(ctx, p.Project)
		if err != nil {
			return fmt.Errorf("Firebase Auth emulator at %s: %w", p.AuthEmulator, err)
		}
		handlers.NewCompanionAPI(s.store, auth, keys, handlers.CompanionOptions{}).Register(r)
		s.companions = true
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.httpSrv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.httpSrv.Serve(ln) }()
	s.closers = append(s.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.httpSrv.Shutdown(ctx)
	})
	s.baseURL = "http://" + ln.Addr().String()
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
