package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

func TestMutationAppliesAndReplays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const body = `{"ops":[{"op":"currency.add","currency":"coins","amount":25},{"op":"item.grant","item":"potion","count":3}]}`

	first := e.mutate(7, "k-1", body)
	if first.status != 200 {
		t.Fatalf("first attempt: %d %s", first.status, first.body)
	}
	if got := first.header.Get("Idempotent-Replayed"); got != "" {
		t.Errorf("first attempt Idempotent-Replayed = %q, want none", got)
	}
	again := e.mutate(7, "k-1", body)
	if again.status != 200 || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d replayed=%q %s", again.status, again.header.Get("Idempotent-Replayed"), again.body)
	}
	if string(again.body) != string(first.body) {
		t.Errorf("replay body differs:\nfirst  %s\nreplay %s", first.body, again.body)
	}
	p := e.player(7)
	if got := balance(t, p, "coins"); got != 125 {
		t.Errorf("coins = %d, want 125 (100 start + 25 once)", got)
	}
	if p.Version != 1 || e.ledgerCount(7) != 1 {
		t.Errorf("version %d with %d ledger entries, want 1 and 1", p.Version, e.ledgerCount(7))
	}

	entries, err := e.clients.Firestore.Collection("players/7/ledger").Documents(context.Background()).GetAll()
	if err != nil || len(entries) != 1 {
		t.Fatalf("ledger: %d entries, %v", len(entries), err)
	}
	entry := entries[0].Data()
	committed, _ := entry["committedAt"].(time.Time)
	expires, _ := entry["expireAt"].(time.Time)
	if !expires.Equal(committed.Add(24 * time.Hour)) {
		t.Errorf("expireAt = %v, want committedAt %v + the 24h retention", expires, committed)
	}
	if entry["requestHash"] == "" || entry["response"] != string(first.body) {
		t.Errorf("ledger entry lacks the idempotency record: hash %v response %v", entry["requestHash"], entry["response"])
	}

	reused := e.mutate(7, "k-1", `{"ops":[{"op":"currency.add","currency":"coins","amount":26}]}`)
	if reused.status != 422 || reused.errorCode(t) != "IDEMPOTENCY_KEY_REUSED" {
		t.Errorf("same key, other body: %d %s, want 422 IDEMPOTENCY_KEY_REUSED", reused.status, reused.body)
	}
}

func TestMutationCostsTwoRoundTrips(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.mutate(8, "warm", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`); r.status != 200 {
		t.Fatalf("warm-up: %d %s", r.status, r.body)
	}
	before := e.emu.Counters(e.project)
	if r := e.mutate(8, "measured", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`); r.status != 200 {
		t.Fatalf("measured: %d %s", r.status, r.body)
	}
	after := e.emu.Counters(e.project)
	var rpcs int64
	for method, n := range after.RPCs {
		rpcs += n - before.RPCs[method]
	}
	if rpcs != 2 {
		t.Errorf("round trips per mutation = %d (%v -> %v), want 2", rpcs, before.RPCs, after.RPCs)
	}
	if w := after.DocumentWrites - before.DocumentWrites; w != 2 {
		t.Errorf("document writes per mutation = %d, want 2 (player + ledger entry)", w)
	}
}

func TestConcurrentDeltasOnOnePlayer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 40
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.mutate(9, fmt.Sprintf("delta-%d", i), `{"ops":[{"op":"currency.add","currency":"coins","amount":3},{"op":"stat.add","stat":"xp","amount":1}]}`)
			statuses[i] = r.status
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Errorf("mutation %d: status %d", i, s)
		}
	}
	p := e.player(9)
	if got, want := balance(t, p, "coins"), int64(100+3*n); got != want {
		t.Errorf("coins = %d, want %d", got, want)
	}
	if p.Version != n || e.ledgerCount(9) != n {
		t.Errorf("version %d, ledger %d, want %d and %d", p.Version, e.ledgerCount(9), n, n)
	}
}

func TestLostCommitResponseAppliesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.emu.InjectFault(emulator.Fault{Project: e.project, Method: "Commit", DropResponse: true, Count: 1})
	const body = `{"ops":[{"op":"currency.add","currency":"coins","amount":40}]}`
	before := e.emu.Counters(e.project)
	first := e.mutate(10, "lost-1", body)
	if first.status != 200 {
		t.Fatalf("first attempt: %d %s", first.status, first.body)
	}
	// The commit landed but its answer was lost: the store read again,
	// found its own ledger entry and answered from it without a second commit.
	after := e.emu.Counters(e.project)
	if got := after.RPCs["Commit"] - before.RPCs["Commit"]; got != 1 {
		t.Errorf("commits = %d, want 1 (the one whose answer was lost)", got)
	}
	if got := after.RPCs["BatchGetDocuments"] - before.RPCs["BatchGetDocuments"]; got != 2 {
		t.Errorf("reads = %d, want 2 (the attempt and the check after the lost answer)", got)
	}
	// The game server did not trust the answer and retries with the same key.
	retry := e.mutate(10, "lost-1", body)
	if retry.status != 200 || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d replayed=%q %s", retry.status, retry.header.Get("Idempotent-Replayed"), retry.body)
	}
	p := e.player(10)
	if got := balance(t, p, "coins"); got != 140 {
		t.Errorf("coins = %d, want 140: applied exactly once", got)
	}
	if p.Version != 1 || e.ledgerCount(10) != 1 {
		t.Errorf("version %d, ledger %d, want 1 and 1", p.Version, e.ledgerCount(10))
	}
}

func TestUnavailableDatabaseIsRetriedBehindTheCaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.emu.InjectFault(emulator.Fault{Project: e.project, Method: "Commit", Code: codes.Aborted, Count: 2})
	e.emu.InjectFault(emulator.Fault{Project: e.project, Method: "BatchGetDocuments", Code: codes.Unavailable, Count: 1})
	r := e.mutate(11, "flaky-1", `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`)
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if got := balance(t, e.player(11), "coins"); got != 105 {
		t.Errorf("coins = %d, want 105", got)
	}
}

func TestInsufficientFundsWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.mutate(12, "seed", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`); r.status != 200 {
		t.Fatalf("seed: %d %s", r.status, r.body)
	}
	r := e.mutate(12, "spend", `{"ops":[{"op":"currency.add","currency":"coins","amount":-500}]}`)
	if r.status != 422 || r.errorCode(t) != "INSUFFICIENT_FUNDS" {
		t.Fatalf("overspend: %d %s, want 422 INSUFFICIENT_FUNDS", r.status, r.body)
	}
	p := e.player(12)
	if got := balance(t, p, "coins"); got != 101 || p.Version != 1 || e.ledgerCount(12) != 1 {
		t.Errorf("after a refused spend: coins %d version %d ledger %d, want 101, 1, 1", got, p.Version, e.ledgerCount(12))
	}
}

func TestVersionedWritersOneWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.mutate(13, "own", `{"ops":[{"op":"item.grant","item":"sword","count":1},{"op":"item.grant","item":"shield","count":1}]}`); r.status != 200 {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	bodies := []string{
		`{"expectedVersion":1,"ops":[{"op":"loadout.set","slot":"offhand","item":"sword"}]}`,
		`{"expectedVersion":1,"ops":[{"op":"loadout.set","slot":"offhand","item":"shield"}]}`,
	}
	results := make([]response, 2)
	var wg sync.WaitGroup
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.mutate(13, fmt.Sprintf("loadout-%d", i), bodies[i])
		}()
	}
	wg.Wait()
	wins, conflicts := 0, 0
	for _, r := range results {
		switch r.status {
		case 200:
			wins++
		case 409:
			conflicts++
			if r.errorCode(t) != "VERSION_CONFLICT" {
				t.Errorf("409 code %q, want VERSION_CONFLICT", r.errorCode(t))
			}
			details, _ := r.json(t)["error"].(map[string]any)["details"].(map[string]any)
			if num(details["currentVersion"]) != 2 || details["save"] == nil {
				t.Errorf("conflict details = %v, want currentVersion 2 and the save", details)
			}
		default:
			t.Errorf("unexpected %d %s", r.status, r.body)
		}
	}
	if wins != 1 || conflicts != 1 {
		t.Errorf("wins %d conflicts %d, want exactly one of each", wins, conflicts)
	}
}

func TestBadInputGetsClearErrorAndWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := `{"ops":[{"op":"settings.set","key":"music","value":"` + strings.Repeat("x", 70<<10) + `"}]}`
	tests := []struct {
		name    string
		body    string
		headers []string
		status  int
		code    string
	}{
		{"malformed JSON", `{"ops":[`, nil, 400, "INVALID_ARGUMENT"},
		{"not an object", `[1,2]`, nil, 400, "INVALID_ARGUMENT"},
		{"unknown op", `{"ops":[{"op":"currency.steal","currency":"coins","amount":1}]}`, nil, 400, "INVALID_ARGUMENT"},
		{"unknown field", `{"ops":[{"op":"currency.add","currency":"coins","amount":1,"price":0}]}`, nil, 400, "INVALID_ARGUMENT"},
		{"unknown currency", `{"ops":[{"op":"currency.add","currency":"gold","amount":1}]}`, nil, 400, "INVALID_ARGUMENT"},
		{"amount overflows int64", `{"ops":[{"op":"currency.add","currency":"coins","amount":9223372036854775808}]}`, nil, 400, "INVALID_ARGUMENT"},
		{"no ops", `{"ops":[]}`, nil, 400, "INVALID_ARGUMENT"},
		{"oversized body", big, nil, 413, "REQUEST_TOO_LARGE"},
		{"missing idempotency key", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`, []string{"Idempotency-Key", ""}, 400, "INVALID_ARGUMENT"},
		{"missing server key", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`, []string{"Authorization", ""}, 401, "UNAUTHENTICATED"},
		{"wrong server key", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`, []string{"Authorization", "Bearer nope"}, 401, "UNAUTHENTICATED"},
		{"bad user id", "", nil, 400, "INVALID_ARGUMENT"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.name == "bad user id" {
				r = e.do("POST", "/v1/players/abc/mutations", `{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`, map[string]string{"Idempotency-Key": "x"})
			} else {
				r = e.mutate(14, fmt.Sprintf("bad-%d", i), tc.body, tc.headers...)
			}
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			msg, _ := r.json(t)["error"].(map[string]any)["message"].(string)
			if msg == "" {
				t.Errorf("error without a message: %s", r.body)
			}
		})
	}
	if p := e.player(14); p.Version != 0 || e.ledgerCount(14) != 0 {
		t.Errorf("bad input wrote something: version %d, ledger %d", p.Version, e.ledgerCount(14))
	}
}

func TestBatchAppliesEachMutationAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"mutations":[
		{"userId":21,"idempotencyKey":"b-1","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":10}]}},
		{"userId":22,"idempotencyKey":"b-2","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":-1000}]}},
		{"userId":21,"idempotencyKey":"b-3","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}},
		{"userId":23,"idempotencyKey":"","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}},
		{"userId":24,"idempotencyKey":"b-5","mutation":{"ops":[{"op":"currency.steal","currency":"coins","amount":5}]}}
	]}`
	r := e.do("POST", "/v1/batch/mutations", body, nil)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	results, _ := r.json(t)["results"].([]any)
	want := []int64{200, 422, 200, 400, 400}
	if len(results) != len(want) {
		t.Fatalf("results = %d, want %d: %s", len(results), len(want), r.body)
	}
	for i, w := range want {
		if got := num(results[i].(map[string]any)["status"]); got != w {
			t.Errorf("result %d status %d, want %d: %v", i, got, w, results[i])
		}
	}
	if got := balance(t, e.player(21), "coins"); got != 115 {
		t.Errorf("player 21 coins = %d, want 115", got)
	}
	if p := e.player(22); p.Version != 0 {
		t.Errorf("player 22 version = %d after a refused spend, want 0", p.Version)
	}
	// The whole batch retried: every committed item replays, nothing doubles.
	r = e.do("POST", "/v1/batch/mutations", body, nil)
	results, _ = r.json(t)["results"].([]any)
	if rep, _ := results[0].(map[string]any)["replayed"].(bool); !rep {
		t.Errorf("retried item 0 not replayed: %v", results[0])
	}
	if got := balance(t, e.player(21), "coins"); got != 115 {
		t.Errorf("player 21 coins after retry = %d, want 115", got)
	}
}

func TestCompanionPurchaseSurvivesStaleServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const user = 30
	if r := e.join(user, "job-a", false); r.status != 200 {
		t.Fatalf("join: %d %s", r.status, r.body)
	}
	// The server's copy is now 30 seconds old; the companion buys meanwhile.
	e.clock.Advance(30 * time.Second)
	res, err := e.store.ApplyMutation(context.Background(), store.MutationRequest{
		UserID:         user,
		Actor:          save.Actor{Kind: save.ActorCompanion, ID: "uid-1"},
		IdempotencyKey: "buy-1",
		Mutation:       save.Mutation{Ops: []save.Op{{Kind: "purchase", SKU: "starter"}}},
	})
	if err != nil {
		t.Fatalf("purchase: %v", err)
	}
	if res.Outcome.Version != 1 {
		t.Fatalf("purchase version = %d, want 1", res.Outcome.Version)
	}
	// The stale server keeps writing deltas and then leaves.
	if r := e.mutate(user, "earn-1", `{"ops":[{"op":"currency.add","currency":"coins","amount":7}]}`, "Roblox-Job-Id", "job-a"); r.status != 200 {
		t.Fatalf("stale server delta: %d %s", r.status, r.body)
	}
	sess := e.join(user, "job-a", false).json(t)["session"].(map[string]any)["id"].(string)
	leave := e.do("POST", "/v1/sessions/"+sess+"/leave",
		`{"final":{"ops":[{"op":"stat.add","stat":"xp","amount":3}]}}`, map[string]string{"Idempotency-Key": "leave-1"})
	if leave.status != 200 {
		t.Fatalf("leave: %d %s", leave.status, leave.body)
	}
	p := e.player(user)
	if got := balance(t, p, "coins"); got != 100-50+7 {
		t.Errorf("coins = %d, want %d (start - price + earned)", got, 100-50+7)
	}
	if got := savedOf(t, p).Items["potion"]; got != 2 {
		t.Errorf("potions = %d, want 2 from the purchase", got)
	}
	if p.Session != nil {
		t.Errorf("session still held after leave: %+v", p.Session)
	}
}

func TestBatchAndLeaveReplaysAreByteIdentical(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// 2^53 + 1 does not survive a round trip through float64.
	body := `{"mutations":[{"userId":25,"idempotencyKey":"big-1","mutation":{"ops":[{"op":"currency.add","currency":"gems","amount":9007199254740993}]}}]}`
	result := func(r response) string {
		t.Helper()
		var v struct {
			Results []struct {
				Result json.RawMessage `json:"result"`
			} `json:"results"`
		}
		if err := json.Unmarshal(r.body, &v); err != nil || len(v.Results) != 1 {
			t.Fatalf("batch answer %s: %v", r.body, err)
		}
		return string(v.Results[0].Result)
	}
	first := result(e.do("POST", "/v1/batch/mutations", body, nil))
	again := result(e.do("POST", "/v1/batch/mutations", body, nil))
	if first != again || !strings.Contains(first, "9007199254740993") {
		t.Errorf("batch replay differs or lost precision:\nfirst  %s\nreplay %s", first, again)
	}
	single := e.mutate(25, "big-1", `{"ops":[{"op":"currency.add","currency":"gems","amount":9007199254740993}]}`)
	if single.status != 200 || string(single.body) != first {
		t.Errorf("the same key on the single route: %d %s, want the batch's bytes %s", single.status, single.body, first)
	}

	sess := e.join(26, "job-1", false).json(t)["session"].(map[string]any)["id"].(string)
	leave := `{"final":{"ops":[{"op":"currency.add","currency":"gems","amount":9007199254740993}]}}`
	l1 := e.do("POST", "/v1/sessions/"+sess+"/leave", leave, map[string]string{"Idempotency-Key": "leave-big"})
	if l1.status != 200 || !strings.Contains(string(l1.body), "9007199254740993") {
		t.Errorf("leave with a large final flush: %d %s", l1.status, l1.body)
	}
	if got := savedOf(t, e.player(26)).Currencies["gems"]; got != 9007199254740993 {
		t.Errorf("gems after the final flush = %d, want 9007199254740993 exactly", got)
	}
	bad := e.do("POST", "/v1/sessions/"+sess+"/leave", `{"final":{"ops":[{"op":"currency.add","currency":"gems","amount":1,"amount":2}]}}`, map[string]string{"Idempotency-Key": "leave-dup"})
	if bad.status != 400 {
		t.Errorf("final flush with a duplicate key: %d %s, want 400 from the strict decoder", bad.status, bad.body)
	}
}

// TestStateRefusalsAre422 checks that ops the save's state refuses (an
// item not owned, not enough copies) answer 422 with a state-based code,
// not 400, which means a malformed request; and that they write nothing.
func TestStateRefusalsAre422(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name     string
		userID   int64
		mutation string
		wantCode string
	}{
		{"equip an item not owned", 31, `{"expectedVersion":0,"ops":[{"op":"loadout.set","slot":"offhand","item":"shield"}]}`, "NOT_OWNED"},
		{"consume an item not owned", 32, `{"ops":[{"op":"item.consume","item":"potion","count":1}]}`, "INSUFFICIENT_FUNDS"},
		{"swap away an item not owned", 33, `{"expectedVersion":0,"ops":[{"op":"inventory.swap","remove":{"sword":1},"add":{"shield":1}}]}`, "INSUFFICIENT_FUNDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.mutate(tt.userID, "refused", tt.mutation)
			if r.status != 422 || r.errorCode(t) != tt.wantCode {
				t.Errorf("%d %s, want 422 %s", r.status, r.body, tt.wantCode)
			}
			if p := e.player(tt.userID); p.Version != 0 || e.ledgerCount(tt.userID) != 0 {
				t.Errorf("after the refusal: version %d ledger %d, want 0 and 0", p.Version, e.ledgerCount(tt.userID))
			}
		})
	}
}

// TestBatchItemShapeErrorsFailAlone sends a batch whose items are
// malformed in every way an item can be, among good ones: each bad item is
// answered 400 in its own result with a message naming its field inside
// the batch, and the good items apply.
func TestBatchItemShapeErrorsFailAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const add = `{"ops":[{"op":"currency.add","currency":"coins","amount":%d}]}`
	item := func(userID int64, key string, amount int) string {
		return fmt.Sprintf(`{"userId":%d,"idempotencyKey":%q,"mutation":`+add+`}`, userID, key, amount)
	}
	tests := []struct {
		name    string
		item    string
		userID  int64 // echoed in the result
		key     string
		status  int64
		field   string // details.field; "" for a committed item
		message string // the start of the message
	}{
		{name: "good", item: item(61, "b6-0", 10), userID: 61, key: "b6-0", status: 200},
		{name: "unknown field", item: `{"userId":63,"idempotencyKey":"b6-1","mutation":{"ops":[]},"price":0}`,
			status: 400, field: "mutations[1].price", message: "mutations[1].price: unknown field"},
		{name: "user id not a number", item: `{"userId":"abc","idempotencyKey":"b6-2","mutation":` + fmt.Sprintf(add, 1) + `}`,
			status: 400, field: "mutations[2].userId", message: `mutations[2].userId: must be a positive Roblox user id (a JSON integer), got "abc"`},
		{name: "missing mutation", item: `{"userId":64,"idempotencyKey":"b6-3"}`, userID: 64, key: "b6-3",
			status: 400, field: "mutations[3].mutation", message: "mutations[3].mutation: required"},
		{name: "missing idempotency key", item: `{"userId":65,"mutation":` + fmt.Sprintf(add, 1) + `}`, userID: 65,
			status: 400, field: "mutations[4].idempotencyKey", message: "mutations[4].idempotencyKey: required"},
		{name: "empty idempotency key", item: item(65, "", 1), userID: 65,
			status: 400, field: "mutations[5].idempotencyKey", message: "mutations[5].idempotencyKey: required"},
		{name: "not an object", item: `42`,
			status: 400, field: "mutations[6]", message: "mutations[6]: must be an object"},
		{name: "mutation not an object", item: `{"userId":66,"idempotencyKey":"b6-7","mutation":null}`, userID: 66, key: "b6-7",
			status: 400, field: "mutations[7].mutation", message: "mutations[7].mutation: "},
		{name: "unknown op field", item: `{"userId":66,"idempotencyKey":"b6-8","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":1,"price":0}]}}`, userID: 66, key: "b6-8",
			status: 400, field: "mutations[8].mutation.ops[0].price", message: "mutations[8].mutation.ops[0].price: unknown field"},
		{name: "text that is not UTF-8", item: `{"userId":66,"idempotencyKey":"b6-9","mutation":{"ops":[{"op":"collection.add","collection":"badges","element":"` + "\xff" + `"}]}}`,
			status: 400, field: "mutations[9].mutation.ops[0].element", message: "mutations[9].mutation.ops[0].element is not valid UTF-8"},
		{name: "lone surrogate escape", item: `{"userId":66,"idempotencyKey":"b6-10","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":1}],"reason":"\ud800"}}`,
			status: 400, field: "mutations[10].mutation.reason", message: "mutations[10].mutation.reason has a lone UTF-16 surrogate escape"},
		{name: "duplicate key", item: `{"userId":66,"userId":67,"idempotencyKey":"b6-11","mutation":` + fmt.Sprintf(add, 1) + `}`,
			status: 400, field: "mutations[11].userId", message: "mutations[11].userId: duplicate key"},
		{name: "another good one", item: item(62, "b6-12", 5), userID: 62, key: "b6-12", status: 200},
	}
	items := make([]string, len(tests))
	for i, tc := range tests {
		items[i] = tc.item
	}
	r := e.do("POST", "/v1/batch/mutations", `{"mutations":[`+strings.Join(items, ",")+`]}`, nil)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var got struct {
		Results []struct {
			UserID         int64  `json:"userId"`
			IdempotencyKey string `json:"idempotencyKey"`
			Status         int64  `json:"status"`
			Error          *struct {
				Code    string         `json:"code"`
				Message string         `json:"message"`
				Details map[string]any `json:"details"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || len(got.Results) != len(tests) {
		t.Fatalf("results %s (%v), want %d", r.body, err, len(tests))
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := got.Results[i]
			if res.Status != tc.status || res.UserID != tc.userID || res.IdempotencyKey != tc.key {
				t.Errorf("result %d: status %d user %d key %q, want %d %d %q", i, res.Status, res.UserID, res.IdempotencyKey, tc.status, tc.userID, tc.key)
			}
			if tc.field == "" {
				if res.Error != nil {
					t.Errorf("result %d: error %+v, want none", i, res.Error)
				}
				return
			}
			if res.Error == nil {
				t.Fatalf("result %d: no error, want one naming %s", i, tc.field)
			}
			if res.Error.Code != "INVALID_ARGUMENT" || !strings.HasPrefix(res.Error.Message, tc.message) {
				t.Errorf("result %d: %s %q, want INVALID_ARGUMENT starting %q", i, res.Error.Code, res.Error.Message, tc.message)
			}
			if f := res.Error.Details["field"]; f != tc.field {
				t.Errorf("result %d: details.field = %v, want %s", i, f, tc.field)
			}
		})
	}
	if got := balance(t, e.player(61), "coins"); got != 110 {
		t.Errorf("player 61 coins = %d, want 110", got)
	}
	if got := balance(t, e.player(62), "coins"); got != 105 {
		t.Errorf("player 62 coins = %d, want 105", got)
	}
	for _, id := range []int64{63, 64, 65, 66, 67} {
		if p := e.player(id); p.Version != 0 || e.ledgerCount(id) != 0 {
			t.Errorf("player %d: version %d, ledger %d after refused items, want 0 and 0", id, p.Version, e.ledgerCount(id))
		}
	}
}

// TestBatchEnvelopeErrorsFailTheRequest: when the batch itself cannot be
// read, nothing in it applies and the request is answered 400.
func TestBatchEnvelopeErrorsFailTheRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := `{"userId":68,"idempotencyKey":"env-1","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}}`
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf(`{"userId":68,"idempotencyKey":"many-%d","mutation":{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}}`, i)
	}
	tests := []struct {
		name, body, message string
	}{
		{"not JSON", `{"mutations":[` + good + `,x]}`, "the request body is not valid JSON"},
		{"truncated JSON", `{"mutations":[` + good, "the request body is truncated JSON"},
		{"not an object", `[` + good + `]`, "the request body must be a JSON object, got a JSON array"},
		{"no mutations", `{}`, "mutations: required"},
		{"mutations null", `{"mutations":null}`, "mutations: required"},
		{"mutations not an array", `{"mutations":` + good + `}`, "mutations: must be an array of 1 to 100 items"},
		{"mutations a string", `{"mutations":"x"}`, "mutations: must be an array of 1 to 100 items {userId, idempotencyKey, mutation}, got a JSON string"},
		{"no items", `{"mutations":[]}`, "mutations: send between 1 and 100 mutations, got 0"},
		{"too many items", `{"mutations":[` + strings.Join(tooMany, ",") + `]}`, "mutations: send between 1 and 100 mutations, got 101"},
		{"unknown envelope field", `{"mutations":[` + good + `],"atomic":true}`, `unknown field "atomic"`},
		{"data after the object", `{"mutations":[` + good + `]} {}`, "data after the JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/v1/batch/mutations", tc.body, nil)
			if r.status != 400 || r.errorCode(t) != "INVALID_ARGUMENT" {
				t.Fatalf("got %d %s, want 400 INVALID_ARGUMENT", r.status, r.body)
			}
			if msg, _ := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, tc.message) {
				t.Errorf("message %q, want it to contain %q", msg, tc.message)
			}
		})
	}
	if p := e.player(68); p.Version != 0 || e.ledgerCount(68) != 0 {
		t.Errorf("player 68: version %d, ledger %d after refused batches, want 0 and 0", p.Version, e.ledgerCount(68))
	}
}
