package app

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fuzz pass sends malformed, oversized and boundary requests to every
// route of openapi.yaml, generated from the spec: each request starts as
// the route's valid request (parameters and a body built from the
// operation's schemas, see builder) and gets one mutation of its path,
// query, headers, credentials or body. Every answer must be a JSON answer
// with no 5xx and no redirect, an error in the documented shape with a
// documented code and its status, arrive within requestTimeout, and a
// refused request must write nothing (requests run one at a time and the
// emulator's write counter is compared around each).
//
// SAVESYNC_FUZZ_REQUESTS sets the number of requests (default 1000, what
// `make test` runs); SAVESYNC_FUZZ_SEED the seed (default 1). `make
// fuzz-api` runs 100,000.

// fuzzConfig reads the size and seed of the fuzz pass.
func fuzzConfig(t *testing.T) (requests int, seed int64) {
	t.Helper()
	requests, seed = 1000, 1
	if v := os.Getenv("SAVESYNC_FUZZ_REQUESTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SAVESYNC_FUZZ_REQUESTS=%q: set a positive number of requests", v)
		}
		requests = n
	}
	if v := os.Getenv("SAVESYNC_FUZZ_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("SAVESYNC_FUZZ_SEED=%q: set an integer", v)
		}
		seed = n
	}
	return requests, seed
}

// fuzzFailure is one kind of failure with its first request and answer.
type fuzzFailure struct {
	class, route, what string
	count              int
	first              apiRequest
	answer             string
}

func TestFuzzAPI(t *testing.T) {
	requests, seed := fuzzConfig(t)
	t.Logf("fuzz pass: %d requests, seed %d (SAVESYNC_FUZZ_SEED=%d reproduces it)", requests, seed, seed)
	spec := loadSpec(t)
	s := startAPIStack(t)
	w := newWorld(s, 9_100_000)
	f := &fuzzer{w: w, spec: spec, rng: rand.New(rand.NewSource(seed)), hung: map[string]bool{}}
	f.code = s.linkCode(s.signUp())

	statuses := map[int]int{}
	failures := map[string]*fuzzFailure{}
	var hangs, sent int
	start := time.Now()
	for i := 0; i < requests; i++ {
		if requests >= 10000 && i > 0 && i%(requests/10) == 0 {
			t.Logf("fuzz pass: %d of %d requests sent, %d failure kinds so far", i, requests, len(failures))
		}
		if i > 0 && i%250 == 0 {
			w.repair()
			f.code = s.linkCode(s.signUp())
		}
		op, req := f.next()
		before := s.writes()
		got := s.do(req)
		sent++
		after := s.writes()
		classes := f.check(op, req, got, after-before)
		if got.err == nil {
			statuses[got.status]++
		}
		for _, class := range classes {
			if class == "hang" {
				hangs++
				// Never generate this route and mutation again in this run:
				// one hang is reported, and the next would cost as long.
				f.hung[op.route()+" "+req.what] = true
			}
			key := class + " " + op.route() + " " + req.what
			ff := failures[key]
			if ff == nil {
				ff = &fuzzFailure{class: class, route: op.route(), what: req.what, first: req, answer: got.summary() + " " + shortText(string(got.body), 300)}
				failures[key] = ff
			}
			ff.count++
		}
		if got.err != nil {
			// A request given up on may still run in the service: let it
			// end before the next request's writes are counted.
			time.Sleep(500 * time.Millisecond)
		}
	}
	took := time.Since(start)
	var codes []int
	for c := range statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var dist []string
	for _, c := range codes {
		dist = append(dist, fmt.Sprintf("%d: %d", c, statuses[c]))
	}
	t.Logf("fuzz pass: %d requests in %s (%.0f requests/s), %d without an answer; statuses %s",
		sent, took.Round(time.Millisecond), float64(sent)/took.Seconds(), hangs, strings.Join(dist, ", "))

	var keys []string
	for k := range failures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []string
	for _, k := range keys {
		ff := failures[k]
		lines = append(lines, fmt.Sprintf("%s ×%d: %s [%s]\n    %s\n    answer: %s", ff.class, ff.count, ff.route, ff.what, ff.first, ff.answer))
	}
	if len(lines) > 0 {
		t.Errorf("%d failures (seed %d):\n%s", len(lines), seed, strings.Join(lines, "\n"))
	}
}

// fuzzer generates the requests of the fuzz pass.
type fuzzer struct {
	w    *world
	spec *apiSpec
	rng  *rand.Rand
	code string
	// hung are the route and mutation pairs that already went unanswered.
	hung map[string]bool
}

// next is the next request, about a random route.
func (f *fuzzer) next() (apiOperation, apiRequest) {
	for {
		op := f.spec.operations[f.rng.Intn(len(f.spec.operations))]
		req := f.request(op)
		if !f.hung[op.route()+" "+req.what] {
			return op, req
		}
	}
}

// fuzzCallers are the credentials the fuzz pass presents beyond those of
// the caller kinds: malformed Authorization headers.
var fuzzAuthorizations = []struct{ what, value string }{
	{"empty", ""},
	{"bearer without a token", "Bearer"},
	{"bearer and spaces", "Bearer    "},
	{"lower-case scheme", "bearer " + contractKey},
	{"token of three dots", "Bearer a.b.c"},
	{"huge token", "Bearer " + strings.Repeat("A", 32<<10)},
	{"invalid UTF-8", "Bearer \xff\xfe\xfd"},
	{"key with a suffix", "Bearer " + contractKey + "x"},
	{"key twice", "Bearer " + contractKey + " " + contractKey},
	{"JWT with alg none and no subject", "Bearer " + unsignedToken(map[string]any{"role": "admin"})},
}

// request makes one fuzz request of op.
func (f *fuzzer) request(op apiOperation) apiRequest {
	rng := f.rng
	caller := allCallers[rng.Intn(len(allCallers))]
	if rng.Intn(10) < 6 {
		caller = f.matchingCaller(op)
	}
	tgt := f.w.targetOf(rng.Intn(2) == 0)
	if rng.Intn(4) == 0 {
		tgt = target{user: 9_101_000 + rng.Int63n(500), job: "job-fuzz-" + strconv.Itoa(rng.Intn(5)), session: fmt.Sprintf("%d.1.fuzz", 9_101_000+rng.Int63n(500))}
	}
	b := &builder{w: f.w, rng: rng, tgt: tgt, code: f.code}
	req := b.request(op, caller)
	var tree any
	if req.body != nil {
		_ = json.Unmarshal(req.body, &tree)
	}
	validBody := req.body
	signBefore := false
	switch n := rng.Intn(100); {
	case n < 8: // the valid request
	case n < 25:
		f.mutatePath(op, &req)
	case n < 40:
		f.mutateQuery(op, &req)
	case n < 55:
		f.mutateHeader(op, &req)
	case n < 62:
		a := fuzzAuthorizations[rng.Intn(len(fuzzAuthorizations))]
		caller = callerNone
		req.header.Set("Authorization", a.value)
		req.what = "header Authorization: " + a.what
	case n < 65:
		signBefore = true
		f.mutateBody(op, &req, tree)
		req.what += " (signed before the change)"
	default:
		f.mutateBody(op, &req, tree)
	}
	req.caller = caller
	c := f.w.creds[caller]
	if signBefore && c.sign {
		body := req.body
		req.body = validBody
		c.apply(&req)
		req.body = body
	} else {
		c.apply(&req)
	}
	return req
}

// matchingCaller is a caller that the operation's security admits.
func (f *fuzzer) matchingCaller(op apiOperation) callerKind {
	for _, p := range op.Params {
		if strings.EqualFold(p.Name, "roblox-signature") {
			return callerWebhook
		}
	}
	for _, sch := range op.Security {
		switch sch {
		case "serverKey":
			return []callerKind{callerServer, callerServerNext}[f.rng.Intn(2)]
		case "firebase":
			return []callerKind{callerLinked, callerLinked, callerUnlinked, callerSupport, callerAdmin}[f.rng.Intn(5)]
		}
	}
	return allCallers[f.rng.Intn(len(allCallers))]
}

// oddSegments are path segments, as sent (escaped).
var oddSegments = []struct{ what, raw string }{
	{"non-numeric", "abc"},
	{"negative", "-1"},
	{"zero", "0"},
	{"huge", "99999999999999999999999"},
	{"max int64", "9223372036854775807"},
	{"fraction", "1.5"},
	{"exponent", "1e3"},
	{"invalid UTF-8 %FF", "%FF"},
	{"overlong UTF-8 %C0%AF", "%C0%AF"},
	{"UTF-16 surrogate %ED%A0%80", "%ED%A0%80"},
	{"escaped slash %2F", "%2F"},
	{"NUL %00", "%00"},
	{"dot-dot", ".."},
	{"very long", strings.Repeat("7", 5000)},
	{"space", "%20"},
	{"unicode", "%C3%A9%F0%9F%98%80"},
	{"percent", "%25"},
	{"query in segment", "1%3Fa=b"},
}

// mutatePath changes one path parameter, or the path's shape.
func (f *fuzzer) mutatePath(op apiOperation, req *apiRequest) {
	rng := f.rng
	var params []string
	for _, p := range op.Params {
		if p.In == "path" {
			params = append(params, p.Name)
		}
	}
	path, query, _ := strings.Cut(req.target, "?")
	if len(params) == 0 || rng.Intn(4) == 0 {
		shapes := []struct {
			what string
			path string
		}{
			{"trailing slash", path + "/"},
			{"double slash", strings.Replace(path, "/", "//", 2)},
			{"dot segment", strings.Replace(path, "/v1/", "/v1/./", 1)},
			{"upper case", strings.ToUpper(path)},
			{"encoded slash", strings.ReplaceAll(path, "/", "%2F")},
		}
		sh := shapes[rng.Intn(len(shapes))]
		req.target = sh.path
		if query != "" {
			req.target += "?" + query
		}
		req.what = "path: " + sh.what
		return
	}
	name := params[rng.Intn(len(params))]
	seg := oddSegments[rng.Intn(len(oddSegments))]
	// Rebuild the path with every other parameter valid.
	tmpl := op.Path
	parts := strings.Split(tmpl, "/")
	valid := strings.Split(path, "/")
	for i, p := range parts {
		if p == "{"+name+"}" && i < len(valid) {
			valid[i] = seg.raw
		}
	}
	req.target = strings.Join(valid, "/")
	if query != "" {
		req.target += "?" + query
	}
	req.what = "path " + name + ": " + seg.what
}

// oddQueryValues are query values, as sent (escaped).
var oddQueryValues = func() []struct{ what, raw string } {
	cursor := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return []struct{ what, raw string }{
		{"empty", ""},
		{"invalid UTF-8 %FF", "%FF"},
		{"overlong UTF-8 %C0%AF", "%C0%AF"},
		{"UTF-16 surrogate %ED%A0%80", "%ED%A0%80"},
		{"NUL", "%00"},
		{"huge number", "99999999999999999999999"},
		{"min int64", "-9223372036854775808"},
		{"negative", "-1"},
		{"exponent", "1e309"},
		{"NaN", "NaN"},
		{"bad timestamp", "2026-13-45T99%3A99%3A99Z"},
		{"year 0", "0000-01-01T00%3A00%3A00Z"},
		{"year 10000", "10000-01-01T00%3A00%3A00Z"},
		{"last nanosecond of 9999", "9999-12-31T23%3A59%3A59.999999999Z"},
		{"timestamp with offset", "2026-01-01T00%3A00%3A00%2B14%3A00"},
		{"huge duration", "9999999h"},
		{"cursor: not base64", "%21%21%21"},
		{"cursor: base64 of junk", cursor("junk")},
		{"cursor: negative position", cursor(`{"f":-1}`)},
		{"cursor: huge position", cursor(`{"f":1e30}`)},
		{"cursor: array", cursor(`[]`)},
		{"cursor: unknown field", cursor(`{"zz":1}`)},
		{"cursor: invalid UTF-8 inside", cursor("{\"s\":[\"\xff\"]}")},
		{"cursor: huge", cursor(strings.Repeat("x", 6000))},
		{"very long", strings.Repeat("q", 10000)},
	}
}()

// mutateQuery changes one query parameter, or adds odd ones.
func (f *fuzzer) mutateQuery(op apiOperation, req *apiRequest) {
	rng := f.rng
	path, query, _ := strings.Cut(req.target, "?")
	var names []string
	for _, p := range op.Params {
		if p.In == "query" {
			names = append(names, p.Name)
		}
	}
	val := oddQueryValues[rng.Intn(len(oddQueryValues))]
	if len(names) == 0 || rng.Intn(5) == 0 {
		extra := []struct{ what, q string }{
			{"unknown parameter", "zz=" + val.raw},
			{"repeated parameter", query + "&" + query},
			{"bare key", "flag"},
			{"bad escape", "a=%G1"},
		}
		e := extra[rng.Intn(len(extra))]
		q := e.q
		if query != "" && e.what != "repeated parameter" {
			q = query + "&" + q
		}
		req.target = path + "?" + q
		req.what = "query: " + e.what
		return
	}
	name := names[rng.Intn(len(names))]
	vals, _ := url.ParseQuery(query)
	vals.Del(name)
	q := vals.Encode()
	if q != "" {
		q += "&"
	}
	if rng.Intn(6) == 0 {
		req.target = path + "?" + strings.TrimSuffix(q, "&")
		req.what = "query " + name + ": missing"
		return
	}
	req.target = path + "?" + q + name + "=" + val.raw
	req.what = "query " + name + ": " + val.what
}

// oddHeaderValues are header values.
var oddHeaderValues = []struct{ what, value string }{
	{"empty", ""},
	{"huge", strings.Repeat("h", 16<<10)},
	{"invalid UTF-8", "\xff\xfe"},
	{"overlong UTF-8", "\xc0\xaf"},
	{"UTF-16 surrogate", "\xed\xa0\x80"},
	{"129 characters", strings.Repeat("k", 129)},
	{"non-ASCII", "clé-é"},
	{"non-numeric", "abc"},
	{"zero", "0"},
	{"negative", "-1"},
	{"huge number", "99999999999999999999"},
	{"spaces", "  padded  "},
}

// mutateHeader changes one header: one the operation declares, or one
// every request may carry.
func (f *fuzzer) mutateHeader(op apiOperation, req *apiRequest) {
	rng := f.rng
	names := []string{"Idempotency-Key", "Roblox-Job-Id", "Savesync-Schema-Version", "Content-Type", "X-Request-Id", "X-Forwarded-For", "X-Cloud-Trace-Context", "traceparent"}
	for _, p := range op.Params {
		if p.In == "header" {
			names = append(names, p.Name, p.Name) // declared ones twice as often
		}
	}
	name := names[rng.Intn(len(names))]
	if rng.Intn(40) == 0 {
		req.header.Set(name, strings.Repeat("x", 2<<20))
		req.what = "header " + name + ": 2 MiB"
		return
	}
	if rng.Intn(8) == 0 {
		req.header.Del(name)
		req.what = "header " + name + ": missing"
		return
	}
	v := oddHeaderValues[rng.Intn(len(oddHeaderValues))]
	req.header.Set(name, v.value)
	req.what = "header " + name + ": " + v.what
}

// placeholder marks a value in a body tree that is spliced in as raw
// text after encoding, for what encoding/json would never write.
func placeholder(i int) string { return fmt.Sprintf("\x00raw%d\x00", i) }

// extremeNumbers are JSON numbers at and past the edges of int64 and float64.
var extremeNumbers = []string{
	"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
	"1e308", "1e309", "-1e309", "1e-400", "-0", "0.5", "1.0", "1E2", "123456789012345678901234567890", "0",
}

// mutateBody changes the body, from the operation's valid body (or none).
func (f *fuzzer) mutateBody(op apiOperation, req *apiRequest, tree any) {
	rng := f.rng
	raws := map[string]string{}
	splice := func(text string) string {
		p := placeholder(len(raws))
		raws[p] = text
		return p
	}
	tree = cloneJSON(tree)
	var what string
	textual := []struct{ what, body string }{
		{"empty body", ""},
		{"null", "null"},
		{"a number", "0"},
		{"a string", `"ops"`},
		{"whitespace", " \n\t "},
		{"empty object", "{}"},
		{"empty array", "[]"},
		{"oversized (2 MiB)", `{"ops":[` + strings.Repeat(`{"op":"xp.add","amount":1},`, 2<<20/27) + `{}]}`},
		{"deep nesting (100000 levels)", strings.Repeat("[", 100000) + strings.Repeat("]", 100000)},
		{"invalid UTF-8 bytes", "{\"\xff\": \"\xfe\"}"},
		{"BOM before JSON", "\xef\xbb\xbf" + string(req.body)},
		{"trailing data", string(req.body) + `{"x":1}`},
	}
	switch n := rng.Intn(100); {
	case tree == nil || n < 15:
		t := textual[rng.Intn(len(textual))]
		req.body = []byte(t.body)
		req.what = "body: " + t.what
		if req.header.Get("Content-Type") == "" {
			req.header.Set("Content-Type", "application/json")
		}
		return
	case n < 22:
		raw := string(req.body)
		cut := rng.Intn(max(len(raw), 1))
		req.body = []byte(raw[:cut])
		req.what = "body: truncated JSON"
		return
	}
	nodes := jsonNodes(tree, "")
	node := nodes[rng.Intn(len(nodes))]
	kinds := []string{"drop", "wrong type", "unknown field", "extreme number", "deep nesting", "huge array", "huge string",
		"invalid UTF-8 string", "lone surrogate", "empty array", "empty object", "NaN", "duplicate key", "null"}
	kind := kinds[rng.Intn(len(kinds))]
	var repl any
	replace := true // false when the change was made in place
	switch kind {
	case "drop":
		if node.path == "" {
			kind = "empty object"
			repl = map[string]any{}
		} else {
			tree = deleteAt(tree, node.path)
			replace = false
			what = "body: drop " + node.path
		}
	case "wrong type":
		choices := []any{"x", 1, true, nil, []any{}, map[string]any{}, 1.5, "1"}
		repl = choices[rng.Intn(len(choices))]
		what = fmt.Sprintf("body: %s becomes %T", node.path, repl)
	case "unknown field":
		if m, ok := node.value.(map[string]any); ok {
			m["unknownField"+strconv.Itoa(rng.Intn(3))] = 1
			what = "body: unknown field in " + nodeName(node.path)
		} else {
			tree = map[string]any{"zz": 1, "wrapped": tree}
			what = "body: unknown field at the top"
		}
		replace = false
	case "extreme number":
		repl = json.Number(extremeNumbers[rng.Intn(len(extremeNumbers))])
		what = fmt.Sprintf("body: %s = %s", nodeName(node.path), repl)
	case "deep nesting":
		depth := []int{21, 33, 1000, 50000}[rng.Intn(4)]
		repl = splice(strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth))
		what = fmt.Sprintf("body: %s nested %d levels", nodeName(node.path), depth)
	case "huge array":
		n := []int{101, 1000, 30000}[rng.Intn(3)]
		arr := make([]any, n)
		for i := range arr {
			if a, ok := node.value.([]any); ok && len(a) > 0 {
				arr[i] = cloneJSON(a[0])
			} else {
				arr[i] = i
			}
		}
		repl = arr
		what = fmt.Sprintf("body: %s is an array of %d", nodeName(node.path), n)
	case "huge string":
		n := []int{129, 1001, 70000, 600000}[rng.Intn(4)]
		repl = strings.Repeat("s", n)
		what = fmt.Sprintf("body: %s is a string of %d", nodeName(node.path), n)
	case "invalid UTF-8 string":
		repl = splice("\"bad\xff\xfeutf8\"")
		what = "body: " + nodeName(node.path) + " is a string of invalid UTF-8"
	case "lone surrogate":
		repl = splice(`"\ud800x"`)
		what = "body: " + nodeName(node.path) + " is a string with a lone surrogate"
	case "empty array":
		repl = []any{}
		what = "body: " + nodeName(node.path) + " is []"
	case "empty object":
		repl = map[string]any{}
		what = "body: " + nodeName(node.path) + " is {}"
	case "NaN":
		repl = splice([]string{"NaN", "Infinity", "-Infinity", "0x10", "01", "+1", ".5"}[rng.Intn(7)])
		what = "body: " + nodeName(node.path) + " is a non-JSON number"
	case "duplicate key":
		if m, ok := node.value.(map[string]any); ok && len(m) > 0 {
			k := sortedKeys(m)[0]
			delete(m, k)
			m[splice(`"`+k+`":null,"`+k+`"`)] = 1
			replace = false
			what = "body: duplicate key " + k + " in " + nodeName(node.path)
		} else {
			repl = nil
			what = "body: " + nodeName(node.path) + " is null"
		}
	case "null":
		repl = nil
		what = "body: " + nodeName(node.path) + " is null"
	}
	if what == "" {
		what = "body: " + kind + " at " + nodeName(node.path)
	}
	if replace {
		tree = setAt(tree, node.path, repl)
	}
	raw, err := json.Marshal(tree)
	if err != nil {
		raw = []byte(fmt.Sprint(tree))
	}
	for p, text := range raws {
		enc, _ := json.Marshal(p)
		raw = bytes.ReplaceAll(raw, enc, []byte(text))
		// A placeholder used as a key keeps its quotes out.
		raw = bytes.ReplaceAll(raw, []byte(strings.Trim(string(enc), `"`)), []byte(text))
	}
	req.body = raw
	req.what = what
}

// nodeName is a body path for reports ("the body" for the root).
func nodeName(path string) string {
	if path == "" {
		return "the body"
	}
	return path
}

// jsonNode is a value in a decoded JSON tree and its path ("a.b[0]").
type jsonNode struct {
	path  string
	value any
}

// jsonNodes lists every value of a tree, the root first.
func jsonNodes(v any, path string) []jsonNode {
	out := []jsonNode{{path, v}}
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			out = append(out, jsonNodes(x[k], joinJSONPath(path, k))...)
		}
	case []any:
		for i, e := range x {
			out = append(out, jsonNodes(e, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return out
}

func joinJSONPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// setAt returns tree with the value at path replaced.
func setAt(tree any, path string, v any) any {
	if path == "" {
		return v
	}
	for _, n := range jsonNodes(tree, "") {
		switch x := n.value.(type) {
		case map[string]any:
			for k := range x {
				if joinJSONPath(n.path, k) == path {
					x[k] = v
					return tree
				}
			}
		case []any:
			for i := range x {
				if fmt.Sprintf("%s[%d]", n.path, i) == path {
					x[i] = v
					return tree
				}
			}
		}
	}
	return tree
}

// deleteAt returns tree without the value at path (an array element
// becomes the array without it).
func deleteAt(tree any, path string) any {
	for _, n := range jsonNodes(tree, "") {
		switch x := n.value.(type) {
		case map[string]any:
			for k := range x {
				if joinJSONPath(n.path, k) == path {
					delete(x, k)
					return tree
				}
			}
		case []any:
			for i := range x {
				if fmt.Sprintf("%s[%d]", n.path, i) == path {
					return setAt(tree, n.path, append(append([]any{}, x[:i]...), x[i+1:]...))
				}
			}
		}
	}
	return tree
}

// cloneJSON deep-copies a decoded JSON tree.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneJSON(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = cloneJSON(e)
		}
		return a
	}
	return v
}

// check returns the failure classes of an answer ("" none).
func (f *fuzzer) check(op apiOperation, req apiRequest, got answer, written int64) []string {
	var out []string
	if got.err != nil {
		if strings.Contains(got.err.Error(), "net/http: invalid header") || strings.Contains(got.err.Error(), "build the request") {
			return nil // the client refused to send it: not a request the service saw
		}
		out = append(out, "hang")
		if written != 0 {
			out = append(out, "write by a refused request")
		}
		return out
	}
	ct := got.header.Get("Content-Type")
	switch {
	case got.status >= 500:
		out = append(out, fmt.Sprintf("%d %s", got.status, got.errorCode()))
	case got.status >= 300 && got.status < 400:
		out = append(out, fmt.Sprintf("redirect %d", got.status))
	case got.status >= 400:
		if !strings.HasPrefix(ct, "application/json") {
			out = append(out, fmt.Sprintf("%d not JSON (%s)", got.status, ct))
		} else if msg := f.checkErrorBody(got); msg != "" {
			out = append(out, msg)
		}
	default:
		switch {
		case strings.HasPrefix(ct, "application/json"):
			if !json.Valid(got.body) {
				out = append(out, "2xx with a body that is not JSON")
			}
		case strings.HasPrefix(ct, "text/event-stream"), strings.HasPrefix(ct, "text/csv"):
		default:
			out = append(out, "2xx of type "+ct)
		}
	}
	if got.status >= 300 && written != 0 {
		out = append(out, "write by a refused request")
	}
	return out
}

// checkErrorBody checks an error answer against the documented shape:
// {"error":{"code","message","details"?}} with a documented code whose
// status is the answer's.
func (f *fuzzer) checkErrorBody(got answer) string {
	var body struct {
		Error *struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Details json.RawMessage `json:"details"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(got.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil {
		return "error body not in the documented shape"
	}
	want, ok := f.spec.errorStatus[body.Error.Code]
	switch {
	case !ok:
		return "undocumented error code " + body.Error.Code
	case want != got.status:
		return fmt.Sprintf("%s answered %d, documented %d", body.Error.Code, got.status, want)
	case strings.TrimSpace(body.Error.Message) == "":
		return "error without a message"
	case len(body.Error.Details) > 0 && body.Error.Details[0] != '{':
		return "error details not an object"
	}
	return ""
}
