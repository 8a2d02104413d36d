package app

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/google/go-cmp/cmp"
)

// cloudBuild is the part of cloudbuild.yaml the deploy test reads.
type cloudBuild struct {
	Substitutions map[string]string `yaml:"substitutions"`
	Steps         []struct {
		ID   string   `yaml:"id"`
		Args []string `yaml:"args"`
	} `yaml:"steps"`
}

// TestCloudBuildDeploysWhatTheServiceReads holds the deploy step of
// cloudbuild.yaml against the configuration: every variable it passes is
// one the service reads, secrets come from Secret Manager, the Open Cloud
// forwarder and the Google Cloud exporters are on, and the service as
// deployed (the substitutions' defaults, a universe id, the secrets'
// values) passes its own start-up check.
func TestCloudBuildDeploysWhatTheServiceReads(t *testing.T) {
	raw, err := os.ReadFile("../../../cloudbuild.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cb cloudBuild
	if err := yaml.Unmarshal(raw, &cb); err != nil {
		t.Fatalf("parse cloudbuild.yaml: %v", err)
	}
	for _, ref := range regexp.MustCompile(`\$\{(_[A-Z_]+)\}`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := cb.Substitutions[ref[1]]; !ok {
			t.Errorf("cloudbuild.yaml uses %s, which substitutions does not declare", ref[1])
		}
	}
	var args []string
	for _, s := range cb.Steps {
		if s.ID == "deploy" {
			args = s.Args
		}
	}
	flag := func(name string) map[string]string {
		out := map[string]string{}
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				for _, pair := range strings.Split(v, ",") {
					k, v, _ := strings.Cut(pair, "=")
					out[k] = v
				}
			}
		}
		return out
	}
	envVars, secrets := flag("--set-env-vars"), flag("--set-secrets")
	var passed []string
	for k := range envVars {
		passed = append(passed, k)
	}
	for k := range secrets {
		passed = append(passed, k)
		if _, both := envVars[k]; both {
			t.Errorf("%s is passed both as a variable and as a secret", k)
		}
	}
	for _, k := range passed {
		if !slices.Contains(allEnvVars, k) {
			t.Errorf("the deploy passes %s, which the service does not read", k)
		}
	}
	var gotSecrets []string
	for k := range secrets {
		gotSecrets = append(gotSecrets, k)
	}
	slices.Sort(gotSecrets)
	wantSecrets := []string{envRobloxAPIKey, envErasureKey, envWebhookSecret, envServerKeys}
	slices.Sort(wantSecrets)
	if diff := cmp.Diff(wantSecrets, gotSecrets); diff != "" {
		t.Errorf("variables from Secret Manager (-want +got):\n%s", diff)
	}

	// The deployed environment: substitutions at their defaults, Cloud
	// Run's own variables, and stand-ins for the secrets' values.
	expand := func(v string) string {
		v = strings.ReplaceAll(v, "$PROJECT_ID", "my-studio-prod")
		return regexp.MustCompile(`\$\{(_[A-Z_]+)\}`).ReplaceAllStringFunc(v, func(ref string) string {
			return cb.Substitutions[ref[2:len(ref)-1]]
		})
	}
	deployed := map[string]string{envCloudRunService: "savesync", envPort: "8080", envRobloxUniverseID: "1234567"}
	for k, v := range envVars {
		if v := expand(v); v != "" {
			deployed[k] = v
		}
	}
	deployed[envServerKeys] = "1234567:" + validHash
	deployed[envErasureKey] = validErasureKey
	deployed[envWebhookSecret] = "webhook-secret"
	deployed[envRobloxAPIKey] = "open-cloud-key"
	c, err := loadConfig(env(deployed))
	if err != nil {
		t.Fatalf("the deployed configuration is refused: %v", err)
	}
	got := []any{c.firestoreBackend(), c.robloxAPIKey != "", c.robloxUniverseID, c.traces, c.metrics, c.traceSampleRatio}
	want := []any{backendCloud, true, int64(1234567), "cloud", "cloud", 0.1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deployed: Firestore, Open Cloud key, universe, traces, metrics, ratio (-want +got):\n%s", diff)
	}
}
