package handlers

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// CompanionAPI serves the companion web app: account linking, the signed-in
// player's save, catalog purchases, settings, collections, ledger history
// and live updates. Companion users authenticate with Firebase ID tokens and
// reach only the Roblox player linked to them; game servers redeem link
// codes with their server key.
type CompanionAPI struct {
	store *store.Store
	game  *save.Config
	auth  *FirebaseAuth
	keys  *ServerKeys
	opts  CompanionOptions

	issued      *keyedLimiter // link codes issued, per account
	playerFails *keyedLimiter // failed redemptions, per player who typed the code
	jobFails    *keyedLimiter // failed redemptions, per game server
	uniFails    *keyedLimiter // failed redemptions, per universe
	prefixFails *keyedLimiter // failed redemptions, per code prefix
	tickets     *keyedLimiter // event-stream tickets issued, per account
	streams     *concurrencyLimit
}

// CompanionOptions tune the companion API. Zero values take the defaults.
type CompanionOptions struct {
	// Heartbeat is the interval of keep-alive comments on event streams (15 s),
	// shorter than the idle timeouts of proxies between the app and the service.
	Heartbeat time.Duration
	// MaxStream ends an event stream after this long (30 min); browsers'
	// EventSource reconnects by itself. It keeps streams shorter than Cloud
	// Run's request timeout, which would otherwise cut them mid-event.
	MaxStream time.Duration
	// Watch tunes how streams notice changes (snapshot listener, or polling).
	Watch store.WatchOptions

	// The limits below are kept in memory and hold per instance; each
	// refusal is 429 with Retry-After.

	// MaxStreams bounds the event streams one companion account holds open
	// on one instance at once (5): each holds a Firestore listener for up
	// to MaxStream. One more is refused with RESOURCE_EXHAUSTED.
	MaxStreams int
	// LinkCodeIssue limits new link codes per account (10 at once, then one
	// every 30 s), refused with RATE_LIMITED. Beside it, the store keeps at
	// most store.MaxLiveLinkCodes live per account by revoking the oldest.
	LinkCodeIssue RateLimit
	// RedeemFailuresPerPlayer limits failed link-code redemptions (unknown,
	// expired or used codes) per player who typed them, in a universe (5 at
	// once, then one every 20 s). It comes first, so one player typing
	// wrong codes over and over holds up only themself, not the others on
	// their server or in their universe.
	RedeemFailuresPerPlayer RateLimit
	// RedeemFailuresPerJob limits failed redemptions per game server, by
	// its Roblox-Job-Id (30 at once, then one every 2 s).
	RedeemFailuresPerJob RateLimit
	// RedeemFailuresPerUniverse limits failed redemptions per universe,
	// whichever server sends them (100 at once, then one every 600 ms).
	RedeemFailuresPerUniverse RateLimit
	// RedeemFailuresPerPrefix limits failed redemptions of codes that share
	// their first LinkCodePrefixLength characters, from any universe
	// (5 at once, then one every 2 min), so a partly seen code cannot be
	// completed by trying the rest before it expires.
	RedeemFailuresPerPrefix RateLimit
	// EventTicketIssue limits event-stream tickets per account (30 at
	// once, then one every 2 s), refused with RATE_LIMITED: a page asks
	// for one each time it opens or reopens its stream.
	EventTicketIssue RateLimit
	// Now is the clock of the rate limits (time.Now).
	Now func() time.Time
}

// LinkCodePrefixLength is how many leading characters of a link code
// RedeemFailuresPerPrefix groups by. With 4 of 8 characters seen, the 31^4
// codes left take years at the default limit; wrong guesses at random
// codes fall into 31^4 different groups and rarely meet a player's typo.
const LinkCodePrefixLength = 4

// streamRetryAfter is the Retry-After of a refused event stream: streams
// are long, so the client should rather close one of its others.
const streamRetryAfter = 10 * time.Second

// Names of the limits, in details.limit of their refusals.
const (
	limitEventStreams        = "EVENT_STREAMS_PER_ACCOUNT"
	limitLinkCodeIssue       = "LINK_CODES_PER_ACCOUNT"
	limitRedeemPerPlayer     = "REDEEM_FAILURES_PER_PLAYER"
	limitRedeemPerJob        = "REDEEM_FAILURES_PER_JOB"
	limitRedeemPerUniverse   = "REDEEM_FAILURES_PER_UNIVERSE"
	limitRedeemPerCodePrefix = "REDEEM_FAILURES_PER_CODE_PREFIX"
	limitEventTickets        = "EVENT_TICKETS_PER_ACCOUNT"
)

// linkedUserKey is where requireLinked keeps the linked Roblox user id.
const linkedUserKey = "savesync.linkedUser"

// NewCompanionAPI returns the companion API over a store that applies
// mutations with game, verifying users with auth and game servers (which
// redeem link codes) with keys.
func NewCompanionAPI(st *store.Store, game *save.Config, auth *FirebaseAuth, keys *ServerKeys, opts CompanionOptions) *CompanionAPI {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.MaxStream <= 0 {
		opts.MaxStream = 30 * time.Minute
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 5
	}
	opts.LinkCodeIssue = opts.LinkCodeIssue.orDefault(RateLimit{Burst: 10, Every: 30 * time.Second})
	opts.RedeemFailuresPerPlayer = opts.RedeemFailuresPerPlayer.orDefault(RateLimit{Burst: 5, Every: 20 * time.Second})
	opts.RedeemFailuresPerJob = opts.RedeemFailuresPerJob.orDefault(RateLimit{Burst: 30, Every: 2 * time.Second})
	opts.RedeemFailuresPerUniverse = opts.RedeemFailuresPerUniverse.orDefault(RateLimit{Burst: 100, Every: 600 * time.Millisecond})
	opts.RedeemFailuresPerPrefix = opts.RedeemFailuresPerPrefix.orDefault(RateLimit{Burst: 5, Every: 2 * time.Minute})
	opts.EventTicketIssue = opts.EventTicketIssue.orDefault(RateLimit{Burst: 30, Every: 2 * time.Second})
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &CompanionAPI{
		store: st, game: game, auth: auth, keys: keys, opts: opts,
		issued:      newKeyedLimiter(opts.LinkCodeIssue, opts.Now),
		playerFails: newKeyedLimiter(opts.RedeemFailuresPerPlayer, opts.Now),
		jobFails:    newKeyedLimiter(opts.RedeemFailuresPerJob, opts.Now),
		uniFails:    newKeyedLimiter(opts.RedeemFailuresPerUniverse, opts.Now),
		prefixFails: newKeyedLimiter(opts.RedeemFailuresPerPrefix, opts.Now),
		tickets:     newKeyedLimiter(opts.EventTicketIssue, opts.Now),
		streams:     newConcurrencyLimit(opts.MaxStreams),
	}
}

// Register adds the companion routes to a router.
func (a *CompanionAPI) Register(r gin.IRouter) {
	r.POST("/v1/link-codes/:code/redeem", a.keys.RequireServerKey(), handle(a.redeemLinkCode))

	me := r.Group("/v1/me", a.auth.RequireUser())
	me.GET("/link", handle(a.getLink))
	me.POST("/link-codes", handle(a.createLinkCode))
	me.DELETE("/link", handle(a.unlink))
	me.GET("/catalog", handle(a.getCatalog))
	me.POST("/events/tickets", handle(a.createEventTicket))

	linked := me.Group("", a.requireLinked)
	linked.GET("/save", handle(a.getSave))
	linked.POST("/purchases", handle(a.postPurchase))
	linked.PUT("/settings/:key", handle(a.putSetting))
	linked.POST("/collections/:collection", handle(a.addToCollection))
	linked.DELETE("/collections/:collection/:element", handle(a.removeFromCollection))
	linked.POST("/mutations", handle(a.postMutation))
	linked.GET("/ledger", handle(a.getLedger))

	// The event stream takes an ID token or, for EventSource, which
	// cannot send headers, a ticket in the query.
	r.GET("/v1/me/events", a.requireStreamUser, handle(a.streamEvents))
}

// requireLinked admits users linked to a Roblox player and remembers the
// player. The link record, not the token's robloxUserId claim, decides:
// a claim can outlive an unlink by up to an hour.
func (a *CompanionAPI) requireLinked(c *gin.Context) {
	u, _ := FirebaseUserFrom(c)
	l, ok, err := a.store.LinkOf(c.Request.Context(), u.UID)
	if err != nil {
		writeError(c, err)
		return
	}
	if !ok {
		writeError(c, save.Errorf(save.CodePermissionDenied,
			"link your Roblox account first: get a code with POST /v1/me/link-codes and type it in the game").
			WithDetail("reason", store.ReasonNotLinked))
		return
	}
	c.Set(linkedUserKey, l.UserID)
	c.Next()
}

// linkedUser returns the player requireLinked resolved.
func linkedUser(c *gin.Context) int64 {
	id, _ := c.Get(linkedUserKey)
	n, _ := id.(int64)
	return n
}

// linkView is the link status shown to the companion user.
type linkView struct {
	Linked   bool       `json:"linked"`
	UserID   int64      `json:"userId,omitempty"`
	LinkedAt *time.Time `json:"linkedAt,omitempty"`
}

// getLink tells the companion user whether and to whom they are linked.
func (a *CompanionAPI) getLink(c *gin.Context) error {
	u, _ := FirebaseUserFrom(c)
	l, ok, err := a.store.LinkOf(c.Request.Context(), u.UID)
	if err != nil {
		return err
	}
	if !ok {
		c.JSON(http.StatusOK, linkView{})
		return nil
	}
	t := l.LinkedAt
	c.JSON(http.StatusOK, linkView{Linked: true, UserID: l.UserID, LinkedAt: &t})
	return nil
}

// linkCodeView is a new link code and how long it lasts.
type linkCodeView struct {
	Code             string    `json:"code"`
	ExpiresAt        time.Time `json:"expiresAt"`
	ExpiresInSeconds int64     `json:"expiresInSeconds"`
}

// createLinkCode issues a link code for the signed-in user to type in game.
// Issuing more than store.MaxLiveLinkCodes revokes the oldest: the code
// the user looks at now is the one that works.
func (a *CompanionAPI) createLinkCode(c *gin.Context) error {
	u, _ := FirebaseUserFrom(c)
	if wait, ok := a.issued.allow(u.UID); !ok {
		return refusal(save.CodeRateLimited, limitLinkCodeIssue, wait, "too many link codes asked for by this account; use the last one shown")
	}
	lc, err := a.store.CreateLinkCode(c.Request.Context(), u.UID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, linkCodeView{Code: lc.Code, ExpiresAt: lc.ExpiresAt, ExpiresInSeconds: int64(store.LinkCodeTTL / time.Second)})
	return nil
}

// redeemBody is the body of POST /v1/link-codes/{code}/redeem.
type redeemBody struct {
	UserID int64 `json:"userId"`
}

// redeemView answers a redemption to the game server, which learns that
// its player is linked but not who the companion account is.
type redeemView struct {
	UserID   int64     `json:"userId"`
	Linked   bool      `json:"linked"`
	LinkedAt time.Time `json:"linkedAt"`
}

// redeemLinkCode binds the code's companion user to the game server's player.
// The claim is set after the link commits; if that fails the answer is
// UNAVAILABLE and the same request may be retried: redeeming again for the
// same player answers the existing link and sets the claim again.
func (a *CompanionAPI) redeemLinkCode(c *gin.Context) error {
	var req redeemBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.UserID <= 0 {
		return badField("userId", "must be the positive Roblox user id of the player who typed the code, got %d", req.UserID)
	}
	code, err := store.NormalizeLinkCode(c.Param("code"))
	if err != nil {
		return err
	}
	limits := a.redeemLimits(c, code, req.UserID)
	for _, l := range limits {
		if wait := l.limiter.wait(l.key); wait > 0 {
			return refusal(save.CodeRateLimited, l.name, wait, "%s", l.what)
		}
	}
	l, err := a.store.RedeemLinkCode(c.Request.Context(), code, req.UserID)
	if e, ok := save.AsError(err); ok && e.Code == save.CodeNotFound {
		for _, l := range limits {
			l.limiter.take(l.key)
		}
	}
	if err != nil {
		return err
	}
	if err := a.auth.SetRobloxUserID(c.Request.Context(), l.UID, l.UserID); err != nil {
		logging.FromContext(c.Request.Context()).Error("set the robloxUserId claim after linking", "error", err.Error(), "userId", l.UserID)
		return save.Errorf(save.CodeUnavailable, "the link is recorded but the sign-in claim could not be set; retry this request")
	}
	c.JSON(http.StatusOK, redeemView{UserID: l.UserID, Linked: true, LinkedAt: l.LinkedAt})
	return nil
}

// redeemLimit is one limit on failed redemptions and the key it counts by.
type redeemLimit struct {
	limiter *keyedLimiter
	key     string
	name    string
	what    string // the refusal's message
}

// redeemLimits lists the limits a redemption of code by player counts
// against, the narrowest first: the player, their game server (when it
// sends Roblox-Job-Id), the universe, and the code's prefix.
func (a *CompanionAPI) redeemLimits(c *gin.Context, code string, player int64) []redeemLimit {
	universe := actorOf(c).ID
	limits := []redeemLimit{{a.playerFails, universe + "\x00" + strconv.FormatInt(player, 10), limitRedeemPerPlayer, "too many wrong link codes typed by this player"}}
	if job := c.GetHeader(headerJobID); job != "" {
		limits = append(limits, redeemLimit{a.jobFails, universe + "\x00" + job, limitRedeemPerJob, "too many wrong link codes from this game server"})
	}
	return append(limits,
		redeemLimit{a.uniFails, universe, limitRedeemPerUniverse, "too many wrong link codes from this universe"},
		redeemLimit{a.prefixFails, code[:LinkCodePrefixLength], limitRedeemPerCodePrefix, "too many wrong link codes that start like this one: ask for a new code in the companion app"})
}

// unlink removes the signed-in user's link and their robloxUserId claim.
// Unlinking when not linked succeeds with linked false, so retries are safe.
func (a *CompanionAPI) unlink(c *gin.Context) error {
	u, _ := FirebaseUserFrom(c)
	l, ok, err := a.store.Unlink(c.Request.Context(), u.UID)
	if err != nil {
		return err
	}
	if ok || u.RobloxUserID != 0 {
		if err := a.auth.SetRobloxUserID(c.Request.Context(), u.UID, 0); err != nil {
			logging.FromContext(c.Request.Context()).Error("clear the robloxUserId claim after unlinking", "error", err.Error())
			return save.Errorf(save.CodeUnavailable, "the link is removed but the sign-in claim could not be cleared; retry this request")
		}
	}
	c.JSON(http.StatusOK, gin.H{"linked": false, "unlinked": ok, "userId": l.UserID})
	return nil
}

// getCatalog lists what the companion can buy and at what price.
func (a *CompanionAPI) getCatalog(c *gin.Context) error {
	c.JSON(http.StatusOK, gin.H{"skus": a.game.Catalog()})
	return nil
}

// getSave reads the linked player's save and version, migrated in memory.
func (a *CompanionAPI) getSave(c *gin.Context) error {
	p, err := a.store.GetPlayer(c.Request.Context(), linkedUser(c))
	if err != nil {
		return err
	}
	p.Session = nil // which game server holds the player is not the companion's business
	c.JSON(http.StatusOK, p)
	return nil
}

// purchaseBody is the body of POST /v1/me/purchases. Price is accepted and
// ignored: what a SKU costs and grants comes from the server's catalog only,
// and a client that sends a price (an older app, a tampered one) is charged
// the catalog price all the same.
type purchaseBody struct {
	SKU   string          `json:"sku"`
	Price json.RawMessage `json:"price"`
}

// postPurchase buys a catalog SKU for the linked player.
func (a *CompanionAPI) postPurchase(c *gin.Context) error {
	var req purchaseBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.SKU == "" {
		return badField("sku", "required: the id of a catalog entry (GET /v1/me/catalog)")
	}
	return a.apply(c, save.Mutation{Ops: []save.Op{{Kind: save.OpPurchase, SKU: req.SKU}}})
}

// settingBody is the body of PUT /v1/me/settings/{key}.
type settingBody struct {
	Value json.RawMessage `json:"value"`
}

// putSetting sets one setting (last writer wins).
func (a *CompanionAPI) putSetting(c *gin.Context) error {
	var req settingBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if len(req.Value) == 0 {
		return badField("value", "required: the new value of setting %q", c.Param("key"))
	}
	return a.applyOps(c, map[string]any{"op": save.OpSettingsSet, "key": c.Param("key"), "value": req.Value})
}

// collectionBody is the body of POST /v1/me/collections/{collection}.
type collectionBody struct {
	Element string `json:"element"`
}

// addToCollection adds an element to a collection (add wins over a
// concurrent remove).
func (a *CompanionAPI) addToCollection(c *gin.Context) error {
	var req collectionBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	return a.applyOps(c, map[string]any{"op": save.OpCollectionAdd, "collection": c.Param("collection"), "element": req.Element})
}

// removeFromCollection removes an element as of the version the user saw
// (?observedVersion=N): adds made after that version, on another device or
// by the game, survive.
func (a *CompanionAPI) removeFromCollection(c *gin.Context) error {
	raw, ok := c.GetQuery("observedVersion")
	if !ok {
		return badField("observedVersion", "required query parameter: the save version the user saw when choosing to remove (GET /v1/me/save)")
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < 1 {
		return badField("observedVersion", "must be the save version the user saw (an integer ≥ 1, since an element exists from version 1 on), got %q", raw)
	}
	op := map[string]any{"op": save.OpCollectionRemove, "collection": c.Param("collection"), "element": c.Param("element"), "observedVersion": v}
	return a.applyOps(c, op)
}

// postMutation applies a mutation of companion-allowed ops (purchase,
// settings.set, collection.add/remove, loadout.set with expectedVersion);
// other ops are refused with PERMISSION_DENIED by the domain.
func (a *CompanionAPI) postMutation(c *gin.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	m, err := save.DecodeMutation(body)
	if err != nil {
		return err
	}
	return a.apply(c, m)
}

// applyOps decodes ops built from request parts through the domain's strict
// decoder, so they are checked exactly like a mutation sent whole.
func (a *CompanionAPI) applyOps(c *gin.Context, ops ...map[string]any) error {
	raw, err := json.Marshal(map[string]any{"ops": ops})
	if err != nil {
		return save.Errorf(save.CodeInvalidArgument, "the request cannot be encoded as a mutation")
	}
	m, err := save.DecodeMutation(raw)
	if err != nil {
		return err
	}
	return a.apply(c, m)
}

// apply commits a mutation of the linked player as the companion user.
func (a *CompanionAPI) apply(c *gin.Context, m save.Mutation) error {
	res, err := a.store.ApplyMutation(c.Request.Context(), store.MutationRequest{
		UserID:         linkedUser(c),
		Actor:          actorOf(c),
		IdempotencyKey: c.GetHeader(headerIdempotencyKey),
		Mutation:       m,
	})
	if err != nil {
		return err
	}
	writeMutation(c, res)
	return nil
}

// getLedger pages through the linked player's history, newest first.
func (a *CompanionAPI) getLedger(c *gin.Context) error {
	limit := 0
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil {
			return badField("limit", "must be an integer between 1 and %d, got %q", store.MaxLedgerPage, raw)
		}
		limit = n
	}
	page, err := a.store.ListLedger(c.Request.Context(), linkedUser(c), c.Query("cursor"), limit)
	if err != nil {
		return err
	}
	u, _ := FirebaseUserFrom(c)
	c.JSON(http.StatusOK, ownLedger(page, u.UID))
	return nil
}

// ownLedger is a page of a player's ledger as the player may see it: an
// actor other than the signed-in user by kind only (no staff uid, no game
// server's job id), and collection elements without their observed-remove
// tags, which name who added them: an element that is there reads true.
// The support ledger keeps both.
func ownLedger(page store.LedgerPage, uid string) store.LedgerPage {
	for i, e := range page.Entries {
		if e.Actor.Kind != save.ActorCompanion || e.Actor.ID != uid {
			page.Entries[i].Actor.ID = ""
		}
		page.Entries[i].Changes = withoutTags(e.Changes)
	}
	return page
}

// withoutTags replaces every observed-remove tag list in v (a list of
// {"a": actor, "v": version} objects) with true.
func withoutTags(v any) any {
	switch v := v.(type) {
	case []any:
		if isTagList(v) {
			return true
		}
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = withoutTags(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = withoutTags(e)
		}
		return out
	}
	return v
}

// isTagList reports whether list is a non-empty list of collection tags.
func isTagList(list []any) bool {
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok || len(m) != 2 {
			return false
		}
		if _, ok := m["a"]; !ok {
			return false
		}
		if _, ok := m["v"]; !ok {
			return false
		}
	}
	return len(list) > 0
}
