package telemetry_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/savesync/savesync/telemetry"
)

func TestPropagatorReadsCloudTraceContext(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name    string
		headers map[string]string
		// want is trace id, parent span id and sampled; "" when no trace.
		want []any
	}{
		{"Cloud Run's header, sampled", map[string]string{"X-Cloud-Trace-Context": traceID + "/12345;o=1"},
			[]any{traceID, "0000000000003039", true}},
		{"not sampled", map[string]string{"X-Cloud-Trace-Context": traceID + "/1;o=0"},
			[]any{traceID, "0000000000000001", false}},
		{"no span id", map[string]string{"X-Cloud-Trace-Context": traceID},
			[]any{traceID, traceID[16:], false}},
		{"traceparent alone", map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"},
			[]any{traceID, "00f067aa0ba902b7", true}},
		{"both: X-Cloud-Trace-Context wins, as in the logs", map[string]string{
			"traceparent":           "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
			"X-Cloud-Trace-Context": traceID + "/12345;o=1"},
			[]any{traceID, "0000000000003039", true}},
		{"malformed header", map[string]string{"X-Cloud-Trace-Context": "not-a-trace/1;o=1"}, []any{"", "", false}},
		{"zero trace id", map[string]string{"X-Cloud-Trace-Context": "00000000000000000000000000000000/1;o=1"}, []any{"", "", false}},
		{"span id past 64 bits", map[string]string{"X-Cloud-Trace-Context": traceID + "/99999999999999999999;o=1"}, []any{"", "", false}},
	}
	tel, err := telemetry.New(context.Background(), telemetry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			sc := trace.SpanContextFromContext(tel.Propagator.Extract(context.Background(), propagation.HeaderCarrier(h)))
			got := []any{"", "", false}
			if sc.IsValid() {
				got = []any{sc.TraceID().String(), sc.SpanID().String(), sc.IsSampled()}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("trace, parent span, sampled (-want +got):\n%s", diff)
			}
		})
	}
}
