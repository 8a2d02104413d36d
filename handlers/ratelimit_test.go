package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/store"
)

// refused is what a 429 answer says: its code, details.limit and Retry-After.
type refused struct {
	Status     int
	Code       string
	Limit      string
	RetryAfter string
}

// refusalOf reads a refusal from an answer (zero values for a success).
func refusalOf(t *testing.T, r response) refused {
	t.Helper()
	out := refused{Status: r.status, RetryAfter: r.header.Get("Retry-After")}
	if r.status < 400 {
		return out
	}
	e, _ := r.object(t)["error"].(map[string]any)
	out.Code, _ = e["code"].(string)
	d, _ := e["details"].(map[string]any)
	out.Limit, _ = d["limit"].(string)
	return out
}

// newCode asks for a link code as u.
func (e *companionEnv) newCode(u *fbUser) string {
	e.t.Helper()
	r := e.me(u, "POST", "/link-codes", nil)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create link code: %d %s", r.status, r.body)
	}
	code, _ := r.object(e.t)["code"].(string)
	return code
}

// redeem redeems a code for userID as the game server job.
func (e *companionEnv) redeem(code string, userID int64, job string) response {
	e.t.Helper()
	return e.call(e.url, "POST", "/v1/link-codes/"+code+"/redeem", companionKey, map[string]any{"userId": userID}, "Roblox-Job-Id", job)
}

// wrongCode is a well-formed code that was never issued, starting with prefix.
func wrongCode(prefix string, n int) string {
	const alphabet = store.LinkCodeAlphabet
	tail := []byte{alphabet[n%31], alphabet[(n/31)%31], alphabet[(n/961)%31], 'Z'}
	return (prefix + string(tail) + "ZZZZZZZZ")[:store.LinkCodeLength]
}

func TestLinkCodesLiveAtOnceAreCapped(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t)
	u := signUp(t)
	var codes []string
	for range store.MaxLiveLinkCodes + 1 {
		codes = append(codes, e.newCode(u))
	}
	// The oldest was revoked by the sixth; the five newest all work.
	if r := e.redeem(codes[0], 4801, "job-cap"); r.status != http.StatusNotFound {
		t.Errorf("the oldest code after %d more: %d %s, want 404 LINK_CODE_UNKNOWN", store.MaxLiveLinkCodes, r.status, r.body)
	}
	for i, code := range codes[1:] {
		if r := e.redeem(code, 4801, "job-cap"); r.status != http.StatusOK {
			t.Errorf("code %d of the newest %d: %d %s, want 200", i+1, store.MaxLiveLinkCodes, r.status, r.body)
		}
	}
}

func TestLinkCodeIssueIsRateLimited(t *testing.T) {
	t.Parallel()
	clock := firestoretest.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	e := newCompanionEnv(t, func(o *handlers.CompanionOptions) {
		o.Now = clock.Now
		o.LinkCodeIssue = handlers.RateLimit{Burst: 2, Every: 30 * time.Second}
	})
	u, other := signUp(t), signUp(t)
	ok := refused{Status: http.StatusCreated}
	limited := refused{Status: http.StatusTooManyRequests, Code: "RATE_LIMITED", Limit: "LINK_CODES_PER_ACCOUNT", RetryAfter: "30"}
	steps := []struct {
		name    string
		user    *fbUser
		advance time.Duration
		want    refused
	}{
		{"first", u, 0, ok},
		{"second", u, 0, ok},
		{"third at once", u, 0, limited},
		{"another account", other, 0, ok},
		{"after 29 s", u, 29 * time.Second, refused{Status: http.StatusTooManyRequests, Code: "RATE_LIMITED", Limit: "LINK_CODES_PER_ACCOUNT", RetryAfter: "1"}},
		{"after 30 s", u, time.Second, ok},
		{"at once again", u, 0, limited},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		if diff := cmp.Diff(s.want, refusalOf(t, e.me(s.user, "POST", "/link-codes", nil))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestLinkCodeRedemptionFailuresAreThrottled(t *testing.T) {
	t.Parallel()
	limited := func(limit, after string) refused {
		return refused{Status: http.StatusTooManyRequests, Code: "RATE_LIMITED", Limit: limit, RetryAfter: after}
	}
	notFound := refused{Status: http.StatusNotFound, Code: "NOT_FOUND"}
	linked := refused{Status: http.StatusOK}

	t.Run("per game server and per universe", func(t *testing.T) {
		t.Parallel()
		clock := firestoretest.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
		e := newCompanionEnv(t, func(o *handlers.CompanionOptions) {
			o.Now = clock.Now
			o.RedeemFailuresPerPlayer = handlers.RateLimit{Burst: 100, Every: time.Minute}
			o.RedeemFailuresPerJob = handlers.RateLimit{Burst: 3, Every: time.Minute}
			o.RedeemFailuresPerUniverse = handlers.RateLimit{Burst: 5, Every: time.Minute}
		})
		u := signUp(t)
		good := e.newCode(u)
		redeemSteps(t, e, clock, []redeemStep{
			{"job A wrong 1", wrongCode("AAAA", 1), 4901, "job-a", 0, notFound},
			{"job A wrong 2", wrongCode("BBBB", 2), 4901, "job-a", 0, notFound},
			{"job A wrong 3", wrongCode("CCCC", 3), 4901, "job-a", 0, notFound},
			{"job A, even the right code", good, 4901, "job-a", 0, limited("REDEEM_FAILURES_PER_JOB", "60")},
			{"malformed codes are refused as such, not counted", "nope", 4901, "job-a", 0, refused{Status: http.StatusBadRequest, Code: "INVALID_ARGUMENT"}},
			{"job B wrong 1", wrongCode("DDDD", 4), 4901, "job-b", 0, notFound},
			{"job B wrong 2", wrongCode("EEEE", 5), 4901, "job-b", 0, notFound},
			{"job B: the universe had 5", wrongCode("FFFF", 6), 4901, "job-b", 0, limited("REDEEM_FAILURES_PER_UNIVERSE", "60")},
			{"no job id: the universe still counts", good, 4901, "", 0, limited("REDEEM_FAILURES_PER_UNIVERSE", "60")},
			{"a minute later job A links", good, 4901, "job-a", time.Minute, linked},
		})
	})

	t.Run("per player, before the server", func(t *testing.T) {
		t.Parallel()
		clock := firestoretest.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
		e := newCompanionEnv(t, func(o *handlers.CompanionOptions) {
			o.Now = clock.Now
			o.RedeemFailuresPerPlayer = handlers.RateLimit{Burst: 2, Every: time.Minute}
			o.RedeemFailuresPerJob = handlers.RateLimit{Burst: 3, Every: time.Minute}
		})
		good := e.newCode(signUp(t))
		redeemSteps(t, e, clock, []redeemStep{
			{"griefer wrong 1", wrongCode("GGGG", 1), 4911, "job-g", 0, notFound},
			{"griefer wrong 2", wrongCode("HHHH", 2), 4911, "job-g", 0, notFound},
			{"griefer is held up", wrongCode("JJJJ", 3), 4911, "job-g", 0, limited("REDEEM_FAILURES_PER_PLAYER", "60")},
			{"griefer again: refused before it counts", wrongCode("KKKK", 4), 4911, "job-g", 0, limited("REDEEM_FAILURES_PER_PLAYER", "60")},
			{"another player on the server links", good, 4912, "job-g", 0, linked},
		})
	})

	t.Run("per code prefix", func(t *testing.T) {
		t.Parallel()
		clock := firestoretest.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
		e := newCompanionEnv(t, func(o *handlers.CompanionOptions) {
			o.Now = clock.Now
			o.RedeemFailuresPerPrefix = handlers.RateLimit{Burst: 2, Every: 5 * time.Minute}
		})
		u := signUp(t)
		good := e.newCode(u)
		prefix := good[:handlers.LinkCodePrefixLength]
		guess := func(n int) string {
			for {
				if c := wrongCode(prefix, n); c != good {
					return c
				}
				n++
			}
		}
		redeemSteps(t, e, clock, []redeemStep{
			{"guess 1 at the seen prefix", guess(1), 4902, "job-1", 0, notFound},
			{"guess 2 from another server", guess(40), 4902, "job-2", 0, notFound},
			{"guess 3 from a third server", guess(80), 4902, "job-3", 0, limited("REDEEM_FAILURES_PER_CODE_PREFIX", "300")},
			{"the right code waits too", good, 4902, "job-4", 0, limited("REDEEM_FAILURES_PER_CODE_PREFIX", "300")},
			{"other prefixes are not held up", wrongCode(nextPrefix(prefix), 7), 4902, "job-3", 0, notFound},
			{"five minutes later the right code links", good, 4902, "job-4", 5 * time.Minute, linked},
		})
	})
}

// redeemStep is one redemption of a throttling scenario: after the clock
// advances, player redeems code from the game server job and gets want.
type redeemStep struct {
	name    string
	code    string
	player  int64
	job     string
	advance time.Duration
	want    refused
}

// redeemSteps runs a throttling scenario in order on e's settable clock.
func redeemSteps(t *testing.T, e *companionEnv, clock *firestoretest.Clock, steps []redeemStep) {
	t.Helper()
	for _, s := range steps {
		clock.Advance(s.advance)
		if diff := cmp.Diff(s.want, refusalOf(t, e.redeem(s.code, s.player, s.job))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}

// nextPrefix is a code prefix other than p.
func nextPrefix(p string) string {
	if strings.HasPrefix(p, "Z") {
		return "Y" + p[1:]
	}
	return "Z" + p[1:]
}

func TestEventStreamsPerAccountAreCapped(t *testing.T) {
	t.Parallel()
	e := newCompanionEnv(t, func(o *handlers.CompanionOptions) { o.MaxStreams = 2 })
	u, other := signUp(t), signUp(t)
	e.link(u, 5001)
	e.link(other, 5002)

	_, first := e.openEvents(e.url, u)
	_, second := e.openEvents(e.url, u)
	for i, resp := range []*http.Response{first, second} {
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d, want 200", i+1, resp.StatusCode)
		}
	}
	want := refused{Status: http.StatusTooManyRequests, Code: "RESOURCE_EXHAUSTED", Limit: "EVENT_STREAMS_PER_ACCOUNT", RetryAfter: "10"}
	if diff := cmp.Diff(want, refusalOf(t, e.me(u, "GET", "/events", nil))); diff != "" {
		t.Errorf("a third stream (-want +got):\n%s", diff)
	}
	// Other accounts, and other instances (the limit is per instance), are not held up.
	if _, resp := e.openEvents(e.url, other); resp.StatusCode != http.StatusOK {
		t.Errorf("another account's stream: %d, want 200", resp.StatusCode)
	}
	if _, resp := e.openEvents(e.other, u); resp.StatusCode != http.StatusOK {
		t.Errorf("a stream on the other instance: %d, want 200", resp.StatusCode)
	}

	// Closing a stream frees its place once the server sees it closed.
	first.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, resp := e.openEvents(e.url, u)
		if resp.StatusCode == http.StatusOK {
			break
		}
		resp.Body.Close()
		select {
		case <-ctx.Done():
			t.Fatalf("no stream after closing one: still %d", resp.StatusCode)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if r := e.me(u, "GET", "/events", nil); r.status != http.StatusTooManyRequests {
		t.Errorf("a stream beyond the cap again: %d, want 429", r.status)
	}
}
