package roblox_test

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	lua "github.com/yuin/gopher-lua"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/roblox"
	"github.com/savesync/savesync/store"
)

// serverKey is the game-server key kept in the harness's Roblox Secret.
const serverKey = "roblox-harness-server-key"

// secretName is the name the module reads the key under.
const secretName = "savesync_server_key"

// Roblox limits the harness enforces or checks.
const (
	httpPerMinute       = 500  // HttpService requests per server in any 60 s
	httpStallSeconds    = 30.0 // how long HttpService refuses requests once the limit is hit
	bindToCloseSeconds  = 30   // what BindToClose may take
	keyWriteSpacing     = 1.0  // seconds the module keeps between writes of one DataStore key
	dataStoreKeyMax     = 50   // characters of a DataStore key
	dataStoreNameMax    = 50   // characters of a DataStore name
	dataStoreValueMax   = 4 << 20
	dataStoreQueueMax   = 30   // throttled requests Roblox queues per request type
	messageMaxBytes     = 1024 // MessagingService message size
	maxVirtualSteps     = 4_000_000
	defaultVirtualLimit = 120.0
)

// Messages HttpService raises, as Roblox words them.
const (
	httpLimitMessage    = "Number of requests exceeded limit"
	httpDisabledMessage = "Http requests are not enabled. Enable via game settings"
	noSecretMessage     = "Can't find secret with given key"
)

// userBase makes the harness's user ids 10 digits long, as real Roblox ids
// are now; uid(n) is the n-th test user.
const userBase = 4_000_000_000

// uid returns the 10-digit user id of the n-th test user.
func uid(n int64) int64 { return userBase + n }

// virtualClock is a test's one clock: every game server's task scheduler
// and the service's leases and ledger times read it, so a lease expires
// after 90 virtual seconds and a backoff of 8 s costs no real time.
type virtualClock struct {
	mu   sync.Mutex
	secs float64
	base time.Time
}

func (c *virtualClock) seconds() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.secs
}

func (c *virtualClock) advance(to float64) {
	c.mu.Lock()
	if to > c.secs {
		c.secs = to
	}
	c.mu.Unlock()
}

// Now is the service's clock.
func (c *virtualClock) Now() time.Time {
	return c.base.Add(time.Duration(c.seconds() * float64(time.Second)))
}

// service is the real savesync started in-process over a fresh emulator
// project, behind a proxy that can fail requests, and the game servers
// (harnesses) of the test, run on one virtual clock.
type service struct {
	url     string
	store   *store.Store
	clients store.Clients
	proxy   *faultProxy
	clock   *virtualClock
	servers []*harness
	seq     int
}

func newService(t testing.TB) *service {
	t.Helper()
	return newServiceWith(t, nil)
}

// newServiceWith is newService with more routes registered by extra (the
// companion's, for link codes).
func newServiceWith(t testing.TB, extra func(r gin.IRouter, st *store.Store, keys *handlers.ServerKeys, clock *virtualClock)) *service {
	t.Helper()
	gin.SetMode(gin.TestMode)
	project := firestoretest.Project(t)
	clients := firestoretest.Dial(t, project)
	game := firestoretest.GameConfig(t)
	clock := &virtualClock{base: time.Now().UTC().Truncate(time.Second)}
	st := store.New(clients.Firestore, clients.GAPIC, project, game, store.Options{LeaseTTL: 90 * time.Second, LedgerRetention: 24 * time.Hour, Now: clock.Now})
	keys, err := handlers.ParseServerKeys("1:" + handlers.HashKey(serverKey))
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(handlers.LimitBody(64 << 10))
	handlers.NewServerAPI(st, game, keys).Register(r)
	changes := store.NewChanges(st, store.ChangesOptions{PollInterval: 20 * time.Millisecond, MaxWait: 2 * time.Second})
	handlers.NewChangesAPI(changes).Register(r, keys.RequireServerKey())
	if extra != nil {
		extra(r, st, keys, clock)
	}
	proxy := &faultProxy{next: r}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return &service{url: srv.URL, store: st, clients: clients, proxy: proxy, clock: clock}
}

// now is the virtual time in seconds.
func (s *service) now() float64 { return s.clock.seconds() }

// step runs the earliest due thread of any running game server, at most
// up to limit; false when none is due.
func (s *service) step(limit float64) bool {
	var next *harness
	for _, h := range s.servers {
		if h.stopped || h.timers.Len() == 0 {
			continue
		}
		if next == nil || earlier(h.timers[0], next.timers[0]) {
			next = h
		}
	}
	if next == nil || next.timers[0].at > limit {
		return false
	}
	next.stepOne()
	return true
}

func earlier(a, b *wakeup) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

// faultProxy forwards requests to the service, failing some on request,
// and records every exchange.
type faultProxy struct {
	next http.Handler

	mu     sync.Mutex
	faults []*proxyFault
	log    []exchange
}

// proxyFault fails the next count requests whose path starts with prefix.
// lost forwards the request first (it commits) and then answers as if the
// response had been lost; otherwise the service is not reached. The
// answer is 503 UNAVAILABLE unless status (and body) say otherwise.
type proxyFault struct {
	prefix string
	count  int
	lost   bool
	status int
	body   string
	header map[string]string
}

// exchange is one request the service received (or was denied).
type exchange struct {
	method, path, key, body string
	status                  int
	replayed                bool
	reached                 bool
}

// fail installs a fault answering 503.
func (p *faultProxy) fail(prefix string, count int, lost bool) {
	p.answer(prefix, count, lost, http.StatusServiceUnavailable, `{"error":{"code":"UNAVAILABLE","message":"the service is unavailable (injected)","details":{}}}`)
}

// answer installs a fault answering status and body instead of the service.
func (p *faultProxy) answer(prefix string, count int, lost bool, status int, body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &proxyFault{prefix: prefix, count: count, lost: lost, status: status, body: body})
}

// clear removes every fault.
func (p *faultProxy) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// exchanges returns the recorded exchanges whose path starts with prefix.
func (p *faultProxy) exchanges(prefix string) []exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []exchange
	for _, e := range p.log {
		if strings.HasPrefix(e.path, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.mu.Lock()
	var fault *proxyFault
	for _, f := range p.faults {
		if f.count > 0 && strings.HasPrefix(r.URL.Path, f.prefix) {
			f.count--
			fault = f
			break
		}
	}
	p.mu.Unlock()
	ex := exchange{method: r.Method, path: r.URL.Path, key: r.Header.Get("Idempotency-Key"), body: string(body)}
	if fault == nil || fault.lost {
		rec := httptest.NewRecorder()
		p.next.ServeHTTP(rec, r)
		ex.reached = true
		ex.status = rec.Code
		ex.replayed = rec.Header().Get("Idempotent-Replayed") == "true"
		if fault == nil {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			p.record(ex)
			return
		}
	}
	p.record(ex)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(fault.status)
	_, _ = io.WriteString(w, fault.body)
}

func (p *faultProxy) record(ex exchange) {
	p.mu.Lock()
	p.log = append(p.log, ex)
	p.mu.Unlock()
}

// dataStoreBackend is what a universe shares between its game servers:
// the DataStore contents (name -> key -> JSON value, with the user ids
// each key was written for) and MessagingService subscriptions.
type dataStoreBackend struct {
	mu      sync.Mutex
	data    map[string]map[string]string
	userIDs map[string]map[string][]int64
	subs    []subscription
}

// subscription is one SubscribeAsync of a game server.
type subscription struct {
	h     *harness
	topic string
	fn    *lua.LFunction
}

func newDataStoreBackend() *dataStoreBackend {
	return &dataStoreBackend{data: map[string]map[string]string{}, userIDs: map[string]map[string][]int64{}}
}

// get returns a stored value decoded, or nil.
func (b *dataStoreBackend) get(store, key string) any {
	b.mu.Lock()
	defer b.mu.Unlock()
	raw, ok := b.data[store][key]
	if !ok {
		return nil
	}
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		panic(err)
	}
	return v
}

// set stores a value as a game (or a test preparing one) would.
func (b *dataStoreBackend) set(store, key string, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.data[store] == nil {
		b.data[store] = map[string]string{}
	}
	b.data[store][key] = string(raw)
}

func (b *dataStoreBackend) keys(store string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for k := range b.data[store] {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// keyUsers returns the user ids a key was last written for.
func (b *dataStoreBackend) keyUsers(store, key string) []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.userIDs[store][key]
}

// request is one HttpService:RequestAsync call, at a virtual time.
type request struct {
	at            float64
	method, url   string
	authorization string
	refused       string // why HttpService refused it without sending
}

// serverOptions sets up one game server.
type serverOptions struct {
	// studio runs the place in Roblox Studio: game.JobId is empty,
	// RunService:IsStudio() is true, MessagingService is a namespace of
	// its own, and (unless secret is set) no Secret is available.
	studio bool
	// secret makes the Secret available in Studio (local secrets set up).
	secret bool
	// noSecret leaves the Secret out of a live server's settings.
	noSecret bool
	// httpDisabled turns off Allow HTTP Requests.
	httpDisabled bool
	// httpLatency and dataStoreLatency are the virtual seconds one request
	// takes (0: the defaults below; negative: none).
	httpLatency, dataStoreLatency float64
	// allowHTTPRefusals lets a test hit the HTTP limit on purpose.
	allowHTTPRefusals bool
}

// Defaults of the latencies the harness gives requests.
const (
	defaultHTTPLatency      = 0.15
	defaultDataStoreLatency = 0.1
	messagingLatency        = 0.3
)

// harness is one Roblox game server: a Lua state running the module with
// stand-ins for the Roblox services and a deterministic scheduler on the
// test's virtual clock.
type harness struct {
	t       testing.TB
	L       *lua.LState
	svc     *service
	jobID   string
	opts    serverOptions
	timers  wakeups
	errs    []string
	steps   int
	ds      *dataStoreBackend
	budgets map[string]float64
	budgetT float64
	stopped bool

	requests       []request
	httpStallUntil float64
	dsViolations   []string
	dsCalls        map[string]int
	dsLog          []dataStoreCall
	dsQueued       map[string]int
	dsFaults       []*dataStoreFault
	lastKeyWrite   map[string]float64
	playerN        int
	warnings       []string
	published      []publishedMessage
	// allowDataStoreErrors lets a test provoke key and value errors.
	allowDataStoreErrors bool
	// subscribeFailures is how many SubscribeAsync calls fail first.
	subscribeFailures int
}

// dataStoreCall is one DataStore request the module made.
type dataStoreCall struct {
	at                 float64
	method, store, key string
	err                string
}

// publishedMessage is one MessagingService:PublishAsync of the server.
type publishedMessage struct {
	at    float64
	topic string
	data  string
}

// dataStoreFault fails the next count calls of method on keys of store
// starting with prefix, with Roblox's error code.
type dataStoreFault struct {
	method, store, prefix string
	count, code           int
}

// dataStoreErrors are the messages of the Roblox DataStore error codes the
// harness raises.
var dataStoreErrors = map[int]string{
	101: "Key name can't be empty.",
	102: "Key name exceeds the 50 character limit.",
	103: "Value cannot be stored: it is not a supported type.",
	105: "Serialized value exceeds 4MB limit.",
	301: "GetAsync request dropped. Request was throttled, but throttled request queue was full.",
	302: "SetAsync request dropped. Request was throttled, but throttled request queue was full.",
	303: "IncrementAsync request dropped. Request was throttled, but throttled request queue was full.",
	304: "UpdateAsync request dropped. Request was throttled, but throttled request queue was full.",
	306: "RemoveAsync request dropped. Request was throttled, but throttled request queue was full.",
	500: "Internal Server Error.",
	502: "API Services rejected request with error. HTTP 500 (Internal Server Error)",
	503: "DataStore Request successful, but key not found.",
	504: "Data store request was successful, but the response was not formatted correctly.",
}

// dataStoreError formats a DataStore error as Roblox raises it.
func dataStoreError(code int) string {
	return fmt.Sprintf("%d: %s", code, dataStoreErrors[code])
}

// throttleCode is the error code of a throttled request of a method.
var throttleCode = map[string]int{"GetAsync": 301, "SetAsync": 302, "IncrementAsync": 303, "UpdateAsync": 304, "RemoveAsync": 306}

// thread is a Lua coroutine the scheduler runs.
type thread struct {
	co      *lua.LState
	fn      *lua.LFunction
	done    bool
	results []lua.LValue
	waitAt  float64
}

type wakeup struct {
	at       float64
	seq      int
	th       *thread
	args     []lua.LValue
	fromWait bool
}

type wakeups []*wakeup

func (w wakeups) Len() int           { return len(w) }
func (w wakeups) Less(i, j int) bool { return earlier(w[i], w[j]) }
func (w wakeups) Swap(i, j int)      { w[i], w[j] = w[j], w[i] }
func (w *wakeups) Push(x any)        { *w = append(*w, x.(*wakeup)) }
func (w *wakeups) Pop() any {
	old := *w
	x := old[len(old)-1]
	*w = old[:len(old)-1]
	return x
}

// newHarness starts a live game server with job id jobID, sharing the
// DataStores in ds, and loads the module as the global SaveSync.
func newHarness(t testing.TB, svc *service, ds *dataStoreBackend, jobID string) *harness {
	t.Helper()
	return newServer(t, svc, ds, jobID, serverOptions{})
}

// newServer starts a game server set up by opts.
func newServer(t testing.TB, svc *service, ds *dataStoreBackend, jobID string, opts serverOptions) *harness {
	t.Helper()
	if opts.httpLatency == 0 {
		opts.httpLatency = defaultHTTPLatency
	}
	if opts.dataStoreLatency == 0 {
		opts.dataStoreLatency = defaultDataStoreLatency
	}
	opts.httpLatency = math.Max(opts.httpLatency, 0)
	opts.dataStoreLatency = math.Max(opts.dataStoreLatency, 0)
	if opts.studio {
		jobID = ""
	}
	h := &harness{
		t:            t,
		L:            lua.NewState(),
		svc:          svc,
		jobID:        jobID,
		opts:         opts,
		ds:           ds,
		budgets:      map[string]float64{},
		budgetT:      svc.now(),
		dsCalls:      map[string]int{},
		dsQueued:     map[string]int{},
		lastKeyWrite: map[string]float64{},
	}
	svc.servers = append(svc.servers, h)
	t.Cleanup(h.check)
	t.Cleanup(h.L.Close)
	h.install()
	mod, err := h.L.LoadString(roblox.ModuleSource)
	if err != nil {
		t.Fatalf("load SaveSync.lua: %v", err)
	}
	h.L.Push(mod)
	if err := h.L.PCall(0, 1, nil); err != nil {
		t.Fatalf("run SaveSync.lua: %v", err)
	}
	h.L.SetGlobal("SaveSync", h.L.Get(-1))
	h.L.Pop(1)
	h.L.SetGlobal("SERVICE_URL", lua.LString(svc.url))
	return h
}

// now is the virtual time in seconds.
func (h *harness) now() float64 { return h.svc.now() }

// crash stops the server at once, as a crashed or shut-down Roblox server
// stops: none of its threads runs again and nothing is flushed.
func (h *harness) crash() { h.stopped = true }

// check fails the test on Lua errors in any thread and on broken Roblox
// limits: HTTP requests per minute, DataStore budgets and key spacing.
func (h *harness) check() {
	for _, e := range h.errs {
		h.t.Errorf("Lua error on %s: %s", h.jobID, e)
	}
	for _, v := range h.dsViolations {
		h.t.Errorf("DataStore limit broken on %s: %s", h.jobID, v)
	}
	for _, c := range h.dsLog {
		for _, code := range []int{101, 102, 103, 105} {
			if c.err == dataStoreError(code) && !h.allowDataStoreErrors {
				h.t.Errorf("DataStore %s %s/%s at %.1fs on %s: %s", c.method, c.store, c.key, c.at, h.jobID, c.err)
			}
		}
	}
	if n, from := h.maxHTTPPerMinute(); n > httpPerMinute {
		h.t.Errorf("%d HTTP requests within a minute from %.1fs on %s; Roblox allows %d", n, from, h.jobID, httpPerMinute)
	}
	if !h.opts.allowHTTPRefusals {
		for _, r := range h.requests {
			if r.refused == httpLimitMessage {
				h.t.Errorf("HttpService refused %s %s at %.1fs on %s: %s", r.method, r.url, r.at, h.jobID, r.refused)
				break
			}
		}
	}
	for _, r := range h.requests {
		if r.refused == "" && strings.Contains(r.url, "/v1/") && r.authorization != "Bearer "+serverKey {
			h.t.Errorf("request %s %s carried Authorization %q, want the Secret with its prefix", r.method, r.url, r.authorization)
			break
		}
	}
}

// maxHTTPPerMinute returns the most requests sent within any 60 s window
// and where that window starts.
func (h *harness) maxHTTPPerMinute() (int, float64) {
	var sent []float64
	for _, r := range h.requests {
		if r.refused == "" {
			sent = append(sent, r.at)
		}
	}
	best, from := 0, 0.0
	j := 0
	for i := range sent {
		for j < len(sent) && sent[j] < sent[i]+60 {
			j++
		}
		if j-i > best {
			best, from = j-i, sent[i]
		}
	}
	return best, from
}

// prelude builds game, its services and the harness hooks in Lua over the
// Go stand-ins. pcall is the coroutine-based one, so a call may yield
// inside it as Luau allows (gopher-lua's own pcall cannot yield).
const prelude = `
do
	local create, resume, yield, status = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
	local function drive(co, ok, ...)
		if not ok then return false, (...) end
		if status(co) == "dead" then return true, ... end
		return drive(co, resume(co, yield(...)))
	end
	function pcall(f, ...)
		if type(f) ~= "function" and not (type(f) == "table" and getmetatable(f) and getmetatable(f).__call) then
			return false, "attempt to call a " .. type(f) .. " value"
		end
		-- A coroutine of a Go function does not run in gopher-lua: wrap it.
		local co = create(function(...) return f(...) end)
		return drive(co, resume(co, ...))
	end
	function xpcall(f, handler, ...)
		local results = {pcall(f, ...)}
		if not results[1] then return false, handler(results[2]) end
		return unpack(results)
	end
end

warn = __go.warn
print = __go.print

local Signal = {}
Signal.__index = Signal
function Signal.new() return setmetatable({handlers = {}}, Signal) end
function Signal:Connect(fn)
	table.insert(self.handlers, fn)
	return {Disconnect = function() end}
end
function Signal:Fire(...)
	for _, fn in ipairs(self.handlers) do task.spawn(fn, ...) end
end

local Players = {PlayerAdded = Signal.new(), PlayerRemoving = Signal.new(), list = {}}
function Players:GetPlayers()
	local out = {}
	for _, p in pairs(self.list) do table.insert(out, p) end
	return out
end
function Players:GetPlayerByUserId(userId) return self.list[userId] end

local HttpService = __go.HttpService
function HttpService:RequestAsync(options)
	local ok, result, delay = __go.httpSend(options)
	if delay > 0 then task.wait(delay) end
	if not ok then error(result, 0) end
	return result
end

local function dataStoreCall(name, method, key, arg, extra)
	local delay, err = __go.dsBegin(name, method, key, arg, extra)
	if delay > 0 then task.wait(delay) end
	if err then error(err, 0) end
	local ok, a, b = __go.dsFinish(name, method, key, arg, extra)
	if not ok then error(a, 0) end
	return a, b
end

local DataStoreService = {}
function DataStoreService:GetRequestBudgetForRequestType(kind) return __go.dsBudget(kind) end
function DataStoreService:GetDataStore(name, scope)
	__go.dsName(name)
	local store = {Name = name}
	function store:GetAsync(key) return dataStoreCall(name, "GetAsync", key) end
	function store:SetAsync(key, value, userIds) return dataStoreCall(name, "SetAsync", key, value, userIds) end
	function store:RemoveAsync(key) return dataStoreCall(name, "RemoveAsync", key) end
	function store:UpdateAsync(key, transform) return dataStoreCall(name, "UpdateAsync", key, transform) end
	function store:IncrementAsync(key, delta) return dataStoreCall(name, "IncrementAsync", key, delta or 1) end
	return store
end

local MessagingService = {}
function MessagingService:SubscribeAsync(topic, fn)
	task.wait(__go.messagingLatency)
	return __go.subscribe(topic, fn)
end
function MessagingService:PublishAsync(topic, data)
	task.wait(__go.messagingLatency)
	local ok, err = __go.publish(topic, data)
	if not ok then error(err, 0) end
end

local MarketplaceService = {}

local RunService = {}
function RunService:IsStudio() return __go.studio end
function RunService:IsServer() return true end
function RunService:IsClient() return false end

local closeHandlers = {}
local services = {
	HttpService = HttpService,
	DataStoreService = DataStoreService,
	MessagingService = MessagingService,
	Players = Players,
	RunService = RunService,
	MarketplaceService = MarketplaceService,
}
game = {JobId = __go.jobId, PlaceId = 4242}
function game:GetService(name)
	local s = services[name]
	if s == nil then error("the harness has no service " .. tostring(name)) end
	return s
end
function game:BindToClose(fn) table.insert(closeHandlers, fn) end
Enum = {
	DataStoreRequestType = {
		GetAsync = "GetAsync", SetIncrementAsync = "SetIncrementAsync",
		UpdateAsync = "UpdateAsync", GetSortedAsync = "GetSortedAsync",
	},
	ProductPurchaseDecision = {PurchaseGranted = "PurchaseGranted", NotProcessedYet = "NotProcessedYet"},
}
__harness = {kicked = {}}
function __harness.player(userId) return Players.list[userId] end
function __harness.addPlayer(userId, joinData)
	local p = {UserId = userId, Name = "Player" .. userId, Parent = Players}
	function p:Kick(message)
		__harness.kicked[self.UserId] = message or ""
		__harness.removePlayer(self.UserId)
	end
	function p:GetJoinData() return {TeleportData = joinData} end
	Players.list[userId] = p
	__go.playerCount(1)
	Players.PlayerAdded:Fire(p)
	return p
end
function __harness.removePlayer(userId)
	local p = Players.list[userId]
	Players.list[userId] = nil
	if p then
		p.Parent = nil
		__go.playerCount(-1)
		Players.PlayerRemoving:Fire(p)
	end
end
-- deliverReceipt calls ProcessReceipt as Roblox does and returns its decision.
function __harness.deliverReceipt(receipt)
	return MarketplaceService.ProcessReceipt(receipt)
end
function __harness.close()
	local left = #closeHandlers
	for _, fn in ipairs(closeHandlers) do
		task.spawn(function() fn(); left = left - 1 end)
	end
	while left > 0 do task.wait(0.05) end
	return true
end
`

// install sets up the Go stand-ins and runs the prelude.
func (h *harness) install() {
	L := h.L
	goTable := L.NewTable()
	L.SetField(goTable, "jobId", lua.LString(h.jobID))
	L.SetField(goTable, "studio", lua.LBool(h.opts.studio))
	L.SetField(goTable, "messagingLatency", lua.LNumber(messagingLatency))
	L.SetField(goTable, "HttpService", h.httpService())
	L.SetField(goTable, "httpSend", L.NewFunction(h.httpSend))
	h.dataStoreService(goTable)
	h.messagingService(goTable)
	L.SetField(goTable, "playerCount", L.NewFunction(func(L *lua.LState) int {
		h.refillBudgets()
		h.playerN += L.CheckInt(1)
		return 0
	}))
	logTo := func(prefix string) *lua.LFunction {
		return L.NewFunction(func(L *lua.LState) int {
			var parts []string
			for i := 1; i <= L.GetTop(); i++ {
				parts = append(parts, L.ToStringMeta(L.Get(i)).String())
			}
			h.warnings = append(h.warnings, prefix+strings.Join(parts, " "))
			return 0
		})
	}
	L.SetField(goTable, "warn", logTo("warn: "))
	L.SetField(goTable, "print", logTo(""))
	L.SetGlobal("__go", goTable)

	taskLib := L.NewTable()
	L.SetField(taskLib, "wait", L.NewFunction(func(L *lua.LState) int {
		d := float64(L.OptNumber(1, 0.03))
		return L.Yield(lua.LString("wait"), lua.LNumber(d))
	}))
	L.SetField(taskLib, "spawn", L.NewFunction(func(L *lua.LState) int {
		fn := L.CheckFunction(1)
		args := rest(L, 2)
		h.resume(L, h.newThread(L, fn), args)
		return 0
	}))
	L.SetField(taskLib, "defer", L.NewFunction(func(L *lua.LState) int {
		fn := L.CheckFunction(1)
		h.schedule(h.now(), h.newThread(L, fn), rest(L, 2))
		return 0
	}))
	L.SetField(taskLib, "delay", L.NewFunction(func(L *lua.LState) int {
		d := float64(L.CheckNumber(1))
		fn := L.CheckFunction(2)
		h.schedule(h.now()+d, h.newThread(L, fn), rest(L, 3))
		return 0
	}))
	L.SetGlobal("task", taskLib)
	osLib := L.GetGlobal("os").(*lua.LTable)
	L.SetField(osLib, "clock", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(h.now()))
		return 1
	}))
	L.SetField(osLib, "time", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(h.svc.clock.Now().Unix()))
		return 1
	}))
	if err := L.DoString(prelude); err != nil {
		h.t.Fatalf("harness prelude: %v", err)
	}
}

func rest(L *lua.LState, from int) []lua.LValue {
	var out []lua.LValue
	for i := from; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i))
	}
	return out
}

func (h *harness) newThread(L *lua.LState, fn *lua.LFunction) *thread {
	co, _ := L.NewThread()
	return &thread{co: co, fn: fn}
}

func (h *harness) schedule(at float64, th *thread, args []lua.LValue) {
	h.svc.seq++
	heap.Push(&h.timers, &wakeup{at: at, seq: h.svc.seq, th: th, args: args})
}

// resume runs a thread until it yields or ends; a task.wait yield
// schedules its wake-up on virtual time.
func (h *harness) resume(L *lua.LState, th *thread, args []lua.LValue) {
	h.steps++
	if h.steps > maxVirtualSteps {
		h.t.Fatalf("the scheduler ran %d steps; a loop in the module never waits", maxVirtualSteps)
	}
	state, err, values := L.Resume(th.co, th.fn, args...)
	switch {
	case err != nil:
		h.errs = append(h.errs, err.Error())
		th.done = true
	case state == lua.ResumeYield:
		d := 0.0
		if len(values) >= 2 {
			if n, ok := values[1].(lua.LNumber); ok {
				d = math.Max(float64(n), 0)
			}
		}
		th.waitAt = h.now()
		h.svc.seq++
		heap.Push(&h.timers, &wakeup{at: h.now() + d, seq: h.svc.seq, th: th, fromWait: true})
	default:
		th.done = true
		th.results = values
	}
}

// stepOne runs this server's next due thread.
func (h *harness) stepOne() {
	w := heap.Pop(&h.timers).(*wakeup)
	h.svc.clock.advance(w.at)
	args := w.args
	if w.fromWait {
		args = []lua.LValue{lua.LNumber(h.now() - w.th.waitAt)}
	}
	h.resume(h.L, w.th, args)
}

// runFor advances virtual time by d seconds, running every thread due on
// every server of the test.
func (h *harness) runFor(d float64) {
	h.t.Helper()
	h.svc.runFor(d)
}

func (s *service) runFor(d float64) {
	limit := s.now() + d
	for s.step(limit) {
	}
	s.clock.advance(limit)
}

// runUntil advances virtual time until cond holds, for at most limit
// seconds; it fails the test when cond never holds.
func (h *harness) runUntil(what string, limit float64, cond func() bool) {
	h.t.Helper()
	end := h.now() + limit
	for !cond() {
		if !h.svc.step(end) {
			h.svc.clock.advance(end)
			if !cond() {
				h.t.Fatalf("%s: not reached within %.0f virtual seconds", what, limit)
			}
			return
		}
	}
}

// do runs Lua code in a new thread and returns its results as Go values
// once it ends, running the scheduler (other threads too) meanwhile.
func (h *harness) do(code string) []any {
	h.t.Helper()
	fn, err := h.L.LoadString(code)
	if err != nil {
		h.t.Fatalf("compile %q: %v", code, err)
	}
	th := h.newThread(h.L, fn)
	h.resume(h.L, th, nil)
	h.runUntil(fmt.Sprintf("%q", code), defaultVirtualLimit, func() bool { return th.done })
	if len(h.errs) > 0 {
		h.t.Fatalf("Lua error: %s", strings.Join(h.errs, "; "))
	}
	out := make([]any, len(th.results))
	for i, v := range th.results {
		out[i] = toGo(v)
	}
	return out
}

// start runs Lua code in a new thread without waiting for it.
func (h *harness) start(code string) {
	h.t.Helper()
	fn, err := h.L.LoadString(code)
	if err != nil {
		h.t.Fatalf("compile %q: %v", code, err)
	}
	h.resume(h.L, h.newThread(h.L, fn), nil)
}

// close runs the game's BindToClose handlers as Roblox does at shutdown:
// the server stops after 30 seconds whatever they are doing. It reports
// how many virtual seconds they took and whether they finished; the
// server is stopped afterwards.
func (h *harness) close() (float64, bool) {
	h.t.Helper()
	fn, err := h.L.LoadString("return __harness.close()")
	if err != nil {
		h.t.Fatal(err)
	}
	start := h.now()
	th := h.newThread(h.L, fn)
	h.resume(h.L, th, nil)
	end := start + bindToCloseSeconds
	for !th.done && h.svc.step(end) {
	}
	if !th.done {
		h.svc.clock.advance(end)
	}
	h.stopped = true
	return h.now() - start, th.done
}

// addPlayer makes a player join the server (PlayerAdded fires).
func (h *harness) addPlayer(userID int64) {
	h.t.Helper()
	h.do(fmt.Sprintf("__harness.addPlayer(%d)", userID))
}

// removePlayer makes a player leave the server (PlayerRemoving fires).
func (h *harness) removePlayer(userID int64) {
	h.t.Helper()
	h.do(fmt.Sprintf("__harness.removePlayer(%d)", userID))
}

// publish delivers a MessagingService message to this server's
// subscribers, as the service's forwarder (Open Cloud) sends it.
func (h *harness) publish(topic, data string) {
	h.ds.mu.Lock()
	subs := append([]subscription(nil), h.ds.subs...)
	h.ds.mu.Unlock()
	for _, s := range subs {
		if s.h == h && s.topic == topic {
			msg := h.L.NewTable()
			h.L.SetField(msg, "Data", lua.LString(data))
			h.L.SetField(msg, "Sent", lua.LNumber(h.svc.clock.Now().Unix()))
			h.schedule(h.now(), h.newThread(h.L, s.fn), []lua.LValue{msg})
		}
	}
}

// --- HttpService -----------------------------------------------------------

// secret is what HttpService:GetSecret returns: opaque to the script,
// usable only as header text.
type secret struct{ value string }

func (h *harness) newSecret(L *lua.LState, value string) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = &secret{value: value}
	mt := L.NewTable()
	methods := L.NewTable()
	L.SetField(methods, "AddPrefix", L.NewFunction(func(L *lua.LState) int {
		s := L.CheckUserData(1).Value.(*secret)
		L.Push(h.newSecret(L, L.CheckString(2)+s.value))
		return 1
	}))
	L.SetField(methods, "AddSuffix", L.NewFunction(func(L *lua.LState) int {
		s := L.CheckUserData(1).Value.(*secret)
		L.Push(h.newSecret(L, s.value+L.CheckString(2)))
		return 1
	}))
	L.SetField(mt, "__index", methods)
	L.SetField(mt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("Secret"))
		return 1
	}))
	L.SetMetatable(ud, mt)
	return ud
}

func (h *harness) httpService() *lua.LTable {
	L := h.L
	s := L.NewTable()
	L.SetField(s, "GetSecret", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(2)
		if name != secretName || h.opts.noSecret || (h.opts.studio && !h.opts.secret) {
			L.RaiseError(noSecretMessage)
		}
		L.Push(h.newSecret(L, serverKey))
		return 1
	}))
	L.SetField(s, "GenerateGUID", L.NewFunction(func(L *lua.LState) int {
		id := strings.ToUpper(uuid.NewString())
		if L.OptBool(2, true) {
			id = "{" + id + "}"
		}
		L.Push(lua.LString(id))
		return 1
	}))
	L.SetField(s, "JSONEncode", L.NewFunction(func(L *lua.LState) int {
		b, err := json.Marshal(toGo(L.Get(2)))
		if err != nil {
			L.RaiseError("Can't convert to JSON: %v", err)
		}
		L.Push(lua.LString(b))
		return 1
	}))
	L.SetField(s, "JSONDecode", L.NewFunction(func(L *lua.LState) int {
		var v any
		dec := json.NewDecoder(strings.NewReader(L.CheckString(2)))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			L.RaiseError("Can't parse JSON")
		}
		L.Push(fromGo(L, v))
		return 1
	}))
	L.SetField(s, "UrlEncode", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(url.QueryEscape(L.CheckString(2))))
		return 1
	}))
	return s
}

// httpSend is the Go half of HttpService:RequestAsync: it checks the
// request as Roblox does (HTTP enabled, the per-server limit), sends it
// to the service at once and returns ok, the response or the error
// message, and the virtual seconds the call takes. A long-poll that finds
// nothing takes its whole timeout.
func (h *harness) httpSend(L *lua.LState) int {
	refuse := func(req request, msg string, delay float64) int {
		req.refused = msg
		h.requests = append(h.requests, req)
		L.Push(lua.LFalse)
		L.Push(lua.LString(msg))
		L.Push(lua.LNumber(delay))
		return 3
	}
	opts := L.CheckTable(1)
	method := lua.LVAsString(opts.RawGetString("Method"))
	if method == "" {
		method = "GET"
	}
	target := lua.LVAsString(opts.RawGetString("Url"))
	rec := request{at: h.now(), method: method, url: target}
	if h.opts.httpDisabled {
		return refuse(rec, httpDisabledMessage, 0)
	}
	if h.now() < h.httpStallUntil {
		return refuse(rec, httpLimitMessage, 0)
	}
	if n := h.sentSince(h.now() - 60); n >= httpPerMinute {
		h.httpStallUntil = h.now() + httpStallSeconds
		return refuse(rec, httpLimitMessage, 0)
	}
	var body io.Reader
	if b, ok := opts.RawGetString("Body").(lua.LString); ok {
		if method == "GET" {
			L.RaiseError("Body cannot be sent with a GET request")
		}
		body = strings.NewReader(string(b))
	}
	u, err := url.Parse(target)
	if err != nil {
		L.RaiseError("HttpError: InvalidUrl")
	}
	hold := 0.0
	if strings.HasSuffix(u.Path, "/changes") {
		// The service holds a long-poll up to its timeout; the harness asks
		// for the answer at once and makes the wait virtual.
		q := u.Query()
		if s := q.Get("timeout"); s != "" {
			secs, _ := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
			hold = math.Min(secs, 25)
			q.Set("timeout", "0")
			u.RawQuery = q.Encode()
		}
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		L.RaiseError("HttpError: InvalidUrl")
	}
	if headers, ok := opts.RawGetString("Headers").(*lua.LTable); ok {
		headers.ForEach(func(k, v lua.LValue) {
			switch x := v.(type) {
			case lua.LString:
				req.Header.Set(k.String(), string(x))
			case *lua.LUserData:
				if sec, ok := x.Value.(*secret); ok {
					req.Header.Set(k.String(), sec.value)
				}
			}
		})
	}
	rec.authorization = req.Header.Get("Authorization")
	h.requests = append(h.requests, rec)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		L.Push(lua.LFalse)
		L.Push(lua.LString("HttpError: ConnectFail"))
		L.Push(lua.LNumber(h.opts.httpLatency))
		return 3
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		L.Push(lua.LFalse)
		L.Push(lua.LString("HttpError: NetFail"))
		L.Push(lua.LNumber(h.opts.httpLatency))
		return 3
	}
	if hold > 0 && resp.StatusCode == http.StatusOK {
		var page struct {
			Changes []json.RawMessage `json:"changes"`
		}
		if json.Unmarshal(raw, &page) == nil && len(page.Changes) > 0 {
			hold = 0
		}
	} else {
		hold = 0
	}
	out := L.NewTable()
	L.SetField(out, "Success", lua.LBool(resp.StatusCode >= 200 && resp.StatusCode < 300))
	L.SetField(out, "StatusCode", lua.LNumber(resp.StatusCode))
	L.SetField(out, "StatusMessage", lua.LString(http.StatusText(resp.StatusCode)))
	hdrs := L.NewTable()
	for k := range resp.Header {
		L.SetField(hdrs, strings.ToLower(k), lua.LString(resp.Header.Get(k)))
	}
	L.SetField(out, "Headers", hdrs)
	L.SetField(out, "Body", lua.LString(raw))
	L.Push(lua.LTrue)
	L.Push(out)
	L.Push(lua.LNumber(h.opts.httpLatency + hold))
	return 3
}

// sentSince counts the requests sent after a virtual time.
func (h *harness) sentSince(from float64) int {
	n := 0
	for i := len(h.requests) - 1; i >= 0 && h.requests[i].at > from; i-- {
		if h.requests[i].refused == "" {
			n++
		}
	}
	return n
}

// --- DataStoreService ------------------------------------------------------

// dataStoreRate is Roblox's budget per minute for each request type:
// 60 + 10 per player. Budgets start at one minute's worth and accrue up
// to three.
func (h *harness) dataStoreRate() float64 {
	return 60 + 10*float64(h.playerN)
}

func (h *harness) refillBudgets() {
	rate := h.dataStoreRate()
	for _, kind := range []string{"GetAsync", "SetIncrementAsync", "UpdateAsync"} {
		b, ok := h.budgets[kind]
		if !ok {
			b = rate
		} else {
			b = math.Min(3*rate, b+(h.now()-h.budgetT)*rate/60)
		}
		h.budgets[kind] = b
	}
	h.budgetT = h.now()
}

// budgetKinds are the budgets a DataStore method draws on.
var budgetKinds = map[string][]string{
	"GetAsync":       {"GetAsync"},
	"SetAsync":       {"SetIncrementAsync"},
	"IncrementAsync": {"SetIncrementAsync"},
	"RemoveAsync":    {"SetIncrementAsync"},
	"UpdateAsync":    {"GetAsync", "SetIncrementAsync"},
}

// failDataStore makes the next count calls of method on keys of store
// starting with prefix fail with a Roblox error code.
func (h *harness) failDataStore(store, method, prefix string, count, code int) {
	h.dsFaults = append(h.dsFaults, &dataStoreFault{method: method, store: store, prefix: prefix, count: count, code: code})
}

// dataStoreCalls returns the calls of a method on keys of store starting
// with prefix.
func (h *harness) dataStoreCalls(store, method, prefix string) []dataStoreCall {
	var out []dataStoreCall
	for _, c := range h.dsLog {
		if c.store == store && (method == "" || c.method == method) && strings.HasPrefix(c.key, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (h *harness) dataStoreService(goTable *lua.LTable) {
	L := h.L
	L.SetField(goTable, "dsBudget", L.NewFunction(func(L *lua.LState) int {
		h.refillBudgets()
		L.Push(lua.LNumber(math.Max(0, math.Floor(h.budgets[L.CheckString(1)]))))
		return 1
	}))
	L.SetField(goTable, "dsName", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		if name == "" || len(name) > dataStoreNameMax {
			L.RaiseError("DataStore name can't be empty or exceed %d characters", dataStoreNameMax)
		}
		return 0
	}))
	// dsBegin checks a call as Roblox does before sending it and returns
	// the seconds it takes and the error it ends with, if any. A call on an
	// empty budget is queued (it waits for the budget; more than 30 queued
	// are dropped) and recorded as a broken limit: the module promises to
	// check budgets first.
	L.SetField(goTable, "dsBegin", L.NewFunction(func(L *lua.LState) int {
		name, method, key := L.CheckString(1), L.CheckString(2), L.CheckString(3)
		fail := func(code int, delay float64) int {
			msg := dataStoreError(code)
			h.dsLog = append(h.dsLog, dataStoreCall{at: h.now(), method: method, store: name, key: key, err: msg})
			L.Push(lua.LNumber(delay))
			L.Push(lua.LString(msg))
			return 2
		}
		if key == "" {
			return fail(101, 0)
		}
		if len(key) > dataStoreKeyMax {
			return fail(102, 0)
		}
		if method == "SetAsync" {
			raw, err := json.Marshal(toGo(L.Get(4)))
			if err != nil || L.Get(4).Type() == lua.LTFunction {
				return fail(103, 0)
			}
			if len(raw) > dataStoreValueMax {
				return fail(105, 0)
			}
		}
		h.refillBudgets()
		delay := h.opts.dataStoreLatency
		for _, kind := range budgetKinds[method] {
			if h.budgets[kind] < 1 {
				if h.dsQueued[kind] >= dataStoreQueueMax {
					return fail(throttleCode[method], 0)
				}
				h.dsViolations = append(h.dsViolations, fmt.Sprintf("%s %s/%s queued on an empty %s budget at %.1fs", method, name, key, kind, h.now()))
				wait := (1 - h.budgets[kind]) / h.dataStoreRate() * 60
				delay = math.Max(delay, wait+h.opts.dataStoreLatency)
			}
			h.budgets[kind]--
			h.dsCalls[kind]++
		}
		for _, f := range h.dsFaults {
			if f.count > 0 && f.method == method && f.store == name && strings.HasPrefix(key, f.prefix) {
				f.count--
				return fail(f.code, delay)
			}
		}
		h.dsLog = append(h.dsLog, dataStoreCall{at: h.now(), method: method, store: name, key: key})
		L.Push(lua.LNumber(delay))
		L.Push(lua.LNil)
		return 2
	}))
	// dsFinish does a call's work at the moment it completes.
	L.SetField(goTable, "dsFinish", L.NewFunction(func(L *lua.LState) int {
		name, method, key := L.CheckString(1), L.CheckString(2), L.CheckString(3)
		fail := func(code int) int {
			L.Push(lua.LFalse)
			L.Push(lua.LString(dataStoreError(code)))
			return 2
		}
		switch method {
		case "GetAsync":
			L.Push(lua.LTrue)
			L.Push(h.load(L, name, key))
			return 2
		case "SetAsync":
			h.keyWritten(name, key)
			if code := h.put(name, key, L.Get(4), L.Get(5)); code != 0 {
				return fail(code)
			}
			L.Push(lua.LTrue)
			L.Push(lua.LString("version"))
			return 2
		case "IncrementAsync":
			h.keyWritten(name, key)
			old, _ := h.load(L, name, key).(lua.LNumber)
			v := old + L.CheckNumber(4)
			h.put(name, key, v, lua.LNil)
			L.Push(lua.LTrue)
			L.Push(v)
			return 2
		case "RemoveAsync":
			h.keyWritten(name, key)
			old := h.load(L, name, key)
			h.ds.mu.Lock()
			delete(h.ds.data[name], key)
			delete(h.ds.userIDs[name], key)
			h.ds.mu.Unlock()
			L.Push(lua.LTrue)
			L.Push(old)
			return 2
		case "UpdateAsync":
			fn := L.CheckFunction(4)
			if err := L.CallByParam(lua.P{Fn: fn, NRet: 2, Protect: true}, h.load(L, name, key)); err != nil {
				L.Push(lua.LFalse)
				L.Push(lua.LString("UpdateAsync transform failed: " + err.Error()))
				return 2
			}
			v, users := L.Get(-2), L.Get(-1)
			L.Pop(2)
			if v != lua.LNil {
				h.keyWritten(name, key)
				if code := h.put(name, key, v, users); code != 0 {
					return fail(code)
				}
			}
			L.Push(lua.LTrue)
			L.Push(v)
			return 2
		}
		L.RaiseError("the harness has no DataStore method %s", method)
		return 0
	}))
}

// load returns a stored value as Lua, nil when absent.
func (h *harness) load(L *lua.LState, name, key string) lua.LValue {
	v := h.ds.get(name, key)
	if v == nil {
		return lua.LNil
	}
	return fromGo(L, v)
}

// put stores a value and the user ids it was written for; it returns a
// Roblox error code when the value cannot be stored.
func (h *harness) put(name, key string, v, users lua.LValue) int {
	if v.Type() == lua.LTFunction || v.Type() == lua.LTUserData {
		return 103
	}
	raw, err := json.Marshal(toGo(v))
	if err != nil {
		return 103
	}
	if len(raw) > dataStoreValueMax {
		return 105
	}
	var ids []int64
	if t, ok := users.(*lua.LTable); ok {
		t.ForEach(func(_, x lua.LValue) {
			if n, ok := x.(lua.LNumber); ok {
				ids = append(ids, int64(n))
			}
		})
	}
	b := h.ds
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.data[name] == nil {
		b.data[name] = map[string]string{}
		b.userIDs[name] = map[string][]int64{}
	}
	b.data[name][key] = string(raw)
	b.userIDs[name][key] = ids
	return 0
}

func (h *harness) keyWritten(store, key string) {
	full := store + "/" + key
	if last, ok := h.lastKeyWrite[full]; ok && h.now()-last < keyWriteSpacing-1e-6 {
		h.dsViolations = append(h.dsViolations, fmt.Sprintf("key %s written %.1fs after its last write", full, h.now()-last))
	}
	h.lastKeyWrite[full] = h.now()
}

// --- MessagingService ------------------------------------------------------

// namespace is the MessagingService namespace of a server: Studio
// sessions do not reach live servers, nor each other.
func (h *harness) namespace() string {
	if h.opts.studio {
		return fmt.Sprintf("studio-%p", h)
	}
	return "live"
}

func (h *harness) messagingService(goTable *lua.LTable) {
	L := h.L
	L.SetField(goTable, "subscribe", L.NewFunction(func(L *lua.LState) int {
		topic := L.CheckString(1)
		fn := L.CheckFunction(2)
		if h.subscribeFailures > 0 {
			h.subscribeFailures--
			L.RaiseError("MessagingService: Request failed. Subscription limit reached.")
		}
		h.ds.mu.Lock()
		h.ds.subs = append(h.ds.subs, subscription{h: h, topic: topic, fn: fn})
		h.ds.mu.Unlock()
		conn := L.NewTable()
		L.SetField(conn, "Disconnect", L.NewFunction(func(L *lua.LState) int {
			h.ds.mu.Lock()
			defer h.ds.mu.Unlock()
			for i, s := range h.ds.subs {
				if s.h == h && s.fn == fn {
					h.ds.subs = append(h.ds.subs[:i], h.ds.subs[i+1:]...)
					break
				}
			}
			return 0
		}))
		L.Push(conn)
		return 1
	}))
	L.SetField(goTable, "publish", L.NewFunction(func(L *lua.LState) int {
		topic := L.CheckString(1)
		data, err := json.Marshal(toGo(L.Get(2)))
		if err != nil {
			L.Push(lua.LFalse)
			L.Push(lua.LString("PublishAsync: the message cannot be serialised"))
			return 2
		}
		if len(data) > messageMaxBytes {
			L.Push(lua.LFalse)
			L.Push(lua.LString("PublishAsync: the message is over 1 kB"))
			return 2
		}
		h.published = append(h.published, publishedMessage{at: h.now(), topic: topic, data: string(data)})
		h.ds.mu.Lock()
		subs := append([]subscription(nil), h.ds.subs...)
		h.ds.mu.Unlock()
		for _, s := range subs {
			if s.topic != topic || s.h.stopped || s.h.namespace() != h.namespace() {
				continue
			}
			var v any
			_ = json.Unmarshal(data, &v)
			msg := s.h.L.NewTable()
			s.h.L.SetField(msg, "Data", fromGo(s.h.L, v))
			s.h.L.SetField(msg, "Sent", lua.LNumber(h.svc.clock.Now().Unix()))
			s.h.schedule(h.now()+messagingLatency, s.h.newThread(s.h.L, s.fn), []lua.LValue{msg})
		}
		L.Push(lua.LTrue)
		return 1
	}))
}

// --- Lua <-> Go values -------------------------------------------------------

// toGo converts a Lua value as Roblox's JSONEncode sees it: a table with
// keys 1..n is an array, an empty table is an empty array.
func toGo(v lua.LValue) any {
	switch x := v.(type) {
	case lua.LBool:
		return bool(x)
	case lua.LNumber:
		return float64(x)
	case lua.LString:
		return string(x)
	case *lua.LTable:
		n := x.MaxN()
		count := 0
		x.ForEach(func(lua.LValue, lua.LValue) { count++ })
		if count == n {
			out := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				out = append(out, toGo(x.RawGetInt(i)))
			}
			return out
		}
		out := map[string]any{}
		x.ForEach(func(k, val lua.LValue) {
			out[lua.LVAsString(k)] = toGo(val)
		})
		return out
	case *lua.LUserData:
		return "<userdata>"
	}
	return nil
}

// fromGo converts a decoded JSON value to Lua, null becoming nil.
func fromGo(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case json.Number:
		f, _ := x.Float64()
		return lua.LNumber(f)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []any:
		t := L.NewTable()
		for i, e := range x {
			t.RawSetInt(i+1, fromGo(L, e))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, e := range x {
			t.RawSetString(k, fromGo(L, e))
		}
		return t
	}
	return lua.LNil
}
