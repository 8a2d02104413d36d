package telemetry

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/savesync/savesync/logging"
)

// CloudTraceHeader is the trace header of Google Cloud's front ends.
const CloudTraceHeader = "X-Cloud-Trace-Context"

// CloudTraceContext reads the caller's trace from X-Cloud-Trace-Context
// ("TRACE_ID/SPAN_ID;o=1"), the header Cloud Run's front end sets and the
// logs read, so a request's spans and its log lines share one trace id. It
// injects nothing: outgoing calls carry the W3C traceparent. (Google's own
// propagator for this header is deprecated in favour of traceparent, but
// callers and the logs still use it.)
type CloudTraceContext struct{}

var _ propagation.TextMapPropagator = CloudTraceContext{}

// Inject writes nothing.
func (CloudTraceContext) Inject(context.Context, propagation.TextMapCarrier) {}

// Extract returns ctx with the remote span context of the header, or ctx
// unchanged when the header is absent or invalid. A header without a span
// id (allowed by Cloud Trace) gets a parent span id made from the trace id,
// since OpenTelemetry needs one.
func (CloudTraceContext) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	traceHex, spanHex, sampled, ok := logging.ParseCloudTraceContext(carrier.Get(CloudTraceHeader))
	if !ok {
		return ctx
	}
	var cfg trace.SpanContextConfig
	if _, err := hex.Decode(cfg.TraceID[:], []byte(traceHex)); err != nil {
		return ctx
	}
	if spanHex == "" {
		copy(cfg.SpanID[:], cfg.TraceID[8:])
	} else if _, err := hex.Decode(cfg.SpanID[:], []byte(spanHex)); err != nil {
		return ctx
	}
	if sampled {
		cfg.TraceFlags = trace.FlagsSampled
	}
	cfg.Remote = true
	sc := trace.NewSpanContext(cfg)
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// Fields names the header the propagator reads.
func (CloudTraceContext) Fields() []string { return []string{CloudTraceHeader} }
