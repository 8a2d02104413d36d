package emulator

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/firestore"
	vkit "cloud.google.com/go/firestore/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// testSrv is the emulator shared by the tests of this package; each test
// works in its own project.
var testSrv *Server

func TestMain(m *testing.M) {
	srv, err := Start(Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start emulator:", err)
		os.Exit(1)
	}
	testSrv = srv
	code := m.Run()
	if err := srv.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close emulator:", err)
		code = 1
	}
	os.Exit(code)
}

var projectSeq atomic.Int64

var nonProjectChars = regexp.MustCompile(`[^a-z0-9-]+`)

// testProject returns a project id unique to this test.
func testProject(t *testing.T) string {
	t.Helper()
	p := nonProjectChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(p) > 40 {
		p = p[:40]
	}
	return fmt.Sprintf("%s-%d", p, projectSeq.Add(1))
}

// dial opens a plain-text connection to srv, as the client does for
// FIRESTORE_EMULATOR_HOST.
func dial(t *testing.T, srv *Server) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", srv.Addr(), err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// optionConn returns the client option that connects to the shared server.
func optionConn(tb testing.TB) option.ClientOption {
	tb.Helper()
	conn, err := grpc.NewClient(testSrv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("dial %s: %v", testSrv.Addr(), err)
	}
	tb.Cleanup(func() { conn.Close() })
	return option.WithGRPCConn(conn)
}

// newClientFor returns a Firestore client for project on srv.
func newClientFor(t *testing.T, srv *Server, project string) *firestore.Client {
	t.Helper()
	c, err := firestore.NewClient(context.Background(), project, option.WithGRPCConn(dial(t, srv)))
	if err != nil {
		t.Fatalf("firestore.NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newClient returns a client for a fresh project on the shared server.
func newClient(t *testing.T) (*firestore.Client, string) {
	t.Helper()
	p := testProject(t)
	return newClientFor(t, testSrv, p), p
}

// newGAPIC returns the generated client on the shared server.
func newGAPIC(t *testing.T) *vkit.Client {
	t.Helper()
	c, err := vkit.NewClient(context.Background(), option.WithGRPCConn(dial(t, testSrv)))
	if err != nil {
		t.Fatalf("apiv1.NewClient: %v", err)
	}
	return c
}

func dbPath(project string) string { return "projects/" + project + "/databases/(default)" }
