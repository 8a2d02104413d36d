package handlers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestTeleportRaceKeepsEverythingEarned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const user = 40
	a := e.join(user, "job-a", false)
	if a.status != 200 {
		t.Fatalf("join a: %d %s", a.status, a.body)
	}
	sessA := a.json(t)["session"].(map[string]any)["id"].(string)
	if r := e.mutate(user, "a-1", `{"ops":[{"op":"currency.add","currency":"coins","amount":10}]}`, "Roblox-Job-Id", "job-a"); r.status != 200 {
		t.Fatalf("a earns: %d %s", r.status, r.body)
	}

	// The player teleports: the new server joins before the old one leaves.
	held := e.join(user, "job-b", false)
	if held.status != 409 || held.errorCode(t) != "SESSION_HELD" {
		t.Fatalf("join b without steal: %d %s, want 409 SESSION_HELD", held.status, held.body)
	}
	details := held.json(t)["error"].(map[string]any)["details"].(map[string]any)
	if details["jobId"] != "job-a" || details["expiresAt"] == nil {
		t.Errorf("SESSION_HELD details = %v, want the holder and its expiry", details)
	}
	b := e.join(user, "job-b", true)
	if b.status != 200 {
		t.Fatalf("join b with steal: %d %s", b.status, b.body)
	}
	bj := b.json(t)
	if got := num(bj["session"].(map[string]any)["epoch"]); got != 2 {
		t.Errorf("b's lease epoch = %d, want 2", got)
	}
	if got := bj["replaced"].(map[string]any)["jobId"]; got != "job-a" {
		t.Errorf("replaced = %v, want job-a", got)
	}
	sessB := bj["session"].(map[string]any)["id"].(string)

	// The old server's late deltas still apply; its leave releases nothing.
	if r := e.mutate(user, "a-2", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`, "Roblox-Job-Id", "job-a"); r.status != 200 {
		t.Fatalf("a's late delta: %d %s", r.status, r.body)
	}
	leaveA := e.do("POST", "/v1/sessions/"+sessA+"/leave", nil, map[string]string{"Idempotency-Key": "leave-a"})
	if leaveA.status != 200 || leaveA.json(t)["released"] != false {
		t.Errorf("a leaves: %d %s, want released=false", leaveA.status, leaveA.body)
	}
	p := e.player(user)
	if got := balance(t, p, "coins"); got != 115 {
		t.Errorf("coins = %d, want 115: nothing earned on a is lost", got)
	}
	if p.Session == nil || p.Session.JobID != "job-b" {
		t.Errorf("session = %+v, want job-b's", p.Session)
	}
	leaveB := e.do("POST", "/v1/sessions/"+sessB+"/leave", nil, map[string]string{"Idempotency-Key": "leave-b"})
	if leaveB.status != 200 || leaveB.json(t)["released"] != true {
		t.Errorf("b leaves: %d %s, want released=true", leaveB.status, leaveB.body)
	}
}

func TestExpiredLeaseCanBeTaken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.join(41, "crashed", false); r.status != 200 {
		t.Fatalf("join: %d %s", r.status, r.body)
	}
	e.clock.Advance(91 * time.Second)
	if r := e.join(41, "next", false); r.status != 200 {
		t.Fatalf("join after expiry: %d %s", r.status, r.body)
	}
}

// seed writes a player document as an older version of the game left it.
func (e *testEnv) seed(userID int64, schema int, version int64, raw map[string]any) {
	e.t.Helper()
	_, err := e.clients.Firestore.Doc(fmt.Sprintf("players/%d", userID)).Set(context.Background(), map[string]any{
		"version":       version,
		"schemaVersion": schema,
		"save":          raw,
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestJoinMigratesEveryPriorSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name   string
		user   int64
		schema int
		raw    map[string]any
	}{
		{"from v1", 50, 1, map[string]any{"coins": int64(70), "items": map[string]any{"sword": int64(1)}}},
		{"from v2", 51, 2, map[string]any{"currencies": map[string]any{"coins": int64(70)}, "items": map[string]any{"sword": int64(1)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.seed(tc.user, tc.schema, 4, tc.raw)
			r := e.join(tc.user, "job", false)
			if r.status != 200 {
				t.Fatalf("join: %d %s", r.status, r.body)
			}
			p := e.player(tc.user)
			s := savedOf(t, p)
			if s.Currencies["coins"] != 70 || s.Items["sword"] != 1 || s.Settings["music"] != true || p.SchemaVersion != 3 {
				t.Errorf("migrated save = %+v schema %d", s, p.SchemaVersion)
			}
			stored := e.rawPlayer(tc.user)
			if got := stored["schemaVersion"]; got != int64(tc.schema) {
				t.Errorf("join wrote the migration: stored schema %v, want %d until the next write", got, tc.schema)
			}
			// The next write stores the migrated save in its own transaction.
			if r := e.mutate(tc.user, "after-migration", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`); r.status != 200 {
				t.Fatalf("mutate: %d %s", r.status, r.body)
			}
			stored = e.rawPlayer(tc.user)
			if stored["schemaVersion"] != int64(3) || stored["version"] != int64(5) {
				t.Errorf("after write: schema %v version %v, want 3 and 5", stored["schemaVersion"], stored["version"])
			}
			coins := stored["save"].(map[string]any)["currencies"].(map[string]any)["coins"]
			if coins != int64(71) {
				t.Errorf("stored coins = %v, want 71", coins)
			}
		})
	}
}

// rawPlayer reads the stored player document as the database holds it.
func (e *testEnv) rawPlayer(userID int64) map[string]any {
	e.t.Helper()
	snap, err := e.clients.Firestore.Doc(fmt.Sprintf("players/%d", userID)).Get(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return snap.Data()
}

func TestFailingMigrationLeavesSaveUntouched(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed(52, 2, 9, map[string]any{"currencies": map[string]any{"gems": int64(3)}})
	before := e.rawPlayer(52)
	r := e.join(52, "job", false)
	if r.status != 422 || r.errorCode(t) != "SAVE_MIGRATION_FAILED" {
		t.Fatalf("join: %d %s, want 422 SAVE_MIGRATION_FAILED", r.status, r.body)
	}
	details := r.json(t)["error"].(map[string]any)["details"].(map[string]any)
	if details["step"] != "2->3" || details["field"] != "currencies.coins" {
		t.Errorf("details = %v, want step 2->3 and field currencies.coins", details)
	}
	if m := e.mutate(52, "blocked", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`); m.status != 422 {
		t.Errorf("mutation on an unmigratable save: %d %s, want 422", m.status, m.body)
	}
	if diff := cmp.Diff(before, e.rawPlayer(52)); diff != "" {
		t.Errorf("stored save changed (-before +after):\n%s", diff)
	}
}

func TestSchemaTooNew(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed(53, 4, 2, map[string]any{"currencies": map[string]any{"coins": int64(1)}})
	e.seed(55, 2, 2, map[string]any{"currencies": map[string]any{"coins": int64(1)}})
	joinAs := func(user int64, schema int) response {
		return e.do("POST", "/v1/sessions", map[string]any{"userId": user, "jobId": "job", "schemaVersion": schema}, nil)
	}
	tests := []struct {
		name        string
		r           response
		wantMessage string
		wantDetails map[string]any
	}{
		{
			name:        "a save newer than the service",
			r:           joinAs(53, 3),
			wantMessage: "this player's save is stored at schema 4, newer than this service's current schema 3",
			wantDetails: map[string]any{"storedSchema": 4.0, "serviceSchema": 3.0, "callerSchema": 3.0},
		},
		{
			name:        "old game code, a player with no save",
			r:           joinAs(54, 2),
			wantMessage: "this player has no save yet; it would start at this service's current schema 3, but the game code reads schema 2",
			wantDetails: map[string]any{"serviceSchema": 3.0, "callerSchema": 2.0},
		},
		{
			name:        "old game code, a save at an older schema",
			r:           joinAs(55, 2),
			wantMessage: "this player's save is stored at schema 2 and is served at this service's current schema 3, but the game code reads schema 2",
			wantDetails: map[string]any{"storedSchema": 2.0, "serviceSchema": 3.0, "callerSchema": 2.0},
		},
		{
			name:        "a mutation from old game code",
			r:           e.mutate(54, "old-code", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`, "Savesync-Schema-Version", "2"),
			wantMessage: "this service serves saves at its current schema 3 but the game code reads schema 2",
			wantDetails: map[string]any{"serviceSchema": 3.0, "callerSchema": 2.0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.r.status != 409 || tc.r.errorCode(t) != "SCHEMA_TOO_NEW" {
				t.Fatalf("%d %s, want 409 SCHEMA_TOO_NEW", tc.r.status, tc.r.body)
			}
			errObj := tc.r.json(t)["error"].(map[string]any)
			if msg, _ := errObj["message"].(string); !strings.HasPrefix(msg, tc.wantMessage) {
				t.Errorf("message = %q, want it to start %q", msg, tc.wantMessage)
			}
			if diff := cmp.Diff(tc.wantDetails, errObj["details"]); diff != "" {
				t.Errorf("details (-want +got):\n%s", diff)
			}
		})
	}
	if p := e.rawPlayer(55); p["session"] != nil {
		t.Errorf("a refused join took the lease: %v", p["session"])
	}
}

func TestJoinRequiresSchemaVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name string
		body string
	}{
		{"missing", `{"userId":56,"jobId":"job"}`},
		{"zero", `{"userId":56,"jobId":"job","schemaVersion":0}`},
		{"negative", `{"userId":56,"jobId":"job","schemaVersion":-1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/v1/sessions", tc.body, nil)
			if r.status != 400 || r.errorCode(t) != "INVALID_ARGUMENT" {
				t.Fatalf("join: %d %s, want 400 INVALID_ARGUMENT", r.status, r.body)
			}
			errObj := r.json(t)["error"].(map[string]any)
			if msg, _ := errObj["message"].(string); !strings.HasPrefix(msg, "schemaVersion: required") || !strings.Contains(msg, "current schema is 3") {
				t.Errorf("message = %q, want it to name schemaVersion and the service's schema", msg)
			}
			if field := errObj["details"].(map[string]any)["field"]; field != "schemaVersion" {
				t.Errorf("details.field = %v, want schemaVersion", field)
			}
		})
	}
	if _, err := e.clients.Firestore.Doc("players/56").Get(context.Background()); status.Code(err) != codes.NotFound {
		t.Errorf("a refused join wrote the player: %v", err)
	}
}

func TestBatchRenewEachLeaseAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sessionOf := func(r response) string {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("join: %d %s", r.status, r.body)
		}
		return r.json(t)["session"].(map[string]any)["id"].(string)
	}
	kept := sessionOf(e.join(60, "job-a", false))
	stolen := sessionOf(e.join(61, "job-a", false))
	sessionOf(e.join(61, "job-b", true))
	e.clock.Advance(60 * time.Second)

	r := e.do("POST", "/v1/batch/sessions/renew", map[string]any{"sessionIds": []string{kept, stolen, "not-a-session"}}, nil)
	if r.status != 200 {
		t.Fatalf("batch renew: %d %s", r.status, r.body)
	}
	results := r.json(t)["results"].([]any)
	want := []struct {
		status int64
		code   string
	}{{200, ""}, {409, "SESSION_HELD"}, {400, "INVALID_ARGUMENT"}}
	for i, w := range want {
		res := results[i].(map[string]any)
		code := ""
		if errObj, ok := res["error"].(map[string]any); ok {
			code, _ = errObj["code"].(string)
		}
		if num(res["status"]) != w.status || code != w.code {
			t.Errorf("result %d = %v, want status %d code %q", i, res, w.status, w.code)
		}
	}
	p := e.player(60)
	if want := e.clock.Now().Add(90 * time.Second); p.Session == nil || !p.Session.ExpiresAt.Equal(want) {
		t.Errorf("renewed lease = %+v, want it to expire at %v", p.Session, want)
	}
	if r := e.do("POST", "/v1/batch/sessions/renew", `{"sessionIds":[]}`, nil); r.status != 400 {
		t.Errorf("empty batch: %d %s, want 400", r.status, r.body)
	}
}

// sessionOf returns the session id of a successful join.
func sessionOf(t *testing.T, r response) string {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("join: %d %s", r.status, r.body)
	}
	return r.json(t)["session"].(map[string]any)["id"].(string)
}

func TestLeaveRetryReplaysTheFirstAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name string
		user int64
		body string
	}{
		{"without a final flush", 70, ""},
		{"with a final flush", 71, `{"final":{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sess := sessionOf(t, e.join(tc.user, "job-a", false))
			key := map[string]string{"Idempotency-Key": "leave-" + tc.name}
			first := e.do("POST", "/v1/sessions/"+sess+"/leave", tc.body, key)
			if first.status != 200 || first.json(t)["released"] != true || first.header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("leave: %d %v %s, want 200 released=true, not replayed", first.status, first.header, first.body)
			}
			// Another server joins meanwhile; the retry still answers the first answer.
			sessionOf(t, e.join(tc.user, "job-b", false))
			again := e.do("POST", "/v1/sessions/"+sess+"/leave", tc.body, key)
			if again.status != 200 || again.header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("retry: %d %v %s, want 200 with Idempotent-Replayed: true", again.status, again.header, again.body)
			}
			if diff := cmp.Diff(string(first.body), string(again.body)); diff != "" {
				t.Errorf("replayed body (-first +retry):\n%s", diff)
			}
			want := int64(100)
			if tc.body != "" {
				want += 5
			}
			if got := balance(t, e.player(tc.user), "coins"); got != want {
				t.Errorf("coins = %d, want %d: the final flush applied at most once", got, want)
			}
			if p := e.player(tc.user); p.Session == nil || p.Session.JobID != "job-b" {
				t.Errorf("session = %+v, want job-b's untouched by the retry", p.Session)
			}
			other := `{"final":{"ops":[{"op":"currency.add","currency":"coins","amount":6}]}}`
			if reused := e.do("POST", "/v1/sessions/"+sess+"/leave", other, key); reused.status != 422 || reused.errorCode(t) != "IDEMPOTENCY_KEY_REUSED" {
				t.Errorf("same key, different body: %d %s, want 422 IDEMPOTENCY_KEY_REUSED", reused.status, reused.body)
			}
		})
	}
	t.Run("without a key", func(t *testing.T) {
		sess := sessionOf(t, e.join(72, "job-a", false))
		r := e.do("POST", "/v1/sessions/"+sess+"/leave", nil, nil)
		if r.status != 400 || r.errorCode(t) != "INVALID_ARGUMENT" || !strings.Contains(string(r.body), "Idempotency-Key") {
			t.Errorf("leave without Idempotency-Key: %d %s, want 400 naming the header", r.status, r.body)
		}
		if p := e.player(72); p.Session == nil || p.Session.ID != sess {
			t.Errorf("a refused leave released the lease: %+v", p.Session)
		}
	})
}

func TestParallelLeavesWithOneKeyOneOriginal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const user, n = 73, 50
	sess := sessionOf(t, e.join(user, "job-a", false))
	body := `{"final":{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}}`
	answers := make([]response, n)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = e.do("POST", "/v1/sessions/"+sess+"/leave", body, map[string]string{"Idempotency-Key": "one-leave"})
		}()
	}
	wg.Wait()
	originals := 0
	for i, a := range answers {
		if a.status != 200 {
			t.Fatalf("leave %d: %d %s", i, a.status, a.body)
		}
		if a.header.Get("Idempotent-Replayed") != "true" {
			originals++
		}
		if string(a.body) != string(answers[0].body) {
			t.Errorf("leave %d answered %s, leave 0 %s: want identical bodies", i, a.body, answers[0].body)
		}
	}
	if originals != 1 {
		t.Errorf("%d answers were originals, want exactly 1", originals)
	}
	if got := balance(t, e.player(user), "coins"); got != 101 {
		t.Errorf("coins = %d, want 101: the final flush applied once", got)
	}
}

func TestUnknownSessionsAreNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const user = 80
	a := sessionOf(t, e.join(user, "job-a", false))
	b := sessionOf(t, e.join(user, "job-b", true)) // a is taken over
	zeros := strings.Repeat("0", 32)
	neverAbove := fmt.Sprintf("%d.3.%s", user, zeros)     // above the last granted epoch
	neverAt := fmt.Sprintf("%d.1.%s", user, zeros)        // a granted epoch, not its id
	noPlayer := fmt.Sprintf("%d.1.%s", 1999999999, zeros) // a player never seen
	final := `{"final":{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}}`

	type answer struct {
		Status int64
		Code   string
	}
	answerOf := func(status int64, body map[string]any) answer {
		code := ""
		if errObj, ok := body["error"].(map[string]any); ok {
			code, _ = errObj["code"].(string)
		}
		return answer{status, code}
	}
	tests := []struct {
		name      string
		id        string
		renew     answer
		leave     answer
		wantFound bool // the answer names the holder
	}{
		{"never issued, epoch above the last grant", neverAbove, answer{404, "NOT_FOUND"}, answer{404, "NOT_FOUND"}, false},
		{"never issued, a granted epoch", neverAt, answer{404, "NOT_FOUND"}, answer{404, "NOT_FOUND"}, false},
		{"never issued, unknown player", noPlayer, answer{404, "NOT_FOUND"}, answer{404, "NOT_FOUND"}, false},
		{"taken over", a, answer{409, "SESSION_HELD"}, answer{200, ""}, true},
		{"malformed", fmt.Sprintf("%d.1.xyz", user), answer{400, "INVALID_ARGUMENT"}, answer{400, "INVALID_ARGUMENT"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			renew := e.do("POST", "/v1/sessions/"+tc.id+"/renew", nil, nil)
			if got := answerOf(int64(renew.status), renew.json(t)); got != tc.renew {
				t.Errorf("renew = %+v %s, want %+v", got, renew.body, tc.renew)
			}
			if tc.wantFound {
				holder, _ := renew.json(t)["error"].(map[string]any)["details"].(map[string]any)["holder"].(map[string]any)
				if holder["jobId"] != "job-b" || holder["expiresAt"] == nil || num(holder["epoch"]) != 2 {
					t.Errorf("holder = %v, want job-b's live lease at epoch 2", holder)
				}
			}
			versionBefore := e.player(user).Version
			leave := e.do("POST", "/v1/sessions/"+tc.id+"/leave", final, map[string]string{"Idempotency-Key": "leave " + tc.name})
			if got := answerOf(int64(leave.status), leave.json(t)); got != tc.leave {
				t.Errorf("leave = %+v %s, want %+v", got, leave.body, tc.leave)
			}
			if tc.leave.Status == 200 {
				if leave.json(t)["released"] != false {
					t.Errorf("leave of a lease taken over: %s, want released=false", leave.body)
				}
			} else if got := e.player(user).Version; got != versionBefore {
				t.Errorf("a refused leave flushed: version %d, want %d", got, versionBefore)
			}
			if tc.leave.Status == 404 && !strings.Contains(string(leave.body), "never issued") {
				t.Errorf("leave message %s does not say the session was never issued", leave.body)
			}
		})
	}

	// Every item of a batch renewal answers as the single route does.
	r := e.do("POST", "/v1/batch/sessions/renew", map[string]any{"sessionIds": []string{neverAbove, a, b, noPlayer, "not-a-session"}}, nil)
	if r.status != 200 {
		t.Fatalf("batch renew: %d %s", r.status, r.body)
	}
	var got []answer
	for _, item := range r.json(t)["results"].([]any) {
		m := item.(map[string]any)
		got = append(got, answerOf(num(m["status"]), m))
	}
	want := []answer{{404, "NOT_FOUND"}, {409, "SESSION_HELD"}, {200, ""}, {404, "NOT_FOUND"}, {400, "INVALID_ARGUMENT"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batch renew answers (-want +got):\n%s", diff)
	}

	// Once b leaves, nobody holds the player: renewing either lease says it
	// ended, without naming a holder.
	if l := e.do("POST", "/v1/sessions/"+b+"/leave", nil, map[string]string{"Idempotency-Key": "leave-b"}); l.status != 200 || l.json(t)["released"] != true {
		t.Fatalf("b leaves: %d %s", l.status, l.body)
	}
	for _, id := range []string{a, b} {
		renew := e.do("POST", "/v1/sessions/"+id+"/renew", nil, nil)
		details, _ := renew.json(t)["error"].(map[string]any)["details"].(map[string]any)
		if renew.status != 404 || renew.errorCode(t) != "NOT_FOUND" || details["ended"] != true || details["holder"] != nil {
			t.Errorf("renew of an ended lease %s: %d %s, want 404 NOT_FOUND with ended=true and no holder", id, renew.status, renew.body)
		}
	}
}
