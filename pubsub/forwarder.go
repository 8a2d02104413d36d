package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gpubsub "cloud.google.com/go/pubsub/v2"

	"github.com/savesync/savesync/logging"
)

// Open Cloud messaging limits.
const (
	// MaxRobloxTopicLength is the longest messaging topic Open Cloud accepts.
	MaxRobloxTopicLength = 80
	// MaxRobloxMessageLength is the longest message Open Cloud accepts.
	MaxRobloxMessageLength = 1024
)

// Defaults of ForwarderOptions.
const (
	DefaultInvalidationSubscription = "savesync-invalidations-forwarder"
	DefaultDeadLetterTopic          = "savesync-invalidations-dead-letter"
	DefaultRobloxTopic              = "savesync"
	DefaultOpenCloudURL             = "https://apis.roblox.com"
)

// RobloxMessage is what game servers receive through
// MessagingService:SubscribeAsync on the forwarder's topic, as JSON:
//
//	{"t":"inv","u":[123,456],"v":[7,12]}
//
// t is the message type ("inv": these players' saves changed), u the
// Roblox user ids, v the version each player's save reached, index by
// index. A server that holds one of the players and has an older version
// refetches it; every other server ignores the message. One message
// carries as many players as fit in 1,024 characters.
type RobloxMessage struct {
	Type     string  `json:"t"`
	Users    []int64 `json:"u"`
	Versions []int64 `json:"v"`
}

// RobloxInvalidationType is RobloxMessage.Type for invalidations.
const RobloxInvalidationType = "inv"

// DeadLetter is the JSON body of a message on the dead-letter topic: an
// Open Cloud publish the forwarder gave up on.
type DeadLetter struct {
	UniverseID int64   `json:"universeId"`
	Topic      string  `json:"topic"`
	Message    string  `json:"message"`
	Users      []int64 `json:"users"`
	Versions   []int64 `json:"versions"`
	Attempts   int     `json:"attempts"`
	LastStatus int     `json:"lastStatus,omitempty"`
	Error      string  `json:"error"`
}

// ForwarderOptions configure a Forwarder. UniverseID and APIKey are
// required; zero values of the others take the defaults.
type ForwarderOptions struct {
	// Subscription is the invalidation topic's subscription the forwarder
	// reads (DefaultInvalidationSubscription).
	Subscription string
	// DeadLetterTopic receives the publishes that failed MaxAttempts times
	// or were refused outright (DefaultDeadLetterTopic).
	DeadLetterTopic string
	// BaseURL is the Open Cloud origin (DefaultOpenCloudURL).
	BaseURL string
	// UniverseID is the Roblox universe whose servers receive the messages.
	UniverseID int64
	// APIKey is the Open Cloud API key (messaging-service:publish).
	APIKey string
	// Topic is the MessagingService topic, at most 80 characters
	// (DefaultRobloxTopic).
	Topic string
	// ConcurrentPlayers is the universe's expected concurrent players; the
	// publish budget is 50 + 5 × ConcurrentPlayers per minute.
	ConcurrentPlayers int
	// MaxAttempts bounds the attempts of one publish (5).
	MaxAttempts int
	// InitialBackoff and MaxBackoff bound the waits between attempts:
	// exponential with full jitter (1 s, 60 s). A longer Retry-After wins.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Coalesce is how long the forwarder gathers invalidations before a
	// publish (250 ms): more players per message, fewer publishes.
	Coalesce time.Duration
	// MaxUsersPerMessage caps the players in one message (0: as many as fit).
	MaxUsersPerMessage int
	// HTTPClient sends the publishes (a client with a 10 s timeout).
	HTTPClient *http.Client
	// Now and Sleep are the clock (time.Now, a timer); Jitter returns a
	// random number in [0, n) (math/rand).
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(n int64) int64
	// Deduper drops invalidations already forwarded (a new one of 100,000 players).
	Deduper *Deduper
}

// ForwarderStats counts what a Forwarder did.
type ForwarderStats struct {
	// Received is the invalidation messages read from the subscription.
	Received int64
	// Duplicates is those dropped because a version as new was forwarded.
	Duplicates int64
	// NotHeld is those for players no game server held (nothing to tell).
	NotHeld int64
	// Published is the Open Cloud messages accepted.
	Published int64
	// Attempts is the Open Cloud requests made, retries included.
	Attempts int64
	// DeadLettered is the Open Cloud messages sent to the dead-letter topic.
	DeadLettered int64
}

// Forwarder delivers invalidations to live game servers through Roblox
// Open Cloud messaging: it reads the invalidation subscription, coalesces
// players into as few messages as fit, paces publishes under the
// universe's limit, retries throttling and server errors with backoff, and
// dead-letters what it cannot deliver. A Pub/Sub message is acknowledged
// only once its player was published or dead-lettered, so a crash
// redelivers it.
type Forwarder struct {
	client  *gpubsub.Client
	opts    ForwarderOptions
	url     string
	limiter *tokenBucket
	dead    *gpubsub.Publisher

	mu      sync.Mutex
	pending map[int64]*heldPlayer
	closed  bool
	signal  chan struct{}

	received, duplicates, notHeld, published, attempts, deadLettered atomic.Int64
}

// heldPlayer is a player waiting to be forwarded, with the messages that
// asked for it.
type heldPlayer struct {
	version int64
	msgs    []*gpubsub.Message
}

// NewForwarder checks the options and returns a Forwarder. The
// subscription and dead-letter topic must exist (EnsureTopics,
// EnsureSubscriptions).
func NewForwarder(client *gpubsub.Client, opts ForwarderOptions) (*Forwarder, error) {
	if opts.UniverseID <= 0 {
		return nil, errors.New("pubsub.NewForwarder: UniverseID must be the Roblox universe id")
	}
	if opts.APIKey == "" {
		return nil, errors.New("pubsub.NewForwarder: APIKey must be an Open Cloud API key with messaging-service:publish")
	}
	if opts.Topic == "" {
		opts.Topic = DefaultRobloxTopic
	}
	if len([]rune(opts.Topic)) > MaxRobloxTopicLength {
		return nil, fmt.Errorf("pubsub.NewForwarder: the Roblox topic has %d characters; Open Cloud allows %d", len([]rune(opts.Topic)), MaxRobloxTopicLength)
	}
	if opts.ConcurrentPlayers < 0 {
		return nil, errors.New("pubsub.NewForwarder: ConcurrentPlayers must not be negative")
	}
	if opts.Subscription == "" {
		opts.Subscription = DefaultInvalidationSubscription
	}
	if opts.DeadLetterTopic == "" {
		opts.DeadLetterTopic = DefaultDeadLetterTopic
	}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultOpenCloudURL
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = 250 * time.Millisecond
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Int64N
	}
	if opts.Deduper == nil {
		opts.Deduper = NewDeduper(0)
	}
	f := &Forwarder{
		client:  client,
		opts:    opts,
		url:     strings.TrimSuffix(opts.BaseURL, "/") + "/cloud/v2/universes/" + strconv.FormatInt(opts.UniverseID, 10) + ":publishMessage",
		limiter: newTokenBucket(PublishLimit(opts.ConcurrentPlayers), opts.Now, opts.Sleep),
		dead:    client.Publisher(opts.DeadLetterTopic),
		pending: make(map[int64]*heldPlayer),
		signal:  make(chan struct{}, 1),
	}
	return f, nil
}

// PublishLimit is Open Cloud's messaging budget per minute for a universe
// with that many concurrent players.
func PublishLimit(concurrentPlayers int) int {
	return 50 + 5*concurrentPlayers
}

// Stats returns the forwarder's counters.
func (f *Forwarder) Stats() ForwarderStats {
	return ForwarderStats{
		Received:     f.received.Load(),
		Duplicates:   f.duplicates.Load(),
		NotHeld:      f.notHeld.Load(),
		Published:    f.published.Load(),
		Attempts:     f.attempts.Load(),
		DeadLettered: f.deadLettered.Load(),
	}
}

// Run forwards invalidations until ctx ends. Invalidations not yet
// forwarded then are nacked, so Pub/Sub redelivers them.
func (f *Forwarder) Run(ctx context.Context) error {
	sub := f.client.Subscriber(f.opts.Subscription)
	sub.ReceiveSettings.ShutdownOptions = &gpubsub.ShutdownOptions{Timeout: 5 * time.Second, Behavior: gpubsub.ShutdownBehaviorNackImmediately}
	sendCtx, stopSend := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { f.send(sendCtx) })
	err := sub.Receive(ctx, f.receive)
	stopSend()
	wg.Wait()
	f.dead.Stop()
	if err != nil {
		return fmt.Errorf("pubsub.Forwarder(%s): %w", f.opts.Subscription, err)
	}
	return nil
}

// receive takes one invalidation message from the subscription.
func (f *Forwarder) receive(ctx context.Context, m *gpubsub.Message) {
	f.received.Add(1)
	var inv Invalidation
	if err := json.Unmarshal(m.Data, &inv); err != nil || inv.UserID <= 0 {
		logging.FromContext(ctx).Error("invalidation message is not readable; dropped", "messageId", m.ID)
		m.Ack()
		return
	}
	if inv.HolderJobID == "" {
		f.notHeld.Add(1)
		m.Ack()
		return
	}
	if !f.opts.Deduper.Fresh(inv.UserID, inv.Version) {
		f.duplicates.Add(1)
		m.Ack()
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		m.Nack()
		return
	}
	p := f.pending[inv.UserID]
	if p == nil {
		p = &heldPlayer{}
		f.pending[inv.UserID] = p
	}
	p.version = max(p.version, inv.Version)
	p.msgs = append(p.msgs, m)
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

// send is the one goroutine that publishes to Open Cloud, so the rate
// limit and the retry waits apply to all publishes in turn.
func (f *Forwarder) send(ctx context.Context) {
	defer f.shutdown()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.signal:
		}
		if err := f.opts.Sleep(ctx, f.opts.Coalesce); err != nil {
			return
		}
		batch := f.take()
		for _, chunk := range chunkPlayers(batch, f.opts.MaxUsersPerMessage) {
			if err := f.forward(ctx, chunk); err != nil {
				f.release(chunk, false)
				if ctx.Err() != nil {
					f.releaseAll(batch)
					return
				}
				logging.FromContext(ctx).Error("invalidation not forwarded; Pub/Sub will redeliver it", "error", err.Error())
				continue
			}
			f.release(chunk, true)
		}
	}
}

// take removes and returns everything pending, in user id order.
func (f *Forwarder) take() []playerVersion {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]playerVersion, 0, len(f.pending))
	for uid, p := range f.pending {
		out = append(out, playerVersion{userID: uid, version: p.version, msgs: p.msgs})
	}
	clear(f.pending)
	slices.SortFunc(out, func(a, b playerVersion) int { return cmpInt64(a.userID, b.userID) })
	return out
}

// playerVersion is one player of an outgoing message.
type playerVersion struct {
	userID  int64
	version int64
	msgs    []*gpubsub.Message
	done    bool
}

// release acknowledges a chunk's Pub/Sub messages once forwarded (or
// dead-lettered), or nacks them for redelivery.
func (f *Forwarder) release(chunk []*playerVersion, forwarded bool) {
	for _, p := range chunk {
		p.done = true
		if forwarded {
			// Record before acking: the ack lets Pub/Sub deliver the player's
			// next message, which must already see this version.
			f.opts.Deduper.Record(p.userID, p.version)
		}
		for _, m := range p.msgs {
			if forwarded {
				m.Ack()
			} else {
				m.Nack()
			}
		}
	}
}

// releaseAll nacks the players of a batch not yet released.
func (f *Forwarder) releaseAll(batch []playerVersion) {
	for i := range batch {
		if !batch[i].done {
			f.release([]*playerVersion{&batch[i]}, false)
		}
	}
}

// shutdown nacks whatever is still pending and refuses new messages.
func (f *Forwarder) shutdown() {
	f.mu.Lock()
	f.closed = true
	rest := f.pending
	f.pending = map[int64]*heldPlayer{}
	f.mu.Unlock()
	for _, p := range rest {
		for _, m := range p.msgs {
			m.Nack()
		}
	}
}

// forward publishes one message to Open Cloud, retrying throttling and
// server errors, and dead-letters it when it cannot be delivered. It
// returns an error only when neither happened (ctx ended, or the
// dead-letter publish failed).
func (f *Forwarder) forward(ctx context.Context, chunk []*playerVersion) error {
	msg := RobloxMessage{Type: RobloxInvalidationType, Users: make([]int64, len(chunk)), Versions: make([]int64, len(chunk))}
	for i, p := range chunk {
		msg.Users[i], msg.Versions[i] = p.userID, p.version
	}
	text, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"topic": f.opts.Topic, "message": string(text)})
	if err != nil {
		return err
	}
	var lastStatus int
	var lastErr error
	attempts := 0
	for attempts < f.opts.MaxAttempts {
		if err := f.limiter.wait(ctx); err != nil {
			return err
		}
		attempts++
		f.attempts.Add(1)
		status, retryAfter, err := f.post(ctx, body)
		lastStatus, lastErr = status, err
		if err == nil && status/100 == 2 {
			f.published.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && !retryableStatus(status) {
			break
		}
		if attempts == f.opts.MaxAttempts {
			break
		}
		// An invalidation is worth seconds, not hours: a long Retry-After
		// is honoured only up to MaxBackoff, so one throttled chunk cannot
		// hold every other invalidation behind it.
		if err := f.opts.Sleep(ctx, min(max(f.backoff(attempts), retryAfter), f.opts.MaxBackoff)); err != nil {
			return err
		}
	}
	why := fmt.Sprintf("Open Cloud answered %d", lastStatus)
	if lastErr != nil {
		why = lastErr.Error()
	}
	return f.deadLetter(ctx, DeadLetter{
		UniverseID: f.opts.UniverseID,
		Topic:      f.opts.Topic,
		Message:    string(text),
		Users:      msg.Users,
		Versions:   msg.Versions,
		Attempts:   attempts,
		LastStatus: lastStatus,
		Error:      why,
	})
}

// post sends one publish and reports the status and any Retry-After.
func (f *Forwarder) post(ctx context.Context, body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("x-api-key", f.opts.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), f.opts.Now()), nil
}

// deadLetter publishes an undeliverable message to the dead-letter topic.
func (f *Forwarder) deadLetter(ctx context.Context, d DeadLetter) error {
	body, err := json.Marshal(d)
	if err != nil {
		return err
	}
	res := f.dead.Publish(ctx, &gpubsub.Message{
		Data: body,
		Attributes: map[string]string{
			"universeId": strconv.FormatInt(d.UniverseID, 10),
			"attempts":   strconv.Itoa(d.Attempts),
			"lastStatus": strconv.Itoa(d.LastStatus),
		},
	})
	if _, err := res.Get(ctx); err != nil {
		return fmt.Errorf("dead-letter publish: %w", err)
	}
	f.deadLettered.Add(1)
	logging.FromContext(ctx).Warn("Open Cloud publish dead-lettered", "users", len(d.Users), "attempts", d.Attempts, "error", d.Error)
	return nil
}

// backoff is the wait after a failed attempt: full jitter under a ceiling
// that doubles from InitialBackoff up to MaxBackoff.
func (f *Forwarder) backoff(attempt int) time.Duration {
	ceiling := f.opts.InitialBackoff << min(attempt-1, 20)
	if ceiling <= 0 || ceiling > f.opts.MaxBackoff {
		ceiling = f.opts.MaxBackoff
	}
	return time.Duration(f.opts.Jitter(int64(ceiling))) + time.Millisecond
}

// retryableStatus reports whether an Open Cloud answer may succeed later:
// throttling and server errors. Other refusals (bad key, bad request) will
// not, and are dead-lettered at once.
func retryableStatus(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n > 0 {
		return time.Duration(min(n, 3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}

// chunkPlayers splits players into messages of at most
// MaxRobloxMessageLength characters (and at most perMessage players when
// perMessage > 0).
func chunkPlayers(players []playerVersion, perMessage int) [][]*playerVersion {
	// {"t":"inv","u":[],"v":[]} plus, per player, its digits and two commas.
	const frame = len(`{"t":"inv","u":[],"v":[]}`)
	var out [][]*playerVersion
	var cur []*playerVersion
	size := frame
	for i := range players {
		p := &players[i]
		add := len(strconv.FormatInt(p.userID, 10)) + len(strconv.FormatInt(p.version, 10))
		if len(cur) > 0 {
			add += 2
		}
		if len(cur) > 0 && (size+add > MaxRobloxMessageLength || (perMessage > 0 && len(cur) >= perMessage)) {
			out = append(out, cur)
			cur, size = nil, frame
			add -= 2
		}
		cur = append(cur, p)
		size += add
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
