package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestSupportConsoleRunsBulkJobsInChromium is an exploit cleaned up in
// the browser: an admin lists three players, previews taking back up to
// 100 gems from each (one holds fewer), creates the job, starts it after
// the confirmation, follows its progress bar to the end and downloads the
// per-player results; a second draft is cancelled. Support does not see
// the panel.
func TestSupportConsoleRunsBulkJobsInChromium(t *testing.T) {
	s := startSupportStack(t)
	dir := artifactDir(t)
	base := 8_100_000_000 + time.Now().UnixNano()%1_000_000_000
	ids := []int64{base + 1, base + 2, base + 3}
	before := map[int64]float64{}
	for i, id := range ids {
		s.gameMutation(id, map[string]any{"op": "currency.add", "currency": "gems", "amount": []int{200, 200, 20}[i]})
		before[id] = s.gameSave(id).Currencies["gems"]
	}

	support := s.staff("support")
	stab := openConsole(t, s, dir, "support-bulk", support)
	stab.waitFor("the console", `document.body.dataset.view === "console" && document.body.dataset.role === "support"`)
	if !eval[bool](stab, `document.querySelector("#bulk").hidden`) {
		t.Error("support sees the bulk jobs panel; only admins run bulk jobs")
	}

	admin := s.staff("admin")
	tab := openConsole(t, s, dir, "admin-bulk", admin)
	tab.waitFor("the console with the bulk panel", `document.body.dataset.view === "console" && !document.querySelector("#bulk").hidden`)
	// Choosing "these user ids" shows the ids field (a change event, as a person's choice sends).
	eval[bool](tab, `(f => { f.elements.kind.value = "ids"; return f.dispatchEvent(new Event("change", {bubbles: true})); })(document.querySelector("#bulk-form"))`)
	if eval[bool](tab, `document.querySelector('#bulk-form [name="userIds"]').closest("label").hidden`) {
		t.Error("the ids field is hidden after choosing a list of ids")
	}
	tab.do("describe the job",
		chromedp.SetValue(chromedp.CSS(`#bulk-form [name="userIds"]`), fmt.Sprintf("%d, %d\n%d", ids[0], ids[1], ids[2])),
		chromedp.SetValue(chromedp.CSS(`#bulk-form [name="ops"]`), `[{"op":"currency.add","currency":"gems","amount":"-min(held, 100)"}]`),
		chromedp.SendKeys(chromedp.CSS(`#bulk-form [name="reason"]`), "gem duplication exploit"),
		chromedp.SendKeys(chromedp.CSS(`#bulk-form [name="ticket"]`), "T-1801"),
		chromedp.Click(chromedp.CSS("#bulk-dry-run")))
	tab.waitFor("the dry run", `document.querySelector("#message").dataset.code === "DRY_RUN" && document.querySelector("#bulk-preview-summary").dataset.matched === "3"`)
	tab.screenshot("bulk-dry-run")
	if got := eval[int](tab, `document.querySelectorAll("#bulk-sample tr[data-outcome=done]").length`); got != 3 {
		t.Errorf("sample rows that would change = %d, want 3", got)
	}
	var taken float64
	for _, g := range before {
		taken += min(g, 100)
	}
	wantEffect := fmt.Sprint(-taken)
	if got := eval[string](tab, `document.querySelector('#bulk-effect tr[data-path="currencies.gems"] td:last-child').textContent`); got != wantEffect {
		t.Errorf("total effect on gems = %q, want %q", got, wantEffect)
	}
	for id, g := range before {
		if got := s.gameSave(id).Currencies["gems"]; got != g {
			t.Errorf("player %d has %v gems after the dry run, want %v (nothing written)", id, got, g)
		}
	}

	tab.do("create the draft", chromedp.Click(chromedp.CSS("#bulk-create")))
	tab.waitFor("the draft", `document.querySelector("#message").dataset.code === "BULK_CREATED" && document.querySelector("#bulk-job").dataset.state === "draft"`)
	tab.do("start it", chromedp.Click(chromedp.CSS("#bulk-start")))
	confirmDialog(tab, "bulk-start-confirm")
	tab.waitFor("the job to finish", `document.querySelector("#bulk-job").dataset.state === "done"`)
	tab.screenshot("bulk-done")
	if got := eval[string](tab, `(c => [c.dataset.matched, c.dataset.done, c.dataset.failed, c.dataset.skipped].join(" "))(document.querySelector("#bulk-counts"))`); got != "3 3 0 0" {
		t.Errorf("matched done failed skipped = %q, want %q", got, "3 3 0 0")
	}
	if !eval[bool](tab, `(p => p.value === p.max)(document.querySelector("#bulk-progress"))`) {
		t.Error("the progress bar is not full after the job is done")
	}
	for id, g := range before {
		if got, want := s.gameSave(id).Currencies["gems"], g-min(g, 100); got != want {
			t.Errorf("player %d has %v gems after the job, want %v", id, got, want)
		}
	}
	tab.do("download the results", chromedp.Click(chromedp.CSS("#bulk-results")))
	tab.waitFor("the results CSV", `document.querySelector("#bulk-results-link").dataset.rows === "3"`)

	// A second draft (a new reason is a new intent) is cancelled.
	first := eval[string](tab, `document.querySelector("#bulk-job").dataset.jobId`)
	tab.do("describe another job", chromedp.SendKeys(chromedp.CSS(`#bulk-form [name="reason"]`), " again"),
		chromedp.Click(chromedp.CSS("#bulk-create")))
	tab.waitFor("the second draft", fmt.Sprintf(`(j => j.dataset.state === "draft" && j.dataset.jobId !== %q)(document.querySelector("#bulk-job")) &&
		document.querySelector('#bulk-jobs li[data-job-id=%q][data-state="done"]') !== null`, first, first))
	tab.do("cancel it", chromedp.Click(chromedp.CSS("#bulk-cancel")))
	confirmDialog(tab, "bulk-cancel-confirm")
	tab.waitFor("the cancellation", `document.querySelector("#message").dataset.code === "BULK_CANCEL" && document.querySelector("#bulk-job").dataset.state === "cancelled"`)
	// The page agrees with itself at once: the recent-jobs line of the job
	// shown has its state, and the first job's results link is gone.
	second := eval[string](tab, `document.querySelector("#bulk-job").dataset.jobId`)
	if got := eval[string](tab, fmt.Sprintf(`document.querySelector('#bulk-jobs li[data-job-id=%q]').dataset.state`, second)); got != "cancelled" {
		t.Errorf("recent jobs list the cancelled job as %q", got)
	}
	if eval[bool](tab, `!document.querySelector("#bulk-results-link").hidden`) {
		t.Error("the first job's results link is still shown beside the second job")
	}
	tab.screenshot("bulk-cancelled")
}
