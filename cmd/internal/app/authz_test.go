package app

import (
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// authorizationMatrix says who may call every route of openapi.yaml: one
// row per route, one column per caller kind (see allCallers), each cell
// the answer to the route's valid request about the own player and about
// another player ("own|other" where they differ; one value where they do
// not). A route in the spec or served by the router that has no row here
// fails TestAuthorizationMatrix, so a new route says who may call it.
//
// Cells: 2xx is success; a status alone is that status with the code the
// spec maps it to (401 UNAUTHENTICATED, 403 PERMISSION_DENIED); these
// carry details.reason too:
//
//	NL  403 PERMISSION_DENIED/NOT_LINKED     (no linked player)
//	RR  403 PERMISSION_DENIED/ROLE_REQUIRED  (no support or admin role)
//	AL  403 PERMISSION_DENIED/ALREADY_LINKED (a linked user asks for a link code)
//
// The own and other player answer alike on every route: a companion user
// names no player (the /v1/me routes act on the linked one, and the
// player routes refuse ID tokens), game servers reach every player of
// their universe (a lease fences writes of a session, it does not
// authorise), and staff reach every player.
const authorizationMatrix = `
route                                           | none | garbage | basic | server | next | foreign | linked | unlinked | support | admin | expired | revoked | disabled | deleted | aud | hook | badhook | stale
GET /healthz                                    | 2xx  | 2xx     | 2xx   | 2xx    | 2xx  | 2xx     | 2xx    | 2xx      | 2xx     | 2xx   | 2xx     | 2xx     | 2xx      | 2xx     | 2xx | 2xx  | 2xx     | 2xx
GET /readyz                                     | 2xx  | 2xx     | 2xx   | 2xx    | 2xx  | 2xx     | 2xx    | 2xx      | 2xx     | 2xx   | 2xx     | 2xx     | 2xx      | 2xx     | 2xx | 2xx  | 2xx     | 2xx
POST /v1/sessions                               | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/sessions/{sessionId}/renew             | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/sessions/{sessionId}/leave             | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/batch/sessions/renew                   | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/players/{userId}                        | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/players/{userId}/mutations             | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/batch/mutations                        | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/servers/{jobId}/changes                 | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/link-codes/{code}/redeem               | 401  | 401     | 401   | 2xx    | 2xx  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/me/link                                 | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | 2xx      | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
DELETE /v1/me/link                              | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | 2xx      | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/me/link-codes                          | 401  | 401     | 401   | 401    | 401  | 401     | AL     | 2xx      | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/me/catalog                              | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | 2xx      | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/me/save                                 | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | NL       | NL      | NL    | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/me/purchases                           | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | NL       | NL      | NL    | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
PUT /v1/me/settings/{key}                       | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | NL       | NL      | NL    | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/me/collections/{collection}            | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | NL       | NL      | NL    | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
DELETE /v1/me/collections/{collection}/{element} | 401 | 401     | 401   | 401    | 401  | 401     | 2xx    | NL       | NL      | NL    | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/me/mutations                           | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | NL       | NL      | NL    | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/me/ledger                               | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | NL       | NL      | NL    | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/me/events/tickets                      | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | 2xx      | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/me/events                               | 401  | 401     | 401   | 401    | 401  | 401     | 2xx    | 2xx      | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/admin/players/{userId}/ledger           | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/admin/players/{userId}/versions/{version} | 401 | 401    | 401   | 401    | 401  | 401     | RR     | RR       | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/admin/players/{userId}/diff             | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/admin/players/{userId}/compensations   | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | 2xx     | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/admin/players/{userId}/restore         | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
DELETE /v1/admin/players/{userId}               | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/admin/bulk-jobs                        | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/admin/bulk-jobs                         | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/admin/bulk-jobs/{bulkJobId}             | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/admin/bulk-jobs/{bulkJobId}/start      | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/admin/bulk-jobs/{bulkJobId}/pause      | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/admin/bulk-jobs/{bulkJobId}/resume     | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/admin/bulk-jobs/{bulkJobId}/cancel     | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
GET /v1/admin/bulk-jobs/{bulkJobId}/results     | 401  | 401     | 401   | 401    | 401  | 401     | RR     | RR       | RR      | 2xx   | 401     | 401     | 401      | 401     | 401 | 401  | 401     | 401
POST /v1/webhooks/roblox                        | 401  | 401     | 401   | 401    | 401  | 401     | 401    | 401      | 401     | 401   | 401     | 401     | 401      | 401     | 401 | 2xx  | 401     | 401
`

// cellWant is the expected answer of one cell.
type cellWant struct {
	status string // "2xx" or a status number
	reason string // details.reason, when the cell names one
}

func (c cellWant) String() string {
	if c.reason != "" {
		return c.status + "/" + c.reason
	}
	return c.status
}

// parseMatrix reads authorizationMatrix into route → caller → [own, other].
func parseMatrix(t *testing.T) map[string]map[callerKind][2]cellWant {
	t.Helper()
	aliases := map[string]cellWant{
		"NL": {"403", "NOT_LINKED"},
		"RR": {"403", "ROLE_REQUIRED"},
		"AL": {"403", "ALREADY_LINKED"},
	}
	parse := func(s string) cellWant {
		if a, ok := aliases[s]; ok {
			return a
		}
		if s != "2xx" {
			if _, err := strconv.Atoi(s); err != nil {
				t.Fatalf("authorization matrix: bad cell %q", s)
			}
		}
		return cellWant{status: s}
	}
	lines := strings.Split(strings.TrimSpace(authorizationMatrix), "\n")
	var cols []callerKind
	for _, h := range strings.Split(lines[0], "|")[1:] {
		cols = append(cols, callerKind(strings.TrimSpace(h)))
	}
	if diff := cmp.Diff(allCallers, cols); diff != "" {
		t.Fatalf("authorization matrix columns (-caller kinds +columns):\n%s", diff)
	}
	out := map[string]map[callerKind][2]cellWant{}
	for _, line := range lines[1:] {
		cells := strings.Split(line, "|")
		route := strings.TrimSpace(cells[0])
		if len(cells)-1 != len(cols) {
			t.Fatalf("authorization matrix: %s has %d cells, want %d", route, len(cells)-1, len(cols))
		}
		if _, dup := out[route]; dup {
			t.Fatalf("authorization matrix: %s appears twice", route)
		}
		row := map[callerKind][2]cellWant{}
		for i, c := range cells[1:] {
			own, other, split := strings.Cut(strings.TrimSpace(c), "|")
			if !split {
				other = own
			}
			row[cols[i]] = [2]cellWant{parse(own), parse(other)}
		}
		out[route] = row
	}
	return out
}

// TestAuthorizationMatrix sends every route's valid request as every kind
// of caller, about the own player and another, and compares each answer
// with the matrix.
func TestAuthorizationMatrix(t *testing.T) {
	matrix := parseMatrix(t)
	spec := loadSpec(t)
	s := startAPIStack(t)

	// Every route, documented or served, has a row, and every row a route.
	var documented, served, rows []string
	for _, o := range spec.operations {
		documented = append(documented, o.route())
	}
	for _, r := range s.app.engine.Routes() {
		served = append(served, r.Method+" "+specRoute(r.Path))
	}
	for r := range matrix {
		rows = append(rows, r)
	}
	sort.Strings(documented)
	sort.Strings(served)
	sort.Strings(rows)
	if diff := cmp.Diff(documented, rows); diff != "" {
		t.Errorf("routes of openapi.yaml without a row, or rows without a route (-spec +matrix):\n%s", diff)
	}
	if diff := cmp.Diff(served, rows); diff != "" {
		t.Errorf("served routes without a row, or rows without a route (-served +matrix):\n%s", diff)
	}

	w := newWorld(s, 8_800_000)
	rng := rand.New(rand.NewSource(1))
	fresh := int64(8_800_100)
	var failures []string
	cells := 0
	for _, op := range spec.operations {
		row, ok := matrix[op.route()]
		if !ok {
			continue
		}
		for _, caller := range allCallers {
			for i, own := range []bool{true, false} {
				want := row[caller][i]
				b := &builder{w: w, rng: rng, tgt: w.targetOf(own), code: "NOCODE00"}
				if strings.Contains(op.Path, "{code}") {
					// Redeeming links the code's account to the player in the
					// body: a fresh account's code for a fresh player.
					fresh++
					b.code = s.linkCode(s.signUp())
					b.tgt.user = fresh
				}
				req := b.request(op, caller)
				w.creds[caller].apply(&req)
				got := s.do(req)
				cells++
				name := fmt.Sprintf("%s %s %s", op.route(), caller, map[bool]string{true: "own", false: "other"}[own])
				if msg := checkCell(spec, want, got); msg != "" {
					failures = append(failures, fmt.Sprintf("%s: %s\n    %s\n    answer: %s", name, msg, req, shortText(string(got.body), 300)))
				}
				if got.status >= 200 && got.status < 300 {
					w.repair()
				}
			}
		}
	}
	t.Logf("%d routes × %d callers × own/other player: %d cells", len(matrix), len(allCallers), cells)
	if len(failures) > 0 {
		t.Errorf("%d cells of the authorization matrix answered otherwise:\n%s", len(failures), strings.Join(failures, "\n"))
	}
}

// checkCell compares an answer with a cell; "" when it matches.
func checkCell(spec *apiSpec, want cellWant, got answer) string {
	if got.err != nil {
		return "want " + want.String() + ", got no answer: " + got.err.Error()
	}
	if want.status == "2xx" {
		if got.status < 200 || got.status > 299 {
			return fmt.Sprintf("want 2xx, got %s", got.summary())
		}
		return ""
	}
	if strconv.Itoa(got.status) != want.status {
		return fmt.Sprintf("want %s, got %s", want, got.summary())
	}
	var codes []string
	for code, status := range spec.errorStatus {
		if strconv.Itoa(status) == want.status {
			codes = append(codes, code)
		}
	}
	if len(codes) == 1 && got.errorCode() != codes[0] {
		return fmt.Sprintf("want %s %s, got %s", want, codes[0], got.summary())
	}
	if want.reason != "" && got.reason() != want.reason {
		return fmt.Sprintf("want %s, got %s", want, got.summary())
	}
	return ""
}
