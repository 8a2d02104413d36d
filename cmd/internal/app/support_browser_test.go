package app

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The support console (web/support) in Chromium, served from an origin of
// its own against the service, the Firestore emulator and the real
// Firebase Auth emulator. Like the companion tests it reads the page's
// state only from the attributes listed in web/README.md.

// startSupportStack builds the web pages and runs the service with CORS
// open to the support console's origin only; page is that origin.
func startSupportStack(t testing.TB) *companionStack {
	t.Helper()
	companion := buildCompanion(t)
	dist := filepath.Join(filepath.Dir(filepath.Dir(companion)), "support", "dist")
	vars := contractVars(t)
	port := freePort(t)
	s := &companionStack{vars: vars, page: serveCompanion(t, dist, "http://127.0.0.1:"+port, vars[envAuthEmulatorHost])}
	vars[envPort] = port
	vars[envCORSOrigins] = s.page
	vars[envBulkRunner] = "on"
	s.run = runService(t, vars)
	t.Cleanup(func() { s.run.stop(t) })
	s.apiStack = newAPIStack(t, vars, s.run)
	return s
}

// openConsole opens the console in a browser of its own and signs in as u.
func openConsole(t *testing.T, s *companionStack, dir, name string, u *fbUser) *browserTab {
	t.Helper()
	tab := openPage(t, dir, name, s.page+"/?persistence=memory")
	tab.waitFor("the sign-in form", `document.body.dataset.view === "signed-out"`)
	tab.do("sign in", chromedp.SendKeys(chromedp.CSS("#email"), u.Email),
		chromedp.SendKeys(chromedp.CSS("#password"), u.Password),
		chromedp.Click(chromedp.CSS("#signin")))
	return tab
}

// findPlayer looks a player up in a signed-in console and waits for the
// save and the first page of history.
func findPlayer(tab *browserTab, userID int64) {
	tab.t.Helper()
	tab.do("find the player", chromedp.SendKeys(chromedp.CSS("#player-id"), fmt.Sprint(userID)), chromedp.Click(chromedp.CSS("#find")))
	tab.waitFor("the player's history", `document.body.dataset.busy === "0" && document.querySelectorAll("#history li[data-entry-id]").length > 0 && document.querySelector("#current-version").dataset.value !== ""`)
}

// confirmDialog waits for the confirmation dialog and confirms.
func confirmDialog(tab *browserTab, label string) {
	tab.t.Helper()
	tab.waitFor("the confirmation", `document.querySelector("#confirm").open`)
	tab.screenshot(label)
	tab.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")))
}

// TestSupportConsoleInChromium is a "my items disappeared" case solved in
// the browser: a support user finds the player, sees the drop in the chart,
// filters the history to the purchase, exports it, refunds it (the price
// back, the spent grants listed) and has no restore or erasure; an admin
// restores after a preview and erases behind a typed confirmation; an
// account without a role is refused by the service.
func TestSupportConsoleInChromium(t *testing.T) {
	s := startSupportStack(t)
	dir := artifactDir(t)
	userID := 8_000_000_000 + time.Now().UnixNano()%1_000_000_000

	// The game: gems bought, a starter pack bought, most of its wood spent.
	start := s.gameSave(userID)
	s.gameMutation(userID, map[string]any{"op": "currency.add", "currency": "gems", "amount": 200})
	s.gameMutation(userID, map[string]any{"op": "purchase", "sku": "starterPack"})
	s.gameMutation(userID, map[string]any{"op": "item.consume", "item": "wood", "count": 150})
	before := s.gameSave(userID)
	if got, want := before.Currencies["gems"], start.Currencies["gems"]+150; got != want {
		t.Fatalf("gems before the refund = %v, want %v", got, want)
	}

	support := s.staff("support")
	tab := openConsole(t, s, dir, "support", support)
	tab.waitFor("the console", `document.body.dataset.view === "console" && document.body.dataset.role === "support"`)
	if !eval[bool](tab, `document.querySelector("#restore-form").hidden && document.querySelector("#erase-form").hidden`) {
		t.Error("support sees the restore or erase form; only admins may restore or erase")
	}
	findPlayer(tab, userID)
	if got := tab.value(`[data-currency="gems"]`); got != before.Currencies["gems"] {
		t.Errorf("gems shown = %v, want %v", got, before.Currencies["gems"])
	}
	// The chart of gems marks the purchase's drop as a server's entry.
	tab.waitFor("the gems chart", `document.querySelector('#chart svg[data-path="currencies.gems"] circle.drop[data-actor-kind="server"]') !== null`)
	tab.screenshot("history")

	// Filter to purchases: one entry; export that search.
	tab.do("filter to purchases", chromedp.SendKeys(chromedp.CSS(`#filters [name="op"]`), "purchase"), chromedp.Click(chromedp.CSS("#apply-filters")))
	tab.waitFor("the purchase only", `document.body.dataset.busy === "0" && document.querySelectorAll("#history li[data-entry-id]").length === 1 && document.querySelector("#history li").dataset.ops === "purchase"`)
	tab.do("export", chromedp.Click(chromedp.CSS("#export-csv")))
	tab.waitFor("the CSV", `document.querySelector("#csv-link").dataset.rows === "1"`)
	tab.screenshot("filtered")

	// The purchase's version beside the one before it, and their diff.
	tab.do("compare", chromedp.Click(chromedp.CSS("#history button[data-compare]")))
	tab.waitFor("the diff", `document.body.dataset.busy === "0" && !document.querySelector("#sides").hidden && document.querySelector('#diff tr[data-path="currencies.gems"]') !== null`)
	if got, want := eval[string](tab, `(r => r.dataset.old + " → " + r.dataset.new)(document.querySelector('#diff tr[data-path="currencies.gems"]'))`),
		fmt.Sprintf("%v → %v", start.Currencies["gems"]+200, start.Currencies["gems"]+150); got != want {
		t.Errorf("diff of gems = %q, want %q", got, want)
	}
	tab.screenshot("compared")

	// Refund it: the gems come back, the spent wood is listed.
	tab.do("choose the refund", chromedp.Click(chromedp.CSS("#history button[data-refund]")))
	tab.do("fill the refund", chromedp.SendKeys(chromedp.CSS(`#refund-form [name="reason"]`), "bought by mistake"),
		chromedp.SendKeys(chromedp.CSS(`#refund-form [name="ticket"]`), "T-1701"),
		chromedp.Click(chromedp.CSS("#refund")))
	confirmDialog(tab, "refund-confirm")
	tab.waitFor("the refund", `document.querySelector("#message").dataset.code === "REFUNDED" && document.body.dataset.busy === "0"`)
	tab.screenshot("refunded")
	if got := eval[string](tab, `[...document.querySelectorAll("#unrecovered li")].map(li => li.dataset.path + " " + li.dataset.granted + " " + li.dataset.recovered).join(";")`); got != "items.wood 200 50" {
		t.Errorf("unrecovered shown = %q, want %q", got, "items.wood 200 50")
	}
	refunded := s.gameSave(userID)
	if got, want := refunded.Currencies["gems"], before.Currencies["gems"]+50; got != want {
		t.Errorf("gems after the refund = %v, want %v (the price back)", got, want)
	}
	if refunded.Items["wood"] != 0 {
		t.Errorf("wood after the refund = %v, want 0 (what was left taken back)", refunded.Items["wood"])
	}
	entryID := eval[string](tab, `document.querySelector("#result").dataset.entryId`)
	tab.do("clear the filters", chromedp.Click(chromedp.CSS("#clear-filters")))
	tab.waitFor("the refund's entry in the history", fmt.Sprintf(`document.body.dataset.busy === "0" && document.querySelector('#history li[data-entry-id=%q]')?.dataset.actorKind === "admin"`, entryID))

	// A compensation of 25 gems, with its reason and ticket; then only the
	// staff's entries (actor kind admin) in the history.
	tab.do("compose the compensation", chromedp.SetValue(chromedp.CSS(`#compensate-form [name="op"]`), "currency.add"),
		chromedp.SendKeys(chromedp.CSS(`#compensate-form [name="target"]`), "gems"),
		chromedp.SendKeys(chromedp.CSS(`#compensate-form [name="value"]`), "25"),
		chromedp.Click(chromedp.CSS("#add-op")),
		chromedp.SendKeys(chromedp.CSS(`#compensate-form [name="reason"]`), "goodwill"),
		chromedp.SendKeys(chromedp.CSS(`#compensate-form [name="ticket"]`), "T-1701"),
		chromedp.Click(chromedp.CSS("#compensate")))
	confirmDialog(tab, "compensate-confirm")
	tab.waitFor("the compensation", `document.querySelector("#message").dataset.code === "COMPENSATED" && document.querySelector("#result").dataset.kind === "compensation" && document.body.dataset.busy === "0"`)
	if got, want := s.gameSave(userID).Currencies["gems"], refunded.Currencies["gems"]+25; got != want {
		t.Errorf("gems after the compensation = %v, want %v", got, want)
	}
	tab.do("filter to staff", chromedp.SetValue(chromedp.CSS(`#filters [name="actorKind"]`), "admin"), chromedp.Click(chromedp.CSS("#apply-filters")))
	tab.waitFor("the staff's entries", `document.body.dataset.busy === "0" && document.querySelector("#history").dataset.count === "2" &&
		[...document.querySelectorAll("#history > li")].every(li => li.dataset.actorKind === "admin")`)
	tab.screenshot("compensated")

	// The service refuses support's restore and erasure too.
	for _, r := range []answer{
		s.call("POST", fmt.Sprintf("/v1/admin/players/%d/restore", userID), bearerOf(support.IDToken),
			map[string]any{"version": before.Version, "reason": "r", "ticket": "t"}, "Idempotency-Key", "support-restore"),
		s.call("DELETE", fmt.Sprintf("/v1/admin/players/%d", userID), bearerOf(support.IDToken), nil),
	} {
		if r.status != http.StatusForbidden {
			t.Errorf("support restore/erase: %s, want 403", r.summary())
		}
	}

	// An admin restores the version before the refund, after its preview.
	admin := s.staff("admin")
	atab := openConsole(t, s, dir, "admin", admin)
	atab.waitFor("the console", `document.body.dataset.view === "console" && document.body.dataset.role === "admin"`)
	findPlayer(atab, userID)
	atab.do("fill the restore", chromedp.SendKeys(chromedp.CSS(`#restore-form [name="version"]`), fmt.Sprint(before.Version)),
		chromedp.SendKeys(chromedp.CSS(`#restore-form [name="reason"]`), "refund was wrong"),
		chromedp.SendKeys(chromedp.CSS(`#restore-form [name="ticket"]`), "T-1702"),
		chromedp.Click(chromedp.CSS("#restore-preview")))
	atab.waitFor("the preview", `document.querySelector('#confirm[open] #confirm-changes tr[data-path="currencies.gems"]') !== null`)
	if got, want := eval[string](atab, `document.querySelector('#confirm-changes tr[data-path="currencies.gems"]').dataset.new`), fmt.Sprint(before.Currencies["gems"]); got != want {
		t.Errorf("preview of gems = %s, want %s", got, want)
	}
	confirmDialog(atab, "restore-preview")
	atab.waitFor("the restore", `document.querySelector("#message").dataset.code === "RESTORED" && document.body.dataset.busy === "0"`)
	atab.screenshot("restored")
	if got := s.gameSave(userID).Currencies["gems"]; got != before.Currencies["gems"] {
		t.Errorf("gems after the restore = %v, want %v", got, before.Currencies["gems"])
	}

	// Erasure waits for the typed confirmation.
	if !eval[bool](atab, `document.querySelector("#erase").disabled`) {
		t.Error("the erase button is enabled before the confirmation is typed")
	}
	atab.do("type the confirmation", chromedp.SendKeys(chromedp.CSS(`#erase-form [name="confirm"]`), fmt.Sprintf("erase %d", userID)))
	atab.do("erase", chromedp.Click(chromedp.CSS("#erase")))
	atab.waitFor("the erasure", `document.querySelector("#message").dataset.code === "ERASED" && document.querySelector("#result").dataset.kind === "erasure"`)
	atab.screenshot("erased")
	if r := s.call("GET", fmt.Sprintf("/v1/admin/players/%d/ledger", userID), bearerOf(admin.IDToken), nil); r.status != http.StatusOK || string(r.body) != `{"entries":[]}` {
		t.Errorf("ledger after the erasure: %s %s, want no entries", r.summary(), r.body)
	}

	// An account without a role is refused with the service's answer.
	player := s.signUp()
	ptab := openConsole(t, s, dir, "player", player)
	ptab.waitFor("the refusal", `document.body.dataset.view === "refused" && document.querySelector("#message").dataset.code === "PERMISSION_DENIED"`)
	ptab.screenshot("refused")
}

// supportBenchEntries is how many ledger entries the player of
// BenchmarkSupportConsole has.
const supportBenchEntries = 10_000

// supportPageSize is the console's history page size (web/support/src/app.ts).
const supportPageSize = 20

// BenchmarkSupportConsole measures the support console in Chromium against
// the local stack (docs/benchmarks.md):
//
//   - bundle-gz-kB: app.js gzipped (Firebase Auth included);
//
//   - first-page-p50-ms, first-page-p99-ms: a player looked up to the first
//     page of its history shown, for a player with 10,000 ledger entries
//     (the save's two version reads run beside the search), over b.N
//     lookups.
//
//     go test -run '^$' -bench BenchmarkSupportConsole -benchtime 20x ./cmd/internal/app/
func BenchmarkSupportConsole(b *testing.B) {
	s := startSupportStack(b)
	dir := artifactDir(b)
	js, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(buildCompanion(b))), "support", "dist", "app.js"))
	if err != nil {
		b.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(js)
	_ = zw.Close()

	userID := 8_000_000_000 + time.Now().UnixNano()%1_000_000_000
	for i := range supportBenchEntries {
		s.gameMutation(userID, map[string]any{"op": "currency.add", "currency": "coins", "amount": i%7 + 1})
	}
	tab := openPage(b, dir, "bench", s.page+"/?persistence=memory")
	tab.waitFor("the sign-in form", `document.body.dataset.view === "signed-out"`)
	support := s.staff("support")
	tab.do("sign in", chromedp.SendKeys(chromedp.CSS("#email"), support.Email),
		chromedp.SendKeys(chromedp.CSS("#password"), support.Password),
		chromedp.Click(chromedp.CSS("#signin")))
	tab.waitFor("the console", `document.body.dataset.view === "console"`)
	tab.do("type the player", chromedp.SendKeys(chromedp.CSS("#player-id"), fmt.Sprint(userID)))

	b.ResetTimer()
	var first []float64
	for range b.N {
		tab.do("find", chromedp.Click(chromedp.CSS("#find")))
		tab.waitFor("the first page", `window.savesyncMetrics.firstPageAt !== undefined && document.body.dataset.busy === "0"`)
		first = append(first, eval[float64](tab, `window.savesyncMetrics.firstPageAt - window.savesyncMetrics.findAt`))
	}
	b.StopTimer()
	tab.screenshot("bench-history")
	if n := eval[int](tab, `document.querySelectorAll("#history li[data-entry-id]").length`); n != supportPageSize {
		b.Errorf("first page shows %d entries, want %d", n, supportPageSize)
	}
	b.ReportMetric(float64(gz.Len())/1000, "bundle-gz-kB")
	b.ReportMetric(quantile(first, 0.5), "first-page-p50-ms")
	b.ReportMetric(quantile(first, 0.99), "first-page-p99-ms")
	b.ReportMetric(0, "ns/op")
}
