package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/savesync/savesync/events"
)

// TestErasureTellsGameServersThroughOpenCloud: an erasure, once done,
// publishes {"t":"erase","u":[id]} on the game servers' topic through the
// Open Cloud messaging API, so the Luau module drops its DataStore copies.
func TestErasureTellsGameServersThroughOpenCloud(t *testing.T) {
	var mu sync.Mutex
	var published []map[string]string
	cloud := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		raw, _ := io.ReadAll(r.Body)
		if json.Unmarshal(raw, &body) == nil && r.Header.Get("x-api-key") == "test-open-cloud-key" {
			mu.Lock()
			published = append(published, body)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(cloud.Close)

	vars := contractVars(t)
	vars[envRobloxAPIKey] = "test-open-cloud-key"
	vars[envRobloxUniverseID] = fmt.Sprint(contractUniverse)
	run := runService(t, vars, func(o *RunOptions) { o.openCloudURL = cloud.URL })
	t.Cleanup(func() { run.stop(t) })
	s := newAPIStack(t, vars, run)

	const userID = 5_200_000_001
	s.commit(userID)
	admin := s.staff("admin")
	if r := s.call("DELETE", fmt.Sprintf("/v1/admin/players/%d", userID), bearerOf(admin.IDToken), nil, "Idempotency-Key", "erase-1"); r.status != http.StatusOK {
		t.Fatalf("erase: %s %s", r.summary(), r.body)
	}
	want := map[string]string{"topic": events.DefaultRobloxTopic, "message": events.EraseMessage(userID)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := append([]map[string]string(nil), published...)
		mu.Unlock()
		for _, p := range got {
			if p["topic"] == want["topic"] && p["message"] == want["message"] {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Open Cloud got %v within 30 s, want %v among them", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
