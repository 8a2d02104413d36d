package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests run the reference companion page (web/companion) in
// Debian's Chromium, served from an origin other than the API's, against
// the service through Run, the Firestore emulator and the real Firebase
// Auth emulator. They drive the page only through the attributes listed
// in web/README.md, and save a screenshot of every state they
// reach in the artefact folder (SAVESYNC_TEST_ARTIFACTS, by default
// .data/test-artifacts/browser in the repository).

// browserWait is how long a browser test waits for the page to reach a
// state; a page that does not is a failure, with a screenshot.
const browserWait = 30 * time.Second

// companionStack is the service, restartable on a fixed port, with the
// companion page served from an allowed origin and from one that is not.
type companionStack struct {
	*apiStack
	vars     map[string]string
	run      *serviceRun
	page     string // the page on the allowed origin
	stranger string // the same page on an origin not in SAVESYNC_CORS_ORIGINS
}

// startCompanionStack builds the companion page and runs the service with
// CORS open to the page's origin only.
func startCompanionStack(t testing.TB) *companionStack {
	t.Helper()
	dist := buildCompanion(t)
	vars := contractVars(t)
	port := freePort(t)
	api := "http://127.0.0.1:" + port
	s := &companionStack{vars: vars,
		page:     serveCompanion(t, dist, api, vars[envAuthEmulatorHost]),
		stranger: serveCompanion(t, dist, api, vars[envAuthEmulatorHost]),
	}
	vars[envPort] = port
	vars[envCORSOrigins] = s.page
	s.run = runService(t, vars)
	t.Cleanup(func() {
		if s.run != nil {
			s.run.stop(t)
		}
	})
	s.apiStack = newAPIStack(t, vars, s.run)
	return s
}

// restart stops the service and starts it again on the same port and data.
func (s *companionStack) restart(t testing.TB) {
	t.Helper()
	s.run.stop(t)
	s.run = nil
	s.run = runService(t, s.vars)
}

var (
	companionBuild    sync.Once
	companionDist     string
	companionBuildErr error
)

// buildCompanion bundles the page once per test binary with the
// workspace's esbuild (installed by `npm ci --prefix web`, which make test
// runs) and returns its folder.
func buildCompanion(t testing.TB) string {
	t.Helper()
	companionBuild.Do(func() {
		root, err := filepath.Abs("../../..")
		if err != nil {
			companionBuildErr = err
			return
		}
		web := filepath.Join(root, "web")
		if _, err := os.Stat(filepath.Join(web, "node_modules")); err != nil {
			companionBuildErr = fmt.Errorf("the web workspace is not installed: run `npm ci --prefix web` (make test does): %w", err)
			return
		}
		cmd := exec.Command("npm", "--prefix", web, "run", "--silent", "build")
		if out, err := cmd.CombinedOutput(); err != nil {
			companionBuildErr = fmt.Errorf("npm run build: %v\n%s", err, out)
			return
		}
		companionDist = filepath.Join(web, "companion", "dist")
	})
	if companionBuildErr != nil {
		t.Fatal(companionBuildErr)
	}
	return companionDist
}

// serveCompanion serves the built page and its config.json on a loopback
// origin of its own and returns that origin.
func serveCompanion(t testing.TB, dist, apiBase, authHost string) string {
	t.Helper()
	cfg, err := json.Marshal(map[string]any{
		"apiBase": apiBase,
		"firebase": map[string]string{
			"apiKey": "demo-api-key", "authDomain": contractProject + ".firebaseapp.com", "projectId": contractProject,
		},
		"authEmulatorUrl": "http://" + authHost,
	})
	if err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(dist))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path == "/config.json" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(cfg)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// freePort is a loopback port nothing listens on right now.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// chromiumPath is Debian's Chromium, which make test installs.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium is needed for the browser tests: install Debian's package (apt-get install -y chromium; make test does)")
	return ""
}

// newBrowser starts a headless Chromium with an empty profile and returns
// a context for its first tab (the one the tests use: a tab opened beside
// it answers no evaluation in headless mode).
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 1500),
		// The machine's network is closed: no background fetches.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// doubleClick double-clicks the first element matching sel as a mouse
// does: a click, then a second one with click count 2.
func doubleClick(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.QueryAfter(chromedp.CSS(sel), func(ctx context.Context, t *chromedp.Target, nodes []*chromedp.Node) (chromedp.Void, error) {
		if _, err := chromedp.MouseClickNode(nodes[0])(ctx, t); err != nil {
			return chromedp.Void{}, err
		}
		return chromedp.MouseClickNode(nodes[0], chromedp.ClickCount(2))(ctx, t)
	}, chromedp.NodeVisible)
}

// browserTab is one tab showing the companion page.
type browserTab struct {
	t    testing.TB
	ctx  context.Context
	dir  string // where screenshots go
	name string // prefix of this tab's screenshots
	shot int
}

// artifactDir is the folder for this test's screenshots.
func artifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SAVESYNC_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", ".data", "test-artifacts")
	}
	dir = filepath.Join(dir, "browser", strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openPage opens url in a browser of its own (an empty profile, as a
// first visit has).
func openPage(t testing.TB, dir, name, url string) *browserTab {
	t.Helper()
	tab := &browserTab{t: t, ctx: newBrowser(t), dir: dir, name: name}
	tab.do("open "+url, chromedp.Navigate(url))
	return tab
}

// do runs actions in the tab, failing the test with a screenshot when
// they fail or take longer than browserWait.
func (b *browserTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failed")
		b.t.Fatalf("%s: %v; page state: %s", what, err, b.state())
	}
}

// waitFor waits until the JavaScript expression is true in the page.
func (b *browserTab) waitFor(what, expr string) {
	b.t.Helper()
	b.do("wait until "+what, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
}

// eval is the value of a JavaScript expression in the page.
func eval[T any](b *browserTab, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		b.screenshot("failed")
		b.t.Fatalf("evaluate %s: %v; page state: %s", expr, err, b.state())
	}
	return v
}

// eval0 evaluates a JavaScript statement in the page for its effect.
func (b *browserTab) eval0(js string) {
	b.t.Helper()
	b.do("evaluate "+js, chromedp.Evaluate[chromedp.Void]("(() => { "+js+"; })()"))
}

// value is the data-value of the first element matching sel, as a number.
func (b *browserTab) value(sel string) float64 {
	b.t.Helper()
	return eval[float64](b, fmt.Sprintf(`Number(document.querySelector(%q)?.dataset.value ?? -1)`, sel))
}

// state is what the page shows of itself, for failure messages.
func (b *browserTab) state() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({view: document.body.dataset.view, live: document.body.dataset.live,
		pending: document.body.dataset.pendingWrites, message: document.querySelector('#message')?.textContent,
		code: document.querySelector('#message')?.dataset.code})`))
	return s
}

// screenshot saves the whole page as <dir>/<name>-NN-<label>.png.
func (b *browserTab) screenshot(label string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", label, err)
		return
	}
	b.shot++
	path := filepath.Join(b.dir, fmt.Sprintf("%s-%02d-%s.png", b.name, b.shot, label))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("save the screenshot: %v", err)
	}
}

// TestCompanionPageInChromium is the companion's whole journey in a real
// browser: sign up, link, live updates, a purchase, a double click, a
// refusal rolled back, edits, a service restart under the page, and the
// page on an origin the service does not allow.
func TestCompanionPageInChromium(t *testing.T) {
	s := startCompanionStack(t)
	dir := artifactDir(t)
	email := fmt.Sprintf("browser-%d-%d@example.com", os.Getpid(), time.Now().UnixNano())
	const password = "secret-123"
	userID := 7_000_000_000 + time.Now().UnixNano()%1_000_000_000

	tab := openPage(t, dir, "page", s.page+"/?persistence=memory")
	tab.waitFor("the sign-in form", `document.body.dataset.view === "signed-out"`)
	tab.screenshot("signed-out")

	// Sign up: a new account has no player yet, so the page shows a code
	// and waits on the event stream for a game server to redeem it.
	tab.do("sign up", chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#signup")))
	tab.waitFor("a link code", `document.body.dataset.view === "pending-link" && /\S/.test(document.querySelector("#link-code")?.textContent ?? "")`)
	tab.waitFor("the stream", `document.body.dataset.live === "open"`)
	tab.screenshot("link-code")
	code := eval[string](tab, `document.querySelector("#link-code").textContent.trim()`)

	// The game server redeems the code the player typed in game: the page
	// moves to the save with no reload.
	if r := s.call("POST", "/v1/link-codes/"+code+"/redeem", bearerOf(contractKey), map[string]any{"userId": userID}); r.status != http.StatusOK {
		t.Fatalf("redeem %q: %s %s", code, r.summary(), r.body)
	}
	tab.waitFor("the linked save", `document.body.dataset.view === "linked" && document.body.dataset.live === "open"`)
	start := s.gameSave(userID)
	if got, want := tab.value(`[data-currency="gems"]`), start.Currencies["gems"]; got != want {
		t.Errorf("gems shown = %v, want %v", got, want)
	}
	tab.screenshot("linked")

	// A game server's change appears on the page by itself.
	s.gameMutation(userID, map[string]any{"op": "currency.add", "currency": "gems", "amount": 100})
	gems := start.Currencies["gems"] + 100
	tab.waitFor("the game server's gems", fmt.Sprintf(`document.querySelector('[data-currency="gems"]')?.dataset.value === "%v"`, gems))
	tab.screenshot("live-update")

	// A double click buys once: one ledger entry, five potions, 15 gems.
	tab.do("double-click buy", doubleClick(`[data-buy="speedPotions"]`))
	tab.waitFor("the purchase", `document.querySelector("#message")?.dataset.code === "PURCHASED" && document.body.dataset.pendingWrites === "0"`)
	gems -= 15
	tab.waitFor("the potions", `document.querySelector('[data-item="speedPotion"]')?.dataset.value === "5"`)
	after := s.gameSave(userID)
	if after.Currencies["gems"] != gems || after.Items["speedPotion"] != 5 {
		t.Errorf("after a double click: gems %v potions %v, want %v and 5", after.Currencies["gems"], after.Items["speedPotion"], gems)
	}
	if n := s.purchaseEntries(userID, "speedPotions"); n != 1 {
		t.Errorf("ledger entries for the double-clicked purchase = %d, want 1", n)
	}
	tab.screenshot("purchased")

	// A purchase the balance cannot pay is refused by the service: the
	// optimistic change is rolled back and the page says why.
	coins := after.Currencies["coins"]
	tab.do("buy the hammer", chromedp.Click(chromedp.CSS(`[data-buy="goldenHammer"]`)))
	tab.waitFor("the refusal", `document.querySelector("#message")?.dataset.code === "INSUFFICIENT_FUNDS" && document.body.dataset.pendingWrites === "0"`)
	if got := tab.value(`[data-currency="coins"]`); got != coins {
		t.Errorf("coins after the refusal = %v, want %v (rolled back)", got, coins)
	}
	if got := s.gameSave(userID).Currencies["coins"]; got != coins {
		t.Errorf("coins in the save after the refusal = %v, want %v", got, coins)
	}
	tab.screenshot("refused")

	// Edits: a setting and an element of the editable collection.
	tab.do("set the volume", chromedp.SetValue(chromedp.CSS(`[data-setting="volume"]`), "35"),
		chromedp.Evaluate[chromedp.Void](`void document.querySelector('[data-setting="volume"]').dispatchEvent(new Event("change", {bubbles: true}))`))
	tab.do("add to the wishlist", chromedp.SendKeys(chromedp.CSS(`form[data-add-collection="wishlist"] input`), "cargoCrane"),
		chromedp.Click(chromedp.CSS(`form[data-add-collection="wishlist"] button`)))
	tab.waitFor("the wishlist element", `document.querySelector('[data-collection="wishlist"] [data-element="cargoCrane"]') !== null && document.body.dataset.pendingWrites === "0"`)
	edited := s.gameSave(userID)
	if v, _ := edited.Settings["volume"].(float64); v != 35 {
		t.Errorf("volume in the save = %v, want 35", edited.Settings["volume"])
	}
	if !edited.hasElement("wishlist", "cargoCrane") {
		t.Errorf("wishlist in the save = %v, want cargoCrane in it", edited.Collections["wishlist"])
	}
	tab.waitFor("history of every write", `document.querySelectorAll("#history li[data-entry-id]").length >= 4`)
	tab.screenshot("edited")

	// The service restarts under the page: the stream comes back by
	// itself and the next change from a game server appears.
	tab.eval0(`window.liveStates = []; new MutationObserver(() => window.liveStates.push(document.body.dataset.live))
		.observe(document.body, {attributes: true, attributeFilter: ["data-live"]})`)
	s.restart(t)
	tab.waitFor("the stream back", `window.liveStates.includes("reconnecting") && document.body.dataset.live === "open"`)
	s.gameMutation(userID, map[string]any{"op": "currency.add", "currency": "gems", "amount": 7})
	gems += 7
	tab.waitFor("a change after the restart", fmt.Sprintf(`document.querySelector('[data-currency="gems"]')?.dataset.value === "%v"`, gems))
	tab.screenshot("after-restart")

	// The same page on an origin the service does not allow: the browser
	// refuses the answers, and the page says it cannot reach the service.
	other := openPage(t, dir, "stranger", s.stranger+"/?persistence=memory")
	other.waitFor("the sign-in form", `document.body.dataset.view === "signed-out"`)
	other.do("sign in", chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#signin")))
	other.waitFor("the refusal", `document.querySelector("#message")?.dataset.code === "NETWORK_ERROR"`)
	other.screenshot("origin-refused")
	if got := s.gameSave(userID).Currencies["gems"]; got != gems {
		t.Errorf("gems after the refused origin = %v, want %v", got, gems)
	}
}

// playerSave is the part of a save the browser tests check.
type playerSave struct {
	Version     int64               `json:"version"`
	Currencies  map[string]float64  `json:"currencies"`
	Items       map[string]float64  `json:"items"`
	Settings    map[string]any      `json:"settings"`
	Collections map[string][]string `json:"collections"`
}

// hasElement reports whether a collection of the save holds element.
func (p playerSave) hasElement(collection, element string) bool {
	return slices.Contains(p.Collections[collection], element)
}

// gameSave reads a player's save as a game server.
func (s *companionStack) gameSave(userID int64) playerSave {
	s.t.Helper()
	r := s.call("GET", fmt.Sprintf("/v1/players/%d", userID), bearerOf(contractKey), nil)
	var out struct {
		Version int64      `json:"version"`
		Save    playerSave `json:"save"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		s.t.Fatalf("read player %d: %s %s", userID, r.summary(), r.body)
	}
	out.Save.Version = out.Version
	return out.Save
}

// gameMutation commits ops as a game server.
func (s *companionStack) gameMutation(userID int64, ops ...any) {
	s.t.Helper()
	r := s.call("POST", fmt.Sprintf("/v1/players/%d/mutations", userID), bearerOf(contractKey),
		map[string]any{"ops": ops}, "Idempotency-Key", fmt.Sprintf("browser-%d-%d", userID, time.Now().UnixNano()))
	if r.status != http.StatusOK {
		s.t.Fatalf("game mutation for %d: %s %s", userID, r.summary(), r.body)
	}
}

// purchaseEntries counts the ledger entries of a player's purchases of sku.
func (s *companionStack) purchaseEntries(userID int64, sku string) int {
	s.t.Helper()
	admin := s.staff("admin")
	r := s.call("GET", fmt.Sprintf("/v1/admin/players/%d/ledger?limit=100", userID), bearerOf(admin.IDToken), nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("read the ledger of %d: %s %s", userID, r.summary(), r.body)
	}
	return strings.Count(string(r.body), `"sku":"`+sku+`"`)
}
