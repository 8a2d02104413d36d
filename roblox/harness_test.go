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
	httpPerMinute       = 500 // HttpService requests per server per minute
	bindToCloseSeconds  = 30  // what BindToClose may take
	keyWriteSpacing     = 1.0 // seconds the module keeps between writes of one DataStore key
	maxVirtualSteps     = 2_000_000
	defaultVirtualLimit = 120.0
)

// service is the real savesync started in-process over a fresh emulator
// project, behind a proxy that can fail requests.
type service struct {
	url     string
	store   *store.Store
	clients store.Clients
	proxy   *faultProxy
}

func newService(t *testing.T) *service {
	t.Helper()
	gin.SetMode(gin.TestMode)
	project := firestoretest.Project(t)
	clients := firestoretest.Dial(t, project)
	game := firestoretest.GameConfig(t)
	st := store.New(clients.Firestore, clients.GAPIC, project, game, store.Options{LeaseTTL: 90 * time.Second, LedgerRetention: 24 * time.Hour})
	keys, err := handlers.ParseServerKeys("1:" + handlers.HashKey(serverKey))
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(handlers.LimitBody(64 << 10))
	handlers.NewServerAPI(st, game, keys).Register(r)
	changes := store.NewChanges(st, store.ChangesOptions{PollInterval: 20 * time.Millisecond, MaxWait: 2 * time.Second})
	handlers.NewChangesAPI(changes).Register(r, keys.RequireServerKey())
	proxy := &faultProxy{next: r}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return &service{url: srv.URL, store: st, clients: clients, proxy: proxy}
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
// lost forwards the request first (it commits) and then answers 503 as if
// the response had been lost; otherwise the service is not reached.
type proxyFault struct {
	prefix string
	count  int
	lost   bool
}

// exchange is one request the service received (or was denied).
type exchange struct {
	method, path, key, body string
	status                  int
	replayed                bool
	reached                 bool
}

// fail installs a fault.
func (p *faultProxy) fail(prefix string, count int, lost bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &proxyFault{prefix: prefix, count: count, lost: lost})
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
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `{"error":{"code":"UNAVAILABLE","message":"the service is unavailable (injected)","details":{}}}`)
}

func (p *faultProxy) record(ex exchange) {
	p.mu.Lock()
	p.log = append(p.log, ex)
	p.mu.Unlock()
}

// dataStoreBackend is the universe's DataStore contents, shared by every
// game server of a test: name -> key -> JSON value.
type dataStoreBackend struct {
	mu   sync.Mutex
	data map[string]map[string]string
}

func newDataStoreBackend() *dataStoreBackend {
	return &dataStoreBackend{data: map[string]map[string]string{}}
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

// request is one HttpService:RequestAsync call, at a virtual time.
type request struct {
	at            float64
	method, url   string
	authorization string
}

// harness is one Roblox game server: a Lua state running the module with
// stand-ins for the Roblox services and a deterministic scheduler on
// virtual time.
type harness struct {
	t       *testing.T
	L       *lua.LState
	svc     *service
	jobID   string
	now     float64
	seq     int
	timers  wakeups
	errs    []string
	steps   int
	ds      *dataStoreBackend
	budgets map[string]float64
	budgetT float64

	requests     []request
	dsViolations []string
	dsCalls      map[string]int
	lastKeyWrite map[string]float64
	subscribers  map[string][]*lua.LFunction
	playerN      int
}

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

func (w wakeups) Len() int { return len(w) }
func (w wakeups) Less(i, j int) bool {
	if w[i].at != w[j].at {
		return w[i].at < w[j].at
	}
	return w[i].seq < w[j].seq
}
func (w wakeups) Swap(i, j int) { w[i], w[j] = w[j], w[i] }
func (w *wakeups) Push(x any)   { *w = append(*w, x.(*wakeup)) }
func (w *wakeups) Pop() any {
	old := *w
	x := old[len(old)-1]
	*w = old[:len(old)-1]
	return x
}

// newHarness starts a game server with job id jobID, sharing the
// DataStores in ds, and loads the module as the global SaveSync.
func newHarness(t *testing.T, svc *service, ds *dataStoreBackend, jobID string) *harness {
	t.Helper()
	h := &harness{
		t:            t,
		L:            lua.NewState(),
		svc:          svc,
		jobID:        jobID,
		ds:           ds,
		budgets:      map[string]float64{},
		dsCalls:      map[string]int{},
		lastKeyWrite: map[string]float64{},
		subscribers:  map[string][]*lua.LFunction{},
	}
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

// check fails the test on Lua errors in any thread and on broken Roblox
// limits: HTTP requests per minute, DataStore budgets and key spacing.
func (h *harness) check() {
	for _, e := range h.errs {
		h.t.Errorf("Lua error on %s: %s", h.jobID, e)
	}
	for _, v := range h.dsViolations {
		h.t.Errorf("DataStore limit broken on %s: %s", h.jobID, v)
	}
	for i := range h.requests {
		n := 0
		for j := i; j < len(h.requests) && h.requests[j].at < h.requests[i].at+60; j++ {
			n++
		}
		if n > httpPerMinute {
			h.t.Errorf("%d HTTP requests within a minute from %.1fs; Roblox allows %d", n, h.requests[i].at, httpPerMinute)
			break
		}
	}
	for _, r := range h.requests {
		if r.authorization != "Bearer "+serverKey {
			h.t.Errorf("request %s %s carried Authorization %q, want the Secret with its prefix", r.method, r.url, r.authorization)
			break
		}
	}
}

// prelude builds game, its services and the harness hooks in Lua over the
// Go stand-ins.
const prelude = `
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
local closeHandlers = {}
local services = {
	HttpService = __go.HttpService,
	DataStoreService = __go.DataStoreService,
	MessagingService = __go.MessagingService,
	Players = Players,
}
game = {JobId = __go.jobId, PlaceId = 4242}
function game:GetService(name)
	local s = services[name]
	if s == nil then error("the harness has no service " .. tostring(name)) end
	return s
end
function game:BindToClose(fn) table.insert(closeHandlers, fn) end
Enum = {DataStoreRequestType = {
	GetAsync = "GetAsync", SetIncrementAsync = "SetIncrementAsync",
	UpdateAsync = "UpdateAsync", GetSortedAsync = "GetSortedAsync",
}}
__harness = {}
function __harness.player(userId) return Players.list[userId] end
function __harness.addPlayer(userId)
	local p = {UserId = userId, Name = "Player" .. userId}
	Players.list[userId] = p
	__go.playerCount(1)
	Players.PlayerAdded:Fire(p)
	return p
end
function __harness.removePlayer(userId)
	local p = Players.list[userId]
	Players.list[userId] = nil
	__go.playerCount(-1)
	if p then Players.PlayerRemoving:Fire(p) end
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
	L.SetField(goTable, "HttpService", h.httpService())
	L.SetField(goTable, "DataStoreService", h.dataStoreService())
	L.SetField(goTable, "MessagingService", h.messagingService())
	L.SetField(goTable, "playerCount", L.NewFunction(func(L *lua.LState) int {
		h.refillBudgets()
		h.playerN += L.CheckInt(1)
		return 0
	}))
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
		h.schedule(h.now, h.newThread(L, fn), rest(L, 2))
		return 0
	}))
	L.SetField(taskLib, "delay", L.NewFunction(func(L *lua.LState) int {
		d := float64(L.CheckNumber(1))
		fn := L.CheckFunction(2)
		h.schedule(h.now+d, h.newThread(L, fn), rest(L, 3))
		return 0
	}))
	L.SetGlobal("task", taskLib)
	osLib := L.GetGlobal("os").(*lua.LTable)
	L.SetField(osLib, "clock", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(h.now))
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
	h.seq++
	heap.Push(&h.timers, &wakeup{at: at, seq: h.seq, th: th, args: args})
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
		th.waitAt = h.now
		h.seq++
		heap.Push(&h.timers, &wakeup{at: h.now + d, seq: h.seq, th: th, fromWait: true})
	default:
		th.done = true
		th.results = values
	}
}

// step runs the next due thread, at most up to limit; false when none is due.
func (h *harness) step(limit float64) bool {
	if h.timers.Len() == 0 || h.timers[0].at > limit {
		return false
	}
	w := heap.Pop(&h.timers).(*wakeup)
	if w.at > h.now {
		h.now = w.at
	}
	args := w.args
	if w.fromWait {
		args = []lua.LValue{lua.LNumber(h.now - w.th.waitAt)}
	}
	h.resume(h.L, w.th, args)
	return true
}

// runFor advances virtual time by d seconds, running every thread due.
func (h *harness) runFor(d float64) {
	h.t.Helper()
	limit := h.now + d
	for h.step(limit) {
	}
	h.now = limit
}

// runUntil advances virtual time until cond holds, for at most limit
// seconds; it fails the test when cond never holds.
func (h *harness) runUntil(what string, limit float64, cond func() bool) {
	h.t.Helper()
	end := h.now + limit
	for !cond() {
		if !h.step(end) {
			h.now = end
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

// close runs the game's BindToClose handlers as Roblox does at shutdown:
// the server stops after 30 seconds whatever they are doing. It reports
// how many virtual seconds they took and whether they finished.
func (h *harness) close() (float64, bool) {
	h.t.Helper()
	fn, err := h.L.LoadString("return __harness.close()")
	if err != nil {
		h.t.Fatal(err)
	}
	start := h.now
	th := h.newThread(h.L, fn)
	h.resume(h.L, th, nil)
	end := start + bindToCloseSeconds
	for !th.done && h.step(end) {
	}
	if !th.done {
		h.now = end
	}
	return h.now - start, th.done
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

// publish delivers a MessagingService message to this server's subscribers.
func (h *harness) publish(topic, data string) {
	for _, fn := range h.subscribers[topic] {
		msg := h.L.NewTable()
		h.L.SetField(msg, "Data", lua.LString(data))
		h.L.SetField(msg, "Sent", lua.LNumber(time.Now().Unix()))
		h.schedule(h.now, h.newThread(h.L, fn), []lua.LValue{msg})
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
	client := &http.Client{Timeout: 10 * time.Second}
	L.SetField(s, "GetSecret", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(2)
		if name != secretName {
			L.RaiseError("Can't find secret with given key")
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
	L.SetField(s, "RequestAsync", L.NewFunction(func(L *lua.LState) int {
		opts := L.CheckTable(2)
		method := lua.LVAsString(opts.RawGetString("Method"))
		if method == "" {
			method = "GET"
		}
		target := lua.LVAsString(opts.RawGetString("Url"))
		var body io.Reader
		if b, ok := opts.RawGetString("Body").(lua.LString); ok {
			if method == "GET" {
				L.RaiseError("Body cannot be sent with a GET request")
			}
			body = strings.NewReader(string(b))
		}
		req, err := http.NewRequest(method, target, body)
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
		h.requests = append(h.requests, request{at: h.now, method: method, url: target, authorization: req.Header.Get("Authorization")})
		resp, err := client.Do(req)
		if err != nil {
			L.RaiseError("HttpError: ConnectFail")
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			L.RaiseError("HttpError: NetFail")
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
		L.Push(out)
		return 1
	}))
	return s
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
			b = math.Min(3*rate, b+(h.now-h.budgetT)*rate/60)
		}
		h.budgets[kind] = b
	}
	h.budgetT = h.now
}

// spend takes one request of each kind from the budgets and records a
// violation when one is empty (Roblox would queue or fail the request).
func (h *harness) spend(what string, kinds ...string) {
	h.refillBudgets()
	for _, k := range kinds {
		if h.budgets[k] < 1 {
			h.dsViolations = append(h.dsViolations, fmt.Sprintf("%s with an empty %s budget at %.1fs", what, k, h.now))
		}
		h.budgets[k]--
		h.dsCalls[k]++
	}
}

func (h *harness) keyWritten(store, key string) {
	full := store + "/" + key
	if last, ok := h.lastKeyWrite[full]; ok && h.now-last < keyWriteSpacing {
		h.dsViolations = append(h.dsViolations, fmt.Sprintf("key %s written %.1fs after its last write", full, h.now-last))
	}
	h.lastKeyWrite[full] = h.now
}

func (h *harness) dataStoreService() *lua.LTable {
	L := h.L
	s := L.NewTable()
	L.SetField(s, "GetRequestBudgetForRequestType", L.NewFunction(func(L *lua.LState) int {
		h.refillBudgets()
		L.Push(lua.LNumber(math.Floor(h.budgets[L.CheckString(2)])))
		return 1
	}))
	L.SetField(s, "GetDataStore", L.NewFunction(func(L *lua.LState) int {
		L.Push(h.dataStore(L, L.CheckString(2)))
		return 1
	}))
	return s
}

func (h *harness) dataStore(L *lua.LState, name string) *lua.LTable {
	ds := L.NewTable()
	b := h.ds
	load := func(L *lua.LState, key string) lua.LValue {
		v := b.get(name, key)
		if v == nil {
			return lua.LNil
		}
		return fromGo(L, v)
	}
	put := func(L *lua.LState, key string, v lua.LValue) {
		raw, err := json.Marshal(toGo(v))
		if err != nil {
			L.RaiseError("value cannot be stored: %v", err)
		}
		if len(raw) > 4<<20 {
			L.RaiseError("value is over 4 MB")
		}
		b.mu.Lock()
		if b.data[name] == nil {
			b.data[name] = map[string]string{}
		}
		b.data[name][key] = string(raw)
		b.mu.Unlock()
	}
	checkKey := func(L *lua.LState, key string) {
		if key == "" || len(key) > 50 {
			L.RaiseError("DataStore key %q must be 1 to 50 characters", key)
		}
	}
	L.SetField(ds, "GetAsync", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(2)
		checkKey(L, key)
		h.spend("GetAsync "+name+"/"+key, "GetAsync")
		L.Push(load(L, key))
		return 1
	}))
	L.SetField(ds, "SetAsync", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(2)
		checkKey(L, key)
		h.spend("SetAsync "+name+"/"+key, "SetIncrementAsync")
		h.keyWritten(name, key)
		put(L, key, L.Get(3))
		return 0
	}))
	L.SetField(ds, "RemoveAsync", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(2)
		checkKey(L, key)
		h.spend("RemoveAsync "+name+"/"+key, "SetIncrementAsync")
		h.keyWritten(name, key)
		old := load(L, key)
		b.mu.Lock()
		delete(b.data[name], key)
		b.mu.Unlock()
		L.Push(old)
		return 1
	}))
	L.SetField(ds, "UpdateAsync", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(2)
		checkKey(L, key)
		fn := L.CheckFunction(3)
		h.spend("UpdateAsync "+name+"/"+key, "GetAsync", "SetIncrementAsync")
		if err := L.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}, load(L, key)); err != nil {
			L.RaiseError("UpdateAsync transform failed: %v", err)
		}
		v := L.Get(-1)
		L.Pop(1)
		if v != lua.LNil {
			h.keyWritten(name, key)
			put(L, key, v)
		}
		L.Push(v)
		return 1
	}))
	return ds
}

// --- MessagingService ------------------------------------------------------

func (h *harness) messagingService() *lua.LTable {
	L := h.L
	s := L.NewTable()
	L.SetField(s, "SubscribeAsync", L.NewFunction(func(L *lua.LState) int {
		topic := L.CheckString(2)
		fn := L.CheckFunction(3)
		h.subscribers[topic] = append(h.subscribers[topic], fn)
		conn := L.NewTable()
		L.SetField(conn, "Disconnect", L.NewFunction(func(L *lua.LState) int { return 0 }))
		L.Push(conn)
		return 1
	}))
	L.SetField(s, "PublishAsync", L.NewFunction(func(L *lua.LState) int {
		data, err := json.Marshal(toGo(L.Get(3)))
		if err != nil {
			L.RaiseError("PublishAsync: %v", err)
		}
		text := string(data)
		if str, ok := L.Get(3).(lua.LString); ok {
			text = string(str)
		}
		h.publish(L.CheckString(2), text)
		return 0
	}))
	return s
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
