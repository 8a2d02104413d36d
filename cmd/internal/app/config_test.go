package app

import (
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/logging"
)

// env returns a getenv over vars.
func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// validHash is the sha256 of "k".
const validHash = "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a"

// validErasureKey is a long enough erasure key.
const validErasureKey = "0123456789abcdef0123456789abcdef"

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(env(nil))
	if err != nil {
		t.Fatalf("loadConfig(empty) = %v", err)
	}
	got := map[string]any{
		"port":              c.port,
		"gameConfigPath":    c.gameConfigPath,
		"dataDir":           c.dataDir,
		"project":           c.project,
		"cloud":             c.cloud,
		"firestore":         c.firestoreBackend(),
		"pubsub":            c.pubsubBackend(),
		"devServerKey":      c.devServerKey,
		"serverKeys":        c.serverKeys.Len(),
		"maxBodyBytes":      c.maxBodyBytes,
		"logLevel":          c.logLevel,
		"leaseTTL":          c.leaseTTL,
		"shutdownTimeout":   c.shutdownTimeout,
		"invalidationTopic": c.invalidationTopic,
		"auditTopic":        c.auditTopic,
		"robloxUniverseID":  c.robloxUniverseID,
	}
	want := map[string]any{
		"port":              8080,
		"gameConfigPath":    "",
		"dataDir":           ".data",
		"project":           "demo-savesync",
		"cloud":             false,
		"firestore":         backendEmbedded,
		"pubsub":            backendEmbedded,
		"devServerKey":      true,
		"serverKeys":        1,
		"maxBodyBytes":      int64(1048576),
		"logLevel":          slog.LevelInfo,
		"leaseTTL":          90 * time.Second,
		"shutdownTimeout":   8 * time.Second,
		"invalidationTopic": "savesync-invalidations",
		"auditTopic":        "savesync-audit",
		"robloxUniverseID":  int64(0),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestLoadConfigBackends(t *testing.T) {
	tests := []struct {
		name      string
		vars      map[string]string
		project   string
		firestore backend
		pubsub    backend
		devKey    bool
	}{
		{"embedded", nil, "demo-savesync", backendEmbedded, backendEmbedded, true},
		{"firestore emulator", map[string]string{envFirestoreEmulatorHost: "http://127.0.0.1:8081"},
			"demo-savesync", backendEmulator, backendEmbedded, true},
		{"both emulators with project", map[string]string{
			envProject: "demo-other", envFirestoreEmulatorHost: "localhost:8081", envPubSubEmulatorHost: "localhost:8085"},
			"demo-other", backendEmulator, backendEmulator, true},
		{"cloud", map[string]string{envProject: "my-studio-prod", envServerKeys: "42:" + validHash, envErasureKey: validErasureKey},
			"my-studio-prod", backendCloud, backendCloud, false},
		{"cloud firestore, pubsub emulator", map[string]string{
			envProject: "my-studio-prod", envServerKeys: "42:" + validHash, envPubSubEmulatorHost: "localhost:8085", envErasureKey: validErasureKey},
			"my-studio-prod", backendCloud, backendEmulator, false},
		{"configured keys replace the dev key", map[string]string{envServerKeys: "42:" + validHash + ", 42:" + strings.Repeat("0", 64)},
			"demo-savesync", backendEmbedded, backendEmbedded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.vars))
			if err != nil {
				t.Fatalf("loadConfig = %v", err)
			}
			got := []any{c.project, c.firestoreBackend(), c.pubsubBackend(), c.devServerKey}
			want := []any{tt.project, tt.firestore, tt.pubsub, tt.devKey}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("project, firestore, pubsub, devKey (-want +got):\n%s", diff)
			}
			if c.firestoreEmulatorHost != "" && strings.HasPrefix(c.firestoreEmulatorHost, "http://") {
				t.Errorf("emulator host kept its scheme: %q", c.firestoreEmulatorHost)
			}
		})
	}
}

func TestLoadConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		// bad is the variable the message must name.
		bad string
	}{
		{"port not a number", map[string]string{envPort: "http"}, envPort},
		{"port too big", map[string]string{envPort: "70000"}, envPort},
		{"project id", map[string]string{envProject: "My Project", envServerKeys: "1:" + validHash, envErasureKey: validErasureKey}, envProject},
		{"firestore emulator without port", map[string]string{envFirestoreEmulatorHost: "localhost"}, envFirestoreEmulatorHost},
		{"pubsub emulator bad port", map[string]string{envPubSubEmulatorHost: "localhost:x"}, envPubSubEmulatorHost},
		{"auth emulator without host", map[string]string{envAuthEmulatorHost: ":9099"}, envAuthEmulatorHost},
		{"server key not hex", map[string]string{envServerKeys: "1:zz"}, envServerKeys},
		{"server key no universe", map[string]string{envServerKeys: validHash}, envServerKeys},
		{"three keys for one universe", map[string]string{envServerKeys: "1:" + validHash + ",1:" + validHash + ",1:" + validHash}, envServerKeys},
		{"cloud without keys", map[string]string{envProject: "my-studio-prod", envErasureKey: validErasureKey}, envServerKeys},
		{"cloud without erasure key", map[string]string{envProject: "my-studio-prod", envServerKeys: "42:" + validHash}, envErasureKey},
		{"erasure key too short", map[string]string{envErasureKey: "short"}, envErasureKey},
		{"body limit not a number", map[string]string{envMaxBodyBytes: "1MiB"}, envMaxBodyBytes},
		{"body limit too small", map[string]string{envMaxBodyBytes: "10"}, envMaxBodyBytes},
		{"body limit over Firestore's", map[string]string{envMaxBodyBytes: "20000000"}, envMaxBodyBytes},
		{"log level", map[string]string{envLogLevel: "loud"}, envLogLevel},
		{"lease ttl not a duration", map[string]string{envLeaseTTL: "90"}, envLeaseTTL},
		{"lease ttl too short", map[string]string{envLeaseTTL: "1s"}, envLeaseTTL},
		{"shutdown at Cloud Run's limit", map[string]string{envShutdownTimeout: "10s"}, envShutdownTimeout},
		{"shutdown negative", map[string]string{envShutdownTimeout: "-1s"}, envShutdownTimeout},
		{"invalidation topic", map[string]string{envInvalidationTopic: "x"}, envInvalidationTopic},
		{"audit topic reserved prefix", map[string]string{envAuditTopic: "google-audit"}, envAuditTopic},
		{"same topic twice", map[string]string{envInvalidationTopic: "events", envAuditTopic: "events"}, envAuditTopic},
		{"universe id not a number", map[string]string{envRobloxUniverseID: "abc"}, envRobloxUniverseID},
		{"api key without universe", map[string]string{envRobloxAPIKey: "secret"}, envRobloxUniverseID},
		{"outbox relay neither on nor off", map[string]string{envOutboxRelay: "yes"}, envOutboxRelay},
		{"bulk runner neither on nor off", map[string]string{envBulkRunner: "yes"}, envBulkRunner},
		{"auth emulator in Google Cloud", map[string]string{envProject: "my-studio-prod", envServerKeys: "1:" + validHash, envErasureKey: validErasureKey, envAuthEmulatorHost: "127.0.0.1:9099"}, envAuthEmulatorHost},
		{"auth emulator on another machine", map[string]string{envAuthEmulatorHost: "10.0.0.5:9099"}, envAuthEmulatorHost},
		{"auth emulator on a host name", map[string]string{envAuthEmulatorHost: "auth.example.com:9099"}, envAuthEmulatorHost},
		{"auth emulator on all interfaces", map[string]string{envAuthEmulatorHost: "0.0.0.0:9099"}, envAuthEmulatorHost},
		{"remote auth emulator flag not a bool", map[string]string{envAllowRemoteAuthEmu: "yes"}, envAllowRemoteAuthEmu},
		{"listen host not an address", map[string]string{envListenHost: "example.com"}, envListenHost},
		{"development key on Cloud Run", map[string]string{envCloudRunService: "savesync"}, envServerKeys},
		{"auth emulator on Cloud Run", map[string]string{envCloudRunService: "savesync", envServerKeys: "1:" + validHash, envAuthEmulatorHost: "127.0.0.1:9099"}, envAuthEmulatorHost},
		{"trusted proxy not a range", map[string]string{envTrustedProxies: "10.0.0.0/8, lb.example.com"}, envTrustedProxies},
		{"keys of two universes", map[string]string{envServerKeys: "1:" + validHash + ",2:" + validHash}, envServerKeys},
		{"universe other than the keys'", map[string]string{envServerKeys: "1:" + validHash, envRobloxUniverseID: "2"}, envRobloxUniverseID},
		{"CORS origin a wildcard", map[string]string{envCORSOrigins: "*"}, envCORSOrigins},
		{"CORS origin with a wildcard host", map[string]string{envCORSOrigins: "https://*.example.com"}, envCORSOrigins},
		{"CORS origin with a path", map[string]string{envCORSOrigins: "https://app.example.com/companion"}, envCORSOrigins},
		{"CORS origin with a trailing slash", map[string]string{envCORSOrigins: "https://app.example.com,http://localhost:5173/"}, envCORSOrigins},
		{"CORS origin without a scheme", map[string]string{envCORSOrigins: "app.example.com"}, envCORSOrigins},
		{"CORS origin garbage", map[string]string{envCORSOrigins: "%%not an origin"}, envCORSOrigins},
		{"Open Cloud origin over http off loopback", map[string]string{envRobloxOpenCloudURL: "http://apis.example.com"}, envRobloxOpenCloudURL},
		{"Open Cloud origin with a path", map[string]string{envRobloxOpenCloudURL: "https://apis.roblox.com/cloud/v2"}, envRobloxOpenCloudURL},
		{"Open Cloud origin without a scheme", map[string]string{envRobloxOpenCloudURL: "apis.roblox.com"}, envRobloxOpenCloudURL},
		{"Open Cloud origin with credentials", map[string]string{envRobloxOpenCloudURL: "https://user:pw@apis.roblox.com"}, envRobloxOpenCloudURL},
		{"traces to an unknown place", map[string]string{envTraces: "jaeger"}, envTraces},
		{"traces to Cloud Trace without a project", map[string]string{envTraces: "cloud"}, envTraces},
		{"metrics to an unknown place", map[string]string{envMetrics: "statsd"}, envMetrics},
		{"metrics to Cloud Monitoring on emulators", map[string]string{envMetrics: "cloud", envProject: "my-studio-prod", envFirestoreEmulatorHost: "127.0.0.1:8081"}, envMetrics},
		{"sample ratio above 1", map[string]string{envTraceSampleRatio: "2"}, envTraceSampleRatio},
		{"sample ratio a percentage", map[string]string{envTraceSampleRatio: "10%"}, envTraceSampleRatio},
		{"metrics address without a port", map[string]string{envMetricsAddr: "127.0.0.1"}, envMetricsAddr},
		{"metrics address on a host name", map[string]string{envMetricsAddr: "metrics.example.com:9464"}, envMetricsAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(env(tt.vars))
			if err == nil {
				t.Fatalf("loadConfig(%v) = nil error, want one naming %s", tt.vars, tt.bad)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != 2 {
				t.Errorf("want exactly one problem, got:\n%v", err)
			}
			if !strings.Contains(err.Error(), tt.bad+"=") || !strings.Contains(err.Error(), "set ") {
				t.Errorf("message does not name %s and say what to set:\n%v", tt.bad, err)
			}
		})
	}
}

// TestLoadConfigTelemetry: off locally, to Google Cloud on Cloud Run with
// real Google Cloud services, and what is set otherwise.
func TestLoadConfigTelemetry(t *testing.T) {
	cloudRun := map[string]string{envCloudRunService: "savesync", envProject: "my-studio-prod", envServerKeys: "1:" + validHash, envErasureKey: validErasureKey}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name string
		vars map[string]string
		want []any // traces, metrics, sample ratio, metrics address
	}{
		{"local defaults", nil, []any{"off", "off", 1.0, "127.0.0.1:9464"}},
		{"local, spans to stdout, Prometheus", map[string]string{envTraces: "stdout", envMetrics: "prometheus", envTraceSampleRatio: "0.25", envMetricsAddr: "127.0.0.1:0"},
			[]any{"stdout", "prometheus", 0.25, "127.0.0.1:0"}},
		{"Cloud Run defaults", cloudRun, []any{"cloud", "cloud", 1.0, "127.0.0.1:9464"}},
		{"Cloud Run, turned off", with(cloudRun, envTraces, "off", envMetrics, "prometheus"), []any{"off", "prometheus", 1.0, "127.0.0.1:9464"}},
		{"Cloud Run on emulators", with(cloudRun, envFirestoreEmulatorHost, "127.0.0.1:8081"), []any{"off", "off", 1.0, "127.0.0.1:9464"}},
		{"Google Cloud off Cloud Run", with(cloudRun, envCloudRunService, ""), []any{"off", "off", 1.0, "127.0.0.1:9464"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.vars))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, []any{c.traces, c.metrics, c.traceSampleRatio, c.metricsAddr}); diff != "" {
				t.Errorf("traces, metrics, ratio, address (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigCORSOrigins(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want []string
	}{
		{"unset locally: the local companion page and support console", map[string]string{}, []string{"http://localhost:5173", "http://127.0.0.1:5173", "http://localhost:5174", "http://127.0.0.1:5174"}},
		{"none locally", map[string]string{envCORSOrigins: "none"}, nil},
		{"unset in Google Cloud: no origin", map[string]string{envProject: "my-studio-prod", envServerKeys: "1:" + validHash, envErasureKey: validErasureKey}, nil},
		{"listed in Google Cloud", map[string]string{envProject: "my-studio-prod", envServerKeys: "1:" + validHash, envErasureKey: validErasureKey,
			envCORSOrigins: "https://app.example.com, https://Support.Example.com:443"}, []string{"https://app.example.com", "https://support.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.vars))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.corsOrigins); diff != "" {
				t.Errorf("corsOrigins (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigOpenCloudOrigin(t *testing.T) {
	tests := []struct{ value, want string }{
		{"", ""},
		{"https://apis.roblox.com", "https://apis.roblox.com"},
		{"https://apis.roblox.com/", "https://apis.roblox.com"},
		{"http://127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"http://localhost:9000", "http://localhost:9000"},
		{"http://[::1]:9000", "http://[::1]:9000"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := loadConfig(env(map[string]string{envRobloxOpenCloudURL: tt.value}))
			if err != nil {
				t.Fatalf("loadConfig = %v", err)
			}
			if diff := cmp.Diff(tt.want, c.openCloudURL); diff != "" {
				t.Errorf("openCloudURL (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigAuthEmulatorHosts(t *testing.T) {
	tests := []struct {
		host  string
		allow string
	}{
		{"127.0.0.1:9099", ""},
		{"127.8.9.10:9099", ""},
		{"localhost:9099", ""},
		{"LOCALHOST:9099", ""},
		{"[::1]:9099", ""},
		{"http://127.0.0.1:9099", ""},
		{"10.0.0.5:9099", "true"},
		{"auth-emulator:9099", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			c, err := loadConfig(env(map[string]string{envAuthEmulatorHost: tt.host, envAllowRemoteAuthEmu: tt.allow}))
			if err != nil {
				t.Fatalf("loadConfig = %v", err)
			}
			if c.authEmulatorHost == "" {
				t.Error("the Auth emulator host was dropped")
			}
		})
	}
}

// TestLogTokenChecks checks that start-up says, in every mode, whether ID
// token signatures are verified.
func TestLogTokenChecks(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want []string
	}{
		{"no auth", nil, []string{`"message":"ID token checks: none`, `"signatureVerified":false`, `"tokensAccepted":false`}},
		{"emulator", map[string]string{envAuthEmulatorHost: "127.0.0.1:9099"}, []string{
			`"severity":"WARNING","message":"ID token checks: signatures NOT verified`, `"signatureVerified":false`,
			`"authEmulator":"127.0.0.1:9099"`, `"revocationChecked":true`, `"audience":"demo-savesync"`}},
		{"Firebase Auth", map[string]string{envProject: "my-studio-prod", envServerKeys: "42:" + validHash, envErasureKey: validErasureKey}, []string{
			`"message":"ID token checks: RS256 signature`, `"signatureVerified":true`, `"revocationChecked":true`,
			`"issuer":"https://securetoken.google.com/my-studio-prod"`, `"audience":"my-studio-prod"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.vars))
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			logTokenChecks(logging.New(&out, slog.LevelInfo), c)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("log lacks %s:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestLoadConfigListenHost(t *testing.T) {
	keys := "1:" + validHash
	tests := []struct {
		name     string
		vars     map[string]string
		host     string
		loopback bool
	}{
		{"development key", nil, "127.0.0.1", true},
		{"Auth emulator", map[string]string{envServerKeys: keys, envAuthEmulatorHost: "127.0.0.1:9099"}, "127.0.0.1", true},
		{"configured keys", map[string]string{envServerKeys: keys}, "", false},
		{"told otherwise", map[string]string{envListenHost: "0.0.0.0"}, "0.0.0.0", false},
		{"told IPv6", map[string]string{envListenHost: "::"}, "::", false},
		{"Cloud Run", map[string]string{envServerKeys: keys, envCloudRunService: "savesync"}, "", false},
		{"Cloud Run told otherwise", map[string]string{envServerKeys: keys, envCloudRunService: "savesync", envListenHost: "127.0.0.1"}, "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.vars))
			if err != nil {
				t.Fatalf("loadConfig = %v", err)
			}
			if diff := cmp.Diff([]any{tt.host, tt.loopback}, []any{c.listenHost, c.loopbackOnly}); diff != "" {
				t.Errorf("listen host, loopback only (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigReportsAllProblems(t *testing.T) {
	_, err := loadConfig(env(map[string]string{envPort: "x", envLogLevel: "y", envLeaseTTL: "z"}))
	if err == nil {
		t.Fatal("loadConfig = nil error, want three problems")
	}
	for _, name := range []string{envPort, envLogLevel, envLeaseTTL} {
		if !strings.Contains(err.Error(), name+"=") {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

// TestREADMEListsEveryVariable keeps the README's table in step with the
// variables the service reads and their defaults.
func TestREADMEListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	for _, name := range allEnvVars {
		def := defaults[name]
		pattern := "(?m)^\\| `" + regexp.QuoteMeta(name) + "` \\| "
		if def != "" {
			pattern += "`" + regexp.QuoteMeta(def) + "`"
		}
		if !regexp.MustCompile(pattern).Match(readme) {
			t.Errorf("README has no table row for %s with default %q (want a row starting %q)", name, def, "| `"+name+"` | ")
		}
	}
	rows := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|").FindAllSubmatch(readme, -1)
	known := map[string]bool{}
	for _, n := range allEnvVars {
		known[n] = true
	}
	for _, row := range rows {
		if !known[string(row[1])] {
			t.Errorf("README lists %s, which the service does not read", row[1])
		}
	}
}
