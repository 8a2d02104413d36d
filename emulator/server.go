// Package emulator is a Firestore server speaking google.firestore.v1 over
// gRPC, so the real cloud.google.com/go/firestore client runs against it
// unchanged through FIRESTORE_EMULATOR_HOST. It keeps Firestore's observable
// behaviour (pessimistic serializable transactions, preconditions,
// transforms, point-in-time reads, listeners) and adds counters, fault
// injection and optional on-disk persistence for tests and local runs.
package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc"
)

// Options configures a Server.
type Options struct {
	// Addr is the host:port to listen on; default "127.0.0.1:0".
	Addr string
	// DataDir keeps the data on disk across restarts; "" keeps it in memory.
	DataDir string
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// TransactionIdleTimeout expires transactions idle for this long and
	// releases their locks; 0 means Firestore's 60 s.
	TransactionIdleTimeout time.Duration
	// TransactionMaxLifetime expires transactions open for this long, busy
	// or not, and releases their locks; 0 means Firestore's 270 s.
	TransactionMaxLifetime time.Duration
	// LockWaitTimeout aborts a transaction (ABORTED, which the client
	// retries) whose request waited this long for a lock; 0 means 20 s.
	LockWaitTimeout time.Duration
	// Latency is the median delay added to every RPC, so performance runs
	// resemble Cloud Firestore's round trips; 0 adds none. One delay is
	// max(0, Latency − Jitter·ln 2) plus an exponential draw of mean Jitter:
	// its median is Latency and its p99 Latency + 3.91·Jitter (16ms with
	// 4.35ms give Cloud Firestore's in-region p50 16 ms and p99 33 ms). A
	// unary call waits once before it is handled, a streaming call once when
	// its first request arrives. SetLatency and PUT /emulator/v1/latency
	// change it at run time. At most MaxLatency.
	Latency time.Duration
	// Jitter is the mean of the delay's exponential tail (see Latency); 0
	// makes every delay exactly Latency. At most MaxLatency.
	Jitter time.Duration
	// Indexes, when set, makes queries and aggregations need the indexes
	// Cloud Firestore would need: automatic single-field indexes (as
	// changed by its field overrides) and its composite indexes. A query
	// without its index fails with FAILED_PRECONDITION and the link that
	// creates the index. nil accepts every query, as Google's emulator does.
	Indexes *IndexConfig
	// VersionRetention is how long old document versions stay readable
	// through read_time; 0 means Cloud Firestore's hour
	// (DefaultVersionRetention), and less than MinVersionRetention is
	// refused. A shorter one bounds the memory and data directory of long
	// runs with many writes: every version of the window is kept.
	VersionRetention time.Duration
}

// Server is a running emulator. It serves gRPC (google.firestore.v1), its
// REST/JSON mapping (/v1/...) and a small HTTP API (reset, counters, faults,
// latency) on one port.
type Server struct {
	firestorepb.UnimplementedFirestoreServer

	log         *slog.Logger
	idleTimeout time.Duration
	maxLifetime time.Duration
	lockWait    time.Duration
	retention   time.Duration

	ln       net.Listener
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	grpcLn   *chanListener
	httpLn   *chanListener
	wg       sync.WaitGroup
	stop     chan struct{}
	closeErr error
	closed   sync.Once

	clock clock

	dbMu sync.Mutex
	dbs  map[string]*database

	txs      transactions
	counters counterSet
	faults   faultSet
	latency  latencyModel

	wal *wal // nil without a DataDir

	indexes *indexCatalog // nil without Options.Indexes
}

// Start starts a server with opts and returns once it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:         log,
		idleTimeout: opts.TransactionIdleTimeout,
		maxLifetime: opts.TransactionMaxLifetime,
		lockWait:    opts.LockWaitTimeout,
		retention:   opts.VersionRetention,
		stop:        make(chan struct{}),
		dbs:         map[string]*database{},
		txs:         transactions{byID: map[string]*txn{}},
		counters:    counterSet{byProj: map[string]*Counters{}},
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = defaultTransactionIdleTimeout
	}
	if s.maxLifetime <= 0 {
		s.maxLifetime = defaultTransactionMaxLifetime
	}
	switch {
	case s.retention == 0:
		s.retention = DefaultVersionRetention
	case s.retention < MinVersionRetention:
		return nil, fmt.Errorf("emulator: version retention %s is below the minimum %s", opts.VersionRetention, MinVersionRetention)
	}
	s.latency.init()
	if err := s.SetLatency(opts.Latency, opts.Jitter); err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	if opts.Indexes != nil {
		cat, err := compileIndexes(opts.Indexes)
		if err != nil {
			return nil, fmt.Errorf("emulator: indexes: %w", err)
		}
		s.indexes = cat
	}
	if opts.DataDir != "" {
		w, err := openWAL(opts.DataDir, s)
		if err != nil {
			return nil, fmt.Errorf("emulator: open data dir %s: %w", opts.DataDir, err)
		}
		s.wal = w
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		if s.wal != nil {
			s.wal.close()
		}
		return nil, fmt.Errorf("emulator: listen on %s: %w", opts.Addr, err)
	}
	s.ln = ln
	s.grpcLn = newChanListener(ln.Addr())
	s.httpLn = newChanListener(ln.Addr())
	s.grpcSrv = grpc.NewServer(
		// The latency model comes first, so a call failed by an injected
		// fault still waits its round trip.
		grpc.ChainUnaryInterceptor(s.latencyUnary, s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.latencyStream, s.streamInterceptor),
		// A little above MaxRequestBytes, so the interceptors see an
		// oversized request and answer INVALID_ARGUMENT like Firestore.
		grpc.MaxRecvMsgSize(maxRequestBytes+1<<20),
		grpc.MaxSendMsgSize(64<<20),
	)
	firestorepb.RegisterFirestoreServer(s.grpcSrv, s)
	s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}

	s.wg.Add(4)
	go func() { defer s.wg.Done(); _ = s.grpcSrv.Serve(s.grpcLn) }()
	go func() { defer s.wg.Done(); _ = s.httpSrv.Serve(s.httpLn) }()
	go func() { defer s.wg.Done(); s.acceptLoop() }()
	go func() { defer s.wg.Done(); s.maintain() }()
	log.Info("firestore emulator listening", "addr", s.Addr(), "dataDir", opts.DataDir)
	return s, nil
}

// Addr returns "host:port", the value for FIRESTORE_EMULATOR_HOST.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, ends open streams and, with a DataDir, writes a
// compacted snapshot of the data.
func (s *Server) Close() error {
	s.closed.Do(func() {
		close(s.stop)
		_ = s.ln.Close()
		s.grpcSrv.Stop()
		_ = s.httpSrv.Close()
		s.grpcLn.Close()
		s.httpLn.Close()
		s.wg.Wait()
		if s.wal != nil {
			s.gc(time.Now())
			s.closeErr = s.wal.compactAndClose()
		}
	})
	return s.closeErr
}

// ResetProject deletes every document of every database of project and ends
// its open transactions. Other projects are untouched.
func (s *Server) ResetProject(project string) {
	s.dbMu.Lock()
	var dbs []*database
	for _, db := range s.dbs {
		if db.project == project {
			dbs = append(dbs, db)
		}
	}
	s.dbMu.Unlock()
	for _, db := range dbs {
		s.resetDatabase(db)
	}
}

// resetDatabase empties db, ends its transactions and tells its listeners.
func (s *Server) resetDatabase(db *database) {
	s.txs.mu.Lock()
	var open []*txn
	for _, t := range s.txs.byID {
		if t.db == db && t.ended.IsZero() {
			open = append(open, t)
		}
	}
	s.txs.mu.Unlock()
	for _, t := range open {
		s.endTxn(t, abortReset)
	}
	db.mu.Lock()
	t := s.clock.commitTime()
	var changes []docChange
	for name, h := range db.docs {
		if old := h.latest(); old != nil {
			changes = append(changes, docChange{name: name, old: old})
		}
	}
	db.clearLocked()
	if s.wal != nil {
		s.wal.appendReset(db.name, t)
	}
	if len(changes) > 0 {
		db.notifyLocked(changes, t)
	}
	db.mu.Unlock()
	if s.wal != nil {
		if err := s.wal.sync(); err != nil {
			s.log.Error("persist reset", "database", db.name, "err", err)
		}
	}
}

// database returns the database with the given name
// ("projects/p/databases/d"), creating it on first use.
func (s *Server) database(name string) (*database, error) {
	project, err := parseDatabase(name)
	if err != nil {
		return nil, err
	}
	return s.databaseFor(name, project), nil
}

func (s *Server) databaseFor(name, project string) *database {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	db := s.dbs[name]
	if db == nil {
		db = newDatabase(name, project)
		db.locks.onAbort = func(*lockOwner) { s.counters.addAbort(project) }
		db.locks.waitTimeout = s.lockWait
		s.dbs[name] = db
	}
	return db
}

// maintain expires idle transactions and drops old versions.
func (s *Server) maintain() {
	every := min(time.Second, s.idleTimeout/4, s.maxLifetime/4)
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastGC := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			s.sweepTxns(now)
			if now.Sub(lastGC) >= time.Minute {
				lastGC = now
				s.gc(now)
			}
		}
	}
}

func (s *Server) gc(now time.Time) {
	cutoff := now.Add(-s.retention).UnixMicro()
	s.dbMu.Lock()
	dbs := make([]*database, 0, len(s.dbs))
	for _, db := range s.dbs {
		dbs = append(dbs, db)
	}
	s.dbMu.Unlock()
	for _, db := range dbs {
		db.mu.Lock()
		db.gcLocked(cutoff)
		db.mu.Unlock()
	}
}

// http2Preface starts every HTTP/2 connection; gRPC clients send it at once.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// acceptLoop hands HTTP/2 connections to the gRPC server (its native path is
// faster than grpc.Server.ServeHTTP) and everything else to net/http.
func (s *Server) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go s.route(c)
	}
}

func (s *Server) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 0, len(http2Preface))
	isH2 := true
	for len(buf) < len(http2Preface) {
		tmp := make([]byte, len(http2Preface)-len(buf))
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if !strings.HasPrefix(http2Preface, string(buf)) {
			isH2 = false
			break
		}
		if err != nil {
			_ = c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(buf), c)}
	target := s.httpLn
	if isH2 {
		target = s.grpcLn
	}
	if !target.deliver(pc) {
		_ = c.Close()
	}
}

// prefixConn replays the bytes read while sniffing the protocol.
type prefixConn struct {
	net.Conn
	r io.Reader
}

// Read returns the sniffed bytes first, then the connection's.
func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// chanListener is a net.Listener fed by the accept loop.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next routed connection.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; routed connections are closed by their servers.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the address of the shared listener.
func (l *chanListener) Addr() net.Addr { return l.addr }

// httpHandler serves the emulator's REST endpoints.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "Ok\n")
	})
	mux.HandleFunc("DELETE /emulator/v1/projects/{project}/databases/{database}/documents", func(w http.ResponseWriter, r *http.Request) {
		name := "projects/" + r.PathValue("project") + "/databases/" + r.PathValue("database")
		db, err := s.database(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.resetDatabase(db)
		writeJSON(w, map[string]any{})
	})
	mux.HandleFunc("/v1/", s.serveREST)
	mux.HandleFunc("GET /emulator/v1/counters", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Counters(r.URL.Query().Get("project")))
	})
	mux.HandleFunc("DELETE /emulator/v1/counters", func(w http.ResponseWriter, r *http.Request) {
		s.ResetCounters()
		writeJSON(w, map[string]any{})
	})
	mux.HandleFunc("PUT /emulator/v1/faults", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var faults []Fault
		if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
			var f Fault
			err = json.Unmarshal(t, &f)
			faults = append(faults, f)
		} else {
			err = json.Unmarshal(body, &faults)
		}
		if err != nil {
			http.Error(w, "fault list: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, f := range faults {
			if f.Method == "" {
				http.Error(w, "fault list: every fault needs a method", http.StatusBadRequest)
				return
			}
		}
		for _, f := range faults {
			s.InjectFault(f)
		}
		writeJSON(w, map[string]any{"added": len(faults)})
	})
	mux.HandleFunc("GET /emulator/v1/latency", s.getLatency)
	mux.HandleFunc("PUT /emulator/v1/latency", s.putLatency)
	mux.HandleFunc("DELETE /emulator/v1/latency", s.deleteLatency)
	mux.HandleFunc("DELETE /emulator/v1/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		writeJSON(w, map[string]any{})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
