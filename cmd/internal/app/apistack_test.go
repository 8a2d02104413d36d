package app

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/authtest"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
)

// The contract tests (the fuzz pass and the authorization matrix) run the
// service as the savesync binary does, through Run and its wiring, over
// the test binary's Firestore emulator (whose counters show every write)
// and the real Firebase Auth emulator. The Auth emulator's tokens name its
// project, so the service runs in that project.

// contractProject is the project of the Auth emulator's tokens and of the
// service's Firestore data in the contract tests.
const contractProject = "demo-savesync"

// Credentials of the contract stack.
const (
	contractKey     = "contract-server-key-current"
	contractNextKey = "contract-server-key-next" // the second key of a rotation
	// contractForeignKey is a server key of another universe, which this
	// deployment does not know (one deployment serves one universe).
	contractForeignKey    = "contract-server-key-of-universe-2"
	contractWebhookSecret = "contract-webhook-secret"
	contractUniverse      = 1
)

// contractUsers numbers the accounts the contract tests sign up.
var contractUsers atomic.Int64

func TestMain(m *testing.M) {
	code := m.Run()
	authtest.Stop()
	os.Exit(code)
}

// apiStack is the running service with its fixtures.
type apiStack struct {
	t        testing.TB
	base     string
	emu      *emulator.Server
	authHost string
	auth     *auth.Client
	game     *save.Config
	client   *http.Client
	app      *App
}

// startAPIStack runs the service on loopback with every route on: server
// keys of one universe (two, as during a rotation), the companion and
// support routes through the Auth emulator, and the Roblox webhook. The
// outbox relay is off so that the emulator's write counter moves only
// with the requests the tests send.
func startAPIStack(t *testing.T) *apiStack {
	t.Helper()
	vars := contractVars(t)
	run := runService(t, vars, func(o *RunOptions) {
		o.longPollMaxWait = 300 * time.Millisecond
		// The fixtures re-link the same accounts after every unlink
		// the fuzz sends, and the fuzz redeems wrong codes from one
		// job: far past the per-account and per-job limits, which
		// rightly refuse that (handlers tests cover them).
		unlimited := handlers.RateLimit{Burst: 1 << 30, Every: time.Nanosecond}
		o.companionLimits = &handlers.CompanionOptions{MaxStreams: 1 << 20, LinkCodeIssue: unlimited,
			RedeemFailuresPerPlayer: unlimited, RedeemFailuresPerJob: unlimited, RedeemFailuresPerUniverse: unlimited, RedeemFailuresPerPrefix: unlimited,
			EventTicketIssue: unlimited}
	})
	t.Cleanup(func() { run.stop(t) })
	return newAPIStack(t, vars, run)
}

// contractVars is the environment of the contract stack, with the test
// binary's Firestore emulator and the Auth emulator.
func contractVars(t testing.TB) map[string]string {
	t.Helper()
	return map[string]string{
		envPort:                  "0",
		envDataDir:               t.TempDir(),
		envGameConfig:            "../../../config/sample-game.json",
		envProject:               contractProject,
		envFirestoreEmulatorHost: firestoretest.Emulator(t).Addr(),
		envAuthEmulatorHost:      authtest.Host(t, contractProject),
		envServerKeys: fmt.Sprintf("%d:%s,%d:%s", contractUniverse, handlers.HashKey(contractKey),
			contractUniverse, handlers.HashKey(contractNextKey)),
		envWebhookSecret: contractWebhookSecret,
		envOutboxRelay:   "off",
		// The runner's writes would mix with the requests' in the
		// emulator's counters; the bulk browser test turns it on.
		envBulkRunner: "off",
		envLogLevel:   "error",
	}
}

// newAPIStack is the fixtures around a run of the service on vars.
func newAPIStack(t testing.TB, vars map[string]string, run *serviceRun) *apiStack {
	t.Helper()
	game, err := save.LoadConfig(vars[envGameConfig])
	if err != nil {
		t.Fatal(err)
	}
	app, err := firebase.NewApp(context.Background(), &firebase.Config{ProjectID: contractProject})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := app.Auth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &apiStack{
		t: t, base: run.base, app: run.app, emu: firestoretest.Emulator(t), authHost: vars[envAuthEmulatorHost], auth: ac, game: game,
		client: &http.Client{
			Timeout: requestTimeout,
			// A redirect is an answer to check, not to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// serviceRun is one run of the service through Run, as the binary runs it.
type serviceRun struct {
	base   string // http://host:port
	app    *App
	cancel context.CancelFunc
	done   chan error
}

// runService starts the service on loopback with vars as its environment
// and waits until it listens.
func runService(t testing.TB, vars map[string]string, opts ...RunOption) *serviceRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	started := make(chan *App, 1)
	r := &serviceRun{cancel: cancel, done: make(chan error, 1)}
	opts = append([]RunOption{WithHost("127.0.0.1"),
		WithListening(func(addr string) { addrs <- addr }),
		WithStarted(func(a *App) { started <- a })}, opts...)
	go func() { r.done <- Run(ctx, env(vars), io.Discard, opts...) }()
	select {
	case addr := <-addrs:
		r.base = "http://" + addr
	case err := <-r.done:
		cancel()
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("run did not listen within 60 s")
	}
	r.app = <-started
	return r
}

// stop shuts the run down and reports an error it returned.
func (r *serviceRun) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("run = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("run did not stop within 15 s")
	}
}

// requestTimeout is how long a contract test waits for any answer; a
// request that gets none is a hang.
const requestTimeout = 10 * time.Second

// writes is the number of documents the service has written so far.
func (s *apiStack) writes() int64 {
	return s.emu.Counters(contractProject).DocumentWrites
}

// answer is a response as the contract tests see it.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // no answer: a transport error or a timeout
}

// errorCode is the code of an error body ("" when there is none).
func (a answer) errorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code
}

// reason is details.reason of an error body.
func (a answer) reason() string {
	var e struct {
		Error struct {
			Details struct {
				Reason string `json:"reason"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Details.Reason
}

// object decodes a JSON object answer.
func (a answer) object() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(a.body, &m)
	return m
}

// summary is the status, code and reason, e.g. "403 PERMISSION_DENIED/NOT_LINKED".
func (a answer) summary() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	s := strconv.Itoa(a.status)
	if c := a.errorCode(); c != "" {
		s += " " + c
		if r := a.reason(); r != "" {
			s += "/" + r
		}
	}
	return s
}

// apiRequest is one request of a contract test, kept whole so that a
// failure can print it to reproduce.
type apiRequest struct {
	method string
	// target is the escaped path and query, sent as written.
	target string
	header http.Header
	body   []byte
	// caller names the credentials (see callerKind).
	caller callerKind
	// what says how the request was made (the mutation of the fuzz pass).
	what string
}

// String prints the request as a curl command line.
func (r apiRequest) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "curl -X %s '$BASE%s'", r.method, r.target)
	for name, vs := range r.header {
		for _, v := range vs {
			fmt.Fprintf(&b, " -H %q", name+": "+shortText(v, 200))
		}
	}
	if r.body != nil {
		fmt.Fprintf(&b, " --data-binary %q", shortText(string(r.body), 600))
		if len(r.body) > 600 {
			fmt.Fprintf(&b, " (%d bytes)", len(r.body))
		}
	}
	return b.String()
}

// shortText cuts s for a failure report.
func shortText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// do sends r and reads the whole answer, or only its headers when it is an
// event stream, which stays open by design.
func (s *apiStack) do(r apiRequest) answer {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, s.base+r.target, body)
	if err != nil {
		return answer{err: fmt.Errorf("build the request: %w", err)}
	}
	for name, vs := range r.header {
		req.Header[name] = vs
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return a
	}
	a.body, a.err = io.ReadAll(resp.Body)
	return a
}

// call sends a JSON request with a caller's credentials: a helper for
// fixtures, which must succeed.
func (s *apiStack) call(method, target string, c credentials, body any, header ...string) answer {
	s.t.Helper()
	r := apiRequest{method: method, target: target, header: http.Header{}}
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		r.body = raw
		r.header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.header.Set(header[i], header[i+1])
	}
	c.apply(&r)
	return s.do(r)
}

// credentials are what a caller presents: an Authorization header, or a
// webhook signature made over the body.
type credentials struct {
	authorization string
	// sign signs the body as Roblox signs webhooks: with secret, at the
	// time age before now.
	sign   bool
	secret string
	age    time.Duration
}

// apply puts the credentials on r.
func (c credentials) apply(r *apiRequest) {
	if c.authorization != "" {
		r.header.Set("Authorization", c.authorization)
	}
	if c.sign {
		r.header.Set(handlers.HeaderRobloxSignature, robloxSignature(c.secret, r.body, time.Now().Add(-c.age)))
	}
}

// robloxSignature is the Roblox-Signature header of body.
func robloxSignature(secret string, body []byte, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// bearerOf is an Authorization header with a bearer token.
func bearerOf(token string) credentials { return credentials{authorization: "Bearer " + token} }

// fbUser is an account on the Auth emulator.
type fbUser struct {
	UID, Email, Password, IDToken string
}

// signUp creates an account and returns it signed in.
func (s *apiStack) signUp() *fbUser {
	s.t.Helper()
	email := fmt.Sprintf("contract-%d-%d@example.com", os.Getpid(), contractUsers.Add(1))
	var out struct {
		LocalID string `json:"localId"`
		IDToken string `json:"idToken"`
	}
	s.identityToolkit("accounts:signUp", map[string]any{"email": email, "password": "secret-123", "returnSecureToken": true}, &out)
	if out.IDToken == "" {
		s.t.Fatalf("sign-up returned no token")
	}
	return &fbUser{UID: out.LocalID, Email: email, Password: "secret-123", IDToken: out.IDToken}
}

// signIn gets a fresh ID token, carrying the claims set since the last.
func (s *apiStack) signIn(u *fbUser) {
	s.t.Helper()
	var out struct {
		IDToken string `json:"idToken"`
	}
	s.identityToolkit("accounts:signInWithPassword", map[string]any{"email": u.Email, "password": u.Password, "returnSecureToken": true}, &out)
	if out.IDToken == "" {
		s.t.Fatal("sign-in returned no token")
	}
	u.IDToken = out.IDToken
}

// staff signs up an account with a role claim.
func (s *apiStack) staff(role string) *fbUser {
	s.t.Helper()
	u := s.signUp()
	if err := s.auth.SetCustomUserClaims(context.Background(), u.UID, map[string]any{handlers.ClaimRole: role}); err != nil {
		s.t.Fatal(err)
	}
	s.signIn(u)
	return u
}

func (s *apiStack) identityToolkit(method string, body, out any) {
	s.t.Helper()
	raw, _ := json.Marshal(body)
	var resp *http.Response
	var err error
	// The emulator (Node) closes idle connections on its own schedule: a
	// request on one it just closed is retried.
	for attempt := 0; attempt < 3; attempt++ {
		resp, err = http.Post("http://"+s.authHost+"/identitytoolkit.googleapis.com/v1/"+method+"?key=any", "application/json", bytes.NewReader(raw))
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("%s: %d %s", method, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		s.t.Fatalf("%s: %v", method, err)
	}
}

// unsignedToken is an emulator-style (alg "none") ID token with chosen
// claims, for expired or foreign tokens the emulator would never issue.
func unsignedToken(claims map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// tokenClaims are the claims of an ID token of uid in project, issued at iat.
func tokenClaims(project, uid string, iat int64) map[string]any {
	return map[string]any{
		"iss": "https://securetoken.google.com/" + project, "aud": project,
		"sub": uid, "user_id": uid, "auth_time": iat, "iat": iat, "exp": iat + 3600,
	}
}

// link links u to a Roblox player as the product does: a code from the
// companion, redeemed by the game server, then a fresh sign-in. It
// answers the redemption's refusal, if any.
func (s *apiStack) link(u *fbUser, userID int64) answer {
	s.t.Helper()
	r := s.call("POST", "/v1/me/link-codes", bearerOf(u.IDToken), nil)
	code, _ := r.object()["code"].(string)
	if r.status != http.StatusCreated || code == "" {
		s.t.Fatalf("create a link code: %s %s", r.summary(), r.body)
	}
	if r := s.call("POST", "/v1/link-codes/"+code+"/redeem", bearerOf(contractKey), map[string]any{"userId": userID}); r.status != http.StatusOK {
		return r
	}
	s.signIn(u)
	return answer{status: http.StatusOK}
}

// linkCode is a fresh link code of u.
func (s *apiStack) linkCode(u *fbUser) string {
	s.t.Helper()
	r := s.call("POST", "/v1/me/link-codes", bearerOf(u.IDToken), nil)
	code, _ := r.object()["code"].(string)
	if r.status != http.StatusCreated || code == "" {
		s.t.Fatalf("create a link code: %s %s", r.summary(), r.body)
	}
	return code
}

// join takes the lease of a player for a job (stealing it if held) and
// returns the session id.
func (s *apiStack) join(userID int64, job string) string {
	s.t.Helper()
	r := s.call("POST", "/v1/sessions", bearerOf(contractKey), map[string]any{
		"userId": userID, "jobId": job, "steal": true, "schemaVersion": s.game.SchemaVersion,
	})
	var out struct {
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil || out.Session.ID == "" {
		s.t.Fatalf("join %d as %s: %s %s", userID, job, r.summary(), r.body)
	}
	return out.Session.ID
}

// commit applies a settings mutation as the game server, so a player has
// a save, a version and a ledger entry.
func (s *apiStack) commit(userID int64) {
	s.t.Helper()
	r := s.call("POST", fmt.Sprintf("/v1/players/%d/mutations", userID), bearerOf(contractKey),
		map[string]any{"ops": []any{map[string]any{"op": "currency.add", "currency": "coins", "amount": 1}}},
		"Idempotency-Key", fmt.Sprintf("fixture-%d-%d", userID, time.Now().UnixNano()))
	if r.status != http.StatusOK {
		s.t.Fatalf("commit for %d: %s %s", userID, r.summary(), r.body)
	}
}
