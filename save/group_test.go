package save

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// groupAnswer is what the tests compare of an answer.
type groupAnswer struct {
	Code          Code
	Replay        Replay
	ReplayOf      int
	Version       int64
	Unchanged     bool
	ChangedPaths  []string
	Records       []string
	FirstChange   string
	ChangesLength int
}

func summarizeAnswers(answers []Answer) []groupAnswer {
	out := make([]groupAnswer, len(answers))
	for i, a := range answers {
		out[i] = groupAnswer{Code: ErrorCode(a.Err), Replay: a.Replay, ReplayOf: a.ReplayOf, Version: a.Outcome.Version,
			Unchanged: a.Outcome.Unchanged, ChangedPaths: a.Outcome.ChangedPaths, Records: a.Records, ChangesLength: len(a.Outcome.Changes)}
		if len(a.Outcome.Changes) > 0 {
			out[i].FirstChange = a.Outcome.Changes[0].Path
		}
	}
	return out
}

func TestApplyGroup(t *testing.T) {
	c := sampleConfig(t)
	server := Actor{Kind: ActorServer, ID: "universe/1"}
	coins := func(id string, n int64) Request {
		return Request{EntryID: id, Hash: "h-" + id, Actor: server, Mutation: Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: n}}}}
	}
	volume := func(id string, v int64) Request {
		return Request{EntryID: id, Hash: "h-" + id, Actor: server, Mutation: Mutation{Ops: []Op{{Kind: OpSettingsSet, Key: "volume", Value: v}}}}
	}
	withHash := func(r Request, h string) Request { r.Hash = h; return r }
	once := func(r Request, name string, settles ...string) Request { r.Once, r.Settles = name, settles; return r }
	stored := c.NewState().Encode()
	v1 := map[string]any{"coins": int64(5), "gems": int64(1), "xp": int64(0), "inventory": map[string]any{}}
	tests := []struct {
		name     string
		group    Group
		want     []groupAnswer
		wantSave bool
		version  int64
	}{
		{
			name:  "members commit in order, each on the save the one before left",
			group: Group{Save: stored, Schema: 3, Version: 4, Requests: []Request{coins("a", 10), coins("b", -20)}},
			want: []groupAnswer{
				{Version: 5, ChangedPaths: []string{"currencies.coins"}, FirstChange: "currencies.coins", ChangesLength: 1},
				{Version: 6, ChangedPaths: []string{"currencies.coins"}, FirstChange: "currencies.coins", ChangesLength: 1},
			},
			wantSave: true, version: 6,
		},
		{
			name:  "a failing member fails alone and leaves the save as it was",
			group: Group{Save: stored, Schema: 3, Version: 0, Requests: []Request{coins("a", -1000), coins("b", 1)}},
			want: []groupAnswer{
				{Code: CodeInsufficientFunds},
				{Version: 1, ChangedPaths: []string{"currencies.coins"}, FirstChange: "currencies.coins", ChangesLength: 1},
			},
			wantSave: true, version: 1,
		},
		{
			name: "recorded requests are replayed, or refused under another hash, without loading the save",
			group: Group{Save: map[string]any{"broken": true}, Schema: 99, Version: 8,
				Recorded: map[string]Recorded{"a": {Hash: "h-a", Version: 3}, "b": {Hash: "other", Version: 4}},
				Requests: []Request{coins("a", 1), coins("b", 1)}},
			want:    []groupAnswer{{Replay: ReplayRecorded}, {Code: CodeIdempotencyKeyReused}},
			version: 8,
		},
		{
			name:  "a request sent again in the group replays the first answer",
			group: Group{Save: stored, Schema: 3, Requests: []Request{coins("a", 1), coins("a", 1), withHash(coins("a", 2), "h-other")}},
			want: []groupAnswer{
				{Version: 1, ChangedPaths: []string{"currencies.coins"}, FirstChange: "currencies.coins", ChangesLength: 1},
				{Replay: ReplayInGroup, ReplayOf: 0},
				{Code: CodeIdempotencyKeyReused},
			},
			wantSave: true, version: 1,
		},
		{
			name:  "a mutation that changes nothing commits nothing, and its retry is evaluated again",
			group: Group{Save: stored, Schema: 3, Version: 2, Requests: []Request{volume("a", 80), volume("a", 80)}},
			want: []groupAnswer{
				{Version: 2, Unchanged: true, ChangedPaths: []string{}},
				{Version: 2, Unchanged: true, ChangedPaths: []string{}},
			},
			version: 2,
		},
		{
			name: "once-only things are done once, before the group or in it, and settled ones are recorded",
			group: Group{Save: stored, Schema: 3, Done: map[string]string{"refund x": "e-1"},
				Requests: []Request{once(coins("a", 1), "refund x"), once(volume("b", 80), "refund y", "refund z", "refund x"), once(coins("c", 1), "refund y")}},
			want: []groupAnswer{
				{Code: CodeAlreadyApplied},
				{Version: 1, ChangedPaths: []string{}, Records: []string{"refund y", "refund z"}},
				{Code: CodeAlreadyApplied},
			},
			wantSave: true, version: 1,
		},
		{
			name:  "the first commit after a migration records the migration",
			group: Group{Save: v1, Schema: 1, Requests: []Request{coins("a", 1), coins("b", 1)}},
			want: []groupAnswer{
				{Version: 1, ChangedPaths: []string{"currencies.coins"}, FirstChange: "schemaVersion", ChangesLength: -1},
				{Version: 2, ChangedPaths: []string{"currencies.coins"}, FirstChange: "currencies.coins", ChangesLength: 1},
			},
			wantSave: true, version: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.group.UserID = 1234567890
			tt.group.Now = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
			for _, r := range tt.group.Requests {
				if err := c.CheckRequest(r); err != nil {
					t.Fatalf("CheckRequest(%s): %v", r.EntryID, err)
				}
			}
			res, err := c.ApplyGroup(tt.group)
			if err != nil {
				t.Fatal(err)
			}
			got := summarizeAnswers(res.Answers)
			for i := range got {
				if tt.want[i].ChangesLength < 0 && got[i].ChangesLength > 1 {
					got[i].ChangesLength = -1 // the migration's changes, then the mutation's
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			if (res.Save != nil) != tt.wantSave || res.Version != tt.version {
				t.Errorf("save written %v at version %d, want %v at %d", res.Save != nil, res.Version, tt.wantSave, tt.version)
			}
			for i, a := range res.Answers {
				if a.Commits() && (a.Outcome.EntryID != tt.group.Requests[i].EntryID || a.Outcome.UserID != tt.group.UserID || !a.Outcome.CommittedAt.Equal(tt.group.Now)) {
					t.Errorf("answer %d: outcome %+v, want the request's entry, the player and the group's time", i, a.Outcome)
				}
			}
		})
	}
}

func TestApplyGroupSaveIsTheLastCommit(t *testing.T) {
	c := sampleConfig(t)
	server := Actor{Kind: ActorServer, ID: "universe/1"}
	res, err := c.ApplyGroup(Group{Save: c.NewState().Encode(), Schema: c.SchemaVersion, Requests: []Request{
		{EntryID: "a", Actor: server, Mutation: Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: 5}}}},
		{EntryID: "b", Actor: server, Mutation: Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: -1000}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.DecodeState(res.Save)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Currencies["coins"], c.Currencies["coins"].Start+5; got != want {
		t.Errorf("coins in the new save: %d, want %d (the refused member changed nothing)", got, want)
	}
}

func TestApplyGroupVersionConflictCarriesTheSave(t *testing.T) {
	c := sampleConfig(t)
	stale := int64(3)
	res, err := c.ApplyGroup(Group{UserID: 7, Save: c.NewState().Encode(), Schema: c.SchemaVersion, Version: 5, Requests: []Request{
		{EntryID: "a", Actor: Actor{Kind: ActorServer}, Mutation: Mutation{ExpectedVersion: &stale, Ops: []Op{{Kind: OpItemGrant, Item: "wood", Count: 1}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := AsError(res.Answers[0].Err)
	if !ok || e.Code != CodeVersionConflict {
		t.Fatalf("answer: %v, want VERSION_CONFLICT", res.Answers[0].Err)
	}
	if e.Details["userId"] != int64(7) || e.Details["currentVersion"] != int64(5) || e.Details["save"] == nil {
		t.Errorf("details %v, want the player, the current version and the save", e.Details)
	}
}

func TestCheckRequestRefusesTextThatCannotBeStored(t *testing.T) {
	c := sampleConfig(t)
	ok := Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: 1}}}
	tests := []struct {
		name  string
		req   Request
		field string
	}{
		{"actor id", Request{Actor: Actor{Kind: ActorServer, ID: "\xff"}, Mutation: ok}, "actor.id"},
		{"once", Request{Actor: Actor{Kind: ActorServer}, Mutation: ok, Once: "\xc0"}, "once"},
		{"settles", Request{Actor: Actor{Kind: ActorServer}, Mutation: ok, Settles: []string{"fine", "\xed\xa0\x80"}}, "settles[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, c.CheckRequest(tt.req), CodeInvalidArgument, tt.field)
		})
	}
}
