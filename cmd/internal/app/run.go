package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/logging"
)

// RunOptions are the knobs of Run that tests and the load tool turn.
type RunOptions struct {
	// host, when hostSet, is the interface to listen on instead of the
	// configured one; "" means all of them.
	host    string
	hostSet bool
	// onListening, when set, receives the bound address once the server
	// accepts connections (useful with PORT=0).
	onListening func(addr string)
	// onStarted, when set, receives the wired service.
	onStarted func(*App)
	// longPollMaxWait, when set, caps the changes long-poll below its
	// default (25 s), so the contract tests can poll every route quickly.
	longPollMaxWait time.Duration
	// openCloudURL, when set, is the Roblox Open Cloud origin the
	// forwarder and the erasure notice publish to (a test's fake).
	openCloudURL string
	// companionLimits, when set, replaces the companion API's per-account
	// limits, for tests whose fixtures re-link the same accounts hundreds
	// of times (the limits themselves are tested in handlers).
	companionLimits *handlers.CompanionOptions
	// onMetricsListening, when set, receives the bound address of the
	// Prometheus endpoint once it accepts connections.
	onMetricsListening func(addr string)
	// spanProcessor, when set, receives every span the service makes
	// (tests record them), with tracing on whatever SAVESYNC_TRACES says.
	spanProcessor sdktrace.SpanProcessor
}

// RunOption changes RunOptions.
type RunOption func(*RunOptions)

// WithHost listens on host only, e.g. 127.0.0.1 in tests, whatever
// SAVESYNC_LISTEN_HOST says.
func WithHost(host string) RunOption {
	return func(o *RunOptions) { o.host, o.hostSet = host, true }
}

// WithStarted calls f with the wired service before it starts listening,
// so a caller in the same process (the load tool) can read the store's
// counters.
func WithStarted(f func(*App)) RunOption {
	return func(o *RunOptions) { o.onStarted = f }
}

// WithMetricsListening calls f with the bound address of the Prometheus
// endpoint (SAVESYNC_METRICS=prometheus) once it is listening, so a caller
// that set SAVESYNC_METRICS_ADDR with port 0 can scrape it.
func WithMetricsListening(f func(addr string)) RunOption {
	return func(o *RunOptions) { o.onMetricsListening = f }
}

// WithListening calls f with the bound address once the server is listening.
func WithListening(f func(addr string)) RunOption {
	return func(o *RunOptions) { o.onListening = f }
}

// Run loads the configuration through getenv, builds the service, serves
// HTTP until ctx is done, then shuts down gracefully: in-flight requests get
// the configured shutdown timeout (under Cloud Run's 10 s), after which the
// clients and the embedded emulator are closed. Logs go to stdout as JSON.
// It returns nil after a clean shutdown.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer, opts ...RunOption) (err error) {
	var o RunOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	cfg.longPollMaxWait = o.longPollMaxWait
	if o.openCloudURL != "" {
		cfg.openCloudURL = o.openCloudURL
	}
	cfg.companionLimits = o.companionLimits
	cfg.spanProcessor = o.spanProcessor
	cfg.stdout = stdout
	logger := logging.New(stdout, cfg.logLevel)
	gin.SetMode(gin.ReleaseMode)

	logger.Info("starting savesync",
		slog.String("project", cfg.project),
		slog.String("firestore", string(cfg.firestoreBackend())),
		slog.String("pubsub", string(cfg.pubsubBackend())),
		slog.String("gameConfig", cmp.Or(cfg.gameConfigPath, "built-in")),
	)
	if cfg.devServerKey {
		logger.Warn("no " + envServerKeys + " set: accepting the development server key \"" + devServerKey +
			"\" for universe " + strconv.Itoa(devServerUniverse) + "; set " + envServerKeys + " before exposing this service")
	}

	a, err := newApp(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if o.onStarted != nil {
		o.onStarted(a)
	}
	defer func() {
		start := time.Now()
		if cerr := a.close(); cerr != nil {
			logger.Error("closing dependencies failed", slog.Any("error", cerr))
			err = errors.Join(err, cerr)
		}
		logger.Info("savesync stopped", slog.String("closeTook", time.Since(start).String()))
	}()

	if h := a.telemetry.Handler(); h != nil {
		stop, err := serveMetrics(cfg, h, logger, o.onMetricsListening)
		if err != nil {
			return err
		}
		defer stop()
	}

	host := cfg.listenHost
	if o.hostSet {
		host = o.host
	}
	if cfg.loopbackOnly && !o.hostSet {
		logger.Warn("listening on loopback ("+host+") only: development credentials are in force ("+devCredentialsText(cfg)+
			"), so only this machine may reach the service; set "+envListenHost+"=0.0.0.0 to listen on every interface",
			slog.String("host", host))
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(cfg.port)))
	if err != nil {
		return fmt.Errorf("listen on %s port %d: %w (set %s to a free port, or %s to an address of this machine)", cmp.Or(host, "every interface"), cfg.port, err, envPort, envListenHost)
	}
	srv := &http.Server{
		Handler:           a.engine,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout: it stays armed after the body and would end
		// long-polls and event streams; handlers.BoundBodyRead bounds bodies.
		IdleTimeout: 2 * time.Minute,
		// Above our own limit, so LimitHeaders answers most oversized
		// headers with a request id and a log line.
		MaxHeaderBytes: 2 * handlers.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln = handlers.ServeJSONErrors(srv, ln, logger)
	srv.RegisterOnShutdown(a.StopStreams)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("savesync listening", slog.String("addr", ln.Addr().String()))
	if o.onListening != nil {
		o.onListening(ln.Addr().String())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", slog.String("timeout", cfg.shutdownTimeout.String()))
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("requests still running after %s (%s): %w", cfg.shutdownTimeout, envShutdownTimeout, err)
	}
	logger.Info("HTTP server stopped")
	return nil
}

// devCredentialsText names the development credentials cfg accepts.
func devCredentialsText(cfg config) string {
	var names []string
	if cfg.devServerKey {
		names = append(names, "the public development server key, as "+envServerKeys+" is unset")
	}
	if cfg.authEmulatorHost != "" {
		names = append(names, "unsigned ID tokens of the Firebase Auth emulator")
	}
	return strings.Join(names, "; ")
}

// serveMetrics serves the Prometheus endpoint at /metrics on its own
// listener (SAVESYNC_METRICS_ADDR, loopback by default): on Cloud Run only
// PORT is reachable from outside, so the endpoint is never public there,
// and a scraper beside the service (a sidecar, the load tool) reads it.
// It returns a function that closes it.
func serveMetrics(cfg config, h http.Handler, logger *slog.Logger, onListening func(string)) (func(), error) {
	ln, err := net.Listen("tcp", cfg.metricsAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for the Prometheus endpoint on %s: %w (set %s to a free address, or %s to another value)", cfg.metricsAddr, err, envMetricsAddr, envMetrics)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	addr := ln.Addr().String()
	logger.Info("metrics listening", slog.String("addr", addr), slog.String("path", "/metrics"))
	if onListening != nil {
		onListening(addr)
	}
	return func() { _ = srv.Close() }, nil
}
