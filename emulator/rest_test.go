package emulator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
)

// restClient sends REST requests to the shared server as a curl user
// would, with the emulators' admin token.
type restClient struct {
	t    *testing.T
	base string // http://host:port/v1/
}

func newRESTClient(t *testing.T) *restClient {
	t.Helper()
	return &restClient{t: t, base: "http://" + testSrv.Addr() + "/v1/"}
}

// do sends one request and returns the status and the decoded JSON body.
func (c *restClient) do(method, path, body string) (int, any) {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer owner")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		c.t.Fatalf("%s %s: body %q is not JSON: %v", method, path, b, err)
	}
	return resp.StatusCode, v
}

// ok sends a request that must answer 200 and returns its JSON.
func (c *restClient) ok(method, path, body string) any {
	c.t.Helper()
	code, v := c.do(method, path, body)
	if code != http.StatusOK {
		c.t.Fatalf("%s %s: status %d %v, want 200", method, path, code, v)
	}
	return v
}

// restErr is the part of Google's JSON error object the tests compare.
type restErr struct {
	HTTP   int
	Code   float64
	Status string
}

// errorOf extracts the error object of a response (unwrapping the array of
// a streaming method) and fails when it has no message.
func errorOf(t *testing.T, httpStatus int, v any) restErr {
	t.Helper()
	if a, ok := v.([]any); ok && len(a) == 1 {
		v = a[0]
	}
	m, _ := v.(map[string]any)
	e, _ := m["error"].(map[string]any)
	if e == nil {
		t.Fatalf("response %v has no error object", v)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error %v has no message", e)
	}
	code, _ := e["code"].(float64)
	st, _ := e["status"].(string)
	return restErr{HTTP: httpStatus, Code: code, Status: st}
}

// field returns the value at a path of maps and array indexes in JSON.
func jsonField(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// TestRESTMethods calls every REST method of google.firestore.v1.Firestore
// through plain HTTP and checks that the gRPC client sees the same data.
func TestRESTMethods(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	rc := newRESTClient(t)
	db := "projects/" + p + "/databases/(default)"
	docs := db + "/documents"

	// createDocument, with and without documentId, and a second create.
	created := rc.ok("POST", docs+"/players?documentId=ann", `{"fields":{"name":{"stringValue":"ann"},"score":{"integerValue":"10"}}}`)
	if diff := cmp.Diff(docs+"/players/ann", jsonField(created, "name")); diff != "" {
		t.Errorf("createDocument name (-want +got):\n%s", diff)
	}
	if jsonField(created, "createTime") == nil || jsonField(created, "updateTime") == nil {
		t.Errorf("createDocument %v: want createTime and updateTime", created)
	}
	auto := rc.ok("POST", docs+"/players", `{"fields":{"name":{"stringValue":"auto"}}}`)
	if n, _ := jsonField(auto, "name").(string); len(n) != len(docs+"/players/")+20 {
		t.Errorf("createDocument without documentId named %q, want a 20-character id", n)
	}
	code, v := rc.do("POST", docs+"/players?documentId=ann", `{}`)
	if diff := cmp.Diff(restErr{409, 409, "ALREADY_EXISTS"}, errorOf(t, code, v)); diff != "" {
		t.Errorf("second createDocument (-want +got):\n%s", diff)
	}
	rc.ok("POST", docs+"/players/ann/items?documentId=sword", `{"fields":{"n":{"integerValue":"1"}}}`)

	// getDocument with a mask, a missing document, and the gRPC client's view.
	got := rc.ok("GET", docs+"/players/ann?mask.fieldPaths=score", "")
	if diff := cmp.Diff(map[string]any{"score": map[string]any{"integerValue": "10"}}, jsonField(got, "fields")); diff != "" {
		t.Errorf("masked get (-want +got):\n%s", diff)
	}
	code, v = rc.do("GET", docs+"/players/nobody", "")
	if diff := cmp.Diff(restErr{404, 404, "NOT_FOUND"}, errorOf(t, code, v)); diff != "" {
		t.Errorf("get missing (-want +got):\n%s", diff)
	}
	snap, err := c.Doc("players/ann").Get(ctx)
	if err != nil {
		t.Fatalf("gRPC Get of a REST-created document: %v", err)
	}
	if diff := cmp.Diff(map[string]any{"name": "ann", "score": int64(10)}, snap.Data()); diff != "" {
		t.Errorf("gRPC view of the REST write (-want +got):\n%s", diff)
	}
	before := time.Now().UTC()
	time.Sleep(2 * time.Millisecond)

	// patch: an update mask, a failing precondition, an upsert.
	patched := rc.ok("PATCH", docs+"/players/ann?updateMask.fieldPaths=score&currentDocument.exists=true", `{"fields":{"score":{"integerValue":"11"},"ignored":{"booleanValue":true}}}`)
	if diff := cmp.Diff(map[string]any{"name": map[string]any{"stringValue": "ann"}, "score": map[string]any{"integerValue": "11"}}, jsonField(patched, "fields")); diff != "" {
		t.Errorf("patch with updateMask (-want +got):\n%s", diff)
	}
	code, v = rc.do("PATCH", docs+"/players/nobody?currentDocument.exists=true", `{"fields":{}}`)
	if diff := cmp.Diff(restErr{404, 404, "NOT_FOUND"}, errorOf(t, code, v)); diff != "" {
		t.Errorf("patch missing with exists=true (-want +got):\n%s", diff)
	}
	code, v = rc.do("PATCH", docs+"/players/ann?currentDocument.updateTime="+url.QueryEscape(jsonField(created, "updateTime").(string)), `{"fields":{}}`)
	if diff := cmp.Diff(restErr{400, 400, "FAILED_PRECONDITION"}, errorOf(t, code, v)); diff != "" {
		t.Errorf("patch with a stale currentDocument.updateTime (-want +got):\n%s", diff)
	}
	rc.ok("PATCH", docs+"/players/ann:x?currentDocument.exists=false", `{"fields":{}}`)
	rc.ok("DELETE", docs+"/players/ann:x", "")
	rc.ok("PATCH", docs+"/players/bob", `{"fields":{"name":{"stringValue":"bob"},"score":{"integerValue":"20"}}}`)

	// getDocument at a readTime before the patch.
	old := rc.ok("GET", docs+"/players/ann?readTime="+url.QueryEscape(before.Format(time.RFC3339Nano)), "")
	if diff := cmp.Diff(map[string]any{"integerValue": "10"}, jsonField(old, "fields", "score")); diff != "" {
		t.Errorf("get at readTime (-want +got):\n%s", diff)
	}

	// listDocuments with paging, under the root and under a document.
	page := rc.ok("GET", docs+"/players?pageSize=2&orderBy=__name__", "")
	if n := len(jsonField(page, "documents").([]any)); n != 2 || jsonField(page, "nextPageToken") == nil {
		t.Fatalf("listDocuments page of 2: %d documents, token %v", n, jsonField(page, "nextPageToken"))
	}
	rest := rc.ok("GET", docs+"/players?pageSize=2&pageToken="+url.QueryEscape(jsonField(page, "nextPageToken").(string)), "")
	if n := len(jsonField(rest, "documents").([]any)); n != 1 {
		t.Errorf("listDocuments second page: %d documents, want 1", n)
	}
	items := rc.ok("GET", docs+"/players/ann/items", "")
	if diff := cmp.Diff(docs+"/players/ann/items/sword", jsonField(items, "documents", 0, "name")); diff != "" {
		t.Errorf("listDocuments under a document (-want +got):\n%s", diff)
	}

	// batchGet answers an array: found and missing.
	bg := rc.ok("POST", db+"/documents:batchGet", `{"documents":["`+docs+`/players/ann","`+docs+`/players/nobody"]}`)
	if diff := cmp.Diff([]any{docs + "/players/ann", nil, nil, docs + "/players/nobody"}, []any{
		jsonField(bg, 0, "found", "name"), jsonField(bg, 0, "missing"), jsonField(bg, 1, "found"), jsonField(bg, 1, "missing"),
	}); diff != "" {
		t.Errorf("batchGet (-want +got):\n%s", diff)
	}

	// beginTransaction, a read in it (transaction as a query parameter),
	// commit with a transform; a second transaction rolled back.
	tx := jsonField(rc.ok("POST", db+"/documents:beginTransaction", `{"options":{"readWrite":{}}}`), "transaction").(string)
	inTx := rc.ok("GET", docs+"/players/bob?transaction="+url.QueryEscape(tx), "")
	if diff := cmp.Diff(map[string]any{"integerValue": "20"}, jsonField(inTx, "fields", "score")); diff != "" {
		t.Errorf("get in transaction (-want +got):\n%s", diff)
	}
	commit := rc.ok("POST", db+"/documents:commit", `{"transaction":"`+tx+`","writes":[{"transform":{"document":"`+docs+`/players/bob","fieldTransforms":[{"fieldPath":"score","increment":{"integerValue":"5"}}]}}]}`)
	if jsonField(commit, "commitTime") == nil || jsonField(commit, "writeResults", 0, "transformResults", 0, "integerValue") != "25" {
		t.Errorf("commit %v: want a commitTime and the transform result 25", commit)
	}
	tx2 := jsonField(rc.ok("POST", db+"/documents:beginTransaction", `{}`), "transaction").(string)
	if diff := cmp.Diff(map[string]any{}, rc.ok("POST", db+"/documents:rollback", `{"transaction":"`+tx2+`"}`)); diff != "" {
		t.Errorf("rollback (-want +got):\n%s", diff)
	}
	code, v = rc.do("POST", db+"/documents:commit", `{"transaction":"`+tx2+`","writes":[]}`)
	if e := errorOf(t, code, v); e.HTTP != 400 || e.Status != "INVALID_ARGUMENT" {
		t.Errorf("commit of a rolled-back transaction: %+v, want 400 INVALID_ARGUMENT", e)
	}

	// runQuery on the root and on a document parent answers an array.
	q := rc.ok("POST", docs+":runQuery", `{"structuredQuery":{"from":[{"collectionId":"players"}],"where":{"fieldFilter":{"field":{"fieldPath":"score"},"op":"GREATER_THAN_OR_EQUAL","value":{"integerValue":"11"}}},"orderBy":[{"field":{"fieldPath":"score"},"direction":"DESCENDING"}]}}`)
	var names []any
	for _, r := range q.([]any) {
		if n := jsonField(r, "document", "name"); n != nil {
			names = append(names, n)
		}
		if jsonField(r, "readTime") == nil {
			t.Errorf("runQuery response %v has no readTime", r)
		}
	}
	if diff := cmp.Diff([]any{docs + "/players/bob", docs + "/players/ann"}, names); diff != "" {
		t.Errorf("runQuery (-want +got):\n%s", diff)
	}
	sub := rc.ok("POST", docs+"/players/ann:runQuery", `{"structuredQuery":{"from":[{"collectionId":"items"}]}}`)
	if diff := cmp.Diff(docs+"/players/ann/items/sword", jsonField(sub, 0, "document", "name")); diff != "" {
		t.Errorf("runQuery under a document (-want +got):\n%s", diff)
	}
	code, v = rc.do("POST", docs+":runQuery", `{"structuredQuery":{"from":[{"collectionId":"players"}],"limit":-1}}`)
	if e := errorOf(t, code, v); e.HTTP != 400 || e.Status != "INVALID_ARGUMENT" {
		t.Errorf("runQuery with a negative limit: %+v, want 400 INVALID_ARGUMENT", e)
	}

	// runAggregationQuery (with a sum, as in Firestore, the count sees only
	// the documents that have the summed field).
	agg := rc.ok("POST", docs+":runAggregationQuery", `{"structuredAggregationQuery":{"structuredQuery":{"from":[{"collectionId":"players"}]},"aggregations":[{"alias":"n","count":{}},{"alias":"total","sum":{"field":{"fieldPath":"score"}}}]}}`)
	if diff := cmp.Diff(map[string]any{"n": map[string]any{"integerValue": "2"}, "total": map[string]any{"integerValue": "36"}}, jsonField(agg, 0, "result", "aggregateFields")); diff != "" {
		t.Errorf("runAggregationQuery (-want +got):\n%s", diff)
	}

	// listCollectionIds on the root and on a document.
	if diff := cmp.Diff(map[string]any{"collectionIds": []any{"players"}}, rc.ok("POST", docs+":listCollectionIds", `{}`)); diff != "" {
		t.Errorf("listCollectionIds on the root (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"collectionIds": []any{"items"}}, rc.ok("POST", docs+"/players/ann:listCollectionIds", `{"pageSize":10}`)); diff != "" {
		t.Errorf("listCollectionIds on a document (-want +got):\n%s", diff)
	}

	// partitionQuery.
	if _, ok := rc.ok("POST", docs+":partitionQuery", `{"structuredQuery":{"from":[{"collectionId":"players","allDescendants":true}],"orderBy":[{"field":{"fieldPath":"__name__"}}]},"partitionCount":"2"}`).(map[string]any); !ok {
		t.Errorf("partitionQuery: want an object")
	}

	// batchWrite: one write applies, one fails on its precondition.
	bw := rc.ok("POST", db+"/documents:batchWrite", `{"writes":[{"update":{"name":"`+docs+`/players/cy","fields":{"score":{"integerValue":"1"}}}},{"delete":"`+docs+`/players/nobody","currentDocument":{"exists":true}}]}`)
	if diff := cmp.Diff([]any{nil, float64(5)}, []any{jsonField(bw, "status", 0, "code"), jsonField(bw, "status", 1, "code")}); diff != "" {
		t.Errorf("batchWrite statuses (-want +got):\n%s", diff)
	}

	// deleteDocument with a precondition.
	if diff := cmp.Diff(map[string]any{}, rc.ok("DELETE", docs+"/players/cy?currentDocument.exists=true", "")); diff != "" {
		t.Errorf("delete (-want +got):\n%s", diff)
	}
	if _, err := c.Doc("players/cy").Get(ctx); err == nil {
		t.Errorf("gRPC Get after the REST delete found the document")
	}
}

// TestRESTErrors checks the JSON error object and HTTP status of requests
// that cannot be served.
func TestRESTErrors(t *testing.T) {
	p := testProject(t)
	rc := newRESTClient(t)
	docs := "projects/" + p + "/databases/(default)/documents"
	for _, tc := range []struct {
		name, method, path, body string
		want                     restErr
		inMessage                string
	}{
		{"unknown URL", "GET", "projects/" + p + "/nothing", "", restErr{404, 404, "NOT_FOUND"}, ""},
		{"GET of the documents root", "GET", docs, "", restErr{404, 404, "NOT_FOUND"}, ""},
		{"verb with the wrong method", "GET", docs + ":commit", "", restErr{404, 404, "NOT_FOUND"}, ""},
		{"unknown query parameter", "GET", docs + "/c/d?nosuch=1", "", restErr{400, 400, "INVALID_ARGUMENT"}, `Unknown name "nosuch": Cannot bind query parameter.`},
		{"bad query parameter value", "GET", docs + "/c/d?readTime=yesterday", "", restErr{400, 400, "INVALID_ARGUMENT"}, ""},
		{"unknown body field", "POST", docs + ":commit", `{"writes":[],"nosuch":1}`, restErr{400, 400, "INVALID_ARGUMENT"}, `Invalid JSON payload received. Unknown name "nosuch": Cannot find field.`},
		{"malformed body", "POST", docs + ":commit", `{"writes":`, restErr{400, 400, "INVALID_ARGUMENT"}, ""},
		{"invalid document name", "PATCH", docs + "/c", `{}`, restErr{400, 400, "INVALID_ARGUMENT"}, ""},
		{"readTime older than the retention", "GET", docs + "/c/d?readTime=2020-01-01T00:00:00Z", "", restErr{400, 400, "FAILED_PRECONDITION"}, ""},
		{"bidirectional stream", "POST", docs + ":listen", `{}`, restErr{501, 501, "UNIMPLEMENTED"}, "only available via gRPC or WebChannel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, v := rc.do(tc.method, tc.path, tc.body)
			if diff := cmp.Diff(tc.want, errorOf(t, code, v)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if msg, _ := jsonField(v, "error", "message").(string); !strings.Contains(msg, tc.inMessage) {
				t.Errorf("message %q, want it to contain %q", msg, tc.inMessage)
			}
		})
	}
}

// TestRESTSystemParametersAndCORS checks what browsers and Google's client
// libraries add to requests: an API key, Content-Type text/plain, and a
// CORS preflight.
func TestRESTSystemParametersAndCORS(t *testing.T) {
	p := testProject(t)
	docs := "projects/" + p + "/databases/(default)/documents"
	u := "http://" + testSrv.Addr() + "/v1/" + docs + ":commit?key=some-api-key&alt=json&prettyPrint=false"
	req, err := http.NewRequest("OPTIONS", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "http://localhost:5173")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,x-goog-api-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	gotCORS := map[string]string{
		"status":  resp.Status,
		"origin":  resp.Header.Get("Access-Control-Allow-Origin"),
		"headers": resp.Header.Get("Access-Control-Allow-Headers"),
	}
	wantCORS := map[string]string{"status": "200 OK", "origin": "http://localhost:5173", "headers": "authorization,x-goog-api-client"}
	if diff := cmp.Diff(wantCORS, gotCORS); diff != "" {
		t.Errorf("preflight (-want +got):\n%s", diff)
	}
	if !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PATCH") {
		t.Errorf("preflight allows methods %q, want PATCH among them", resp.Header.Get("Access-Control-Allow-Methods"))
	}

	body := `{"writes":[{"update":{"name":"` + docs + `/c/d","fields":{}}}]}`
	req, err = http.NewRequest("POST", u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Origin", "http://localhost:5173")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Errorf("commit with an API key and text/plain: %s %s, CORS origin %q", resp.Status, b, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestRESTSharesCountersAndFaults checks that REST calls run through the
// same interceptors as gRPC calls: they are counted, and injected faults
// fail them with the fault's status.
func TestRESTSharesCountersAndFaults(t *testing.T) {
	p := testProject(t)
	rc := newRESTClient(t)
	docs := "projects/" + p + "/databases/(default)/documents"
	rc.ok("PATCH", docs+"/c/d", `{"fields":{"n":{"integerValue":"1"}}}`)
	rc.ok("POST", docs+":runQuery", `{"structuredQuery":{"from":[{"collectionId":"c"}]}}`)
	testSrv.InjectFault(Fault{Project: p, Method: "RunQuery", Code: codes.Unavailable})
	code, v := rc.do("POST", docs+":runQuery", `{"structuredQuery":{"from":[{"collectionId":"c"}]}}`)
	if diff := cmp.Diff(restErr{503, 503, "UNAVAILABLE"}, errorOf(t, code, v)); diff != "" {
		t.Errorf("runQuery with an injected fault (-want +got):\n%s", diff)
	}
	testSrv.InjectFault(Fault{Project: p, Method: "Commit", Code: codes.Aborted})
	code, v = rc.do("POST", docs+":commit", `{"writes":[]}`)
	if diff := cmp.Diff(restErr{409, 409, "ABORTED"}, errorOf(t, code, v)); diff != "" {
		t.Errorf("commit with an injected fault (-want +got):\n%s", diff)
	}
	got := testSrv.Counters(p)
	want := map[string]int64{"UpdateDocument": 1, "RunQuery": 2, "Commit": 1}
	if diff := cmp.Diff(want, got.RPCs); diff != "" {
		t.Errorf("RPC counters (-want +got):\n%s", diff)
	}
	if got.DocumentReads != 1 || got.DocumentWrites != 1 {
		t.Errorf("counters %+v, want 1 read and 1 write", got)
	}
}

// TestRESTEnumNumbers checks the request form of Google's REST client
// libraries: $alt=json;enum-encoding=int and enums given as numbers.
func TestRESTEnumNumbers(t *testing.T) {
	p := testProject(t)
	rc := newRESTClient(t)
	docs := "projects/" + p + "/databases/(default)/documents"
	for _, id := range []string{"a", "b"} {
		rc.ok("PATCH", docs+"/c/"+id, `{"fields":{"id":{"stringValue":"`+id+`"}}}`)
	}
	q := rc.ok("POST", docs+":runQuery?"+url.Values{"$alt": {"json;enum-encoding=int"}}.Encode(), `{"structuredQuery":{"from":[{"collectionId":"c"}],"orderBy":[{"field":{"fieldPath":"id"},"direction":2}]}}`)
	if diff := cmp.Diff([]any{docs + "/c/b", docs + "/c/a"}, []any{jsonField(q, 0, "document", "name"), jsonField(q, 1, "document", "name")}); diff != "" {
		t.Errorf("runQuery ordered DESCENDING by number (-want +got):\n%s", diff)
	}
}
