// Package logging builds log/slog loggers whose JSON lines Cloud Logging
// understands without any agent configuration: severity, message, time, and
// the request's trace, so every line of one request groups under its trace in
// the console. The logger for a request travels in its context.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// Keys Cloud Logging lifts out of a JSON payload into the log entry itself.
const (
	// TraceKey holds "projects/{project}/traces/{traceId}".
	TraceKey = "logging.googleapis.com/trace"
	// SpanIDKey holds the span id as 16 hexadecimal characters.
	SpanIDKey = "logging.googleapis.com/spanId"
	// TraceSampledKey holds whether the trace was sampled.
	TraceSampledKey = "logging.googleapis.com/trace_sampled"
)

// New returns a logger writing one JSON object per line to w, keeping records
// at level or above. The level is written as "severity" with Cloud Logging's
// names (DEBUG, INFO, WARNING, ERROR) and the text as "message", because those
// are the fields Cloud Logging reads from a structured payload.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: replaceAttr,
	}))
}

// ParseLevel turns a level name (debug, info, warn or warning, error; any
// case) into a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: use debug, info, warning or error", s)
}

type contextKey struct{}

// WithContext returns a copy of ctx carrying logger, so code deep in a request
// logs with the request's id and trace without being handed a logger.
func WithContext(ctx context.Context, logger *slog.Logger) context.Context {
	return context.WithValue(ctx, contextKey{}, logger)
}

// FromContext returns the logger stored by WithContext, or slog.Default()
// when ctx carries none, so callers never need a nil check.
func FromContext(ctx context.Context) *slog.Logger {
	if logger, ok := ctx.Value(contextKey{}).(*slog.Logger); ok && logger != nil {
		return logger
	}
	return slog.Default()
}

// TraceAttrs returns the Cloud Logging trace attributes for a request, read
// from its X-Cloud-Trace-Context header ("TRACE_ID/SPAN_ID;o=OPTIONS", span id
// in decimal) or, failing that, its W3C traceparent header. It returns nil
// when project is empty or neither header holds a valid trace: a trace
// without a project cannot be linked in Cloud Logging.
func TraceAttrs(project, cloudTraceContext, traceparent string) []slog.Attr {
	if project == "" {
		return nil
	}
	traceID, spanID, sampled, ok := ParseCloudTraceContext(cloudTraceContext)
	if !ok {
		traceID, spanID, sampled, ok = parseTraceparent(traceparent)
	}
	if !ok {
		return nil
	}
	return SpanAttrs(project, traceID, spanID, sampled)
}

// SpanAttrs returns the Cloud Logging trace attributes naming a span (trace
// id as 32 and span id as 16 hexadecimal characters) of project, so that a
// log line written while the service's own span is open shows under that
// span in Cloud Trace. It returns nil when project or traceID is empty.
func SpanAttrs(project, traceID, spanID string, sampled bool) []slog.Attr {
	if project == "" || traceID == "" {
		return nil
	}
	attrs := []slog.Attr{slog.String(TraceKey, "projects/"+project+"/traces/"+traceID)}
	if spanID != "" {
		attrs = append(attrs, slog.String(SpanIDKey, spanID))
	}
	return append(attrs, slog.Bool(TraceSampledKey, sampled))
}

// replaceAttr renames slog's built-in keys to Cloud Logging's.
func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		level, _ := a.Value.Any().(slog.Level)
		return slog.String("severity", severity(level))
	case slog.MessageKey:
		a.Key = "message"
	}
	return a
}

// severity maps a slog level to the nearest Cloud Logging severity name.
func severity(level slog.Level) string {
	switch {
	case level < slog.LevelInfo:
		return "DEBUG"
	case level < slog.LevelWarn:
		return "INFO"
	case level < slog.LevelError:
		return "WARNING"
	default:
		return "ERROR"
	}
}

// ParseCloudTraceContext reads an X-Cloud-Trace-Context header
// ("TRACE_ID[/SPAN_ID][;o=OPTIONS]", span id in decimal) and returns the
// trace id in lower case and the span id re-encoded as 16 hexadecimal
// characters ("" when absent or 0). The trace propagation reads the header
// with it too, so spans and log lines name the same trace.
func ParseCloudTraceContext(h string) (traceID, spanID string, sampled, ok bool) {
	h = strings.TrimSpace(h)
	rest, options, _ := strings.Cut(h, ";")
	traceID, span, hasSpan := strings.Cut(rest, "/")
	if !isHex(traceID, 32) || isZero(traceID) {
		return "", "", false, false
	}
	traceID = strings.ToLower(traceID)
	if hasSpan && span != "" {
		n, err := strconv.ParseUint(span, 10, 64)
		if err != nil {
			return "", "", false, false
		}
		if n != 0 {
			spanID = fmt.Sprintf("%016x", n)
		}
	}
	return traceID, spanID, options == "o=1", true
}

// parseTraceparent reads a W3C "00-TRACE_ID-PARENT_ID-FLAGS" header.
func parseTraceparent(h string) (traceID, spanID string, sampled, ok bool) {
	parts := strings.Split(strings.TrimSpace(h), "-")
	if len(parts) != 4 || parts[0] != "00" || !isHex(parts[1], 32) || isZero(parts[1]) ||
		!isHex(parts[2], 16) || isZero(parts[2]) || !isHex(parts[3], 2) {
		return "", "", false, false
	}
	flags, _ := strconv.ParseUint(parts[3], 16, 8)
	return strings.ToLower(parts[1]), strings.ToLower(parts[2]), flags&1 == 1, true
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

func isZero(s string) bool {
	return strings.Trim(s, "0") == ""
}
