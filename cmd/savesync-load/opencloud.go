package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/savesync/savesync/events"
	"github.com/savesync/savesync/opencloud"
)

// openCloudStandIn is Roblox Open Cloud messaging on loopback, shaped like
// the fake of the events tests: it checks the request (path, x-api-key,
// {topic, message} with message ≤ 1,024 characters) and the universe's
// budget of 50 + 5 × players publishes in any 60 seconds, answering 429
// with Retry-After above it, as Roblox does. It records when each accepted
// message arrived, so the tool can report commit → Open Cloud latency.
type openCloudStandIn struct {
	universe int64
	key      string
	limit    int
	srv      *http.Server
	url      string

	mu        sync.Mutex
	requests  []time.Time
	accepted  []openCloudDelivery
	throttled int64
	refused   int64
}

// openCloudDelivery is one accepted invalidation message.
type openCloudDelivery struct {
	At       time.Time
	Users    []int64
	Versions []int64
}

func startOpenCloudStandIn(universe int64, key string, players int) (*openCloudStandIn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &openCloudStandIn{universe: universe, key: key, limit: opencloud.PublishLimit(players)}
	o.srv = &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}
	o.url = "http://" + ln.Addr().String()
	go func() { _ = o.srv.Serve(ln) }()
	return o, nil
}

func (o *openCloudStandIn) Close() error { return o.srv.Close() }

func (o *openCloudStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	o.mu.Lock()
	defer o.mu.Unlock()
	refuse := func(status int) {
		o.refused++
		http.Error(w, `{"code":"INVALID_ARGUMENT"}`, status)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/cloud/v2/universes/"+itoa(o.universe)+":publishMessage" || err != nil {
		refuse(http.StatusBadRequest)
		return
	}
	if r.Header.Get("x-api-key") != o.key {
		refuse(http.StatusUnauthorized)
		return
	}
	var body struct {
		Topic   string `json:"topic"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &body) != nil || body.Topic == "" || len([]rune(body.Message)) > 1024 {
		refuse(http.StatusBadRequest)
		return
	}
	inWindow := 0
	cut := now.Add(-time.Minute)
	keep := o.requests[:0]
	for _, at := range o.requests {
		if at.After(cut) {
			keep = append(keep, at)
			inWindow++
		}
	}
	o.requests = append(keep, now)
	if inWindow >= o.limit {
		o.throttled++
		w.Header().Set("Retry-After", "10")
		http.Error(w, `{"code":"RESOURCE_EXHAUSTED"}`, http.StatusTooManyRequests)
		return
	}
	var msg events.RobloxMessage
	if err := json.Unmarshal([]byte(body.Message), &msg); err == nil && msg.Type == events.RobloxInvalidationType && len(msg.Users) == len(msg.Versions) {
		o.accepted = append(o.accepted, openCloudDelivery{At: now, Users: msg.Users, Versions: msg.Versions})
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}")
}

// reached returns, per user, the deliveries in arrival order.
func (o *openCloudStandIn) reached() map[int64][]openCloudDelivery {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int64][]openCloudDelivery{}
	for _, d := range o.accepted {
		for i, u := range d.Users {
			out[u] = append(out[u], openCloudDelivery{At: d.At, Users: []int64{u}, Versions: []int64{d.Versions[i]}})
		}
	}
	return out
}

// counts returns accepted messages, 429 answers and refused requests.
func (o *openCloudStandIn) counts() (accepted int, throttled, refused int64, last time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := len(o.accepted); n > 0 {
		last = o.accepted[n-1].At
	}
	return len(o.accepted), o.throttled, o.refused, last
}
