package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEscapedSlashStaysInItsPathParameter: an element the add route takes
// in its body ("red/blue") is addressed in the remove route's path with its
// slash escaped (%2F), and the service's routes match it there; an
// unescaped slash still separates segments.
func TestEscapedSlashStaysInItsPathParameter(t *testing.T) {
	s := startAPIStack(t)
	u := s.signUp()
	const userID = 5_100_000_001
	if r := s.link(u, userID); r.status != http.StatusOK {
		t.Fatalf("link: %s %s", r.summary(), r.body)
	}
	me := bearerOf(u.IDToken)
	for _, el := range []string{"red/blue", "a%b", "x y"} {
		if r := s.call("POST", "/v1/me/collections/wishlist", me, map[string]any{"element": el}, "Idempotency-Key", "add-"+el); r.status != http.StatusOK {
			t.Fatalf("add %q: %s %s", el, r.summary(), r.body)
		}
	}
	version := s.companionSave(u).Version
	for _, el := range []string{"red/blue", "a%b"} {
		target := fmt.Sprintf("/v1/me/collections/wishlist/%s?observedVersion=%d", url.PathEscape(el), version)
		if r := s.call("DELETE", target, me, nil, "Idempotency-Key", "remove-"+el); r.status != http.StatusOK {
			t.Errorf("remove %q as %s: %s %s", el, target, r.summary(), r.body)
		}
	}
	target := fmt.Sprintf("/v1/me/collections/wishlist/x/y?observedVersion=%d", version)
	if r := s.call("DELETE", target, me, nil, "Idempotency-Key", "remove-x/y"); r.status != http.StatusNotFound || r.errorCode() != "NOT_FOUND" {
		t.Errorf("remove through an unescaped slash: %s %s, want 404 NOT_FOUND", r.summary(), r.body)
	}
	if diff := cmp.Diff([]string{"x y"}, s.companionSave(u).Save.Collections["wishlist"]); diff != "" {
		t.Errorf("wishlist (-want +got):\n%s", diff)
	}
}

// companionSave reads u's own save through the companion API.
func (s *apiStack) companionSave(u *fbUser) (out struct {
	Version int64 `json:"version"`
	Save    struct {
		Collections map[string][]string `json:"collections"`
	} `json:"save"`
}) {
	s.t.Helper()
	r := s.call("GET", "/v1/me/save", bearerOf(u.IDToken), nil)
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		s.t.Fatalf("read the save: %s %s", r.summary(), r.body)
	}
	return out
}
