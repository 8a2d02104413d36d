package store_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// answer is what the idempotency tests compare of one mutation's answer.
type answer struct {
	Code     save.Code
	Version  int64
	Replayed bool
}

func answerOf(r store.BatchResult) answer {
	return answer{Code: save.ErrorCode(r.Err), Version: r.Result.Outcome.Version, Replayed: r.Result.Replayed}
}

// TestIdempotencyAtTheStore sends mutations that reuse keys, in one call
// (so they may share a group commit) and in later calls (so they meet the
// committed ledger entry): a retry replays the first answer byte for byte,
// the same key with another request is refused, and a key is scoped by
// its caller.
func TestIdempotencyAtTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	other := save.Actor{Kind: save.ActorAdmin, ID: "uid-support"}
	req := func(actor save.Actor, key string, coins int64) store.MutationRequest {
		return store.MutationRequest{UserID: 51, Actor: actor, IdempotencyKey: key, Mutation: coinsAdd(coins)}
	}
	st, _ := firestoretest.Store(t, store.Options{})

	first := st.ApplyMutations(ctx, []store.MutationRequest{req(server, "k-1", 5), req(server, "k-1", 5), req(server, "k-1", 6)})
	if diff := cmp.Diff([]answer{{Version: 1}, {Version: 1, Replayed: true}, {Code: save.CodeIdempotencyKeyReused}}, []answer{answerOf(first[0]), answerOf(first[1]), answerOf(first[2])}); diff != "" {
		t.Errorf("one call (-want +got):\n%s", diff)
	}
	if string(first[1].Result.Body) != string(first[0].Result.Body) {
		t.Errorf("retry in the same call answered %s, want the first answer %s", first[1].Result.Body, first[0].Result.Body)
	}

	later := st.ApplyMutations(ctx, []store.MutationRequest{req(server, "k-1", 5), req(server, "k-1", 7), req(other, "k-1", 5)})
	if diff := cmp.Diff([]answer{{Version: 1, Replayed: true}, {Code: save.CodeIdempotencyKeyReused}, {Version: 2}}, []answer{answerOf(later[0]), answerOf(later[1]), answerOf(later[2])}); diff != "" {
		t.Errorf("later call (-want +got):\n%s", diff)
	}
	if string(later[0].Result.Body) != string(first[0].Result.Body) {
		t.Errorf("later retry answered %s, want the first answer %s", later[0].Result.Body, first[0].Result.Body)
	}
	if e, ok := save.AsError(later[1].Err); !ok || e.Details["committedVersion"] != int64(1) || e.Details["entryId"] != first[0].Result.Outcome.EntryID {
		t.Errorf("reused key: %v, want details naming the committed entry and its version", later[1].Err)
	}
	p, err := st.GetPlayer(ctx, 51)
	if err != nil {
		t.Fatal(err)
	}
	if coins := p.Save["currencies"].(map[string]any)["coins"].(int64); p.Version != 2 || coins != 100+5+5 {
		t.Errorf("player at version %d with %d coins, want version 2 and 110 coins (each request applied once)", p.Version, coins)
	}
}

// TestOnceOnlyAtTheStore checks that something a mutation may do only once
// for a player is refused the second time, under another key too, and that
// a mutation that settles it makes it done.
func TestOnceOnlyAtTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := save.Actor{Kind: save.ActorAdmin, ID: "uid-support"}
	st, _ := firestoretest.Store(t, store.Options{})
	once := func(key, name string, settles ...string) store.MutationRequest {
		return store.MutationRequest{UserID: 52, Actor: admin, IdempotencyKey: key, Mutation: coinsAdd(1), Once: name, Settles: settles}
	}
	results := st.ApplyMutations(ctx, []store.MutationRequest{once("a", "refund of entry 1"), once("b", "refund of entry 1")})
	if diff := cmp.Diff([]answer{{Version: 1}, {Code: save.CodeAlreadyApplied}}, []answer{answerOf(results[0]), answerOf(results[1])}); diff != "" {
		t.Errorf("one call (-want +got):\n%s", diff)
	}
	results = st.ApplyMutations(ctx, []store.MutationRequest{once("c", "refund of entry 1"), once("d", "", "refund of entry 2"), once("e", "refund of entry 2")})
	if diff := cmp.Diff([]answer{{Code: save.CodeAlreadyApplied}, {Version: 2}, {Code: save.CodeAlreadyApplied}}, []answer{answerOf(results[0]), answerOf(results[1]), answerOf(results[2])}); diff != "" {
		t.Errorf("later call (-want +got):\n%s", diff)
	}
	if e, ok := save.AsError(results[0].Err); !ok || e.Details["entryId"] == "" || e.Details["once"] != "refund of entry 1" {
		t.Errorf("done again: %v, want details naming the entry that did it", results[0].Err)
	}
}
