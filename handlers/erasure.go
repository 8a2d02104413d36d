package handlers

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// HeaderRobloxSignature is the header Roblox signs webhooks with:
// "t=<unix seconds>,v1=<base64 HMAC-SHA256 of "<t>.<body>" under the secret>".
const HeaderRobloxSignature = "Roblox-Signature"

// EventRightToErasure is the EventType of Roblox's right-to-erasure webhook.
const EventRightToErasure = "RightToErasureRequest"

// reasons in the details of refused webhooks.
const (
	reasonSignatureMissing = "SIGNATURE_MISSING"
	reasonSignatureInvalid = "SIGNATURE_INVALID"
	reasonSignatureStale   = "SIGNATURE_STALE"
)

// robloxNotification is a Roblox webhook body. Fields Roblox may add later
// are ignored.
type robloxNotification struct {
	NotificationID string `json:"NotificationId"`
	EventType      string `json:"EventType"`
	EventTime      string `json:"EventTime"`
	EventPayload   struct {
		UserID  int64   `json:"UserId"`
		GameIDs []int64 `json:"GameIds"`
	} `json:"EventPayload"`
}

// robloxWebhook handles Roblox webhooks: a signed right-to-erasure request
// erases the player once, however often Roblox delivers it; other event
// types are acknowledged and ignored.
func (a *AdminAPI) robloxWebhook(c *gin.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if err := VerifyRobloxSignature(c.GetHeader(HeaderRobloxSignature), body, a.opts.RobloxWebhookSecret, a.opts.Now(), a.opts.WebhookTolerance); err != nil {
		return err
	}
	var n robloxNotification
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&n); err != nil {
		return jsonError(err)
	}
	if n.EventType != EventRightToErasure {
		c.JSON(http.StatusOK, gin.H{"ignored": true, "eventType": n.EventType})
		return nil
	}
	if n.EventPayload.UserID <= 0 {
		return badField("EventPayload.UserId", "must be a positive Roblox user id")
	}
	requestID := n.NotificationID
	if requestID == "" {
		// Without an id, the signed body itself identifies the delivery.
		sum := sha256.Sum256(body)
		requestID = "body:" + base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return a.erase(c, store.ErasureRequest{
		UserID:    n.EventPayload.UserID,
		Source:    store.ErasureSourceRoblox,
		Requester: "roblox",
		RequestID: requestID,
	})
}

// VerifyRobloxSignature checks a Roblox-Signature header against the raw
// body and the webhook secret as Roblox documents it: the header carries
// t (Unix seconds) and one or more v1 values, each the base64 HMAC-SHA256
// of "<t>.<body>"; the request is refused when t is further than tolerance
// from now, so a captured request cannot be replayed later.
// Errors: UNAUTHENTICATED with details.reason SIGNATURE_MISSING,
// SIGNATURE_INVALID or SIGNATURE_STALE.
func VerifyRobloxSignature(header string, body []byte, secret string, now time.Time, tolerance time.Duration) error {
	if header == "" || secret == "" {
		return save.Errorf(save.CodeUnauthenticated, "webhook requests must carry a %s header made with the webhook secret", HeaderRobloxSignature).
			WithDetail("reason", reasonSignatureMissing)
	}
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	invalid := save.Errorf(save.CodeUnauthenticated, "the %s header does not match the body and the webhook secret", HeaderRobloxSignature).
		WithDetail("reason", reasonSignatureInvalid)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return invalid
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	for _, s := range sigs {
		got, err := base64.StdEncoding.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return invalid
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return save.Errorf(save.CodeUnauthenticated, "the webhook timestamp is %s from now, more than %s: refused as a possible replay", age.Round(time.Second), tolerance).
			WithDetail("reason", reasonSignatureStale)
	}
	return nil
}
