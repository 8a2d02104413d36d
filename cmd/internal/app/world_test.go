package app

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/auth"
	"github.com/google/uuid"
)

// callerKind names one kind of caller of the contract tests.
type callerKind string

// The caller kinds, each with its own credentials.
const (
	callerNone          callerKind = "none"     // no credentials at all
	callerGarbage       callerKind = "garbage"  // Authorization: Bearer <garbage>
	callerBasic         callerKind = "basic"    // Authorization: Basic ...
	callerServer        callerKind = "server"   // the server key of this universe
	callerServerNext    callerKind = "next"     // the second key of a rotation
	callerServerForeign callerKind = "foreign"  // a server key of another universe
	callerLinked        callerKind = "linked"   // companion user linked to the own player
	callerUnlinked      callerKind = "unlinked" // companion user with no link
	callerSupport       callerKind = "support"  // role claim support
	callerAdmin         callerKind = "admin"    // role claim admin
	callerExpired       callerKind = "expired"  // an expired ID token
	callerRevoked       callerKind = "revoked"  // an ID token revoked after issue
	callerDisabled      callerKind = "disabled" // the token of a disabled account
	callerDeleted       callerKind = "deleted"  // the token of a deleted account
	callerAudience      callerKind = "aud"      // an ID token of another Firebase project
	callerWebhook       callerKind = "hook"     // a valid Roblox-Signature
	callerWebhookBad    callerKind = "badhook"  // a signature made with another secret
	callerWebhookStale  callerKind = "stale"    // a valid signature, 20 minutes old
)

// allCallers lists the caller kinds in the authorization matrix's column order.
var allCallers = []callerKind{
	callerNone, callerGarbage, callerBasic, callerServer, callerServerNext, callerServerForeign,
	callerLinked, callerUnlinked, callerSupport, callerAdmin, callerExpired, callerRevoked,
	callerDisabled, callerDeleted, callerAudience, callerWebhook, callerWebhookBad, callerWebhookStale,
}

// target is the player a request is about, with the job holding it and
// the job's session.
type target struct {
	user    int64
	job     string
	session string
}

// world is the data the contract tests act on: two players, each held by
// a job and linked to a companion user, and accounts for every caller kind.
type world struct {
	s *apiStack
	// own is the player of the linked caller, held by jobOwn; other is
	// another player, held by another job and linked to another user.
	own, other      target
	linked, linked2 *fbUser
	unlinked        *fbUser
	support, admin  *fbUser
	creds           map[callerKind]credentials
	settingKeys     []string
	collection      string
	sku             string
	schemaVersion   int
}

// newWorld builds the fixtures; ids start after base, so several tests
// can share the Firestore project.
func newWorld(s *apiStack, base int64) *world {
	s.t.Helper()
	w := &world{s: s, schemaVersion: s.game.SchemaVersion}
	tag := strconv.FormatInt(base, 10)
	w.own = target{user: base + 1, job: "job-own-" + tag}
	w.other = target{user: base + 2, job: "job-other-" + tag}
	for k := range s.game.Settings {
		w.settingKeys = append(w.settingKeys, k)
	}
	sort.Strings(w.settingKeys)
	for id, c := range s.game.Collections {
		if c.CompanionEditable {
			w.collection = id
		}
	}
	// The cheapest SKU, which the own player can afford after the fixture's top-up.
	cheapest := int64(-1)
	for _, v := range s.game.Catalog() {
		var total int64
		for _, p := range v.Price {
			total += p
		}
		if cheapest < 0 || total < cheapest {
			cheapest, w.sku = total, v.SKU
		}
	}

	w.linked, w.linked2, w.unlinked = s.signUp(), s.signUp(), s.signUp()
	w.support, w.admin = s.staff("support"), s.staff("admin")
	revoked, disabled, deleted := s.signUp(), s.signUp(), s.signUp()
	time.Sleep(1100 * time.Millisecond) // revocation compares whole seconds
	ctx := context.Background()
	if err := s.auth.RevokeRefreshTokens(ctx, revoked.UID); err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.auth.UpdateUser(ctx, disabled.UID, (&auth.UserToUpdate{}).Disabled(true)); err != nil {
		s.t.Fatal(err)
	}
	if err := s.auth.DeleteUser(ctx, deleted.UID); err != nil {
		s.t.Fatal(err)
	}
	now := time.Now().Unix()
	expired := tokenClaims(contractProject, w.unlinked.UID, now-7200)
	foreign := tokenClaims("someone-else", w.unlinked.UID, now)
	w.creds = map[callerKind]credentials{
		callerNone:          {},
		callerGarbage:       bearerOf("not-a-key-or-token"),
		callerBasic:         {authorization: "Basic " + "dXNlcjpwYXNz"},
		callerServer:        bearerOf(contractKey),
		callerServerNext:    bearerOf(contractNextKey),
		callerServerForeign: bearerOf(contractForeignKey),
		callerLinked:        {}, // set by relink, which renews the token
		callerUnlinked:      bearerOf(w.unlinked.IDToken),
		callerSupport:       bearerOf(w.support.IDToken),
		callerAdmin:         bearerOf(w.admin.IDToken),
		callerExpired:       bearerOf(unsignedToken(expired)),
		callerRevoked:       bearerOf(revoked.IDToken),
		callerDisabled:      bearerOf(disabled.IDToken),
		callerDeleted:       bearerOf(deleted.IDToken),
		callerAudience:      bearerOf(unsignedToken(foreign)),
		callerWebhook:       {sign: true, secret: contractWebhookSecret},
		callerWebhookBad:    {sign: true, secret: "not-the-webhook-secret"},
		callerWebhookStale:  {sign: true, secret: contractWebhookSecret, age: 20 * time.Minute},
	}
	w.repair()
	return w
}

// repair puts the fixtures back after a request that may have changed
// them (an unlink, a leave, an erasure): both players linked, held, with
// a committed version and gems to spend.
func (w *world) repair() {
	s := w.s
	s.t.Helper()
	for _, p := range []struct {
		u   *fbUser
		tgt *target
	}{{w.linked, &w.own}, {w.linked2, &w.other}} {
		r := s.call("GET", "/v1/me/link", bearerOf(p.u.IDToken), nil)
		if r.status != http.StatusOK {
			s.t.Fatalf("GET /v1/me/link: %s %s", r.summary(), r.body)
		}
		if id, _ := r.object()["userId"].(float64); r.object()["linked"] != true || int64(id) != p.tgt.user {
			if r.object()["linked"] == true {
				s.call("DELETE", "/v1/me/link", bearerOf(p.u.IDToken), nil)
			}
			if r := s.link(p.u, p.tgt.user); r.status != http.StatusOK {
				// Another account took the player after an erasure cleared
				// its link: erase it again, then link the fixture's user.
				if r.reason() != "PLAYER_LINKED_ELSEWHERE" {
					s.t.Fatalf("link %d: %s %s", p.tgt.user, r.summary(), r.body)
				}
				if r := s.call("DELETE", fmt.Sprintf("/v1/admin/players/%d", p.tgt.user), bearerOf(w.admin.IDToken), nil,
					"Idempotency-Key", uuid.NewString()); r.status != http.StatusOK {
					s.t.Fatalf("erase %d: %s %s", p.tgt.user, r.summary(), r.body)
				}
				if r := s.link(p.u, p.tgt.user); r.status != http.StatusOK {
					s.t.Fatalf("link %d after erasing it: %s %s", p.tgt.user, r.summary(), r.body)
				}
			}
		}
		p.tgt.session = s.join(p.tgt.user, p.tgt.job)
		r = s.call("GET", fmt.Sprintf("/v1/players/%d", p.tgt.user), bearerOf(contractKey), nil)
		var pl struct {
			Version int64 `json:"version"`
			Save    struct {
				Currencies map[string]int64 `json:"currencies"`
			} `json:"save"`
		}
		_ = json.Unmarshal(r.body, &pl)
		if pl.Version < 2 || pl.Save.Currencies["gems"] < 1000 || pl.Save.Currencies["coins"] < 100000 {
			r := s.call("POST", fmt.Sprintf("/v1/players/%d/mutations", p.tgt.user), bearerOf(contractKey),
				map[string]any{"ops": []any{
					map[string]any{"op": "currency.add", "currency": "gems", "amount": 100000},
					map[string]any{"op": "currency.add", "currency": "coins", "amount": 10000000},
				}}, "Idempotency-Key", uuid.NewString())
			if r.status != http.StatusOK {
				s.t.Fatalf("top up %d: %s %s", p.tgt.user, r.summary(), r.body)
			}
			s.commit(p.tgt.user)
		}
	}
	w.creds[callerLinked] = bearerOf(w.linked.IDToken)
}

// bulkJob makes a bulk job in the state the route acts on (a draft to
// start or cancel, a running job to pause, a paused one to resume) and
// returns its id. Its players have no save and its rate is one a second,
// so it stays running while the route is called and changes nothing.
func (w *world) bulkJob(path string) string {
	s := w.s
	s.t.Helper()
	admin := bearerOf(w.admin.IDToken)
	ids := make([]int64, 60)
	for i := range ids {
		ids[i] = 9_990_000_001 + int64(i)
	}
	r := s.call("POST", "/v1/admin/bulk-jobs", admin, map[string]any{
		"selection": map[string]any{"kind": "ids", "userIds": ids},
		"ops":       []any{map[string]any{"op": "currency.add", "currency": "gems", "amount": 1}},
		"reason":    "contract test", "ticket": "T-1", "rate": 1,
	}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		s.t.Fatalf("create a bulk job: %s %s", r.summary(), r.body)
	}
	id, _ := r.object()["job"].(map[string]any)["jobId"].(string)
	// Cancelled when the test ends, so no later test's service (same
	// project) spends its runner on these slow jobs.
	s.t.Cleanup(func() { s.call("POST", "/v1/admin/bulk-jobs/"+id+"/cancel", admin, nil) })
	var steps []string
	switch {
	case strings.HasSuffix(path, "/pause"):
		steps = []string{"start"}
	case strings.HasSuffix(path, "/resume"):
		steps = []string{"start", "pause"}
	}
	for _, step := range steps {
		if r := s.call("POST", "/v1/admin/bulk-jobs/"+id+"/"+step, admin, nil); r.status != http.StatusOK {
			s.t.Fatalf("%s bulk job %s: %s %s", step, id, r.summary(), r.body)
		}
	}
	return id
}

// targetOf is the player a caller's request is about: own or other.
func (w *world) targetOf(own bool) target {
	if own {
		return w.own
	}
	return w.other
}

// builder makes the valid request of an operation: path, query and
// header parameters and a body generated from the operation's schemas,
// with the values the fixtures name (the target player, its session, a
// declared setting, the cheapest SKU) where the spec's names call for them.
type builder struct {
	w   *world
	rng *rand.Rand
	tgt target
	// code is the link code path parameters get.
	code string
	// op and caller are the request being built.
	op     apiOperation
	caller callerKind
}

// request builds the valid request of op for a caller.
func (b *builder) request(op apiOperation, caller callerKind) apiRequest {
	r := apiRequest{method: op.Method, header: http.Header{}, caller: caller, what: "valid"}
	b.op, b.caller = op, caller
	path := op.Path
	query := url.Values{}
	for _, p := range op.Params {
		v, ok := b.param(p)
		if !ok {
			continue
		}
		switch p.In {
		case "path":
			path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(v))
		case "query":
			query.Set(p.Name, v)
		case "header":
			r.header.Set(p.Name, v)
		}
	}
	r.target = path
	if len(query) > 0 {
		r.target += "?" + query.Encode()
	}
	if op.Body != nil {
		raw, err := json.Marshal(b.value("", op.Body, 0))
		if err != nil {
			b.w.s.t.Fatal(err)
		}
		r.body = raw
		r.header.Set("Content-Type", "application/json")
	}
	return r
}

// param is the valid value of a parameter, and whether to send it.
func (b *builder) param(p apiParam) (string, bool) {
	switch p.Name {
	case "userId":
		return strconv.FormatInt(b.tgt.user, 10), true
	case "sessionId":
		return b.tgt.session, true
	case "jobId", "Roblox-Job-Id":
		return b.tgt.job, true
	case "code":
		return b.code, true
	case "bulkJobId":
		if b.caller != callerAdmin {
			return "bj0000000000000000000000", true // refused before the job is looked up
		}
		return b.w.bulkJob(b.op.Path), true
	case "key":
		return "volume", true
	case "collection":
		return b.w.collection, true
	case "element":
		return "contract-element", true
	case "version", "from":
		if p.Schema["type"] == "integer" {
			return "0", true
		}
	case "to":
		if p.Schema["type"] == "integer" {
			return "1", true
		}
	case "observedVersion":
		return "1", true
	case "timeout":
		return "0s", true
	case "Idempotency-Key":
		return uuid.NewString(), true
	case "Savesync-Schema-Version":
		return strconv.Itoa(b.w.schemaVersion), true
	case "roblox-signature", "Roblox-Signature":
		return "", false // the caller's credentials sign the body
	}
	if !p.Required {
		return "", false
	}
	switch p.Schema["type"] {
	case "integer":
		return "1", true
	default:
		return "contract", true
	}
}

// field is the value the fixtures give a body property, and whether they
// name one (nil with true: leave the property out).
func (b *builder) field(name string) (any, bool) {
	switch name {
	case "userId", "UserId":
		return b.tgt.user, true
	case "jobId":
		return b.tgt.job, true
	case "schemaVersion":
		return b.w.schemaVersion, true
	case "sessionIds":
		return []any{b.tgt.session}, true
	case "idempotencyKey", "NotificationId":
		return uuid.NewString(), true
	case "ops":
		return []any{map[string]any{"op": "settings.set", "key": "volume", "value": b.rng.Intn(101)}}, true
	case "sku":
		return b.w.sku, true
	case "value":
		return b.rng.Intn(101), true
	case "element":
		return "contract-element", true
	case "reason":
		return "contract test", true
	case "ticket":
		return "T-1", true
	case "version":
		return 0, true
	case "EventType":
		return "RightToErasureRequest", true
	case "EventTime":
		return time.Now().UTC().Format(time.RFC3339), true
	case "EventPayload":
		return map[string]any{"UserId": b.tgt.user}, true
	}
	return nil, false
}

// value generates a valid instance of schema: required properties and
// those the fixtures name, the first enum value, the minimum.
func (b *builder) value(name string, schema map[string]any, depth int) any {
	if v, ok := b.field(name); ok && name != "" {
		return v
	}
	if enum := list(schema["enum"]); len(enum) > 0 {
		return enum[0]
	}
	switch schema["type"] {
	case "object":
		out := map[string]any{}
		required := map[string]bool{}
		for _, r := range list(schema["required"]) {
			required[fmt.Sprint(r)] = true
		}
		props := mapOf(schema["properties"])
		for _, k := range sortedKeys(props) {
			if _, named := b.field(k); !named && !required[k] {
				continue
			}
			if depth < 8 {
				out[k] = b.value(k, mapOf(props[k]), depth+1)
			}
		}
		return out
	case "array":
		return []any{b.value("", mapOf(schema["items"]), depth+1)}
	case "integer", "number":
		if m, ok := schema["minimum"]; ok {
			return m
		}
		return 1
	case "boolean":
		return false
	case "string":
		return "contract"
	}
	return "contract"
}
