package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"
	apiv1 "cloud.google.com/go/firestore/apiv1"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync"
	gameconfig "github.com/savesync/savesync/config"
	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/opencloud"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
	"github.com/savesync/savesync/telemetry"
)

// App is the wired service: its clients, the servers it embeds, and the
// HTTP engine. It is the one place that picks concrete implementations.
type App struct {
	// firestore and firestoreAPI talk to the same Firestore database: the
	// first for ordinary reads and writes, the second for calls the
	// high-level client does not offer.
	firestore    *firestore.Client
	firestoreAPI *apiv1.Client
	pubsub       *pubsub.Client
	store        *store.Store
	// relay publishes the outbox; nil when this instance does not run it.
	relay *events.Relay
	// openCloud publishes to game servers through Roblox Open Cloud
	// messaging; nil without an Open Cloud key.
	openCloud atomic.Pointer[opencloud.Publisher]
	// emulator is the in-process Firestore emulator; nil unless the
	// Firestore backend is embedded.
	emulator *emulator.Server
	// pubsubServer is the in-process Pub/Sub fake; nil unless the Pub/Sub
	// backend is embedded.
	pubsubServer *pstest.Server
	engine       *gin.Engine
	// telemetry holds the tracer and meter providers and the instruments.
	telemetry *telemetry.Telemetry
	// streamsStopped is closed when shutdown begins, ending long-polls and
	// event streams so they do not hold the shutdown to its deadline.
	streamsStopped chan struct{}
	stopStreams    sync.Once
	// workers are the background loops (outbox relay, forwarder);
	// stopWork tells them to stop.
	workers  sync.WaitGroup
	stopWork context.CancelFunc

	closers []func() error
}

// newApp connects the service's dependencies as cfg says and builds the gin
// engine with the middleware chain and the routes. On error, whatever was
// already started is closed again.
func newApp(ctx context.Context, cfg config, logger *slog.Logger) (_ *App, err error) {
	a := &App{}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.close())
		}
	}()

	game, source, err := loadGame(cfg)
	if err != nil {
		return nil, fmt.Errorf("the game config (%s) is not valid; fix it and start again: %w", envGameConfig, err)
	}
	logger.Info("loaded the game config", slog.String("game", game.Game),
		slog.String("path", source), slog.Int("schemaVersion", game.SchemaVersion))

	if err := a.startTelemetry(ctx, cfg, logger); err != nil {
		return nil, err
	}
	if err := a.connectFirestore(ctx, cfg, logger); err != nil {
		return nil, err
	}
	a.store = store.New(a.firestore, a.firestoreAPI, cfg.project, game, store.Options{
		LeaseTTL:        cfg.leaseTTL,
		LedgerRetention: cfg.ledgerRetention,
		OnCommit:        a.wakeRelay,
		Observer:        a.telemetry.Metrics,
		TracerProvider:  a.telemetry.TracerProvider,
	})
	if err := a.connectPubSub(ctx, cfg, logger); err != nil {
		return nil, err
	}
	if err := a.startEvents(ctx, cfg, logger); err != nil {
		return nil, err
	}

	if len(cfg.corsOrigins) == 0 {
		logger.Info("browser access (CORS) off: no origin may call /v1/me or /v1/admin from a page; set " + envCORSOrigins + " to allow one")
	} else {
		logger.Info("browser access (CORS) on for /v1/me and /v1/admin", slog.Any("origins", cfg.corsOrigins))
	}
	r := handlers.NewEngine()
	a.streamsStopped = make(chan struct{})
	r.Use(
		handlers.ResolveClientIP(handlers.ClientAddress{BehindPlatformProxy: cfg.cloudRun, TrustedProxies: cfg.trustedProxies}),
		handlers.StopStreamsOnShutdown(a.streamsStopped, handlers.StreamRoutes()...),
		handlers.RequestID(),
	)
	if a.telemetry.Tracing() || cfg.metrics != telemetry.MetricsOff {
		// The server span (and the request duration histogram per route),
		// open before the request's logger is made, so its lines carry
		// the span's trace.
		r.Use(otelgin.Middleware(telemetry.ServiceName,
			otelgin.WithTracerProvider(a.telemetry.TracerProvider),
			otelgin.WithPropagators(a.telemetry.Propagator),
			otelgin.WithMeterProvider(a.telemetry.MeterProvider)))
	}
	if cfg.metrics != telemetry.MetricsOff {
		r.Use(handlers.ObserveRequests(a.telemetry.Metrics))
	}
	r.Use(
		handlers.RequestLogger(logger, cfg.project),
		handlers.Recover(),
		handlers.CORS(cfg.corsOrigins),
		handlers.LimitHeaders(handlers.MaxHeaderBytes),
		handlers.BoundBodyRead(cfg.bodyReadTimeout),
		handlers.LimitBody(cfg.maxBodyBytes),
		handlers.RefuseInvalidText(),
	)
	r.GET("/healthz", handlers.Healthz)
	r.GET("/readyz", handlers.Readyz(a.checkFirestore))
	handlers.NewServerAPI(a.store, game, cfg.serverKeys).Register(r)
	handlers.NewChangesAPI(store.NewChanges(a.store, store.ChangesOptions{MaxWait: cfg.longPollMaxWait})).Register(r, cfg.serverKeys.RequireServerKey())
	if err := a.registerCompanion(ctx, cfg, game, logger, r); err != nil {
		return nil, err
	}
	a.engine = r
	return a, nil
}

// startTelemetry builds the tracer and meter providers cfg asks for. With
// tracing on it also becomes the process's global tracer provider and
// propagator: the Google Cloud clients (Firestore's gRPC calls, Pub/Sub's
// publishes) make their spans through those.
func (a *App) startTelemetry(ctx context.Context, cfg config, logger *slog.Logger) error {
	tel, err := telemetry.New(ctx, telemetry.Config{
		Traces:        cfg.traces,
		Metrics:       cfg.metrics,
		SampleRatio:   cfg.traceSampleRatio,
		Project:       cfg.project,
		Stdout:        cfg.stdout,
		SpanProcessor: cfg.spanProcessor,
	})
	if err != nil {
		return fmt.Errorf("set up telemetry (%s=%s, %s=%s): %w", envTraces, cfg.traces, envMetrics, cfg.metrics, err)
	}
	a.telemetry = tel
	a.onClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return tel.Shutdown(ctx)
	})
	if tel.Tracing() {
		otel.SetTracerProvider(tel.TracerProvider)
		otel.SetTextMapPropagator(tel.Propagator)
	}
	logger.Info("telemetry set up", slog.String("traces", cfg.traces), slog.Float64("sampleRatio", cfg.traceSampleRatio),
		slog.String("metrics", cfg.metrics))
	return nil
}

// loadGame reads the game config cfg names, or the sample game built into
// the binary when it names none, and says where it came from.
func loadGame(cfg config) (*save.Config, string, error) {
	if cfg.gameConfigPath != "" {
		game, err := save.LoadConfig(cfg.gameConfigPath)
		return game, cfg.gameConfigPath, err
	}
	source := "built-in " + gameconfig.SampleGameFile
	game, err := save.ParseConfig(gameconfig.SampleGame)
	if err != nil {
		return nil, source, fmt.Errorf("%s: %w", source, err)
	}
	return game, source, nil
}

// connectFirestore starts the embedded emulator when no Firestore is
// configured and dials the chosen one.
func (a *App) connectFirestore(ctx context.Context, cfg config, logger *slog.Logger) error {
	host := cfg.firestoreEmulatorHost
	if cfg.firestoreBackend() == backendEmbedded {
		if err := os.MkdirAll(cfg.dataDir, 0o755); err != nil {
			return fmt.Errorf("create the emulator data directory (%s=%q): %w", envDataDir, cfg.dataDir, err)
		}
		// The embedded emulator needs the indexes Cloud Firestore would,
		// those of the firestore.indexes.json built into the binary, so a
		// local run refuses what production refuses.
		indexes, err := emulator.ParseIndexConfig(savesync.FirestoreIndexes)
		if err != nil {
			return fmt.Errorf("the built-in firestore.indexes.json: %w", err)
		}
		emu, err := emulator.Start(emulator.Options{
			Addr:    "127.0.0.1:0",
			DataDir: cfg.dataDir,
			Logger:  logger.With(slog.String("component", "firestore-emulator")),
			Indexes: indexes,
		})
		if err != nil {
			return fmt.Errorf("start the embedded Firestore emulator in %s: %w", cfg.dataDir, err)
		}
		a.emulator = emu
		a.onClose(emu.Close)
		host = emu.Addr()
		logger.Info("started the embedded Firestore emulator",
			slog.String("addr", host), slog.String("dataDir", cfg.dataDir))
	}
	clients, err := store.Dial(ctx, cfg.project, host)
	if err != nil {
		return fmt.Errorf("connect to Firestore: %w", err)
	}
	a.firestore, a.firestoreAPI = clients.Firestore, clients.GAPIC
	a.onClose(clients.Close)
	logger.Info("connected to Firestore", slog.String("backend", string(cfg.firestoreBackend())),
		slog.String("project", cfg.project), slog.String("host", host))
	return nil
}

// connectPubSub starts pstest in-process when no Pub/Sub is configured,
// dials the chosen one, and outside Google Cloud creates the topics, which
// in Google Cloud are provisioned with the deployment.
func (a *App) connectPubSub(ctx context.Context, cfg config, logger *slog.Logger) error {
	var opts []option.ClientOption
	host := cfg.pubsubEmulatorHost
	if cfg.pubsubBackend() == backendEmbedded {
		a.pubsubServer = pstest.NewServerWithAddress("127.0.0.1:0")
		a.onClose(a.pubsubServer.Close)
		host = a.pubsubServer.Addr
		logger.Info("started the in-process Pub/Sub (pstest)", slog.String("addr", host))
	}
	if host != "" {
		conn, err := grpc.NewClient(host, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("dial Pub/Sub at %s: %w", host, err)
		}
		// The Pub/Sub client closes conn when it is closed.
		opts = append(opts, option.WithGRPCConn(conn))
		defer func() {
			if a.pubsub == nil {
				_ = conn.Close()
			}
		}()
	}
	client, err := pubsub.NewClientWithConfig(ctx, cfg.project,
		&pubsub.ClientConfig{EnableOpenTelemetryTracing: a.telemetry.Tracing()}, opts...)
	if err != nil {
		return fmt.Errorf("connect to Pub/Sub: %w", err)
	}
	a.pubsub = client
	a.onClose(client.Close)
	logger.Info("connected to Pub/Sub", slog.String("backend", string(cfg.pubsubBackend())),
		slog.String("project", cfg.project), slog.String("host", host))

	return nil
}

// checkFirestore is the readiness check: a read of one document that need
// not exist proves Firestore answers and the credentials work.
func (a *App) checkFirestore(ctx context.Context) error {
	_, err := a.firestore.Collection("_health").Doc("ping").Get(ctx)
	if err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("firestore readiness read: %w", err)
	}
	return nil
}

// onClose registers f to run when the app is closed, in reverse order of
// registration, so clients close before the servers they talk to.
func (a *App) onClose(f func() error) {
	a.closers = append(a.closers, f)
}

// close releases everything newApp started. It is safe to call twice.
func (a *App) close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}

// registerCompanion serves the companion API when Firebase Auth is
// reachable: through the Auth emulator when FIREBASE_AUTH_EMULATOR_HOST is
// set (the Admin SDK reads it), or the project's Firebase Auth in Google
// Cloud. On the embedded defaults without an Auth emulator there is no way
// to verify an ID token, so the companion routes are left out and a log
// line says how to turn them on.
func (a *App) registerCompanion(ctx context.Context, cfg config, game *save.Config, logger *slog.Logger, r gin.IRouter) error {
	admin := handlers.AdminOptions{ErasureKey: []byte(cfg.erasureKey), RobloxWebhookSecret: cfg.webhookSecret, OnErased: a.tellServersErased}
	if cfg.webhookSecret == "" {
		logger.Warn("the Roblox erasure webhook refuses every call: set " + envWebhookSecret + " to the webhook's secret")
	}
	logTokenChecks(logger, cfg)
	if cfg.authEmulatorHost == "" && !cfg.cloud {
		logger.Warn("companion and support APIs off: no Firebase Auth to verify ID tokens; set " + envAuthEmulatorHost +
			" (run scripts/auth-emulator.sh) or " + envProject + " to serve /v1/me and /v1/admin")
		handlers.NewAdminAPI(a.store, nil, admin).Register(r)
		return nil
	}
	auth, err := handlers.NewFirebaseAuth(ctx, cfg.project)
	if err != nil {
		return fmt.Errorf("connect to Firebase Auth for the companion API (%s=%q): %w", envAuthEmulatorHost, cfg.authEmulatorHost, err)
	}
	var companion handlers.CompanionOptions
	if cfg.companionLimits != nil {
		companion = *cfg.companionLimits
	}
	handlers.NewCompanionAPI(a.store, game, auth, cfg.serverKeys, companion).Register(r)
	handlers.NewAdminAPI(a.store, auth, admin).Register(r)
	logger.Info("companion API on", slog.String("auth", map[bool]string{true: "emulator " + cfg.authEmulatorHost, false: "Firebase Auth"}[cfg.authEmulatorHost != ""]))
	return nil
}

// logTokenChecks says at start-up which checks an ID token of the companion
// and support APIs must pass, so an operator sees from the log alone
// whether a forged token could get in.
func logTokenChecks(logger *slog.Logger, cfg config) {
	issuer := "https://securetoken.google.com/" + cfg.project
	switch {
	case cfg.authEmulatorHost == "" && !cfg.cloud:
		logger.Info("ID token checks: none, no ID token is accepted (companion and support APIs off)",
			slog.Bool("signatureVerified", false), slog.Bool("tokensAccepted", false))
	case cfg.authEmulatorHost != "":
		logger.Warn("ID token checks: signatures NOT verified: the Firebase Auth emulator's tokens are unsigned, so anyone who reaches this service can sign in as any user or role; use it only for development",
			slog.Bool("signatureVerified", false),
			slog.String("authEmulator", cfg.authEmulatorHost),
			slog.Bool("remoteEmulatorAllowed", cfg.allowRemoteAuthEmulator),
			slog.Bool("revocationChecked", true),
			slog.Bool("expiryChecked", true),
			slog.String("issuer", issuer),
			slog.String("audience", cfg.project))
	default:
		logger.Info("ID token checks: RS256 signature against Google's published keys, expiry, issuer and audience, and revocation or a disabled account on every request",
			slog.Bool("signatureVerified", true),
			slog.Bool("revocationChecked", true),
			slog.Bool("expiryChecked", true),
			slog.String("issuer", issuer),
			slog.String("audience", cfg.project))
	}
}

// StopStreams ends the long-lived requests; run calls it as shutdown begins.
// It also starts stopping the background workers, so the relay releases
// its lease (for another instance to drain) while in-flight requests
// finish, instead of after, inside Cloud Run's 10 s.
func (a *App) StopStreams() {
	a.stopStreams.Do(func() { close(a.streamsStopped) })
	if a.stopWork != nil {
		a.stopWork()
	}
}

// startEvents creates the event topics and the forwarder's subscription
// where the service owns them, and starts the background workers: the bulk
// job runner, the outbox relay and, when an Open Cloud key is configured,
// the forwarder to Roblox. They stop when the app closes.
func (a *App) startEvents(ctx context.Context, cfg config, logger *slog.Logger) error {
	topics := []string{cfg.invalidationTopic, cfg.auditTopic, events.DefaultDeadLetterTopic}
	subscription := events.SubscriptionConfig{Name: events.DefaultInvalidationSubscription, Topic: cfg.invalidationTopic, Ordered: true}
	if cfg.pubsubBackend() != backendCloud {
		if err := events.EnsureTopics(ctx, a.pubsub, topics...); err != nil {
			return fmt.Errorf("create the Pub/Sub topics: %w", err)
		}
		if err := events.EnsureSubscriptions(ctx, a.pubsub, subscription); err != nil {
			return fmt.Errorf("create the Pub/Sub subscription: %w", err)
		}
	}
	workCtx, cancel := context.WithCancel(logging.WithContext(context.WithoutCancel(ctx), logger))
	a.stopWork = cancel
	a.onClose(func() error {
		cancel()
		a.workers.Wait()
		return nil
	})

	// Every instance may run bulk jobs; each job's lease in Firestore
	// keeps it to one instance at a time.
	if cfg.bulkRunner {
		a.goWork(workCtx, logger, "bulk job runner", store.NewBulkRunner(a.store, store.BulkRunnerOptions{}).Run)
	} else {
		logger.Info("bulk job runner off on this instance (" + envBulkRunner + "=off); another instance must run started jobs")
	}

	if !cfg.outboxRelay {
		logger.Info("outbox relay off on this instance (" + envOutboxRelay + "=off); another instance or job must run it")
		return a.startForwarder(workCtx, cfg, logger, subscription.Name)
	}
	a.relay = events.NewRelay(a.store, a.pubsub, events.RelayOptions{
		InvalidationTopic: cfg.invalidationTopic,
		AuditTopic:        cfg.auditTopic,
		Observer:          a.telemetry.Metrics,
	})
	a.goWork(workCtx, logger, "outbox relay", a.relay.Run)

	return a.startForwarder(workCtx, cfg, logger, subscription.Name)
}

// wakeRelay wakes the outbox relay after a commit of this instance, so it
// publishes at once instead of at its next poll. The relay drains the
// store, so it is built after it: until startEvents sets it (before the
// service takes requests), or when the relay runs elsewhere, there is
// nothing to wake.
func (a *App) wakeRelay() {
	if a.relay != nil {
		a.relay.Notify()
	}
}

// startForwarder starts the forwarder to Roblox Open Cloud messaging when
// an Open Cloud key is configured.
func (a *App) startForwarder(workCtx context.Context, cfg config, logger *slog.Logger, subscription string) error {
	if cfg.robloxAPIKey == "" {
		logger.Info("Roblox Open Cloud forwarder off: set " + envRobloxAPIKey + " and " + envRobloxUniverseID + " to deliver invalidations through MessagingService; game servers can long-poll /v1/servers/{jobId}/changes")
		return nil
	}
	publisher, err := opencloud.NewPublisher(opencloud.Options{
		UniverseID:        cfg.robloxUniverseID,
		APIKey:            cfg.robloxAPIKey,
		ConcurrentPlayers: cfg.robloxConcurrentPlayers,
		BaseURL:           cfg.openCloudURL,
		HTTPClient:        a.openCloudHTTPClient(),
		Observer:          a.telemetry.Metrics,
	})
	if err != nil {
		return fmt.Errorf("configure the Roblox Open Cloud forwarder: %w", err)
	}
	opts := events.ForwarderOptions{Subscription: subscription, Observer: a.telemetry.Metrics}
	if _, err := events.NewForwarder(a.pubsub, publisher, opts); err != nil {
		return fmt.Errorf("configure the Roblox Open Cloud forwarder: %w", err)
	}
	a.openCloud.Store(publisher)
	// A forwarder is spent once its Run returns (it stops its publishers),
	// so every restart after a failed Receive gets a fresh one; the Open
	// Cloud publisher, and with it the universe's rate budget, is kept.
	a.goWork(workCtx, logger, "Open Cloud forwarder", func(ctx context.Context) error {
		fwd, err := events.NewForwarder(a.pubsub, publisher, opts)
		if err != nil {
			return err
		}
		return fwd.Run(ctx)
	})
	logger.Info("Roblox Open Cloud forwarder on", slog.Int64("universe", cfg.robloxUniverseID))
	return nil
}

// openCloudHTTPClient is the client of the Open Cloud calls: with tracing
// on, each call is a client span and carries traceparent.
func (a *App) openCloudHTTPClient() *http.Client {
	c := &http.Client{Timeout: 10 * time.Second}
	if a.telemetry.Tracing() {
		c.Transport = otelhttp.NewTransport(http.DefaultTransport,
			otelhttp.WithTracerProvider(a.telemetry.TracerProvider),
			otelhttp.WithPropagators(a.telemetry.Propagator),
			otelhttp.WithMeterProvider(a.telemetry.MeterProvider))
	}
	return c
}

// tellServersErased asks the game servers, through Open Cloud messaging,
// to drop what they keep of an erased player (the Luau module's DataStore
// copies). It publishes in the background, bounded to a minute: the
// erasure itself is done, and an erasure repeated (a retried webhook)
// publishes again. Without an Open Cloud key nothing can reach the servers,
// and the log says so.
func (a *App) tellServersErased(ctx context.Context, userID int64) {
	logger := logging.FromContext(ctx)
	publisher := a.openCloud.Load()
	if publisher == nil {
		logger.Warn("erasure: game servers not told to drop their copies of the player: set "+envRobloxAPIKey+" and "+envRobloxUniverseID, slog.Int64("userId", userID))
		return
	}
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := publisher.Publish(ctx, events.DefaultRobloxTopic, events.EraseMessage(userID)); err != nil {
			logger.Error("erasure: could not tell game servers to drop their copies of the player", slog.Int64("userId", userID), slog.String("error", err.Error()))
		}
	}()
}

// goWork runs a background loop until ctx ends, logging how it ended.
func (a *App) goWork(ctx context.Context, logger *slog.Logger, name string, run func(context.Context) error) {
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		for {
			err := run(ctx)
			if ctx.Err() != nil {
				return
			}
			logger.Error(name+" stopped; restarting", slog.Any("error", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
}

// Store is the service's store, for in-process callers that read its counters.
func (a *App) Store() *store.Store { return a.store }
