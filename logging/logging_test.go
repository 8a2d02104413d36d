package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewWritesCloudLoggingFields(t *testing.T) {
	tests := []struct {
		name     string
		log      func(*slog.Logger)
		severity string
		message  string
	}{
		{"debug", func(l *slog.Logger) { l.Debug("d") }, "DEBUG", "d"},
		{"info", func(l *slog.Logger) { l.Info("i") }, "INFO", "i"},
		{"warn", func(l *slog.Logger) { l.Warn("w") }, "WARNING", "w"},
		{"error", func(l *slog.Logger) { l.Error("e") }, "ERROR", "e"},
		{"above error", func(l *slog.Logger) { l.Log(context.Background(), slog.LevelError+4, "x") }, "ERROR", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(New(&buf, slog.LevelDebug))
			line := decodeLine(t, buf.Bytes())
			got := map[string]any{"severity": line["severity"], "message": line["message"]}
			want := map[string]any{"severity": tt.severity, "message": tt.message}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if _, ok := line["time"]; !ok {
				t.Errorf("line has no time: %v", line)
			}
			for _, k := range []string{"level", "msg"} {
				if _, ok := line[k]; ok {
					t.Errorf("line still has slog key %q: %v", k, line)
				}
			}
		})
	}
}

func TestNewFiltersBelowLevel(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, slog.LevelWarn)
	l.Info("hidden")
	if buf.Len() != 0 {
		t.Errorf("info logged at warn level: %s", buf.String())
	}
}

func TestNewKeepsNestedLevelKeys(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelInfo).Info("m", slog.Group("g", slog.String("level", "inner")))
	line := decodeLine(t, buf.Bytes())
	want := map[string]any{"level": "inner"}
	if diff := cmp.Diff(want, line["g"]); diff != "" {
		t.Errorf("group (-want +got):\n%s", diff)
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"debug", slog.LevelDebug, false},
		{"INFO", slog.LevelInfo, false},
		{" warn ", slog.LevelWarn, false},
		{"Warning", slog.LevelWarn, false},
		{"error", slog.LevelError, false},
		{"", 0, true},
		{"verbose", 0, true},
		{"info+2", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLevel(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestContextRoundTrip(t *testing.T) {
	if got := FromContext(context.Background()); got != slog.Default() {
		t.Errorf("FromContext(empty) = %p, want slog.Default() %p", got, slog.Default())
	}
	var buf bytes.Buffer
	l := New(&buf, slog.LevelInfo)
	if got := FromContext(WithContext(context.Background(), l)); got != l {
		t.Errorf("FromContext(WithContext(l)) = %p, want %p", got, l)
	}
}

func TestTraceAttrs(t *testing.T) {
	const trace = "105445aa7843bc8bf206b12000100000"
	tests := []struct {
		name        string
		project     string
		cloud       string
		traceparent string
		want        map[string]any
	}{
		{
			name:    "cloud header with span and sampled",
			project: "p1",
			cloud:   trace + "/1;o=1",
			want: map[string]any{
				TraceKey:        "projects/p1/traces/" + trace,
				SpanIDKey:       "0000000000000001",
				TraceSampledKey: true,
			},
		},
		{
			name:    "cloud header decimal span becomes hex",
			project: "p1",
			cloud:   trace + "/18446744073709551615;o=0",
			want: map[string]any{
				TraceKey:        "projects/p1/traces/" + trace,
				SpanIDKey:       "ffffffffffffffff",
				TraceSampledKey: false,
			},
		},
		{
			name:    "cloud header trace only",
			project: "p1",
			cloud:   trace,
			want: map[string]any{
				TraceKey:        "projects/p1/traces/" + trace,
				TraceSampledKey: false,
			},
		},
		{
			name:        "traceparent fallback",
			project:     "p1",
			traceparent: "00-" + trace + "-00f067aa0ba902b7-01",
			want: map[string]any{
				TraceKey:        "projects/p1/traces/" + trace,
				SpanIDKey:       "00f067aa0ba902b7",
				TraceSampledKey: true,
			},
		},
		{name: "no project", project: "", cloud: trace + "/1;o=1", want: nil},
		{name: "no header", project: "p1", want: nil},
		{name: "short trace", project: "p1", cloud: "abc/1", want: nil},
		{name: "zero trace", project: "p1", cloud: "00000000000000000000000000000000/1", want: nil},
		{name: "bad span", project: "p1", cloud: trace + "/x1;o=1", want: nil},
		{name: "bad traceparent", project: "p1", traceparent: "01-" + trace + "-00f067aa0ba902b7-01", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := TraceAttrs(tt.project, tt.cloud, tt.traceparent)
			var got map[string]any
			for _, a := range attrs {
				if got == nil {
					got = map[string]any{}
				}
				got[a.Key] = a.Value.Any()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("TraceAttrs (-want +got):\n%s", diff)
			}
		})
	}
}

func decodeLine(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("log line is not JSON: %v\n%s", err, b)
	}
	return m
}
