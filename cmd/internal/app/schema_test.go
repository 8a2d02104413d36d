package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOpenAPISuccessAnswersHaveSchemas checks that every success answer
// with a body documents what the body is, and that every operation that
// takes an Idempotency-Key declares the Idempotent-Replayed header of its
// replays.
func TestOpenAPISuccessAnswersHaveSchemas(t *testing.T) {
	s := loadSpec(t)
	for _, o := range s.operations {
		op := s.operation(o.Method, o.Path)
		takesKey := false
		for _, p := range o.Params {
			if p.In == "header" && p.Name == headerIdempotencyKeyName {
				takesKey = true
			}
		}
		for _, status := range sortedKeys(mapOf(op["responses"])) {
			if !strings.HasPrefix(status, "2") || status == "204" {
				continue
			}
			r := s.resolve(mapOf(op["responses"])[status])
			content := mapOf(r["content"])
			if len(content) == 0 {
				t.Errorf("%s %s: no content (media type and schema)", o.route(), status)
			}
			for media, c := range content {
				if mapOf(c)["schema"] == nil {
					t.Errorf("%s %s %s: no schema", o.route(), status, media)
				}
			}
			if takesKey {
				if _, ok := mapOf(r["headers"])["Idempotent-Replayed"]; !ok {
					t.Errorf("%s %s: takes %s but does not declare Idempotent-Replayed", o.route(), status, headerIdempotencyKeyName)
				}
			}
		}
	}
}

// headerIdempotencyKeyName is the request header that makes a mutation
// replayable.
const headerIdempotencyKeyName = "Idempotency-Key"

// TestCompanionAnswersMatchSchemas calls the companion routes of the
// running service as a linked user and checks each answer against the
// schema openapi.yaml documents for it.
func TestCompanionAnswersMatchSchemas(t *testing.T) {
	st := startAPIStack(t)
	spec := loadSpec(t)
	userID := 9_140_000 + contractUsers.Add(1)
	user := st.signUp()
	if r := st.link(user, userID); r.status != http.StatusOK {
		t.Fatalf("link: %s %s", r.summary(), r.body)
	}
	// Gems to buy with, and a ledger entry by a game server.
	if r := st.call("POST", fmt.Sprintf("/v1/players/%d/mutations", userID), bearerOf(contractKey),
		map[string]any{"ops": []any{map[string]any{"op": "currency.add", "currency": "gems", "amount": 100}}},
		"Idempotency-Key", "schema-gems"); r.status != http.StatusOK {
		t.Fatalf("grant gems: %s %s", r.summary(), r.body)
	}
	stranger := st.signUp()
	me := bearerOf(user.IDToken)

	tests := []struct {
		name, method, target, path string
		caller                     credentials
		body                       any
		header                     []string
		replayed                   bool
	}{
		{name: "link status, linked", method: "GET", target: "/v1/me/link", path: "/v1/me/link", caller: me},
		{name: "link status, not linked", method: "GET", target: "/v1/me/link", path: "/v1/me/link", caller: bearerOf(stranger.IDToken)},
		{name: "catalog", method: "GET", target: "/v1/me/catalog", path: "/v1/me/catalog", caller: me},
		{name: "save", method: "GET", target: "/v1/me/save", path: "/v1/me/save", caller: me},
		{name: "purchase", method: "POST", target: "/v1/me/purchases", path: "/v1/me/purchases", caller: me,
			body: map[string]any{"sku": "speedPotions"}, header: []string{"Idempotency-Key", "schema-buy"}},
		{name: "purchase replayed", method: "POST", target: "/v1/me/purchases", path: "/v1/me/purchases", caller: me,
			body: map[string]any{"sku": "speedPotions"}, header: []string{"Idempotency-Key", "schema-buy"}, replayed: true},
		{name: "setting", method: "PUT", target: "/v1/me/settings/volume", path: "/v1/me/settings/{key}", caller: me,
			body: map[string]any{"value": 40}, header: []string{"Idempotency-Key", "schema-volume"}},
		{name: "collection add", method: "POST", target: "/v1/me/collections/wishlist", path: "/v1/me/collections/{collection}", caller: me,
			body: map[string]any{"element": "cargoCrane"}, header: []string{"Idempotency-Key", "schema-wish"}},
		{name: "ledger", method: "GET", target: "/v1/me/ledger?limit=2", path: "/v1/me/ledger", caller: me},
		{name: "ledger, last page", method: "GET", target: "/v1/me/ledger?limit=100", path: "/v1/me/ledger", caller: me},
		{name: "event ticket", method: "POST", target: "/v1/me/events/tickets", path: "/v1/me/events/tickets", caller: me},
		{name: "unlink", method: "DELETE", target: "/v1/me/link", path: "/v1/me/link", caller: me},
		{name: "unlink, not linked", method: "DELETE", target: "/v1/me/link", path: "/v1/me/link", caller: bearerOf(stranger.IDToken)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := st.call(tt.method, tt.target, tt.caller, tt.body, tt.header...)
			if r.status/100 != 2 {
				t.Fatalf("%s %s = %s %s", tt.method, tt.target, r.summary(), r.body)
			}
			if got := r.header.Get("Idempotent-Replayed") == "true"; got != tt.replayed {
				t.Errorf("Idempotent-Replayed = %q, want replayed %v", r.header.Get("Idempotent-Replayed"), tt.replayed)
			}
			schema := spec.answerSchema(t, tt.method, tt.path, strconv.Itoa(r.status), "application/json")
			var v any
			if err := json.Unmarshal(r.body, &v); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, r.body)
			}
			for _, problem := range spec.check(schema, v, "$", 0) {
				t.Errorf("%s\nin %s", problem, shortText(string(r.body), 2000))
			}
		})
	}
}

// TestCompanionEventsMatchSchemas opens the event stream of a linked and
// of an unlinked user and checks the first event's data against the schema
// that x-events documents for its name.
func TestCompanionEventsMatchSchemas(t *testing.T) {
	st := startAPIStack(t)
	spec := loadSpec(t)
	linked := st.signUp()
	if r := st.link(linked, 9_150_000+contractUsers.Add(1)); r.status != http.StatusOK {
		t.Fatalf("link: %s %s", r.summary(), r.body)
	}
	pending := st.signUp()
	events := mapOf(spec.response(t, "GET", "/v1/me/events", "200")["x-events"])
	for _, tt := range []struct {
		name string
		user *fbUser
		want string
	}{
		{name: "linked user", user: linked, want: "save"},
		{name: "user with a pending link", user: pending, want: "pending"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name, data := firstEvent(t, st, tt.user)
			if name != tt.want {
				t.Fatalf("first event = %q, want %q", name, tt.want)
			}
			schema := spec.resolve(mapOf(events[name])["schema"])
			if schema == nil {
				t.Fatalf("x-events of GET /v1/me/events documents no schema for event %q", name)
			}
			var v any
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				t.Fatalf("event data is not JSON: %v: %s", err, data)
			}
			for _, problem := range spec.check(schema, v, "$", 0) {
				t.Errorf("%s\nin %s", problem, shortText(data, 2000))
			}
		})
	}
}

// firstEvent opens u's event stream and reads its first event's name and data.
func firstEvent(t *testing.T, st *apiStack, u *fbUser) (name, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", st.base+"/v1/me/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.IDToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/me/events = %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && name != "":
			return name, data
		}
	}
	t.Fatalf("the stream ended before an event: %v", sc.Err())
	return "", ""
}

// operation is the spec's operation object of method on path.
func (s *apiSpec) operation(method, path string) map[string]any {
	return mapOf(mapOf(mapOf(s.root["paths"])[path])[strings.ToLower(method)])
}

// response is the documented answer of an operation with a status.
func (s *apiSpec) response(t testing.TB, method, path, status string) map[string]any {
	t.Helper()
	r := s.resolve(mapOf(s.operation(method, path)["responses"])[status])
	if r == nil {
		t.Fatalf("openapi.yaml documents no %s answer of %s %s", status, method, path)
	}
	return r
}

// answerSchema is the schema of an operation's answer with a status and media type.
func (s *apiSpec) answerSchema(t testing.TB, method, path, status, media string) map[string]any {
	t.Helper()
	schema := s.resolve(mapOf(mapOf(s.response(t, method, path, status)["content"])[media])["schema"])
	if schema == nil {
		t.Fatalf("openapi.yaml documents no %s schema for the %s answer of %s %s", media, status, method, path)
	}
	return schema
}

// check lists how v fails schema, for the part of JSON Schema the spec
// uses: type, enum, properties, required, additionalProperties, items,
// oneOf and $ref. Keywords it does not know (formats, bounds) are not checked.
func (s *apiSpec) check(schema map[string]any, v any, at string, depth int) []string {
	schema = s.resolve(schema)
	if schema == nil || depth > 30 {
		return nil
	}
	if branches := list(schema["oneOf"]); len(branches) > 0 {
		var all []string
		matched := 0
		for i, b := range branches {
			p := s.check(mapOf(b), v, at, depth+1)
			if len(p) == 0 {
				matched++
			}
			for _, msg := range p {
				all = append(all, fmt.Sprintf("oneOf[%d]: %s", i, msg))
			}
		}
		if matched != 1 {
			return append([]string{fmt.Sprintf("%s: matches %d of the oneOf schemas, want 1", at, matched)}, all...)
		}
		return nil
	}
	if typ, ok := schema["type"]; ok {
		types := []string{fmt.Sprint(typ)}
		if l, isList := typ.([]any); isList {
			types = types[:0]
			for _, x := range l {
				types = append(types, fmt.Sprint(x))
			}
		}
		found := false
		for _, want := range types {
			if jsonType(v, want) {
				found = true
			}
		}
		if !found {
			return []string{fmt.Sprintf("%s: %s, want %s", at, describe(v), strings.Join(types, " or "))}
		}
	}
	var problems []string
	if enum := list(schema["enum"]); len(enum) > 0 {
		ok := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				ok = true
			}
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
		}
	}
	switch x := v.(type) {
	case map[string]any:
		props := mapOf(schema["properties"])
		for _, name := range list(schema["required"]) {
			if _, ok := x[fmt.Sprint(name)]; !ok {
				problems = append(problems, fmt.Sprintf("%s: required property %q is missing", at, name))
			}
		}
		extra := schema["additionalProperties"]
		for _, name := range sortedKeys(x) {
			if p, ok := props[name]; ok {
				problems = append(problems, s.check(mapOf(p), x[name], at+"."+name, depth+1)...)
				continue
			}
			switch e := extra.(type) {
			case bool:
				if !e {
					problems = append(problems, fmt.Sprintf("%s: property %q is not in the schema (additionalProperties: false)", at, name))
				}
			case map[string]any:
				problems = append(problems, s.check(e, x[name], at+"."+name, depth+1)...)
			}
		}
	case []any:
		if items := mapOf(schema["items"]); items != nil {
			for i, item := range x {
				problems = append(problems, s.check(items, item, fmt.Sprintf("%s[%d]", at, i), depth+1)...)
			}
		}
	}
	return problems
}

// jsonType reports whether a decoded JSON value is of a JSON Schema type.
func jsonType(v any, typ string) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "null":
		return v == nil
	}
	return false
}

// describe names a decoded JSON value's type for a failure message.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return fmt.Sprintf("string %q", v)
	default:
		return fmt.Sprintf("%T %v", v, v)
	}
}

// TestSchemaCheck checks the schema checker on answers that break each
// keyword it knows.
func TestSchemaCheck(t *testing.T) {
	spec, err := parseSpec([]byte(`
openapi: 3.1.0
paths:
  /x:
    get:
      responses:
        "200": {description: ok}
components:
  schemas:
    ErrorCode: {type: string, enum: [INTERNAL], description: "| INTERNAL | 500 | x |"}
    Thing:
      type: object
      required: [id, kind]
      additionalProperties: false
      properties:
        id: {type: integer}
        kind: {type: string, enum: [a, b]}
        tags: {type: array, items: {type: string}}
        counts: {type: object, additionalProperties: {type: integer}}
        either: {oneOf: [{type: string}, {type: boolean}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	ref := map[string]any{"$ref": "#/components/schemas/Thing"}
	tests := []struct {
		name, answer string
		want         []string
	}{
		{name: "valid", answer: `{"id":1,"kind":"a","tags":["x"],"counts":{"c":2},"either":true}`},
		{name: "required missing", answer: `{"id":1}`, want: []string{`$: required property "kind" is missing`}},
		{name: "property not listed", answer: `{"id":1,"kind":"a","extra":0}`, want: []string{`$: property "extra" is not in the schema (additionalProperties: false)`}},
		{name: "wrong type", answer: `{"id":"1","kind":"a"}`, want: []string{`$.id: string "1", want integer`}},
		{name: "not an integer", answer: `{"id":1.5,"kind":"a"}`, want: []string{`$.id: float64 1.5, want integer`}},
		{name: "not in enum", answer: `{"id":1,"kind":"c"}`, want: []string{`$.kind: c is not one of [a b]`}},
		{name: "array item", answer: `{"id":1,"kind":"a","tags":[3]}`, want: []string{`$.tags[0]: float64 3, want string`}},
		{name: "map value", answer: `{"id":1,"kind":"a","counts":{"c":"2"}}`, want: []string{`$.counts.c: string "2", want integer`}},
		{name: "null array", answer: `{"id":1,"kind":"a","tags":null}`, want: []string{`$.tags: null, want array`}},
		{name: "no oneOf branch", answer: `{"id":1,"kind":"a","either":1}`, want: []string{
			`$.either: matches 0 of the oneOf schemas, want 1`,
			`oneOf[0]: $.either: float64 1, want string`,
			`oneOf[1]: $.either: float64 1, want boolean`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.answer), &v); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, spec.check(ref, v, "$", 0)); diff != "" {
				t.Errorf("check (-want +got):\n%s", diff)
			}
		})
	}
}
