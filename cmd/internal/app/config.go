package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/telemetry"
)

// Environment variables the service reads. Every one of them is read in this
// file and nowhere else, and each appears in the README's table.
const (
	envPort                  = "PORT"
	envListenHost            = "SAVESYNC_LISTEN_HOST"
	envCloudRunService       = "K_SERVICE"
	envTrustedProxies        = "SAVESYNC_TRUSTED_PROXIES"
	envGameConfig            = "SAVESYNC_GAME_CONFIG"
	envDataDir               = "SAVESYNC_DATA_DIR"
	envProject               = "GOOGLE_CLOUD_PROJECT"
	envFirestoreEmulatorHost = "FIRESTORE_EMULATOR_HOST"
	envPubSubEmulatorHost    = "PUBSUB_EMULATOR_HOST"
	envAuthEmulatorHost      = "FIREBASE_AUTH_EMULATOR_HOST"
	envAllowRemoteAuthEmu    = "SAVESYNC_ALLOW_REMOTE_AUTH_EMULATOR"
	envServerKeys            = "SAVESYNC_SERVER_KEYS"
	envMaxBodyBytes          = "SAVESYNC_MAX_BODY_BYTES"
	envBodyReadTimeout       = "SAVESYNC_BODY_READ_TIMEOUT"
	envLogLevel              = "SAVESYNC_LOG_LEVEL"
	envLeaseTTL              = "SAVESYNC_LEASE_TTL"
	envShutdownTimeout       = "SAVESYNC_SHUTDOWN_TIMEOUT"
	envLedgerRetention       = "SAVESYNC_LEDGER_RETENTION"
	envInvalidationTopic     = "SAVESYNC_INVALIDATION_TOPIC"
	envAuditTopic            = "SAVESYNC_AUDIT_TOPIC"
	envRobloxAPIKey          = "ROBLOX_OPEN_CLOUD_API_KEY"
	envRobloxUniverseID      = "ROBLOX_UNIVERSE_ID"
	envRobloxPlayers         = "ROBLOX_CONCURRENT_PLAYERS"
	envRobloxOpenCloudURL    = "ROBLOX_OPEN_CLOUD_URL"
	envWebhookSecret         = "SAVESYNC_ROBLOX_WEBHOOK_SECRET"
	envErasureKey            = "SAVESYNC_ERASURE_KEY"
	envOutboxRelay           = "SAVESYNC_OUTBOX_RELAY"
	envBulkRunner            = "SAVESYNC_BULK_RUNNER"
	envCORSOrigins           = "SAVESYNC_CORS_ORIGINS"
	envTraces                = "SAVESYNC_TRACES"
	envTraceSampleRatio      = "SAVESYNC_TRACE_SAMPLE_RATIO"
	envMetrics               = "SAVESYNC_METRICS"
	envMetricsAddr           = "SAVESYNC_METRICS_ADDR"
)

// envTable lists every variable once, in the README table's order, with
// the value it takes when unset or empty ("" when it has none). The README
// test holds the table against the README's.
var envTable = []struct{ name, def string }{
	{envPort, "8080"},
	{envListenHost, ""},
	{envCloudRunService, ""},
	{envTrustedProxies, ""},
	{envGameConfig, ""},
	{envDataDir, ".data"},
	{envProject, ""},
	{envFirestoreEmulatorHost, ""},
	{envPubSubEmulatorHost, ""},
	{envAuthEmulatorHost, ""},
	{envAllowRemoteAuthEmu, "false"},
	{envServerKeys, ""},
	{envMaxBodyBytes, "1048576"},
	{envBodyReadTimeout, "30s"},
	{envLogLevel, "info"},
	{envLeaseTTL, "90s"},
	{envShutdownTimeout, "8s"},
	{envLedgerRetention, "9600h"},
	{envInvalidationTopic, "savesync-invalidations"},
	{envAuditTopic, "savesync-audit"},
	{envRobloxAPIKey, ""},
	{envRobloxUniverseID, ""},
	{envRobloxPlayers, "0"},
	{envRobloxOpenCloudURL, ""},
	{envWebhookSecret, ""},
	{envErasureKey, ""},
	{envOutboxRelay, "on"},
	{envBulkRunner, "on"},
	{envCORSOrigins, ""},
	{envTraces, ""},
	{envTraceSampleRatio, "1"},
	{envMetrics, ""},
	{envMetricsAddr, "127.0.0.1:9464"},
}

// allEnvVars are the variables' names and defaults their defaults, both
// read off envTable.
var allEnvVars, defaults = func() ([]string, map[string]string) {
	names := make([]string, len(envTable))
	defs := make(map[string]string, len(envTable))
	for i, v := range envTable {
		names[i] = v.name
		if v.def != "" {
			defs[v.name] = v.def
		}
	}
	return names, defs
}()

// embeddedProject is the project id used when GOOGLE_CLOUD_PROJECT is unset.
// The "demo-" prefix is the Firebase convention for a project that exists
// only in emulators, so nothing can reach a real project by accident.
const embeddedProject = "demo-savesync"

// devCORSOrigins are the browser origins allowed outside Google Cloud when
// SAVESYNC_CORS_ORIGINS is unset: the dev servers of the local companion
// page (5173) and support console (5174).
const devCORSOrigins = "http://localhost:5173,http://127.0.0.1:5173,http://localhost:5174,http://127.0.0.1:5174"

// noCORSOrigins, as the value of SAVESYNC_CORS_ORIGINS, allows no browser
// origin, also outside Google Cloud.
const noCORSOrigins = "none"

// devErasureKey names erasure records outside cloud mode when no
// SAVESYNC_ERASURE_KEY is set; in Google Cloud the key is required.
const devErasureKey = "dev-erasure-key"

// Development server key, accepted only outside cloud mode when no key is
// configured, so the embedded default works out of the box.
const (
	devServerKey      = "dev-server-key"
	devServerUniverse = 1
)

// Limits on the tunable values.
const (
	minMaxBodyBytes    = 1 << 10
	maxMaxBodyBytes    = 10 << 20 // Firestore's request limit
	minBodyReadTimeout = 100 * time.Millisecond
	maxBodyReadTimeout = 10 * time.Minute
	minLeaseTTL        = 10 * time.Second
	maxLeaseTTL        = time.Hour
	// Idempotent replay is promised for at least 24 hours, and the ledger
	// is what replays are answered from.
	minLedgerRetention = 24 * time.Hour
	maxLedgerRetention = 10 * 365 * 24 * time.Hour
	cloudRunGracePause = 10 * time.Second // SIGTERM, then SIGKILL after this
)

// backend says where a dependency lives.
type backend string

const (
	backendEmbedded backend = "embedded" // in this process
	backendEmulator backend = "emulator" // an emulator at a configured host
	backendCloud    backend = "cloud"    // Google Cloud, via Application Default Credentials
)

// config is the validated configuration of one process.
type config struct {
	port int
	// listenHost is the interface to listen on ("" = all of them).
	listenHost string
	// loopbackOnly is true when listenHost was chosen as loopback because
	// development credentials are in force and no host was set.
	loopbackOnly bool
	// cloudRun is true on Cloud Run (K_SERVICE is set), which reaches the
	// container on every interface and fronts it with its own proxy.
	cloudRun bool
	// trustedProxies are proxies in front of the service whose
	// X-Forwarded-For entries name the client.
	trustedProxies []netip.Prefix
	// gameConfigPath is the game config file; "" means the sample game
	// built into the binary.
	gameConfigPath string
	dataDir        string
	// project is the Google Cloud project id; embeddedProject when unset.
	project string
	// cloud is true when GOOGLE_CLOUD_PROJECT is set and no Firestore
	// emulator is: the service then talks to real Google Cloud services.
	cloud                 bool
	firestoreEmulatorHost string
	pubsubEmulatorHost    string
	authEmulatorHost      string
	// allowRemoteAuthEmulator accepts an Auth emulator that is not on this
	// machine (its tokens are unsigned, so anyone on the way can mint one).
	allowRemoteAuthEmulator bool
	serverKeys              *handlers.ServerKeys
	// devServerKey is true when serverKeys holds only the development key.
	devServerKey bool
	maxBodyBytes int64
	// bodyReadTimeout bounds how long a request body may take to arrive.
	bodyReadTimeout   time.Duration
	logLevel          slog.Level
	leaseTTL          time.Duration
	ledgerRetention   time.Duration
	shutdownTimeout   time.Duration
	invalidationTopic string
	auditTopic        string
	robloxAPIKey      string
	robloxUniverseID  int64
	// robloxConcurrentPlayers sizes the Open Cloud publish budget
	// (50 + 5 × players a minute per universe).
	robloxConcurrentPlayers int
	// webhookSecret verifies Roblox's right-to-erasure webhook ("" refuses every call).
	webhookSecret string
	// erasureKey keys the hash that names erasure records.
	erasureKey string
	// outboxRelay runs the outbox relay on this instance.
	outboxRelay bool
	// bulkRunner runs the bulk job runner on this instance.
	bulkRunner bool
	// corsOrigins are the browser origins allowed to call the companion and
	// admin routes (none: no browser access).
	corsOrigins []string
	// longPollMaxWait caps the changes long-poll (0: the store's default).
	// No variable sets it; tests do, through RunOptions.
	longPollMaxWait time.Duration
	// openCloudURL replaces the Roblox Open Cloud origin ("": Roblox's),
	// from ROBLOX_OPEN_CLOUD_URL or, in tests, RunOptions.
	openCloudURL string
	// companionLimits replaces the companion API's limits (nil: its
	// defaults). No variable sets it; tests do, through RunOptions.
	companionLimits *handlers.CompanionOptions
	// traces and metrics say where telemetry goes (telemetry.Traces*,
	// telemetry.Metrics*): off locally and to Google Cloud on Cloud Run
	// unless set.
	traces  string
	metrics string
	// traceSampleRatio is the share of traces sampled, of those started
	// here and of those the caller sampled.
	traceSampleRatio float64
	// metricsAddr is where the Prometheus endpoint listens.
	metricsAddr string
	// spanProcessor, when set, receives every span. No variable sets it;
	// tests do, through RunOptions.
	spanProcessor sdktrace.SpanProcessor
	// stdout is where logs (and spans of SAVESYNC_TRACES=stdout) go.
	stdout io.Writer
}

// firestoreBackend says which Firestore the service uses.
func (c config) firestoreBackend() backend {
	switch {
	case c.firestoreEmulatorHost != "":
		return backendEmulator
	case c.cloud:
		return backendCloud
	default:
		return backendEmbedded
	}
}

// devCredentials reports whether credentials anyone can know are accepted:
// the public development server key, or the Auth emulator's unsigned ID
// tokens.
func (c config) devCredentials() bool {
	return c.devServerKey || c.authEmulatorHost != ""
}

// pubsubBackend says which Pub/Sub the service uses.
func (c config) pubsubBackend() backend {
	switch {
	case c.pubsubEmulatorHost != "":
		return backendEmulator
	case c.cloud:
		return backendCloud
	default:
		return backendEmbedded
	}
}

// loadConfig reads and validates every variable through getenv. It reports
// all problems at once, each naming its variable and saying what to set.
func loadConfig(getenv func(string) string) (config, error) {
	r := &envReader{getenv: getenv}
	var c config

	c.port = int(r.intIn(envPort, 0, 65535, "set a port number from 0 to 65535 (Cloud Run sets it for you)"))
	c.gameConfigPath = r.get(envGameConfig)
	c.dataDir = r.get(envDataDir)

	c.project = r.get(envProject)
	if c.project != "" && !projectIDPattern.MatchString(c.project) {
		r.bad(envProject, c.project, "set a Google Cloud project id (6 to 30 lowercase letters, digits or hyphens, starting with a letter)")
	}
	c.firestoreEmulatorHost = r.hostPort(envFirestoreEmulatorHost)
	c.pubsubEmulatorHost = r.hostPort(envPubSubEmulatorHost)
	c.authEmulatorHost = r.hostPort(envAuthEmulatorHost)
	c.cloud = c.project != "" && c.firestoreEmulatorHost == ""
	if c.cloud && c.authEmulatorHost != "" {
		// The Admin SDK does not check signatures when it talks to the Auth
		// emulator: in Google Cloud that would accept forged ID tokens.
		r.bad(envAuthEmulatorHost, c.authEmulatorHost, "unset it in Google Cloud: with it the Admin SDK accepts unsigned ID tokens; set it only with emulators (%s)", envFirestoreEmulatorHost)
	}
	c.allowRemoteAuthEmulator = r.boolean(envAllowRemoteAuthEmu)
	if c.authEmulatorHost != "" && !c.allowRemoteAuthEmulator && !isLoopbackHost(c.authEmulatorHost) {
		// With the emulator the Admin SDK accepts tokens nobody signed: on
		// this machine that is a developer's choice, elsewhere it is a
		// service anyone on the network path can sign in to as anyone.
		r.bad(envAuthEmulatorHost, c.authEmulatorHost, "set a loopback address (127.0.0.1, ::1 or localhost): the Admin SDK accepts unsigned ID tokens from the emulator; to use one on another machine anyway set %s=true", envAllowRemoteAuthEmu)
	}
	if c.project == "" {
		c.project = embeddedProject
	}

	spec := r.get(envServerKeys)
	keys, err := handlers.ParseServerKeys(spec)
	switch {
	case err != nil:
		r.bad(envServerKeys, shorten(spec), "%v; set comma-separated universeId:sha256hex pairs (the sha256 of each key, at most two per universe)", err)
	case keys.Len() == 0 && c.cloud:
		r.bad(envServerKeys, spec, "required when %s is set without an emulator: set universeId:sha256hex pairs, the hash made with printf %%s \"$KEY\" | sha256sum", envProject)
	case keys.Len() == 0:
		keys.AddKey(devServerUniverse, devServerKey)
		c.devServerKey = true
	case len(keys.Universes()) > 1:
		// Saves are keyed by Roblox user id alone: a key of another universe
		// (a staging place, shared with more people) could change these
		// players' saves. One deployment serves one universe.
		r.bad(envServerKeys, shorten(spec), "names universes %v, but one deployment serves one universe: set keys of one universe only and deploy another service (and Firestore database) for the other", keys.Universes())
	}
	c.serverKeys = keys

	switch v := r.get(envOutboxRelay); v {
	case "on":
		c.outboxRelay = true
	case "off":
	default:
		r.bad(envOutboxRelay, v, "set on or off")
	}
	switch v := r.get(envBulkRunner); v {
	case "on":
		c.bulkRunner = true
	case "off":
	default:
		r.bad(envBulkRunner, v, "set on or off")
	}

	c.corsOrigins = r.corsOrigins(envCORSOrigins, c.cloud)

	c.webhookSecret = r.get(envWebhookSecret)
	c.erasureKey = r.get(envErasureKey)
	switch {
	case c.erasureKey == "" && c.cloud:
		r.bad(envErasureKey, "", "required in Google Cloud: set a long random secret (e.g. openssl rand -hex 32) and keep it stable; it names erasure records without the user id")
	case c.erasureKey == "":
		c.erasureKey = devErasureKey
	case len(c.erasureKey) < 16:
		r.bad(envErasureKey, "(hidden)", "set at least 16 characters of random secret, e.g. openssl rand -hex 32")
	}

	c.maxBodyBytes = r.intIn(envMaxBodyBytes, minMaxBodyBytes, maxMaxBodyBytes,
		fmt.Sprintf("set a whole number of bytes from %d to %d (Firestore's request limit)", minMaxBodyBytes, maxMaxBodyBytes))
	c.bodyReadTimeout = r.durationIn(envBodyReadTimeout, minBodyReadTimeout, maxBodyReadTimeout,
		fmt.Sprintf("set a duration from %s to %s, e.g. 30s", minBodyReadTimeout, maxBodyReadTimeout))
	level := r.get(envLogLevel)
	c.logLevel, err = logging.ParseLevel(level)
	if err != nil {
		r.bad(envLogLevel, level, "set one of debug, info, warning, error")
	}
	c.leaseTTL = r.durationIn(envLeaseTTL, minLeaseTTL, maxLeaseTTL,
		fmt.Sprintf("set a duration from %s to %s, e.g. 90s", minLeaseTTL, maxLeaseTTL))
	c.ledgerRetention = r.durationIn(envLedgerRetention, minLedgerRetention, maxLedgerRetention,
		fmt.Sprintf("set a duration from %s to %s in hours, e.g. 9600h (400 days)", minLedgerRetention, maxLedgerRetention))
	c.shutdownTimeout = r.durationIn(envShutdownTimeout, time.Millisecond, cloudRunGracePause-time.Millisecond,
		fmt.Sprintf("set a duration above 0 and below %s (Cloud Run kills the instance %s after SIGTERM), e.g. 8s", cloudRunGracePause, cloudRunGracePause))

	c.invalidationTopic = r.topic(envInvalidationTopic)
	c.auditTopic = r.topic(envAuditTopic)
	if c.auditTopic != "" && c.auditTopic == c.invalidationTopic {
		r.bad(envAuditTopic, c.auditTopic, "set a topic different from %s: the two streams have different consumers", envInvalidationTopic)
	}

	c.robloxAPIKey = r.get(envRobloxAPIKey)
	if r.get(envRobloxUniverseID) != "" || c.robloxAPIKey != "" {
		c.robloxUniverseID = r.intIn(envRobloxUniverseID, 1, math.MaxInt64,
			"set the numeric universe id of the experience (Creator Hub, experience settings); it is required when "+envRobloxAPIKey+" is set")
	}
	if c.serverKeys != nil && c.robloxUniverseID != 0 && !c.devServerKey {
		if u := c.serverKeys.Universes(); len(u) == 1 && u[0] != c.robloxUniverseID {
			r.bad(envRobloxUniverseID, strconv.FormatInt(c.robloxUniverseID, 10), "set the universe the server keys belong to (%d), or keys of this universe in %s", u[0], envServerKeys)
		}
	}

	c.cloudRun = r.get(envCloudRunService) != ""
	if c.cloudRun && c.devServerKey {
		// Cloud Run serves the internet: the development key is public.
		r.bad(envServerKeys, "", "required on Cloud Run (%s is set): without it anyone could use the public development key; set universeId:sha256hex pairs", envCloudRunService)
	}
	if c.cloudRun && c.authEmulatorHost != "" {
		r.bad(envAuthEmulatorHost, c.authEmulatorHost, "unset it on Cloud Run (%s is set): the Admin SDK accepts unsigned ID tokens from the emulator, so anyone on the internet could sign in as any user or role", envCloudRunService)
	}
	c.trustedProxies = r.prefixes(envTrustedProxies)
	c.listenHost = r.get(envListenHost)
	switch {
	case c.listenHost != "":
		if c.listenHost != "localhost" && net.ParseIP(c.listenHost) == nil {
			r.bad(envListenHost, c.listenHost, "set an IP address of this machine, e.g. 127.0.0.1, or 0.0.0.0 (or ::) for every interface")
		}
	case c.cloudRun:
		// Cloud Run requires listening on every interface.
	case c.devCredentials():
		c.listenHost = "127.0.0.1"
		c.loopbackOnly = true
	}

	// On Cloud Run with real Google Cloud services, telemetry goes to
	// Cloud Trace and Cloud Monitoring unless told otherwise.
	inCloud := c.cloudRun && c.cloud
	c.traces = r.oneOf(envTraces, inCloud, telemetry.TracesCloud, telemetry.TracesOff, telemetry.TracesStdout, telemetry.TracesCloud)
	if c.traces == telemetry.TracesCloud && !c.cloud {
		r.bad(envTraces, c.traces, "set %s (and no %s) to export to Cloud Trace, or set %s or %s", envProject, envFirestoreEmulatorHost, telemetry.TracesStdout, telemetry.TracesOff)
	}
	c.metrics = r.oneOf(envMetrics, inCloud, telemetry.MetricsCloud, telemetry.MetricsOff, telemetry.MetricsPrometheus, telemetry.MetricsCloud)
	if c.metrics == telemetry.MetricsCloud && !c.cloud {
		r.bad(envMetrics, c.metrics, "set %s (and no %s) to export to Cloud Monitoring, or set %s or %s", envProject, envFirestoreEmulatorHost, telemetry.MetricsPrometheus, telemetry.MetricsOff)
	}
	if v := r.get(envTraceSampleRatio); v != "" {
		ratio, err := strconv.ParseFloat(v, 64)
		if err != nil || ratio < 0 || ratio > 1 {
			r.bad(envTraceSampleRatio, v, "set a share from 0 to 1, e.g. 0.1 keeps one trace in ten")
		}
		c.traceSampleRatio = ratio
	}
	c.metricsAddr = r.get(envMetricsAddr)
	if host, port, err := net.SplitHostPort(c.metricsAddr); err != nil || (host != "localhost" && host != "" && net.ParseIP(host) == nil) || !isPort(port) {
		r.bad(envMetricsAddr, c.metricsAddr, "set host:port for the Prometheus endpoint, e.g. 127.0.0.1:9464 (port 0 picks a free one; the start-up log names it)")
	}

	c.robloxConcurrentPlayers = int(r.intIn(envRobloxPlayers, 0, 1_000_000,
		"set the number of players usually online in the universe (0 keeps the forwarder at the 50 a minute floor)"))
	c.openCloudURL = r.openCloudOrigin(envRobloxOpenCloudURL)

	if len(r.problems) > 0 {
		return config{}, errors.New("invalid configuration:\n  " + strings.Join(r.problems, "\n  "))
	}
	return c, nil
}

// envReader reads variables with their defaults and collects problems.
type envReader struct {
	getenv   func(string) string
	problems []string
}

// get returns the trimmed value of name, or its default when unset or empty.
func (r *envReader) get(name string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return defaults[name]
}

// bad records a problem with the variable name holding value.
func (r *envReader) bad(name, value, format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf("%s=%q: %s", name, value, fmt.Sprintf(format, args...)))
}

// intIn reads name as an integer from lo to hi; fix says what to set.
func (r *envReader) intIn(name string, lo, hi int64, fix string) int64 {
	v := r.get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		r.bad(name, v, "%s", fix)
		return 0
	}
	return n
}

// durationIn reads name as a Go duration from lo to hi; fix says what to set.
func (r *envReader) durationIn(name string, lo, hi time.Duration, fix string) time.Duration {
	v := r.get(name)
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.bad(name, v, "%s", fix)
		return 0
	}
	return d
}

// topic reads name as a Pub/Sub topic id.
func (r *envReader) topic(name string) string {
	v := r.get(name)
	if !topicIDPattern.MatchString(v) || strings.HasPrefix(v, "goog") {
		r.bad(name, v, "set a Pub/Sub topic id: 3 to 255 letters, digits or - _ . ~ + %%, starting with a letter but not with goog")
		return ""
	}
	return v
}

// prefixes reads name as comma-separated CIDR ranges or single addresses.
func (r *envReader) prefixes(name string) []netip.Prefix {
	v := r.get(name)
	if v == "" {
		return nil
	}
	var out []netip.Prefix
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		p, err := netip.ParsePrefix(part)
		if err != nil {
			ip, ierr := netip.ParseAddr(part)
			if ierr != nil {
				r.bad(name, v, "set comma-separated address ranges of your proxies, e.g. 130.211.0.0/22,35.191.0.0/16 (%q is not one)", part)
				return nil
			}
			p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

// corsOrigins reads name as comma-separated browser origins, or none;
// unset it is devCORSOrigins outside Google Cloud and no origin in it.
func (r *envReader) corsOrigins(name string, cloud bool) []string {
	v := r.get(name)
	switch {
	case v == noCORSOrigins:
		return nil
	case v == "" && cloud:
		return nil
	case v == "":
		v = devCORSOrigins
	}
	origins, err := handlers.ParseCORSOrigins(v)
	if err != nil {
		r.bad(name, shorten(v), "%v; set comma-separated exact origins (scheme://host[:port]), e.g. https://app.example.com,http://localhost:5173, or %s", err, noCORSOrigins)
		return nil
	}
	return origins
}

// oneOf reads name as one of allowed; unset it is cloudDefault when
// inCloud and allowed[0] otherwise.
func (r *envReader) oneOf(name string, inCloud bool, cloudDefault string, allowed ...string) string {
	v := r.get(name)
	switch {
	case v == "" && inCloud:
		return cloudDefault
	case v == "":
		return allowed[0]
	case slices.Contains(allowed, v):
		return v
	}
	r.bad(name, v, "set one of %s", strings.Join(allowed, ", "))
	return allowed[0]
}

// isPort reports whether s is a port number from 0 to 65535.
func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 65535
}

// boolean reads name as true or false.
func (r *envReader) boolean(name string) bool {
	v := r.get(name)
	b, err := strconv.ParseBool(v)
	if err != nil || (v != "true" && v != "false") {
		r.bad(name, v, "set true or false")
		return false
	}
	return b
}

// isLoopbackHost reports whether the host of hostPort is this machine:
// localhost or an address in 127.0.0.0/8 or ::1.
func isLoopbackHost(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openCloudOrigin reads name as the origin Open Cloud calls go to: an
// https origin, or an http one on loopback (a local stand-in), with no
// path, query or credentials. The API key travels with every call, so
// plain http anywhere else would expose it.
func (r *envReader) openCloudOrigin(name string) string {
	v := r.get(name)
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	ok := err == nil && u.Host != "" && u.User == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == ""
	if ok && u.Scheme == "http" {
		hp := u.Host
		if u.Port() == "" {
			hp = net.JoinHostPort(u.Hostname(), "80")
		}
		ok = isLoopbackHost(hp)
	} else if ok {
		ok = u.Scheme == "https"
	}
	if !ok {
		r.bad(name, v, "set an origin such as https://apis.roblox.com (http only on loopback, e.g. http://127.0.0.1:9000), without a path, or unset it")
		return ""
	}
	return strings.TrimSuffix(v, "/")
}

// hostPort reads name as an emulator address ("host:port"; an http:// prefix
// is tolerated, as the Google clients do) and returns it without the prefix.
func (r *envReader) hostPort(name string) string {
	v := r.get(name)
	if v == "" {
		return ""
	}
	hp := strings.TrimPrefix(v, "http://")
	host, port, err := net.SplitHostPort(hp)
	n, perr := strconv.Atoi(port)
	if err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
		r.bad(name, v, "set host:port of the emulator, e.g. 127.0.0.1:8081, or unset it")
		return ""
	}
	return hp
}

// projectIDPattern accepts project ids, including legacy "domain:project" ones.
var projectIDPattern = regexp.MustCompile(`^([a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)

// topicIDPattern is Pub/Sub's rule for topic ids.
var topicIDPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$`)

// shorten cuts a long value for an error message.
func shorten(v string) string {
	if len(v) > 24 {
		return v[:24] + "…"
	}
	return v
}
