package app

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkCompanionPage measures the companion page in Chromium against
// the local stack (docs/benchmarks.md):
//
//   - bundle-gz-kB: app.js gzipped (Firebase Auth included);
//   - load-to-save-ms: page load to the first save shown, for a signed-in,
//     linked user (median of the reloads);
//   - page-p50-ms, page-p99-ms: a game server's mutation sent to the page
//     showing its version, over b.N changes (the commit lies between the
//     send and the answer; the event leaves on commit, often before the
//     answer arrives, so the send is the clock's start);
//   - stream-p50-ms, stream-p99-ms: the same changes to a Go client of the
//     same event stream (the baseline: what the service and the stream
//     cost without the browser), and page/stream, the ratio of medians.
//
// Run it with at least 100 changes:
//
//	go test -run '^$' -bench BenchmarkCompanionPage -benchtime 200x ./cmd/internal/app/
func BenchmarkCompanionPage(b *testing.B) {
	s := startCompanionStack(b)
	dir := artifactDir(b)

	js, err := os.ReadFile(filepath.Join(buildCompanion(b), "app.js"))
	if err != nil {
		b.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(js)
	_ = zw.Close()

	u := s.signUp()
	userID := 8_000_000_000 + time.Now().UnixNano()%1_000_000_000
	if r := s.link(u, userID); r.status != http.StatusOK {
		b.Fatalf("link: %s %s", r.summary(), r.body)
	}
	s.gameMutation(userID, map[string]any{"op": "currency.add", "currency": "coins", "amount": 1})

	// Signed in once, the SDK keeps the session in IndexedDB across reloads.
	tab := openPage(b, dir, "bench", s.page+"/")
	tab.waitFor("the sign-in form", `document.body.dataset.view === "signed-out"`)
	tab.do("sign in", chromedp.SendKeys(chromedp.CSS("#email"), u.Email),
		chromedp.SendKeys(chromedp.CSS("#password"), u.Password),
		chromedp.Click(chromedp.CSS("#signin")))
	tab.waitFor("the save", `document.body.dataset.view === "linked" && document.body.dataset.live === "open"`)
	var loads []float64
	for range 5 {
		tab.do("reload", chromedp.Reload())
		tab.waitFor("the save after a reload", `window.savesyncMetrics?.firstSaveShownAt > 0 && document.body.dataset.live === "open"`)
		loads = append(loads, eval[float64](tab, `window.savesyncMetrics.firstSaveShownAt`))
	}
	tab.screenshot("bench-loaded")

	stream := s.openStream(b, u)
	defer stream.close()

	b.ResetTimer()
	var page, direct []float64
	for i := 0; i < b.N; i++ {
		version, sent := s.gameMutationAt(userID, map[string]any{"op": "stat.add", "stat": "xp", "amount": 1})
		shown := eval[float64](tab, fmt.Sprintf(`new Promise((resolve) => { const t = setInterval(() => {
			const v = window.savesyncMetrics.shown[%q]; if (v) { clearInterval(t); resolve(v); } }, 1); })`, strconv.FormatInt(version, 10)), chromedp.EvalAwaitPromise)
		got := stream.waitVersion(b, version)
		page = append(page, shown-float64(sent.UnixMicro())/1e3)
		direct = append(direct, float64(got.Sub(sent).Microseconds())/1e3)
	}
	b.StopTimer()
	tab.screenshot("bench-done")

	b.ReportMetric(float64(gz.Len())/1000, "bundle-gz-kB")
	b.ReportMetric(quantile(loads, 0.5), "load-to-save-ms")
	b.ReportMetric(quantile(page, 0.5), "page-p50-ms")
	b.ReportMetric(quantile(page, 0.99), "page-p99-ms")
	b.ReportMetric(quantile(direct, 0.5), "stream-p50-ms")
	b.ReportMetric(quantile(direct, 0.99), "stream-p99-ms")
	if m := quantile(direct, 0.5); m > 0 {
		b.ReportMetric(quantile(page, 0.5)/m, "page/stream")
	}
	b.ReportMetric(0, "ns/op")
}

// quantile is the q-quantile of xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// gameMutationAt commits ops as a game server and returns the new version
// and when the request was sent.
func (s *companionStack) gameMutationAt(userID int64, ops ...any) (int64, time.Time) {
	s.t.Helper()
	at := time.Now()
	r := s.call("POST", fmt.Sprintf("/v1/players/%d/mutations", userID), bearerOf(contractKey),
		map[string]any{"ops": ops}, "Idempotency-Key", fmt.Sprintf("bench-%d-%d", userID, time.Now().UnixNano()))
	var out struct {
		Version int64 `json:"version"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		s.t.Fatalf("game mutation for %d: %s %s", userID, r.summary(), r.body)
	}
	return out.Version, at
}

// eventStream is a Go client of /v1/me/events, with the ID token in the
// header, that notes when each save version arrives.
type eventStream struct {
	cancel   context.CancelFunc
	versions chan streamEvent
}

type streamEvent struct {
	version int64
	at      time.Time
}

// openStream opens u's event stream.
func (s *companionStack) openStream(t testing.TB, u *fbUser) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/v1/me/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.IDToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("open the event stream: %v %v", err, resp)
	}
	e := &eventStream{cancel: cancel, versions: make(chan streamEvent, 1024)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				if v, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64); err == nil {
					e.versions <- streamEvent{v, time.Now()}
				}
			}
		}
		close(e.versions)
	}()
	return e
}

// waitVersion waits for version (or a later one) on the stream.
func (e *eventStream) waitVersion(t testing.TB, version int64) time.Time {
	t.Helper()
	timeout := time.After(browserWait)
	for {
		select {
		case ev, ok := <-e.versions:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if ev.version >= version {
				return ev.at
			}
		case <-timeout:
			t.Fatalf("version %d not on the stream within %s", version, browserWait)
		}
	}
}

func (e *eventStream) close() { e.cancel() }
