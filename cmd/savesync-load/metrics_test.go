package main

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/store"
	"github.com/savesync/savesync/telemetry"
)

// TestScrapeMetricsReadsTheServiceEndpoint records through the service's
// instruments, serves them with its Prometheus exporter and reads them back
// as the load tool does.
func TestScrapeMetricsReadsTheServiceEndpoint(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Config{Metrics: telemetry.MetricsPrometheus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(ctx) })
	m := tel.Metrics
	m.TransactionCommitted(ctx, 3)
	m.TransactionCommitted(ctx, 1)
	m.TransactionRetried(ctx)
	m.MutationReplayed(ctx)
	m.MutationReplayed(ctx)
	const route = "/v1/players/:userId/mutations"
	m.MutationAnswered(ctx, route, "ok")
	m.MutationAnswered(ctx, route, "ok")
	m.MutationAnswered(ctx, route, "VERSION_CONFLICT")
	m.MutationAnswered(ctx, "/v1/batch/mutations", "ok")
	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()

	s, err := scrapeMetrics(ctx, &http.Client{Timeout: 10 * time.Second}, srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.Metrics{Transactions: 2, Mutations: 4, Retries: 1, Replays: 2}, storeMetricsFrom(s)); diff != "" {
		t.Errorf("store counters (-want +got):\n%s", diff)
	}
	got := []float64{
		s.sum("savesync_mutations_total", nil),
		s.sum("savesync_mutations_total", map[string]string{"http_route": route}),
		s.sum("savesync_mutations_total", map[string]string{"http_route": route, "outcome": "ok"}),
		s.sum("savesync_mutations_total", map[string]string{"outcome": "VERSION_CONFLICT"}),
		s.sum("savesync_no_such_series", nil),
	}
	if diff := cmp.Diff([]float64{4, 3, 2, 1, 0}, got); diff != "" {
		t.Errorf("mutations: all, of the route, ok on it, conflicts, missing (-want +got):\n%s", diff)
	}
}

func TestParsePromText(t *testing.T) {
	tests := []struct {
		name, in string
		want     promSamples
		wantErr  string
	}{
		{
			name: "comments, labels, timestamp, escapes",
			in: "# HELP x_total X.\n# TYPE x_total counter\n" +
				`x_total{a="1",b="say \"hi\"\\ {}, ok"} 3 1700000000000` + "\n" +
				"y 2.5e+00\n\n" + `z{} +Inf` + "\n",
			want: promSamples{
				{Name: "x_total", Labels: map[string]string{"a": "1", "b": `say "hi"\ {}, ok`}, Value: 3},
				{Name: "y", Labels: map[string]string{}, Value: 2.5},
				{Name: "z", Labels: map[string]string{}, Value: math.Inf(1)},
			},
		},
		{name: "no value", in: "x_total\n", wantErr: "line 1: no value"},
		{name: "bad value", in: "x_total abc\n", wantErr: `value "abc"`},
		{name: "unterminated label", in: `x{a="1} 3` + "\n", wantErr: "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePromText(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parsePromText = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("samples (-want +got):\n%s", diff)
			}
		})
	}
}
