package handlers

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// AdminAPI serves the support and admin tools: ledger search and export,
// the save at any version and diffs between versions, compensations and
// refunds, restores, erasure (with Roblox's right-to-erasure webhook), and
// bulk jobs that change many players at once. Staff sign in with Firebase
// and carry a role claim: RoleSupport may read and compensate; RoleAdmin
// may also restore, erase and run bulk jobs. Every change is a
// ledger entry naming the operator as an admin actor.
type AdminAPI struct {
	store *store.Store
	auth  *FirebaseAuth
	opts  AdminOptions
}

// AdminOptions configure the admin API.
type AdminOptions struct {
	// ErasureKey keys the hash that names erasure records (see
	// store.ErasureRecordID). Keep it secret and stable.
	ErasureKey []byte
	// RobloxWebhookSecret is the secret set on the Roblox webhook; without
	// it every webhook call is refused.
	RobloxWebhookSecret string
	// WebhookTolerance is how old a webhook's timestamp may be (10 min).
	WebhookTolerance time.Duration
	// Now is the clock webhook timestamps are checked against (time.Now).
	Now func() time.Time
	// OnErased, when set, is called after every erasure that succeeded
	// (replays included), to tell the game servers to drop what they keep
	// of the player; it must not block.
	OnErased func(ctx context.Context, userID int64)
}

// Limits of the admin API.
const (
	// maxTicketLength bounds a ticket reference, in characters.
	maxTicketLength = 100
	// maxExportPages bounds one CSV export (pages of store.MaxLedgerPage).
	maxExportPages = 1000
)

// NewAdminAPI returns the admin API over a store, verifying staff with
// auth (nil serves only the Roblox webhook).
func NewAdminAPI(st *store.Store, auth *FirebaseAuth, opts AdminOptions) *AdminAPI {
	if opts.WebhookTolerance <= 0 {
		opts.WebhookTolerance = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &AdminAPI{store: st, auth: auth, opts: opts}
}

// Register adds the admin routes and the Roblox webhook to a router.
// Without Firebase Auth (a nil auth) only the webhook is served.
func (a *AdminAPI) Register(r gin.IRouter) {
	r.POST("/v1/webhooks/roblox", handle(a.robloxWebhook))
	if a.auth == nil {
		return
	}

	staff := r.Group("/v1/admin", a.auth.RequireUser(), RequireRole(RoleSupport, RoleAdmin), asOperator)
	staff.GET("/players/:userId/ledger", handle(a.searchLedger))
	staff.GET("/players/:userId/versions/:version", handle(a.getVersion))
	staff.GET("/players/:userId/diff", handle(a.getDiff))
	staff.POST("/players/:userId/compensations", handle(a.postCompensation))

	admin := staff.Group("", RequireRole(RoleAdmin))
	admin.POST("/players/:userId/restore", handle(a.postRestore))
	admin.DELETE("/players/:userId", handle(a.deletePlayer))
	a.registerBulk(admin)
}

// asOperator makes the signed-in staff member the actor of the request.
func asOperator(c *gin.Context) {
	u, _ := FirebaseUserFrom(c)
	c.Set(actorKey, save.Actor{Kind: save.ActorAdmin, ID: u.UID})
	c.Next()
}

// searchLedger answers a ledger search as JSON pages or a CSV export.
func (a *AdminAPI) searchLedger(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	q := store.AuditQuery{
		ActorKind:      save.ActorKind(c.Query("actorKind")),
		ActorID:        c.Query("actorId"),
		Op:             c.Query("op"),
		IdempotencyKey: c.Query("idempotencyKey"),
		Cursor:         c.Query("cursor"),
	}
	if q.From, err = queryTime(c, "from"); err != nil {
		return err
	}
	if q.To, err = queryTime(c, "to"); err != nil {
		return err
	}
	if raw := c.Query("limit"); raw != "" {
		if q.Limit, err = strconv.Atoi(raw); err != nil {
			return badField("limit", "must be an integer between 1 and %d, got %q", store.MaxLedgerPage, raw)
		}
	}
	switch c.DefaultQuery("format", "json") {
	case "json":
		page, err := a.store.SearchLedger(c.Request.Context(), userID, q)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, page)
		return nil
	case "csv":
		return a.exportLedger(c, userID, q)
	default:
		return badField("format", "must be json or csv, got %q", c.Query("format"))
	}
}

// csvHeader names the columns of a ledger export.
var csvHeader = []string{"committedAt", "version", "versionBefore", "entryId", "actorKind", "actorId", "jobId", "idempotencyKey", "reason", "changedPaths", "ops", "changes"}

// exportLedger streams every matching entry as CSV, page by page, so an
// export of months of history never sits in memory.
func (a *AdminAPI) exportLedger(c *gin.Context, userID int64, q store.AuditQuery) error {
	ctx := c.Request.Context()
	q.Limit = store.MaxLedgerPage
	page, err := a.store.SearchLedger(ctx, userID, q)
	if err != nil {
		return err
	}
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", "attachment; filename=\"ledger-"+strconv.FormatInt(userID, 10)+".csv\"")
	c.Status(http.StatusOK)
	w := csv.NewWriter(c.Writer)
	_ = w.Write(csvHeader)
	for range maxExportPages {
		for _, e := range page.Entries {
			ops, _ := json.Marshal(e.Ops)
			changes, _ := json.Marshal(e.Changes)
			row := []string{
				e.CommittedAt.Format(time.RFC3339Nano), strconv.FormatInt(e.Version, 10), strconv.FormatInt(e.VersionBefore, 10),
				e.EntryID, string(e.Actor.Kind), e.Actor.ID, e.JobID, e.IdempotencyKey, e.Reason,
				strings.Join(e.ChangedPaths, " "), string(ops), string(changes),
			}
			for i := range row {
				row[i] = spreadsheetSafe(row[i])
			}
			_ = w.Write(row)
		}
		w.Flush()
		c.Writer.Flush()
		if page.NextCursor == "" {
			return nil
		}
		q.Cursor = page.NextCursor
		if page, err = a.store.SearchLedger(ctx, userID, q); err != nil {
			// The status is sent; the truncated export ends without its last rows.
			logging.FromContext(ctx).Error("ledger export stopped", "error", err.Error(), "userId", userID)
			return nil
		}
	}
	return nil
}

// spreadsheetSafe neutralises a CSV cell that a spreadsheet would run as a
// formula: one starting with =, +, -, @, a tab or a carriage return gets a
// leading single quote, which spreadsheets show as text (OWASP's advice
// for CSV injection). A cell that is a plain number ("-5", "+3", "-1.5")
// is left alone, so numbers stay numbers; the quote is visible to a
// program reading the file, which must drop it from such cells.
func spreadsheetSafe(cell string) string {
	if cell == "" || !strings.ContainsRune("=+-@\t\r", rune(cell[0])) || plainNumber(cell) {
		return cell
	}
	return "'" + cell
}

// plainNumber reports whether s is an optionally signed decimal number
// such as -5 or +2.25, with nothing a formula could use.
func plainNumber(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	digits, dot := 0, false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

// getVersion answers the save as it was at a version.
func (a *AdminAPI) getVersion(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	v, err := strconv.ParseInt(c.Param("version"), 10, 64)
	if err != nil || v < 0 {
		return badField("version", "must be a version number ≥ 0, got %q", c.Param("version"))
	}
	at, err := a.store.SaveAt(c.Request.Context(), userID, v)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, at)
	return nil
}

// getDiff answers the field-level difference between two versions.
func (a *AdminAPI) getDiff(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	var vs [2]int64
	for i, name := range []string{"from", "to"} {
		raw := c.Query(name)
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			return badField(name, "must be a version number ≥ 0, got %q", raw)
		}
		vs[i] = n
	}
	d, err := a.store.DiffVersions(c.Request.Context(), userID, vs[0], vs[1])
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, d)
	return nil
}

// compensationBody is the body of POST .../compensations: ops, or the
// ledger entry of a purchase to refund.
type compensationBody struct {
	Reason        string          `json:"reason"`
	Ticket        string          `json:"ticket"`
	Ops           json.RawMessage `json:"ops"`
	RefundEntryID string          `json:"refundEntryId"`
}

// refundView is the answer to a refund: the committed mutation and what
// the player no longer held to give back.
type refundView struct {
	Mutation    json.RawMessage  `json:"mutation"`
	Unrecovered []save.Shortfall `json:"unrecovered"`
}

// postCompensation applies a compensating mutation or refunds a purchase,
// as the operator, under the operator's Idempotency-Key.
func (a *AdminAPI) postCompensation(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	var req compensationBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	reason, err := ticketedReason(req.Reason, req.Ticket)
	if err != nil {
		return err
	}
	hasOps := len(req.Ops) > 0 && string(req.Ops) != "null"
	switch {
	case hasOps && req.RefundEntryID != "":
		return badField("refundEntryId", "send either ops or refundEntryId, not both")
	case req.RefundEntryID != "":
		res, err := a.store.RefundPurchase(c.Request.Context(), store.RefundRequest{
			UserID: userID, EntryID: req.RefundEntryID, Actor: actorOf(c),
			IdempotencyKey: c.GetHeader(headerIdempotencyKey), Reason: reason,
		})
		if err != nil {
			return err
		}
		if res.Replayed {
			c.Header(headerReplayed, "true")
		}
		c.JSON(http.StatusOK, refundView{Mutation: res.Body, Unrecovered: res.Unrecovered})
		return nil
	case !hasOps:
		return badField("ops", "required: the compensating ops, or refundEntryId to refund a purchase")
	}
	m, err := save.DecodeMutation([]byte(`{"ops":` + string(req.Ops) + `}`))
	if err != nil {
		return err
	}
	for i, op := range m.Ops {
		switch save.StrategyOf(op.Kind) {
		case save.StrategyDelta, save.StrategyORSet, save.StrategyLastWriterWins:
		default:
			return save.Errorf(save.CodeInvalidArgument, "ops[%d].op: %s is not a compensation: use delta, collection or settings ops (restore a version with POST .../restore)", i, op.Kind).
				WithDetail("field", "ops["+strconv.Itoa(i)+"].op")
		}
	}
	m.Reason = reason
	res, err := a.store.ApplyMutation(c.Request.Context(), store.MutationRequest{
		UserID: userID, Actor: actorOf(c), IdempotencyKey: c.GetHeader(headerIdempotencyKey), Mutation: m,
		Kind: store.LedgerKindCompensation,
	})
	if err != nil {
		return err
	}
	writeMutation(c, res)
	return nil
}

// restoreBody is the body of POST .../restore.
type restoreBody struct {
	Version *int64 `json:"version"`
	Reason  string `json:"reason"`
	Ticket  string `json:"ticket"`
}

// postRestore sets the save back to an earlier version with one ledger
// entry; the answer's changes list what the restore undid.
func (a *AdminAPI) postRestore(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	var req restoreBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.Version == nil || *req.Version < 0 {
		return badField("version", "required: the version (≥ 0) to restore")
	}
	reason, err := ticketedReason(req.Reason, req.Ticket)
	if err != nil {
		return err
	}
	res, err := a.store.RestoreVersion(c.Request.Context(), store.RestoreRequest{
		UserID: userID, Version: *req.Version, Actor: actorOf(c),
		IdempotencyKey: c.GetHeader(headerIdempotencyKey), Reason: reason,
	})
	if err != nil {
		return err
	}
	writeMutation(c, res)
	return nil
}

// deletePlayer erases a player's save and personal data on an
// administrator's request. The Idempotency-Key is the administrator's own,
// as for every mutation: their retry replays their first answer, while
// another administrator's request with the same key is a new request.
func (a *AdminAPI) deletePlayer(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	key := c.GetHeader(headerIdempotencyKey)
	if key != "" {
		if err := store.CheckIdempotencyKey(key); err != nil {
			return err
		}
	}
	op := actorOf(c)
	return a.erase(c, store.ErasureRequest{UserID: userID, Source: store.ErasureSourceAdmin, Requester: op.ID, RequestID: key})
}

// erase runs an erasure and clears the robloxUserId claim of the companion
// accounts that were linked to the player.
func (a *AdminAPI) erase(c *gin.Context, req store.ErasureRequest) error {
	ctx := c.Request.Context()
	out, err := a.store.ErasePlayer(ctx, a.opts.ErasureKey, req)
	if err != nil {
		return err
	}
	for _, uid := range out.OwnerUIDs {
		if a.auth == nil {
			break
		}
		if err := a.auth.SetRobloxUserID(ctx, uid, 0); err != nil {
			// The link records are gone, which is what authorises; a stale
			// claim only informs clients and lapses with the token.
			logging.FromContext(ctx).Warn("erasure: could not clear the robloxUserId claim", "error", err.Error())
		}
	}
	if a.opts.OnErased != nil {
		a.opts.OnErased(ctx, req.UserID)
	}
	if out.Replayed {
		c.Header(headerReplayed, "true")
	}
	c.JSON(http.StatusOK, out)
	return nil
}

// ticketedReason checks a reason and ticket reference and joins them as
// the ledger entry's reason.
func ticketedReason(reason, ticket string) (string, error) {
	reason, ticket = strings.TrimSpace(reason), strings.TrimSpace(ticket)
	if reason == "" {
		return "", badField("reason", "required: say why, for the audit trail")
	}
	if ticket == "" {
		return "", badField("ticket", "required: the support ticket this answers")
	}
	if utf8.RuneCountInString(ticket) > maxTicketLength || strings.IndexFunc(ticket, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", badField("ticket", "must be printable text of at most %d characters", maxTicketLength)
	}
	return reason + " [ticket " + ticket + "]", nil
}

// queryTime parses an optional RFC 3339 query parameter.
func queryTime(c *gin.Context, name string) (time.Time, error) {
	raw := c.Query(name)
	if raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, badField(name, "must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got %q", raw)
	}
	return t, nil
}
