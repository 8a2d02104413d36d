package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/savesync/savesync/store"
)

// promSample is one series of a Prometheus text scrape.
type promSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// promSamples is a whole scrape.
type promSamples []promSample

// maxScrapeBytes bounds what a scrape reads.
const maxScrapeBytes = 16 << 20

// scrapeMetrics reads the Prometheus text endpoint at url (the service's
// SAVESYNC_METRICS_ADDR, path /metrics), the same figures an operator's
// dashboard shows.
func scrapeMetrics(ctx context.Context, client *http.Client, url string) (promSamples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	s, err := parsePromText(io.LimitReader(resp.Body, maxScrapeBytes))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return s, nil
}

// parsePromText reads the Prometheus text format: one
// `name{label="value",…} value [timestamp]` a line, # lines skipped.
func parsePromText(r io.Reader) (promSamples, error) {
	var out promSamples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parsePromLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// parsePromLine reads one sample line.
func parsePromLine(line string) (promSample, error) {
	s := promSample{Labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	s.Name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		rest, err := parsePromLabels(line[1:], s.Labels)
		if err != nil {
			return s, fmt.Errorf("%s: %w", s.Name, err)
		}
		line = rest
	}
	fields := strings.Fields(line)
	if len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("%s: want a value and at most a timestamp, got %q", s.Name, line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("%s: value %q: %w", s.Name, fields[0], err)
	}
	s.Value = v
	return s, nil
}

// parsePromLabels reads `name="value",…}` into labels and returns what
// follows the closing brace. Values may hold \", \\ and \n.
func parsePromLabels(in string, labels map[string]string) (string, error) {
	for {
		in = strings.TrimLeft(in, " ,")
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		eq := strings.Index(in, `="`)
		if eq <= 0 {
			return "", fmt.Errorf("label without a quoted value in %q", in)
		}
		name := strings.TrimSpace(in[:eq])
		in = in[eq+2:]
		var v strings.Builder
		closed := false
		for i := 0; i < len(in); i++ {
			c := in[i]
			if c == '\\' && i+1 < len(in) {
				i++
				switch in[i] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(in[i])
				}
				continue
			}
			if c == '"' {
				in, closed = in[i+1:], true
				break
			}
			v.WriteByte(c)
		}
		if !closed {
			return "", fmt.Errorf("label %s: unterminated value", name)
		}
		labels[name] = v.String()
	}
}

// sum adds the values of the series called name whose labels include
// every pair of match (nil: all of them); 0 when there is none.
func (s promSamples) sum(name string, match map[string]string) float64 {
	var total float64
next:
	for _, x := range s {
		if x.Name != name {
			continue
		}
		for k, v := range match {
			if x.Labels[k] != v {
				continue next
			}
		}
		total += x.Value
	}
	return total
}

// counters returns the value of each named series, summed over labels.
func (s promSamples) counters(names ...string) map[string]float64 {
	out := make(map[string]float64, len(names))
	for _, n := range names {
		out[n] = s.sum(n, nil)
	}
	return out
}

// Service-side series the report uses (telemetry's instruments as the
// Prometheus endpoint names them).
const (
	seriesGroupSizeCount = "savesync_store_group_size_count" // transactions committed
	seriesGroupSizeSum   = "savesync_store_group_size_sum"   // mutations committed in them
	seriesRetries        = "savesync_store_retries_total"
	seriesReplays        = "savesync_store_replays_total"
)

// storeMetricsFrom reads the store's counters from a scrape, as
// store.Metrics holds them in-process: the load tool reports the figures an
// operator sees, and can read them from service processes of its own.
func storeMetricsFrom(s promSamples) store.Metrics {
	c := s.counters(seriesGroupSizeCount, seriesGroupSizeSum, seriesRetries, seriesReplays)
	return store.Metrics{
		Transactions: int64(c[seriesGroupSizeCount]),
		Mutations:    int64(c[seriesGroupSizeSum]),
		Retries:      int64(c[seriesRetries]),
		Replays:      int64(c[seriesReplays]),
	}
}
