package emulator

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultVersionRetention is how long old document versions stay readable
// through read_time, as in Cloud Firestore (without point-in-time recovery).
const DefaultVersionRetention = time.Hour

// MinVersionRetention is the shortest Options.VersionRetention accepted:
// Cloud Firestore's transactions and paged queries read at times up to a
// minute old.
const MinVersionRetention = time.Minute

// version is one state of a document at time t (microseconds since the
// Unix epoch), kept encoded (proto bytes): a decoded document takes many
// times the memory, and most stored documents (ledger entries, old
// versions) are rarely read again. A version with no bytes is a deletion.
type version struct {
	t   int64
	enc []byte
}

// document returns the version's document, decoded afresh, or nil for a
// deletion.
func (v version) document() *firestorepb.Document {
	if v.enc == nil {
		return nil
	}
	d := &firestorepb.Document{}
	if err := proto.Unmarshal(v.enc, d); err != nil {
		// The bytes came from proto.Marshal of a valid document.
		panic(fmt.Sprintf("emulator: stored version does not decode: %v", err))
	}
	return d
}

// encodeDocument returns the stored form of doc (nil for a deletion).
func encodeDocument(doc *firestorepb.Document) []byte {
	if doc == nil {
		return nil
	}
	enc, err := proto.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("emulator: document does not encode: %v", err))
	}
	if enc == nil {
		enc = []byte{}
	}
	return enc
}

// history holds the versions of one document, oldest first.
type history struct {
	versions []version
}

// at returns the document as of time t (0 = latest), or nil when it did not
// exist then.
func (h *history) at(t int64) *firestorepb.Document {
	if h == nil || len(h.versions) == 0 {
		return nil
	}
	if t == 0 {
		return h.versions[len(h.versions)-1].document()
	}
	for i := len(h.versions) - 1; i >= 0; i-- {
		if h.versions[i].t <= t {
			return h.versions[i].document()
		}
	}
	return nil
}

// latest returns the current document or nil.
func (h *history) latest() *firestorepb.Document { return h.at(0) }

// push appends the document's state at time t, in its stored form (nil =
// deleted).
func (h *history) push(t int64, enc []byte) {
	h.versions = append(h.versions, version{t: t, enc: enc})
}

// trim drops versions that no read_time within the retention can see: every
// version older than the newest one at or before cutoff.
func (h *history) trim(cutoff int64) {
	keep := 0
	for i := len(h.versions) - 1; i >= 0; i-- {
		if h.versions[i].t <= cutoff {
			keep = i
			break
		}
	}
	if keep > 0 {
		h.versions = append([]version(nil), h.versions[keep:]...)
	}
}

// database is one Firestore database ("projects/p/databases/d"): its
// documents with their histories, its lock table and its listeners.
type database struct {
	name    string // projects/{p}/databases/{d}
	root    string // name + "/documents"
	project string

	mu    sync.RWMutex
	docs  map[string]*history
	colls *collectionIndex // docs by collection, and field indexes

	locks *lockTable

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}
}

func newDatabase(name, project string) *database {
	return &database{
		name:     name,
		root:     name + "/documents",
		project:  project,
		docs:     map[string]*history{},
		colls:    newCollectionIndex(),
		locks:    newLockTable(),
		watchers: map[*watcher]struct{}{},
	}
}

// get returns the document name as of time t (0 = latest), nil when missing.
// The caller holds db.mu.
func (db *database) getLocked(name string, t int64) *firestorepb.Document {
	return db.docs[name].at(t)
}

// gcLocked removes versions older than the retention and histories that hold
// only an old deletion. The caller holds db.mu for writing.
func (db *database) gcLocked(cutoff int64) {
	for name, h := range db.docs {
		h.trim(cutoff)
		if len(h.versions) == 1 && h.versions[0].enc == nil && h.versions[0].t <= cutoff {
			db.dropLocked(name)
		}
	}
}

// clock hands out commit and read times in microseconds: commit times are
// strictly increasing across the whole server, and a read time is never later
// than the next commit time.
type clock struct {
	mu   sync.Mutex
	last int64
}

// commitTime returns a new time, later than every time handed out before.
func (c *clock) commitTime() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UnixMicro()
	if now <= c.last {
		now = c.last + 1
	}
	c.last = now
	return now
}

// readTime returns a time at least as late as every commit time handed out
// so far; every later commit time is after it.
func (c *clock) readTime() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UnixMicro()
	if now < c.last {
		now = c.last
	}
	c.last = now
	return now
}

// observe moves the clock past t (used when replaying persisted commits).
func (c *clock) observe(t int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t > c.last {
		c.last = t
	}
}

func tsMicros(t int64) *timestamppb.Timestamp {
	return &timestamppb.Timestamp{Seconds: t / 1e6, Nanos: int32(t%1e6) * 1000}
}

func microsOf(ts *timestamppb.Timestamp) int64 {
	return ts.GetSeconds()*1e6 + int64(ts.GetNanos())/1000
}

// parseDatabase checks that name is "projects/{p}/databases/{d}" and returns
// the project.
func parseDatabase(name string) (project string, err error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != "databases" || parts[3] == "" {
		return "", status.Errorf(codes.InvalidArgument, "invalid database name %q: want projects/{project_id}/databases/{database_id}", name)
	}
	return parts[1], nil
}

// databaseOf returns the database part of a resource name under it
// ("projects/p/databases/d/documents/..." -> "projects/p/databases/d").
func databaseOf(resource string) (string, error) {
	parts := strings.SplitN(resource, "/", 6)
	if len(parts) < 5 || parts[0] != "projects" || parts[1] == "" || parts[2] != "databases" || parts[3] == "" || parts[4] != "documents" {
		return "", status.Errorf(codes.InvalidArgument, "invalid resource name %q: want projects/{project_id}/databases/{database_id}/documents[/...]", resource)
	}
	return strings.Join(parts[:4], "/"), nil
}

// collectionOf splits a document name into its parent (database root or
// document) and its collection id.
func collectionOf(docName string) (parent, collectionID string) {
	i := strings.LastIndexByte(docName, '/')
	if i < 0 {
		return "", ""
	}
	coll := docName[:i]
	j := strings.LastIndexByte(coll, '/')
	if j < 0 {
		return "", coll
	}
	return coll[:j], coll[j+1:]
}
