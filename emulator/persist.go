package emulator

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"
)

// On disk, DataDir holds snapshot.db (every retained document version, so a
// read_time of the last hour sees the same state across restarts) and
// wal-<gen>.log (commits since that snapshot; while a snapshot is being
// written, commits go to the next generation's log, so a crash then leaves
// the old snapshot and two logs, replayed in order). Both are sequences of records:
// a 4-byte little-endian payload length, a 4-byte CRC-32C of the payload, and
// the payload. A torn or corrupt record ends the replay of a log, so a crash
// mid-append loses only the commit that was never acknowledged. A commit is
// acknowledged only after its record is fsynced; concurrent commits share an
// fsync (group commit).
//
// Only documents and their versions are kept. Open transactions, their
// locks and read snapshots end with the process (a transaction id from
// before a restart answers "The referenced transaction has expired or is no
// longer valid.", as an expired one does), Listen streams must reconnect
// (their resume is answered with a full reset), and counters and injected
// faults start empty. A reset database keeps no versions from before the
// reset, with or without a restart.
const (
	snapshotFile  = "snapshot.db"
	snapshotMagic = "savesync-firestore-emulator-snapshot-v1\n"

	recCommit byte = 1
	recReset  byte = 2

	maxRecord = 256 << 20

	// minCompactBytes is the log size below which a running server does
	// not compact: a log is compacted into a new snapshot once it is larger
	// than both this and the last snapshot, so snapshot writes cost at most
	// as much as the log they replace.
	minCompactBytes = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// wal is the append-only commit log of a Server with a DataDir.
type wal struct {
	dir string
	s   *Server
	gen uint64

	mu       sync.Mutex
	cond     *sync.Cond
	f        *os.File
	pending  []byte
	appended uint64 // records appended to pending so far
	durable  uint64 // records fsynced
	flushing bool
	err      error

	minCompact int64 // minCompactBytes, smaller in tests
	logBytes   int64 // written to the current log
	snapBytes  int64 // size of the last snapshot
	compacting bool  // a snapshot is being written
	compactMu  sync.Mutex
	compactWG  sync.WaitGroup
}

// openWAL loads the snapshot and log in dir into s, compacts them into a new
// snapshot and opens a fresh log.
func openWAL(dir string, s *Server) (*wal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &wal{dir: dir, s: s, minCompact: minCompactBytes}
	w.cond = sync.NewCond(&w.mu)
	gen, err := w.loadSnapshot()
	if err != nil {
		return nil, err
	}
	w.gen = gen
	logs, err := w.logsFrom(gen)
	if err != nil {
		return nil, err
	}
	for _, path := range logs {
		if err := w.replayFile(path, false); err != nil {
			return nil, err
		}
	}
	// Versions that went past the retention while the server was down are
	// dropped before they are written again.
	s.gc(time.Now())
	if err := w.compact(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *wal) logPath(gen uint64) string {
	return filepath.Join(w.dir, fmt.Sprintf("wal-%d.log", gen))
}

// logs returns the generations of the logs in the data directory, in
// order.
func (w *wal) logs() ([]uint64, error) {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return nil, err
	}
	var gens []uint64
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "wal-") || !strings.HasSuffix(n, ".log") {
			continue
		}
		g, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, "wal-"), ".log"), 10, 64)
		if err == nil {
			gens = append(gens, g)
		}
	}
	slices.Sort(gens)
	return gens, nil
}

// logsFrom returns the paths of the logs of generation gen and later, in
// replay order.
func (w *wal) logsFrom(gen uint64) ([]string, error) {
	gens, err := w.logs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range gens {
		if g >= gen {
			out = append(out, w.logPath(g))
		}
	}
	return out, nil
}

// loadSnapshot replays snapshot.db and returns the generation of the log
// that follows it (0 when there is no snapshot).
func (w *wal) loadSnapshot() (uint64, error) {
	f, err := os.Open(filepath.Join(w.dir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	head := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:len(snapshotMagic)]) != snapshotMagic {
		return 0, fmt.Errorf("%s is not an emulator snapshot", f.Name())
	}
	gen := binary.LittleEndian.Uint64(head[len(snapshotMagic):])
	if err := w.replay(r, true); err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return gen, nil
}

func (w *wal) replayFile(path string, strict bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return w.replay(bufio.NewReaderSize(f, 1<<20), strict)
}

// replay applies records from r. A short or corrupt record ends a log
// quietly (a torn tail after a crash); in a snapshot (strict) it is an error.
func (w *wal) replay(r io.Reader, strict bool) error {
	var head [8]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if err == io.EOF || !strict {
				return nil
			}
			return fmt.Errorf("truncated record header: %w", err)
		}
		n := binary.LittleEndian.Uint32(head[:4])
		sum := binary.LittleEndian.Uint32(head[4:])
		if n > maxRecord {
			if strict {
				return fmt.Errorf("record of %d bytes is too large", n)
			}
			return nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			if strict {
				return fmt.Errorf("truncated record: %w", err)
			}
			return nil
		}
		if crc32.Checksum(payload, crcTable) != sum {
			if strict {
				return errors.New("record checksum mismatch")
			}
			return nil
		}
		if err := w.applyRecord(payload); err != nil {
			if strict {
				return err
			}
			return nil
		}
	}
}

func (w *wal) applyRecord(p []byte) error {
	if len(p) == 0 {
		return errors.New("empty record")
	}
	kind := p[0]
	p = p[1:]
	t, k := binary.Uvarint(p)
	if k <= 0 {
		return errors.New("bad record time")
	}
	p = p[k:]
	w.s.clock.observe(int64(t))
	switch kind {
	case recReset:
		name, _, err := readBytes(p)
		if err != nil {
			return err
		}
		db, err := w.s.database(string(name))
		if err != nil {
			return err
		}
		db.clearLocked()
		return nil
	case recCommit:
		count, k := binary.Uvarint(p)
		if k <= 0 {
			return errors.New("bad record count")
		}
		p = p[k:]
		for i := uint64(0); i < count; i++ {
			name, rest, err := readBytes(p)
			if err != nil {
				return err
			}
			body, rest, err := readBytes(rest)
			if err != nil {
				return err
			}
			p = rest
			var doc *firestorepb.Document
			if len(body) > 0 {
				doc = &firestorepb.Document{}
				if err := proto.Unmarshal(body, doc); err != nil {
					return err
				}
			}
			dbName, err := databaseOf(string(name))
			if err != nil {
				return err
			}
			db, err := w.s.database(dbName)
			if err != nil {
				return err
			}
			h := db.historyLocked(string(name))
			if n := len(h.versions); n > 0 && h.versions[n-1].t >= int64(t) {
				continue
			}
			// No field index exists yet: replay runs at start-up, and
			// queries build indexes on first use.
			var enc []byte
			if doc != nil {
				enc = append([]byte{}, body...)
			}
			h.push(int64(t), enc)
		}
		return nil
	}
	return fmt.Errorf("unknown record kind %d", kind)
}

func readBytes(p []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, errors.New("truncated field")
	}
	return p[k : k+int(n)], p[k+int(n):], nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// frame wraps a payload into a record.
func frame(b, payload []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, crcTable))
	return append(b, payload...)
}

func commitPayload(t int64, docs []docChange) []byte {
	p := []byte{recCommit}
	p = binary.AppendUvarint(p, uint64(t))
	p = binary.AppendUvarint(p, uint64(len(docs)))
	for _, c := range docs {
		p = appendBytes(p, []byte(c.name))
		body := c.enc
		if body == nil && c.new != nil {
			body, _ = proto.Marshal(c.new)
		}
		p = appendBytes(p, body)
	}
	return p
}

// versionPayload is the commit record of one stored version, reusing its
// encoding when it has one.
func versionPayload(name string, v version) []byte {
	p := []byte{recCommit}
	p = binary.AppendUvarint(p, uint64(v.t))
	p = binary.AppendUvarint(p, 1)
	p = appendBytes(p, []byte(name))
	return appendBytes(p, v.enc)
}

// appendCommit queues a commit record and returns the number to wait for
// with waitDurable. The caller holds the database's lock, so records of one
// database are logged in commit order.
func (w *wal) appendCommit(t int64, changes []docChange) uint64 {
	rec := frame(nil, commitPayload(t, changes))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, rec...)
	w.appended++
	return w.appended
}

// appendReset queues the reset of database name at time t.
func (w *wal) appendReset(name string, t int64) uint64 {
	p := []byte{recReset}
	p = binary.AppendUvarint(p, uint64(t))
	p = appendBytes(p, []byte(name))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, frame(nil, p)...)
	w.appended++
	return w.appended
}

// sync makes every queued record durable.
func (w *wal) sync() error {
	w.mu.Lock()
	n := w.appended
	w.mu.Unlock()
	return w.waitDurable(n)
}

// waitDurable returns once record lsn is on disk. One waiter writes and
// fsyncs everything queued while the others wait for it.
func (w *wal) waitDurable(lsn uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.durable < lsn {
		if w.err != nil {
			return w.err
		}
		if w.flushing {
			w.cond.Wait()
			continue
		}
		w.flushing = true
		buf, upto, f := w.pending, w.appended, w.f
		w.pending = nil
		w.mu.Unlock()
		var err error
		if f == nil {
			err = errors.New("log is closed")
		} else if _, err = f.Write(buf); err == nil {
			err = f.Sync()
		}
		w.mu.Lock()
		w.flushing = false
		if err != nil {
			w.err = err
		} else {
			w.durable = upto
			w.logBytes += int64(len(buf))
			if w.logBytes > max(w.minCompact, w.snapBytes) && !w.compacting {
				w.compacting = true
				w.compactWG.Add(1)
				go w.compactInBackground()
			}
		}
		w.cond.Broadcast()
	}
	return nil
}

// compactInBackground compacts while the server keeps committing.
func (w *wal) compactInBackground() {
	defer w.compactWG.Done()
	if err := w.compact(); err != nil {
		w.s.log.Error("compacting the data directory failed; the log keeps growing", "error", err.Error())
	}
	w.mu.Lock()
	w.compacting = false
	w.mu.Unlock()
}

// compact writes every retained version into a new snapshot and deletes
// the logs it replaces. It first switches commits to a new, empty log (the
// next generation), so commits go on while the snapshot is written: the
// snapshot then holds every commit of the old logs, and perhaps some of the
// new one, which a replay skips.
func (w *wal) compact() error {
	w.compactMu.Lock()
	defer w.compactMu.Unlock()
	next, err := w.switchLog()
	if err != nil {
		return err
	}
	tmp := filepath.Join(w.dir, snapshotFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	cw := &countingWriter{w: f}
	bw := bufio.NewWriterSize(cw, 1<<20)
	head := []byte(snapshotMagic)
	head = binary.LittleEndian.AppendUint64(head, next)
	_, err = bw.Write(head)
	if err == nil {
		err = w.writeVersions(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(w.dir, snapshotFile))
	}
	if err == nil {
		err = syncDir(w.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	w.mu.Lock()
	w.snapBytes = cw.n
	w.mu.Unlock()
	w.removeLogsBefore(next)
	return nil
}

// switchLog makes every queued record durable in the current log, opens
// the next generation's log and sends later records there. It returns the
// new generation.
func (w *wal) switchLog() (uint64, error) {
	w.mu.Lock()
	gen := w.gen
	w.mu.Unlock()
	next := gen + 1
	nf, err := os.OpenFile(w.logPath(next), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	if err := syncDir(w.dir); err != nil {
		_ = nf.Close()
		return 0, err
	}
	w.mu.Lock()
	for w.flushing {
		w.cond.Wait()
	}
	old := w.f
	w.f = nf
	w.gen = next
	w.logBytes = 0
	w.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return next, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeVersions writes every document version of every database, oldest
// first per document. Each database is locked only while its versions are
// copied (documents are never changed once stored), so commits wait for a
// copy of the version list, not for the encoding and the disk.
func (w *wal) writeVersions(out io.Writer) error {
	w.s.dbMu.Lock()
	dbs := make([]*database, 0, len(w.s.dbs))
	for _, db := range w.s.dbs {
		dbs = append(dbs, db)
	}
	w.s.dbMu.Unlock()
	sort.Slice(dbs, func(i, j int) bool { return dbs[i].name < dbs[j].name })
	type stored struct {
		name     string
		versions []version
	}
	var buf []byte
	for _, db := range dbs {
		db.mu.RLock()
		all := make([]stored, 0, len(db.docs))
		for n, h := range db.docs {
			all = append(all, stored{n, slices.Clone(h.versions)})
		}
		db.mu.RUnlock()
		sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
		for _, d := range all {
			for _, v := range d.versions {
				buf = frame(buf[:0], versionPayload(d.name, v))
				if _, err := out.Write(buf); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// removeLogsBefore deletes the logs older than generation gen.
func (w *wal) removeLogsBefore(gen uint64) {
	gens, err := w.logs()
	if err != nil {
		return
	}
	for _, g := range gens {
		if g < gen {
			_ = os.Remove(w.logPath(g))
		}
	}
}

// compactAndClose flushes the log, writes a snapshot and closes the files.
func (w *wal) compactAndClose() error {
	w.compactWG.Wait()
	err := w.compact()
	w.close()
	return err
}

func (w *wal) close() {
	w.mu.Lock()
	f := w.f
	w.f = nil
	if w.err == nil {
		w.err = errors.New("log is closed")
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	if f != nil {
		_ = f.Close()
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
