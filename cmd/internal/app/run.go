package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
)

// RunOptions are the knobs of Run that tests and the load tool turn.
type RunOptions struct {
	// host is the interface to listen on; "" means all of them, as Cloud
	// Run requires.
	host string
	// onListening, when set, receives the bound address once the server
	// accepts connections (useful with PORT=0).
	onListening func(addr string)
	// onStarted, when set, receives the wired service.
	onStarted func(*App)
	// longPollMaxWait, when set, caps the changes long-poll below its
	// default (25 s), so the contract tests can poll every route quickly.
	longPollMaxWait time.Duration
}

// RunOption changes RunOptions.
type RunOption func(*RunOptions)

// WithHost listens on host only, e.g. 127.0.0.1 in tests.
func WithHost(host string) RunOption {
	return func(o *RunOptions) { o.host = host }
}

// WithStarted calls f with the wired service before it starts listening,
// so a caller in the same process (the load tool) can read the store's
// counters.
func WithStarted(f func(*App)) RunOption {
	return func(o *RunOptions) { o.onStarted = f }
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
	logger := logging.New(stdout, cfg.logLevel)
	gin.SetMode(gin.ReleaseMode)

	logger.Info("starting savesync",
		slog.String("project", cfg.project),
		slog.String("firestore", string(cfg.firestoreBackend())),
		slog.String("pubsub", string(cfg.pubsubBackend())),
		slog.String("gameConfig", cfg.gameConfigPath),
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

	ln, err := net.Listen("tcp", net.JoinHostPort(o.host, strconv.Itoa(cfg.port)))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w (set %s to a free port)", cfg.port, err, envPort)
	}
	srv := &http.Server{
		Handler:           a.engine,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
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
