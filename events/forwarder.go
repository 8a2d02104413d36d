package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/savesync/savesync/internal/sleep"
	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/opencloud"
)

// Defaults of ForwarderOptions.
const (
	DefaultInvalidationSubscription = "savesync-invalidations-forwarder"
	DefaultDeadLetterTopic          = "savesync-invalidations-dead-letter"
	DefaultRobloxTopic              = "savesync"
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

// RobloxEraseType is RobloxMessage.Type for erasures: the players' data
// was erased on the service, and game servers drop their own copies (the
// Luau module's DataStore entries). Versions is empty.
const RobloxEraseType = "erase"

// EraseMessage is the message telling game servers that userIDs were erased.
func EraseMessage(userIDs ...int64) string {
	b, _ := json.Marshal(RobloxMessage{Type: RobloxEraseType, Users: userIDs, Versions: []int64{}})
	return string(b)
}

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

// ForwarderOptions configure a Forwarder. Zero values take the defaults.
type ForwarderOptions struct {
	// Subscription is the invalidation topic's subscription the forwarder
	// reads (DefaultInvalidationSubscription).
	Subscription string
	// DeadLetterTopic receives the publishes Open Cloud refused or that
	// failed every attempt (DefaultDeadLetterTopic).
	DeadLetterTopic string
	// Topic is the MessagingService topic game servers subscribe to, at
	// most opencloud.MaxTopicLength characters (DefaultRobloxTopic).
	Topic string
	// Coalesce is how long the forwarder gathers invalidations before a
	// publish (250 ms): more players per message, fewer publishes.
	Coalesce time.Duration
	// MaxUsersPerMessage caps the players in one message (0: as many as fit).
	MaxUsersPerMessage int
	// Sleep is the clock's wait (a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Deduper drops invalidations already forwarded (a new one of 100,000 players).
	Deduper *Deduper
	// Observer hears the queue's length, for the service's metrics (none).
	Observer ForwarderObserver
}

// ForwarderObserver hears how many players wait for an Open Cloud publish;
// its method must be quick and safe for concurrent use.
type ForwarderObserver interface {
	// ForwarderQueue is called with the players received and not yet
	// published, dead-lettered or handed back, whenever it changes.
	ForwarderQueue(ctx context.Context, players int)
}

// noForwarderObserver is the ForwarderObserver of a forwarder given none.
type noForwarderObserver struct{}

func (noForwarderObserver) ForwarderQueue(context.Context, int) {}

// ForwarderStats counts what a Forwarder did.
type ForwarderStats struct {
	// Received is the invalidation messages read from the subscription.
	Received int64
	// Duplicates is those dropped because a version as new was forwarded.
	Duplicates int64
	// NotHeld is those for players no game server held (nothing to tell).
	NotHeld int64
	// Published is the Open Cloud messages accepted, and Attempts the
	// Open Cloud requests made, retries included, by the forwarder's
	// publisher.
	Published int64
	Attempts  int64
	// DeadLettered is the Open Cloud messages sent to the dead-letter topic.
	DeadLettered int64
}

// Forwarder delivers invalidations to live game servers through Roblox
// Open Cloud messaging: it reads the invalidation subscription, coalesces
// players into as few messages as fit, publishes them one at a time
// through an opencloud.Publisher (which paces them under the universe's
// limit and retries), and dead-letters what Open Cloud cannot take. A Pub/Sub message is acknowledged
// only once its player was published or dead-lettered, so a crash
// redelivers it.
type Forwarder struct {
	client    *pubsub.Client
	publisher *opencloud.Publisher
	opts      ForwarderOptions
	dead      *pubsub.Publisher

	mu      sync.Mutex
	pending map[int64]*heldPlayer
	closed  bool
	signal  chan struct{}

	received, duplicates, notHeld, deadLettered atomic.Int64
	// queued is the players received and not yet released.
	queued atomic.Int64
}

// heldPlayer is a player waiting to be forwarded, with the messages that
// asked for it.
type heldPlayer struct {
	version int64
	msgs    []*pubsub.Message
}

// NewForwarder checks the options and returns a Forwarder that reads
// client's invalidation subscription and publishes through publisher. The
// subscription and dead-letter topic must exist (EnsureTopics,
// EnsureSubscriptions).
func NewForwarder(client *pubsub.Client, publisher *opencloud.Publisher, opts ForwarderOptions) (*Forwarder, error) {
	if opts.Topic == "" {
		opts.Topic = DefaultRobloxTopic
	}
	if len([]rune(opts.Topic)) > opencloud.MaxTopicLength {
		return nil, fmt.Errorf("events.NewForwarder: the Roblox topic has %d characters; Open Cloud allows %d", len([]rune(opts.Topic)), opencloud.MaxTopicLength)
	}
	if opts.Subscription == "" {
		opts.Subscription = DefaultInvalidationSubscription
	}
	if opts.DeadLetterTopic == "" {
		opts.DeadLetterTopic = DefaultDeadLetterTopic
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = 250 * time.Millisecond
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep.For
	}
	if opts.Deduper == nil {
		opts.Deduper = NewDeduper(0)
	}
	if opts.Observer == nil {
		opts.Observer = noForwarderObserver{}
	}
	return &Forwarder{
		client:    client,
		publisher: publisher,
		opts:      opts,
		dead:      client.Publisher(opts.DeadLetterTopic),
		pending:   make(map[int64]*heldPlayer),
		signal:    make(chan struct{}, 1),
	}, nil
}

// Stats returns the forwarder's counters.
func (f *Forwarder) Stats() ForwarderStats {
	sent := f.publisher.Stats()
	return ForwarderStats{
		Received:     f.received.Load(),
		Duplicates:   f.duplicates.Load(),
		NotHeld:      f.notHeld.Load(),
		Published:    sent.Published,
		Attempts:     sent.Attempts,
		DeadLettered: f.deadLettered.Load(),
	}
}

// Run forwards invalidations until ctx ends. Invalidations not yet
// forwarded then are nacked, so Pub/Sub redelivers them.
func (f *Forwarder) Run(ctx context.Context) error {
	sub := f.client.Subscriber(f.opts.Subscription)
	sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Timeout: 5 * time.Second, Behavior: pubsub.ShutdownBehaviorNackImmediately}
	sendCtx, stopSend := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { f.send(sendCtx) })
	err := sub.Receive(ctx, f.receive)
	stopSend()
	wg.Wait()
	f.dead.Stop()
	if err != nil {
		return fmt.Errorf("events.Forwarder(%s): %w", f.opts.Subscription, err)
	}
	return nil
}

// receive takes one invalidation message from the subscription.
func (f *Forwarder) receive(ctx context.Context, m *pubsub.Message) {
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
		f.opts.Observer.ForwarderQueue(ctx, int(f.queued.Add(1)))
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
	msgs    []*pubsub.Message
	done    bool
}

// release acknowledges a chunk's Pub/Sub messages once forwarded (or
// dead-lettered), or nacks them for redelivery.
func (f *Forwarder) release(chunk []*playerVersion, forwarded bool) {
	f.opts.Observer.ForwarderQueue(context.Background(), int(f.queued.Add(-int64(len(chunk)))))
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
	f.opts.Observer.ForwarderQueue(context.Background(), int(f.queued.Add(-int64(len(rest)))))
	for _, p := range rest {
		for _, m := range p.msgs {
			m.Nack()
		}
	}
}

// forward publishes one message to Open Cloud, and dead-letters it when
// Open Cloud cannot take it. It returns an error only when neither
// happened (ctx ended, or the dead-letter publish failed).
func (f *Forwarder) forward(ctx context.Context, chunk []*playerVersion) error {
	msg := RobloxMessage{Type: RobloxInvalidationType, Users: make([]int64, len(chunk)), Versions: make([]int64, len(chunk))}
	for i, p := range chunk {
		msg.Users[i], msg.Versions[i] = p.userID, p.version
	}
	text, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	err = f.publisher.Publish(ctx, f.opts.Topic, string(text))
	var undelivered *opencloud.Undelivered
	if !errors.As(err, &undelivered) {
		return err
	}
	return f.deadLetter(ctx, DeadLetter{
		UniverseID: f.publisher.UniverseID(),
		Topic:      f.opts.Topic,
		Message:    string(text),
		Users:      msg.Users,
		Versions:   msg.Versions,
		Attempts:   undelivered.Attempts,
		LastStatus: undelivered.LastStatus,
		Error:      undelivered.Reason,
	})
}

// deadLetter publishes an undeliverable message to the dead-letter topic.
func (f *Forwarder) deadLetter(ctx context.Context, d DeadLetter) error {
	body, err := json.Marshal(d)
	if err != nil {
		return err
	}
	res := f.dead.Publish(ctx, &pubsub.Message{
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

// chunkPlayers splits players into messages of at most
// opencloud.MaxMessageLength characters (and at most perMessage players when
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
		if len(cur) > 0 && (size+add > opencloud.MaxMessageLength || (perMessage > 0 && len(cur) >= perMessage)) {
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

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
