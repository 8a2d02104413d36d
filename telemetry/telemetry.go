// Package telemetry sets up savesync's OpenTelemetry traces and metrics:
// the exporters (Cloud Trace and Cloud Monitoring in Google Cloud, stdout
// spans and a Prometheus text endpoint locally), the propagation of the
// X-Cloud-Trace-Context header that the logs also read, and the service's
// instruments, defined here once. Packages that record implement nothing of
// OpenTelemetry: they call small observer interfaces of their own, which
// Metrics satisfies.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	cloudmetric "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/metric"
	cloudtrace "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/trace"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/detectors/gcp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Where traces go (Config.Traces).
const (
	TracesOff    = "off"    // no spans are recorded
	TracesStdout = "stdout" // spans as JSON lines on Config.Stdout
	TracesCloud  = "cloud"  // Cloud Trace of Config.Project
)

// Where metrics go (Config.Metrics).
const (
	MetricsOff        = "off"        // no metrics are kept
	MetricsPrometheus = "prometheus" // Prometheus text on Telemetry.Handler
	MetricsCloud      = "cloud"      // Cloud Monitoring of Config.Project, every minute
)

// ServiceName names the service in spans and metrics.
const ServiceName = "savesync"

// Config says where telemetry goes.
type Config struct {
	// Traces is TracesOff, TracesStdout or TracesCloud.
	Traces string
	// Metrics is MetricsOff, MetricsPrometheus or MetricsCloud.
	Metrics string
	// SampleRatio is the share of traces sampled: of those started here,
	// and of those the caller sampled (o=1 in X-Cloud-Trace-Context, flag
	// 01 in traceparent). A trace the caller did not sample is not.
	SampleRatio float64
	// Project is the Google Cloud project the cloud exporters write to.
	Project string
	// Stdout receives the spans of TracesStdout.
	Stdout io.Writer
	// SpanProcessor, when set, receives every span besides the exporter
	// (tests record spans with it); it turns tracing on with TracesOff.
	SpanProcessor sdktrace.SpanProcessor
}

// Telemetry is the process's tracer and meter providers and its instruments.
type Telemetry struct {
	// TracerProvider makes the service's spans; a no-op one when traces
	// are off.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the service's instruments; a no-op one when
	// metrics are off.
	MeterProvider metric.MeterProvider
	// Propagator reads the caller's trace from W3C traceparent and from
	// X-Cloud-Trace-Context (which wins, as in the logs) and writes W3C
	// headers on outgoing calls.
	Propagator propagation.TextMapPropagator
	// Metrics records the service's measurements.
	Metrics *Metrics

	tracing  bool
	handler  http.Handler
	shutdown []func(context.Context) error
}

// New builds the providers cfg asks for. In Google Cloud the resource
// names the Cloud Run service, revision and instance, so that every
// instance writes its own time series.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	t := &Telemetry{
		TracerProvider: tracenoop.NewTracerProvider(),
		MeterProvider:  metricnoop.NewMeterProvider(),
		Propagator: propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, CloudTraceContext{}),
	}
	cloud := cfg.Traces == TracesCloud || cfg.Metrics == MetricsCloud
	res, err := newResource(ctx, cloud)
	if err != nil {
		return nil, err
	}
	if err := t.startTraces(cfg, res); err != nil {
		return nil, errors.Join(err, t.Shutdown(ctx))
	}
	if err := t.startMetrics(cfg, res); err != nil {
		return nil, errors.Join(err, t.Shutdown(ctx))
	}
	t.Metrics, err = NewMetrics(t.MeterProvider)
	if err != nil {
		return nil, errors.Join(err, t.Shutdown(ctx))
	}
	return t, nil
}

// Tracing reports whether spans are recorded.
func (t *Telemetry) Tracing() bool { return t.tracing }

// Handler serves the metrics in Prometheus text format; nil unless
// Config.Metrics is MetricsPrometheus.
func (t *Telemetry) Handler() http.Handler { return t.handler }

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	t.shutdown = nil
	return errors.Join(errs...)
}

// newResource describes this process; in Google Cloud with the platform's
// detector (Cloud Run service, revision, instance id, region).
func newResource(ctx context.Context, cloud bool) (*resource.Resource, error) {
	opts := []resource.Option{
		resource.WithAttributes(attribute.String("service.name", ServiceName)),
		resource.WithTelemetrySDK(),
	}
	if cloud {
		opts = append(opts, resource.WithDetectors(gcp.NewDetector()))
	}
	res, err := resource.New(ctx, opts...)
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry: describe the process: %w", err)
	}
	// A partial resource (a detector that could not reach the metadata
	// server) still names the service.
	return res, nil
}

// startTraces sets up the tracer provider for cfg.Traces.
func (t *Telemetry) startTraces(cfg Config, res *resource.Resource) error {
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler(cfg.SampleRatio)),
	}
	record := cfg.SpanProcessor != nil
	switch cfg.Traces {
	case TracesOff, "":
	case TracesStdout:
		record = true
		exp, err := stdouttrace.New(stdouttrace.WithWriter(cfg.Stdout))
		if err != nil {
			return fmt.Errorf("telemetry: stdout span exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case TracesCloud:
		record = true
		exp, err := cloudtrace.New(cloudtrace.WithProjectID(cfg.Project))
		if err != nil {
			return fmt.Errorf("telemetry: Cloud Trace exporter for project %s: %w", cfg.Project, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	default:
		return fmt.Errorf("telemetry: traces %q: use %s, %s or %s", cfg.Traces, TracesOff, TracesStdout, TracesCloud)
	}
	if cfg.SpanProcessor != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(cfg.SpanProcessor))
	}
	if !record {
		return nil
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.TracerProvider, t.tracing = tp, true
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return nil
}

// sampler samples ratio of the traces started here and of those a caller
// sampled, by trace id, so every service that uses the same ratio keeps
// the same traces; the caller's "not sampled" is followed. Cloud Run's
// front end marks requests sampled by its own rate, which the ratio caps:
// each sampled request costs a few spans in Cloud Trace.
func sampler(ratio float64) sdktrace.Sampler {
	byID := sdktrace.TraceIDRatioBased(ratio)
	return sdktrace.ParentBased(byID, sdktrace.WithRemoteParentSampled(byID))
}

// startMetrics sets up the meter provider for cfg.Metrics.
func (t *Telemetry) startMetrics(cfg Config, res *resource.Resource) error {
	var reader sdkmetric.Reader
	switch cfg.Metrics {
	case MetricsOff, "":
		return nil
	case MetricsPrometheus:
		// A registry of our own: nothing else in the process adds to it.
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
		if err != nil {
			return fmt.Errorf("telemetry: Prometheus exporter: %w", err)
		}
		reader = exp
		t.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	case MetricsCloud:
		exp, err := cloudmetric.New(cloudmetric.WithProjectID(cfg.Project))
		if err != nil {
			return fmt.Errorf("telemetry: Cloud Monitoring exporter for project %s: %w", cfg.Project, err)
		}
		reader = sdkmetric.NewPeriodicReader(exp)
	default:
		return fmt.Errorf("telemetry: metrics %q: use %s, %s or %s", cfg.Metrics, MetricsOff, MetricsPrometheus, MetricsCloud)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(reader))
	t.MeterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	return nil
}
