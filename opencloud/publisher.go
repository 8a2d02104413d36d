// Package opencloud is savesync's client of Roblox Open Cloud messaging
// (POST /cloud/v2/universes/{id}:publishMessage), which live game servers
// receive through MessagingService:SubscribeAsync. It keeps a universe's
// publishes under Open Cloud's rate budget and retries throttling and
// server errors with backoff; what it cannot deliver it reports, for the
// caller to dead-letter.
package opencloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/savesync/savesync/internal/sleep"
)

// Open Cloud messaging limits.
const (
	// MaxTopicLength is the longest messaging topic Open Cloud accepts.
	MaxTopicLength = 80
	// MaxMessageLength is the longest message Open Cloud accepts.
	MaxMessageLength = 1024
)

// DefaultURL is Open Cloud's origin.
const DefaultURL = "https://apis.roblox.com"

// Options configure a Publisher. UniverseID and APIKey are required; zero
// values of the others take the defaults.
type Options struct {
	// BaseURL is the Open Cloud origin (DefaultURL).
	BaseURL string
	// UniverseID is the Roblox universe whose servers receive the messages.
	UniverseID int64
	// APIKey is the Open Cloud API key (messaging-service:publish).
	APIKey string
	// ConcurrentPlayers is the universe's expected concurrent players; the
	// publish budget is PublishLimit(ConcurrentPlayers) per minute.
	ConcurrentPlayers int
	// MaxAttempts bounds the attempts of one publish (5).
	MaxAttempts int
	// InitialBackoff and MaxBackoff bound the waits between attempts:
	// exponential with full jitter (1 s, 60 s). A longer Retry-After wins,
	// up to MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// HTTPClient sends the publishes (a client with a 10 s timeout).
	HTTPClient *http.Client
	// Now and Sleep are the clock (time.Now, a timer); Jitter returns a
	// random number in [0, n) (math/rand).
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(n int64) int64
	// Observer hears of the waits for the rate budget, for the service's
	// metrics (none).
	Observer Observer
}

// Observer hears what a Publisher waited for; its method must be quick and
// safe for concurrent use.
type Observer interface {
	// RateLimitWaited is called when a publish waited d for the
	// universe's rate budget.
	RateLimitWaited(ctx context.Context, d time.Duration)
}

// Publisher publishes messages to the MessagingService topics of one
// universe. It is safe for concurrent use; publishes share one rate budget.
type Publisher struct {
	opts    Options
	url     string
	limiter *tokenBucket

	attempts, published atomic.Int64
}

// Stats counts what a Publisher did.
type Stats struct {
	// Attempts is the Open Cloud requests made, retries included.
	Attempts int64
	// Published is the messages Open Cloud accepted.
	Published int64
}

// Undelivered is the error of a publish that Open Cloud refused, or that
// failed on every attempt: retrying it later will not help, so the caller
// dead-letters it.
type Undelivered struct {
	// Attempts is the requests made for the message.
	Attempts int
	// LastStatus is Open Cloud's last answer (0 when none came).
	LastStatus int
	// Reason says what went wrong last.
	Reason string
}

func (e *Undelivered) Error() string {
	return fmt.Sprintf("Open Cloud publish undelivered after %d attempts: %s", e.Attempts, e.Reason)
}

// NewPublisher checks the options and returns a Publisher.
func NewPublisher(opts Options) (*Publisher, error) {
	if opts.UniverseID <= 0 {
		return nil, errors.New("opencloud.NewPublisher: UniverseID must be the Roblox universe id")
	}
	if opts.APIKey == "" {
		return nil, errors.New("opencloud.NewPublisher: APIKey must be an Open Cloud API key with messaging-service:publish")
	}
	if opts.ConcurrentPlayers < 0 {
		return nil, errors.New("opencloud.NewPublisher: ConcurrentPlayers must not be negative")
	}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultURL
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
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep.For
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Int64N
	}
	return &Publisher{
		opts:    opts,
		url:     strings.TrimSuffix(opts.BaseURL, "/") + "/cloud/v2/universes/" + strconv.FormatInt(opts.UniverseID, 10) + ":publishMessage",
		limiter: newTokenBucket(PublishLimit(opts.ConcurrentPlayers), opts.Now, opts.Sleep),
	}, nil
}

// PublishLimit is Open Cloud's messaging budget per minute for a universe
// with that many concurrent players.
func PublishLimit(concurrentPlayers int) int {
	return 50 + 5*concurrentPlayers
}

// UniverseID is the universe the publisher publishes to.
func (p *Publisher) UniverseID() int64 { return p.opts.UniverseID }

// Stats returns the publisher's counters.
func (p *Publisher) Stats() Stats {
	return Stats{Attempts: p.attempts.Load(), Published: p.published.Load()}
}

// Publish sends message to the universe's topic, waiting for the rate
// budget before each attempt and retrying throttling and server errors.
// It returns nil once Open Cloud accepted the message, *Undelivered when
// it refused the message or every attempt failed, and ctx's error when
// ctx ended first (the message may be sent again later).
func (p *Publisher) Publish(ctx context.Context, topic, message string) error {
	body, err := json.Marshal(map[string]string{"topic": topic, "message": message})
	if err != nil {
		return err
	}
	var lastStatus int
	var lastErr error
	attempts := 0
	for attempts < p.opts.MaxAttempts {
		waited, err := p.limiter.waitFor(ctx)
		if waited > 0 && p.opts.Observer != nil {
			p.opts.Observer.RateLimitWaited(ctx, waited)
		}
		if err != nil {
			return err
		}
		attempts++
		p.attempts.Add(1)
		status, retryAfter, err := p.post(ctx, body)
		lastStatus, lastErr = status, err
		if err == nil && status/100 == 2 {
			p.published.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && !retryableStatus(status) {
			break
		}
		if attempts == p.opts.MaxAttempts {
			break
		}
		// An invalidation is worth seconds, not hours: a long Retry-After
		// is honoured only up to MaxBackoff, so one throttled message cannot
		// hold every other one behind it.
		if err := p.opts.Sleep(ctx, min(max(p.backoff(attempts), retryAfter), p.opts.MaxBackoff)); err != nil {
			return err
		}
	}
	why := fmt.Sprintf("Open Cloud answered %d", lastStatus)
	if lastErr != nil {
		why = lastErr.Error()
	}
	return &Undelivered{Attempts: attempts, LastStatus: lastStatus, Reason: why}
}

// post sends one publish and reports the status and any Retry-After.
func (p *Publisher) post(ctx context.Context, body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("x-api-key", p.opts.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), p.opts.Now()), nil
}

// backoff is the wait after a failed attempt: full jitter under a ceiling
// that doubles from InitialBackoff up to MaxBackoff.
func (p *Publisher) backoff(attempt int) time.Duration {
	ceiling := p.opts.InitialBackoff << min(attempt-1, 20)
	if ceiling <= 0 || ceiling > p.opts.MaxBackoff {
		ceiling = p.opts.MaxBackoff
	}
	return time.Duration(p.opts.Jitter(int64(ceiling))) + time.Millisecond
}

// retryableStatus reports whether an Open Cloud answer may succeed later:
// throttling and server errors. Other refusals (bad key, bad request) will
// not.
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
