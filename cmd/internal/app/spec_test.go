package app

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// specPath is openapi.yaml, the API contract, from this package's directory.
const specPath = "../../../openapi.yaml"

// apiSpec is the part of openapi.yaml the contract tests read: the
// operations with their parameters and request bodies, and the error codes
// with their HTTP statuses.
type apiSpec struct {
	root       map[string]any
	operations []apiOperation
	// errorStatus maps every documented error code to its HTTP status
	// (the table of components.schemas.ErrorCode).
	errorStatus map[string]int
}

// apiOperation is one method on one path of the spec.
type apiOperation struct {
	Method string // upper case: GET, POST, ...
	Path   string // as documented: /v1/players/{userId}
	Tags   []string
	// Security names the schemes that admit the caller: serverKey,
	// firebase, or none (public routes such as health and the webhook,
	// whose signature is checked by the handler).
	Security []string
	Params   []apiParam
	// Body is the request body's JSON schema (references resolved); nil
	// when the operation takes no body.
	Body         map[string]any
	BodyRequired bool
	// Streams is true for answers sent as an event stream.
	Streams bool
}

// apiParam is a path, query or header parameter.
type apiParam struct {
	Name     string
	In       string // path, query, header
	Required bool
	Schema   map[string]any
}

// route is the operation as "METHOD /path".
func (o apiOperation) route() string { return o.Method + " " + o.Path }

// loadSpec reads openapi.yaml.
func loadSpec(t testing.TB) *apiSpec {
	t.Helper()
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSpec(raw)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return s
}

// parseSpec reads the operations and error codes of an OpenAPI document.
func parseSpec(raw []byte) (*apiSpec, error) {
	s := &apiSpec{errorStatus: map[string]int{}}
	if err := yaml.Unmarshal(raw, &s.root); err != nil {
		return nil, err
	}
	var defaultSecurity []string
	for _, req := range list(s.root["security"]) {
		for name := range mapOf(req) {
			defaultSecurity = append(defaultSecurity, name)
		}
	}
	paths := mapOf(s.root["paths"])
	for _, path := range sortedKeys(paths) {
		item := mapOf(paths[path])
		for _, method := range []string{"get", "put", "post", "delete", "patch"} {
			raw, ok := item[method]
			if !ok {
				continue
			}
			op := mapOf(raw)
			o := apiOperation{Method: strings.ToUpper(method), Path: path, Security: defaultSecurity}
			for _, tag := range list(op["tags"]) {
				o.Tags = append(o.Tags, fmt.Sprint(tag))
			}
			if sec, ok := op["security"]; ok {
				o.Security = nil
				for _, req := range list(sec) {
					for name := range mapOf(req) {
						o.Security = append(o.Security, name)
					}
				}
			}
			for _, p := range append(list(item["parameters"]), list(op["parameters"])...) {
				pm := s.resolve(p)
				o.Params = append(o.Params, apiParam{
					Name:     fmt.Sprint(pm["name"]),
					In:       fmt.Sprint(pm["in"]),
					Required: pm["required"] == true,
					Schema:   s.resolve(pm["schema"]),
				})
			}
			if rb := s.resolve(op["requestBody"]); rb != nil {
				o.BodyRequired = rb["required"] == true
				if js, ok := mapOf(rb["content"])["application/json"]; ok {
					o.Body = s.resolveDeep(mapOf(js)["schema"], 0)
				}
			}
			for _, r := range mapOf(op["responses"]) {
				if desc, _ := s.resolve(r)["description"].(string); strings.Contains(desc, "text/event-stream") {
					o.Streams = true
				}
			}
			s.operations = append(s.operations, o)
		}
	}

	// The ErrorCode description is a Markdown table: | code | HTTP | meaning |.
	codes := mapOf(mapOf(mapOf(s.root["components"])["schemas"])["ErrorCode"])
	row := regexp.MustCompile(`(?m)^\|\s*([A-Z_]+)\s*\|\s*(\d{3})\s*\|`)
	for _, m := range row.FindAllStringSubmatch(fmt.Sprint(codes["description"]), -1) {
		var status int
		fmt.Sscan(m[2], &status)
		s.errorStatus[m[1]] = status
	}
	for _, c := range list(codes["enum"]) {
		if _, ok := s.errorStatus[fmt.Sprint(c)]; !ok {
			return nil, fmt.Errorf("error code %v is in the enum but not in the table of statuses", c)
		}
	}
	if len(s.operations) == 0 || len(s.errorStatus) == 0 {
		return nil, fmt.Errorf("no operations or no error codes found")
	}
	return s, nil
}

// resolve follows a $ref to its target (one level).
func (s *apiSpec) resolve(v any) map[string]any {
	m := mapOf(v)
	for i := 0; m != nil && i < 10; i++ {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var target any = s.root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			target = mapOf(target)[part]
		}
		m = mapOf(target)
	}
	return m
}

// resolveDeep resolves every $ref inside a schema, so generators can walk
// it without the document.
func (s *apiSpec) resolveDeep(v any, depth int) map[string]any {
	m := s.resolve(v)
	if m == nil || depth > 20 {
		return m
	}
	out := make(map[string]any, len(m))
	for k, val := range m {
		switch k {
		case "properties":
			props := map[string]any{}
			for name, p := range mapOf(val) {
				props[name] = s.resolveDeep(p, depth+1)
			}
			out[k] = props
		case "items":
			out[k] = s.resolveDeep(val, depth+1)
		case "additionalProperties":
			if _, isMap := val.(map[string]any); isMap {
				out[k] = s.resolveDeep(val, depth+1)
			} else {
				out[k] = val
			}
		default:
			out[k] = val
		}
	}
	return out
}

// specRoute is a Gin route in the spec's syntax.
func specRoute(ginPath string) string {
	return regexp.MustCompile(`:([A-Za-z]+)`).ReplaceAllString(ginPath, "{$1}")
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
