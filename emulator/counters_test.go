package emulator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCountersPerProject(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	doc := c.Doc("cnt/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAll(ctx, []*firestore.DocumentRef{doc, c.Doc("cnt/missing")}); err != nil {
		t.Fatal(err)
	}
	err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := tx.Get(doc); err != nil {
			return err
		}
		if err := tx.Update(doc, []firestore.Update{{Path: "n", Value: firestore.Increment(1)}}); err != nil {
			return err
		}
		return tx.Create(c.Doc("cnt/ledger1"), map[string]any{"d": 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Counters{
		RPCs:           map[string]int64{"Commit": 2, "BatchGetDocuments": 2, "BeginTransaction": 1},
		DocumentReads:  3,
		DocumentWrites: 3,
	}
	if diff := cmp.Diff(want, testSrv.Counters(p)); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	resp, err := http.Get("http://" + testSrv.Addr() + "/emulator/v1/counters?project=" + p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got Counters
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters over HTTP (-want +got):\n%s", diff)
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("code", func(t *testing.T) {
		c, p := newClient(t)
		testSrv.InjectFault(Fault{Project: p, Method: "Commit", Code: codes.PermissionDenied, Count: 2})
		for i := 0; i < 2; i++ {
			if _, err := c.Doc("f/a").Set(ctx, map[string]any{"n": 1}); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("call %d: %v, want PermissionDenied", i, err)
			}
		}
		if _, err := c.Doc("f/a").Set(ctx, map[string]any{"n": 1}); err != nil {
			t.Fatalf("after the fault is used up: %v", err)
		}
	})
	t.Run("other project unaffected", func(t *testing.T) {
		c, _ := newClient(t)
		testSrv.InjectFault(Fault{Project: "some-other-project", Method: "Commit", Code: codes.Internal})
		defer testSrv.ClearFaults()
		if _, err := c.Doc("f/a").Set(ctx, map[string]any{"n": 1}); err != nil {
			t.Fatalf("Set: %v", err)
		}
	})
	t.Run("latency", func(t *testing.T) {
		c, p := newClient(t)
		testSrv.InjectFault(Fault{Project: p, Method: "BatchGetDocuments", Latency: 150 * time.Millisecond})
		start := time.Now()
		if _, err := c.Doc("f/a").Get(ctx); status.Code(err) != codes.NotFound {
			t.Fatalf("Get: %v", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("Get took %v, want at least the injected 150ms", d)
		}
	})
	t.Run("drop response", func(t *testing.T) {
		c, p := newClient(t)
		testSrv.InjectFault(Fault{Project: p, Method: "Commit", DropResponse: true})
		// The commit happens, the answer is lost, the client's retry of
		// Commit then finds the document already there.
		_, err := c.Doc("f/a").Create(ctx, map[string]any{"n": 1})
		if code := status.Code(err); code != codes.AlreadyExists && code != codes.Unavailable {
			t.Fatalf("Create: %v, want AlreadyExists (retried) or Unavailable", err)
		}
		if _, err := c.Doc("f/a").Get(ctx); err != nil {
			t.Errorf("the dropped commit was not applied: %v", err)
		}
	})
	t.Run("aborted in transaction is retried and counted", func(t *testing.T) {
		c, p := newClient(t)
		testSrv.InjectFault(Fault{Project: p, Method: "Commit", Code: codes.Aborted})
		attempts := 0
		err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			attempts++
			return tx.Set(c.Doc("f/t"), map[string]any{"n": attempts})
		})
		if err != nil {
			t.Fatal(err)
		}
		if attempts != 2 {
			t.Errorf("attempts = %d, want 2", attempts)
		}
		if a := testSrv.Counters(p).Aborts; a != 1 {
			t.Errorf("aborts = %d, want 1", a)
		}
	})
	t.Run("over HTTP", func(t *testing.T) {
		c, p := newClient(t)
		body := `[{"project":"` + p + `","method":"Commit","code":"FAILED_PRECONDITION","latency":"10ms"}]`
		req, _ := http.NewRequest(http.MethodPut, "http://"+testSrv.Addr()+"/emulator/v1/faults", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT faults: status %d", resp.StatusCode)
		}
		if _, err := c.Doc("f/a").Set(ctx, map[string]any{"n": 1}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Set: %v, want FailedPrecondition", err)
		}
		testSrv.InjectFault(Fault{Project: p, Method: "Commit", Code: codes.Internal})
		req, _ = http.NewRequest(http.MethodDelete, "http://"+testSrv.Addr()+"/emulator/v1/faults", nil)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if _, err := c.Doc("f/a").Set(ctx, map[string]any{"n": 1}); err != nil {
			t.Errorf("Set after DELETE faults: %v", err)
		}
	})
}
