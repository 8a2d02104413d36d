package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/savesync/savesync/logging"
)

// send makes one request with the development server key and extra
// headers (name, value pairs) and returns the status and body.
func send(t *testing.T, method, url, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+devServerKey)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startTracedRun starts the service on embedded defaults with every span
// recorded by rec and the Prometheus endpoint on a free loopback port; it
// returns the service's and the endpoint's base URLs.
func startTracedRun(t *testing.T, vars map[string]string, rec sdktrace.SpanProcessor, stdout io.Writer) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	metricsAddrs := make(chan string, 1)
	done := make(chan error, 1)
	opts := []RunOption{WithHost("127.0.0.1"), WithListening(func(a string) { addrs <- a }),
		WithMetricsListening(func(a string) { metricsAddrs <- a })}
	if rec != nil {
		opts = append(opts, func(o *RunOptions) { o.spanProcessor = rec })
	}
	go func() { done <- Run(ctx, env(vars), stdout, opts...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v", err)
		}
	})
	var base, metrics string
	for base == "" || metrics == "" {
		select {
		case a := <-addrs:
			base = "http://" + a
		case a := <-metricsAddrs:
			metrics = "http://" + a
		case err := <-done:
			t.Fatalf("run returned before listening: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("run did not listen within 30 s")
		}
	}
	return base, metrics
}

// TestRunTracesAMutationUnderTheCallersTrace sends a mutation with Cloud
// Run's X-Cloud-Trace-Context and finds its server span in the caller's
// trace, the Firestore client's gRPC spans below it (through the store's
// group commit span), and the request's log line naming the same trace and
// the server span.
func TestRunTracesAMutationUnderTheCallersTrace(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = 12345 // decimal in the header
	rec := tracetest.NewSpanRecorder()
	vars := embeddedEnv(t)
	vars[envMetrics] = "prometheus"
	vars[envMetricsAddr] = "127.0.0.1:0"
	var logs lockedBuffer
	base, _ := startTracedRun(t, vars, rec, &logs)

	if code, body := send(t, "POST", base+"/v1/sessions", `{"userId":91,"jobId":"job-1","schemaVersion":3}`); code != 200 {
		t.Fatalf("join = %d %s", code, body)
	}
	code, body := send(t, "POST", base+"/v1/players/91/mutations", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`,
		"Idempotency-Key", "traced-1", "X-Cloud-Trace-Context", fmt.Sprintf("%s/%d;o=1", traceID, callerSpan))
	if code != 200 {
		t.Fatalf("mutation = %d %s", code, body)
	}

	var server sdktrace.ReadOnlySpan
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byID[s.SpanContext().SpanID()] = s
		if s.SpanKind() == trace.SpanKindServer && s.Name() == "POST /v1/players/:userId/mutations" {
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no server span POST /v1/players/:userId/mutations among %d spans", len(rec.Ended()))
	}
	got := []string{server.SpanContext().TraceID().String(), server.Parent().SpanID().String()}
	if diff := cmp.Diff([]string{traceID, fmt.Sprintf("%016x", callerSpan)}, got); diff != "" {
		t.Errorf("server span's trace and parent (-want +got):\n%s", diff)
	}
	under := func(s sdktrace.ReadOnlySpan) bool {
		for p := s.Parent(); p.IsValid(); {
			if p.SpanID() == server.SpanContext().SpanID() {
				return true
			}
			parent, ok := byID[p.SpanID()]
			if !ok {
				return false
			}
			p = parent.Parent()
		}
		return false
	}
	var firestoreCalls []string
	for _, s := range rec.Ended() {
		if strings.HasPrefix(s.Name(), "google.firestore.v1.Firestore/") && under(s) {
			firestoreCalls = append(firestoreCalls, s.Name())
		}
	}
	if diff := cmp.Diff([]string{"google.firestore.v1.Firestore/BatchGetDocuments", "google.firestore.v1.Firestore/Commit"}, firestoreCalls); diff != "" {
		t.Errorf("Firestore spans under the server span, in end order (-want +got):\n%s", diff)
	}

	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"message":"POST /v1/players/:userId/mutations"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("log line is not JSON: %v\n%s", err, l)
			}
		}
	}
	gotLog := []any{line[logging.TraceKey], line[logging.SpanIDKey], line[logging.TraceSampledKey]}
	wantLog := []any{"projects/" + embeddedProject + "/traces/" + traceID, server.SpanContext().SpanID().String(), true}
	if diff := cmp.Diff(wantLog, gotLog); diff != "" {
		t.Errorf("the mutation's log line: trace, span id, sampled (-want +got):\n%s", diff)
	}
}

// scrape reads the Prometheus endpoint and returns the value of every
// series, keyed by name and labels as name{label="value",…} with the labels
// in the order given by labelsOf (other labels dropped), summed over the
// dropped ones.
func scrape(t *testing.T, metricsURL string, labelsOf map[string][]string) map[string]float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(metricsURL + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		keep, ok := labelsOf[name]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key := name
			if len(keep) > 0 {
				var parts []string
				for _, k := range keep {
					parts = append(parts, k+"="+strconv.Quote(labels[k]))
				}
				key += "{" + strings.Join(parts, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[key+" count"] += float64(m.GetHistogram().GetSampleCount())
				out[key+" sum"] += m.GetHistogram().GetSampleSum()
			case m.GetGauge() != nil:
				out[key] += m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestRunCountsMutationsConflictsAndReplays sends a mutation, its replay
// and a stale versioned mutation through the running service and reads
// the counters from its Prometheus endpoint after each.
func TestRunCountsMutationsConflictsAndReplays(t *testing.T) {
	vars := embeddedEnv(t)
	vars[envMetrics] = "prometheus"
	vars[envMetricsAddr] = "127.0.0.1:0"
	base, metrics := startTracedRun(t, vars, nil, io.Discard)
	const route = "/v1/players/:userId/mutations"
	// The time spent is no count: leave it out.
	const durationSum = `http_server_request_duration_seconds{http_route="` + route + `"} sum`
	series := map[string][]string{
		"savesync_mutations_total":             {"http_route", "outcome"},
		"savesync_store_group_size":            nil,
		"savesync_store_replays_total":         nil,
		"savesync_store_conflicts_total":       nil,
		"savesync_store_retries_total":         nil,
		"http_server_request_duration_seconds": {"http_route"},
	}
	if code, body := send(t, "POST", base+"/v1/sessions", `{"userId":92,"jobId":"job-1","schemaVersion":3}`); code != 200 {
		t.Fatalf("join = %d %s", code, body)
	}
	mutation := `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`
	steps := []struct {
		name, key, body string
		wantStatus      int
		want            map[string]float64 // changes since the step before
	}{
		{"a mutation", "m-1", mutation, 200, map[string]float64{
			`savesync_mutations_total{http_route="` + route + `",outcome="ok"}`:      1,
			"savesync_store_group_size count":                                        1,
			"savesync_store_group_size sum":                                          1,
			`http_server_request_duration_seconds{http_route="` + route + `"} count`: 1,
		}},
		{"its replay", "m-1", mutation, 200, map[string]float64{
			`savesync_mutations_total{http_route="` + route + `",outcome="replayed"}`: 1,
			"savesync_store_replays_total":                                            1,
			`http_server_request_duration_seconds{http_route="` + route + `"} count`:  1,
		}},
		{"a stale versioned mutation", "m-2", `{"expectedVersion":0,"ops":[{"op":"loadout.set","slot":"hat","item":"neonHat"}]}`, 409, map[string]float64{
			`savesync_mutations_total{http_route="` + route + `",outcome="VERSION_CONFLICT"}`: 1,
			"savesync_store_conflicts_total":                                         1,
			`http_server_request_duration_seconds{http_route="` + route + `"} count`: 1,
		}},
	}
	before := scrape(t, metrics, series)
	for _, st := range steps {
		code, body := send(t, "POST", base+"/v1/players/92/mutations", st.body, "Idempotency-Key", st.key)
		if code != st.wantStatus {
			t.Fatalf("%s = %d %s, want %d", st.name, code, body, st.wantStatus)
		}
		after := scrape(t, metrics, series)
		got := map[string]float64{}
		for k, v := range after {
			if d := v - before[k]; d != 0 && k != durationSum {
				got[k] = d
			}
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: counters moved (-want +got):\n%s", st.name, diff)
		}
		before = after
	}
}

// waitFor scrapes until cond holds of the series, failing after a minute.
func waitFor(t *testing.T, metricsURL string, series map[string][]string, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := scrape(t, metricsURL, series)
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within a minute; last scrape %v", what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunReportsRelayAndStreams: a committed mutation's outbox entry is
// published by the relay and recorded with its lag, and a game server's
// long-poll counts as an open stream while it waits.
func TestRunReportsRelayAndStreams(t *testing.T) {
	vars := embeddedEnv(t)
	vars[envMetrics] = "prometheus"
	vars[envMetricsAddr] = "127.0.0.1:0"
	base, metrics := startTracedRun(t, vars, nil, io.Discard)
	const poll = "/v1/servers/:jobId/changes"
	series := map[string][]string{
		"savesync_relay_published_total": nil,
		"savesync_relay_lag_seconds":     nil,
		"savesync_streams_open":          {"http_route"},
	}
	if code, body := send(t, "POST", base+"/v1/sessions", `{"userId":93,"jobId":"job-9","schemaVersion":3}`); code != 200 {
		t.Fatalf("join = %d %s", code, body)
	}
	if code, body := send(t, "POST", base+"/v1/players/93/mutations", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`, "Idempotency-Key", "relayed-1"); code != 200 {
		t.Fatalf("mutation = %d %s", code, body)
	}
	got := waitFor(t, metrics, series, "the entry published", func(m map[string]float64) bool { return m["savesync_relay_published_total"] >= 1 })
	if got["savesync_relay_lag_seconds count"] != got["savesync_relay_published_total"] {
		t.Errorf("lag samples %v, want one per published entry (%v)", got["savesync_relay_lag_seconds count"], got["savesync_relay_published_total"])
	}

	// The first poll answers at once with a cursor; the second waits on it.
	code, body := send(t, "GET", base+"/v1/servers/job-9/changes?timeout=0s", "")
	var page struct {
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil || page.Cursor == "" {
		t.Fatalf("first poll = %d %s (%v), want a cursor", code, body, err)
	}
	open := `savesync_streams_open{http_route="` + poll + `"}`
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		req, _ := http.NewRequest("GET", base+"/v1/servers/job-9/changes?timeout=5s&cursor="+url.QueryEscape(page.Cursor), nil)
		req.Header.Set("Authorization", "Bearer "+devServerKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, metrics, series, "the long-poll open", func(m map[string]float64) bool { return m[open] == 1 })
	<-pollDone
	if got := scrape(t, metrics, series)[open]; got != 0 {
		t.Errorf("streams open after the long-poll ended = %v, want 0", got)
	}
}
