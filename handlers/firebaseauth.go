package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
	"firebase.google.com/go/v4/errorutils"
	"github.com/gin-gonic/gin"
	"google.golang.org/api/option"

	"github.com/savesync/savesync/save"
)

// Custom claims savesync reads from and writes to Firebase ID tokens.
const (
	// ClaimRobloxUserID is the linked Roblox user id (a number), set when a
	// link code is redeemed and removed on unlink. Tokens issued before the
	// change keep the old value until they are refreshed, so the service
	// authorises with its own link record and the claim only informs clients.
	ClaimRobloxUserID = "robloxUserId"
	// ClaimRole is the support role: RoleSupport or RoleAdmin.
	ClaimRole = "role"
)

// Roles of the ClaimRole claim.
const (
	// RoleSupport may search ledgers and read saves for support cases.
	RoleSupport = "support"
	// RoleAdmin may also write compensations, restores and erasures.
	RoleAdmin = "admin"
)

// reasons in the details of authentication errors.
const (
	reasonMissingToken = "MISSING_TOKEN"
	reasonTokenExpired = "ID_TOKEN_EXPIRED"
	reasonTokenRevoked = "ID_TOKEN_REVOKED"
	reasonTokenInvalid = "ID_TOKEN_INVALID"
	reasonUserDisabled = "USER_DISABLED"
	reasonUserNotFound = "USER_NOT_FOUND"
	reasonRoleRequired = "ROLE_REQUIRED"
)

// firebaseUserKey is where RequireUser keeps the verified user on the request.
const firebaseUserKey = "savesync.firebaseUser"

// FirebaseUser is the signed-in companion or support user of a request.
type FirebaseUser struct {
	UID   string
	Email string
	// Role is the ClaimRole claim ("" for players).
	Role string
	// RobloxUserID is the ClaimRobloxUserID claim as the token carries it
	// (0 when absent); see ClaimRobloxUserID for why it is not authoritative.
	RobloxUserID int64
}

// FirebaseAuth verifies Firebase ID tokens and manages the custom claims
// savesync sets, through the Firebase Admin SDK. With
// FIREBASE_AUTH_EMULATOR_HOST set in the environment the SDK talks to the
// Auth emulator instead of Google.
type FirebaseAuth struct {
	client *auth.Client
}

// NewFirebaseAuth returns a FirebaseAuth for a Firebase project. opts pass
// to the Admin SDK (credentials; none are needed on Cloud Run or with the
// Auth emulator).
func NewFirebaseAuth(ctx context.Context, projectID string, opts ...option.ClientOption) (*FirebaseAuth, error) {
	if projectID == "" {
		return nil, fmt.Errorf("handlers.NewFirebaseAuth: the Firebase project id is required")
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("handlers.NewFirebaseAuth(%s): %w", projectID, err)
	}
	client, err := app.Auth(ctx)
	if err != nil {
		return nil, fmt.Errorf("handlers.NewFirebaseAuth(%s): %w", projectID, err)
	}
	return &FirebaseAuth{client: client}, nil
}

// RequireUser admits requests with a valid Firebase ID token in
// "Authorization: Bearer <idToken>", checked for expiry, revocation and a
// disabled or deleted account. The caller becomes a companion actor; read
// the user with FirebaseUserFrom. Anything else is 401 UNAUTHENTICATED with
// details.reason saying what to do.
func (a *FirebaseAuth) RequireUser() gin.HandlerFunc {
	return func(c *gin.Context) {
		token, ok := bearer(c.GetHeader("Authorization"))
		if !ok {
			writeError(c, save.Errorf(save.CodeUnauthenticated, "sign in and send the Firebase ID token as 'Authorization: Bearer <idToken>'").
				WithDetail("reason", reasonMissingToken))
			return
		}
		user, err := a.Verify(c.Request.Context(), token)
		if err != nil {
			writeError(c, err)
			return
		}
		admitUser(c, user)
	}
}

// admitUser makes a verified user the request's caller, a companion
// actor (read it with FirebaseUserFrom), and runs the rest of the chain.
func admitUser(c *gin.Context, user FirebaseUser) {
	c.Set(firebaseUserKey, user)
	c.Set(actorKey, save.Actor{Kind: save.ActorCompanion, ID: user.UID})
	c.Next()
}

// Verify checks an ID token and returns its user.
// Errors: UNAUTHENTICATED (details.reason ID_TOKEN_EXPIRED, ID_TOKEN_REVOKED,
// ID_TOKEN_INVALID, USER_DISABLED, USER_NOT_FOUND), UNAVAILABLE when Firebase
// Auth cannot be reached.
func (a *FirebaseAuth) Verify(ctx context.Context, idToken string) (FirebaseUser, error) {
	tok, err := a.client.VerifyIDTokenAndCheckRevoked(ctx, idToken)
	if err != nil {
		return FirebaseUser{}, tokenError(err)
	}
	u := FirebaseUser{UID: tok.UID}
	u.Email, _ = tok.Claims["email"].(string)
	u.Role, _ = tok.Claims[ClaimRole].(string)
	u.RobloxUserID, _ = claimUserID(tok.Claims[ClaimRobloxUserID])
	return u, nil
}

// User looks up uid's account as it stands now, for requests that carry no
// ID token (an event stream opened with a ticket): a disabled or deleted
// account is refused as its tokens would be.
// Errors: UNAUTHENTICATED (details.reason USER_DISABLED, USER_NOT_FOUND),
// UNAVAILABLE when Firebase Auth cannot be reached.
func (a *FirebaseAuth) User(ctx context.Context, uid string) (FirebaseUser, error) {
	rec, err := a.client.GetUser(ctx, uid)
	switch {
	case auth.IsUserNotFound(err):
		return FirebaseUser{}, save.Errorf(save.CodeUnauthenticated, "this account no longer exists: sign in again").
			WithDetail("reason", reasonUserNotFound)
	case err != nil && isNetworkError(err):
		return FirebaseUser{}, save.Errorf(save.CodeUnavailable, "accounts cannot be checked right now; retry shortly")
	case err != nil:
		return FirebaseUser{}, fmt.Errorf("handlers.User(%s): %w", uid, err)
	case rec.Disabled:
		return FirebaseUser{}, save.Errorf(save.CodeUnauthenticated, "this account is disabled: contact support").
			WithDetail("reason", reasonUserDisabled)
	}
	u := FirebaseUser{UID: rec.UID, Email: rec.Email}
	u.Role, _ = rec.CustomClaims[ClaimRole].(string)
	u.RobloxUserID, _ = claimUserID(rec.CustomClaims[ClaimRobloxUserID])
	return u, nil
}

// SetRobloxUserID sets the ClaimRobloxUserID claim of uid, or removes it
// when userID is 0, keeping the user's other custom claims (such as role).
// The change reaches tokens issued afterwards: the client refreshes its ID
// token (getIdToken(true)) to see it.
func (a *FirebaseAuth) SetRobloxUserID(ctx context.Context, uid string, userID int64) error {
	rec, err := a.client.GetUser(ctx, uid)
	if err != nil {
		return fmt.Errorf("handlers.SetRobloxUserID(%s): %w", uid, err)
	}
	claims := make(map[string]any, len(rec.CustomClaims)+1)
	for k, v := range rec.CustomClaims {
		claims[k] = v
	}
	if userID == 0 {
		delete(claims, ClaimRobloxUserID)
	} else {
		claims[ClaimRobloxUserID] = userID
	}
	if err := a.client.SetCustomUserClaims(ctx, uid, claims); err != nil {
		return fmt.Errorf("handlers.SetRobloxUserID(%s): %w", uid, err)
	}
	return nil
}

// FirebaseUserFrom returns the user RequireUser verified; ok is false on
// routes without it.
func FirebaseUserFrom(c *gin.Context) (FirebaseUser, bool) {
	v, ok := c.Get(firebaseUserKey)
	if !ok {
		return FirebaseUser{}, false
	}
	u, ok := v.(FirebaseUser)
	return u, ok
}

// RequireRole admits users whose ClaimRole claim is one of roles; others get
// 403 PERMISSION_DENIED with details.reason ROLE_REQUIRED. Put it after
// RequireUser.
func RequireRole(roles ...string) gin.HandlerFunc {
	return func(c *gin.Context) {
		u, ok := FirebaseUserFrom(c)
		if !ok {
			writeError(c, save.Errorf(save.CodeUnauthenticated, "sign in and send the Firebase ID token as 'Authorization: Bearer <idToken>'").
				WithDetail("reason", reasonMissingToken))
			return
		}
		if !slices.Contains(roles, u.Role) {
			writeError(c, save.Errorf(save.CodePermissionDenied, "this route needs the %v role; ask an administrator to grant it", roles).
				WithDetail("reason", reasonRoleRequired).WithDetail("roles", roles))
			return
		}
		c.Next()
	}
}

// tokenError explains why an ID token was refused.
func tokenError(err error) error {
	switch {
	case auth.IsIDTokenExpired(err):
		return save.Errorf(save.CodeUnauthenticated, "the ID token has expired: get a fresh one (getIdToken(true)) and retry").
			WithDetail("reason", reasonTokenExpired)
	case auth.IsIDTokenRevoked(err):
		return save.Errorf(save.CodeUnauthenticated, "the ID token was revoked: sign in again").
			WithDetail("reason", reasonTokenRevoked)
	case auth.IsUserDisabled(err):
		return save.Errorf(save.CodeUnauthenticated, "this account is disabled: contact support").
			WithDetail("reason", reasonUserDisabled)
	case auth.IsUserNotFound(err):
		return save.Errorf(save.CodeUnauthenticated, "the ID token belongs to an account that no longer exists: sign in again").
			WithDetail("reason", reasonUserNotFound)
	case auth.IsIDTokenInvalid(err):
		return save.Errorf(save.CodeUnauthenticated, "the ID token is not valid for this project: send the ID token of a signed-in user").
			WithDetail("reason", reasonTokenInvalid)
	case auth.IsCertificateFetchFailed(err), isNetworkError(err):
		return save.Errorf(save.CodeUnavailable, "ID tokens cannot be checked right now; retry shortly")
	default:
		return fmt.Errorf("verify ID token: %w", err)
	}
}

// isNetworkError reports whether Firebase Auth could not be reached or
// answered that it is unavailable (the revocation check calls it for every
// request).
func isNetworkError(err error) bool {
	var netErr net.Error
	var urlErr *url.Error
	return errorutils.IsUnavailable(err) || errorutils.IsDeadlineExceeded(err) ||
		errors.As(err, &netErr) || errors.As(err, &urlErr)
}

// claimUserID reads a Roblox user id claim, which JSON delivers as a number
// (float64) or, if a tool wrote it so, a decimal string.
func claimUserID(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		if x > 0 && x < 1<<53 && x == math.Trunc(x) {
			return int64(x), true
		}
	case string:
		if id, err := strconv.ParseInt(x, 10, 64); err == nil && id > 0 {
			return id, true
		}
	case int64:
		return x, x > 0
	}
	return 0, false
}
