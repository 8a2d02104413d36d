package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/savesync/savesync/internal/firestoretest"
)

// BenchmarkMutationTelemetry measures what telemetry adds to a mutation
// through the whole service: two services on the test emulator (in
// memory, so the figure is the service's own cost), one with
// telemetry off and one with every span exported (SAVESYNC_TRACES=stdout,
// to a discarded writer, sample ratio 1) and metrics kept for the
// Prometheus endpoint, take sequential write-through mutations in turn,
// so both see the same machine load. It reports each side's time per
// mutation and their ratio.
func BenchmarkMutationTelemetry(b *testing.B) {
	type side struct {
		name string
		base string
		took time.Duration
	}
	start := func(vars map[string]string) string {
		ctx, cancel := context.WithCancel(context.Background())
		addrs := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, env(vars), io.Discard, WithHost("127.0.0.1"), WithListening(func(a string) { addrs <- a }))
		}()
		b.Cleanup(func() { cancel(); <-done })
		select {
		case a := <-addrs:
			return "http://" + a
		case err := <-done:
			b.Fatalf("run: %v", err)
		}
		return ""
	}
	emu := firestoretest.Emulator(b).Addr()
	offVars := map[string]string{envPort: "0", envFirestoreEmulatorHost: emu, envProject: firestoretest.Project(b)}
	onVars := map[string]string{envPort: "0", envFirestoreEmulatorHost: emu, envProject: firestoretest.Project(b),
		envTraces: "stdout", envTraceSampleRatio: "1", envMetrics: "prometheus", envMetricsAddr: "127.0.0.1:0"}
	sides := []*side{{name: "off", base: start(offVars)}, {name: "on", base: start(onVars)}}
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(url, key, body string) {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+devServerKey)
		req.Header.Set("Idempotency-Key", key)
		// As Cloud Run's front end sends it, sampled.
		req.Header.Set("X-Cloud-Trace-Context", "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("POST %s: %d", url, resp.StatusCode)
		}
	}
	for _, s := range sides {
		do(s.base+"/v1/sessions", "join", `{"userId":4242,"jobId":"job-1","schemaVersion":3}`)
	}
	body := `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, s := range sides {
			t0 := time.Now()
			do(s.base+"/v1/players/4242/mutations", fmt.Sprintf("bench-%d", i), body)
			s.took += time.Since(t0)
		}
	}
	b.StopTimer()
	off, on := sides[0].took, sides[1].took
	b.ReportMetric(float64(off.Nanoseconds())/float64(b.N)/1e3, "µs-off/mutation")
	b.ReportMetric(float64(on.Nanoseconds())/float64(b.N)/1e3, "µs-on/mutation")
	b.ReportMetric(float64(on)/float64(off), "on/off")
}
