package handlers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"

	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/authtest"
	"github.com/savesync/savesync/save"
)

// The companion tests run against the real Firebase Auth emulator. When
// FIREBASE_AUTH_EMULATOR_HOST is set (firebase emulators:exec, or a running
// scripts/auth-emulator.sh) they use it; otherwise the first test that needs
// it starts scripts/auth-emulator.sh (after `npm ci`), and TestMain stops it.

// authProject is the Firebase project of the emulator: a demo- project never
// reaches a real one.
const authProject = "demo-savesync"

// authUsers numbers the accounts the tests sign up.
var authUsers atomic.Int64

func TestMain(m *testing.M) {
	code := m.Run()
	authtest.Stop()
	os.Exit(code)
}

// authEmulator returns the Auth emulator's host:port (see internal/authtest).
func authEmulator(t testing.TB) string {
	t.Helper()
	return authtest.Host(t, authProject)
}

// authAdmin is an Admin SDK client on the emulator, for what tests do to
// accounts (revoke, disable, delete, set a role).
func authAdmin(t testing.TB) *auth.Client {
	t.Helper()
	authEmulator(t)
	app, err := firebase.NewApp(context.Background(), &firebase.Config{ProjectID: authProject})
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Auth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fbUser is an account on the Auth emulator.
type fbUser struct {
	UID      string
	Email    string
	Password string
	IDToken  string
}

// signUp creates an account with a unique email and returns it signed in.
func signUp(t testing.TB) *fbUser {
	t.Helper()
	host := authEmulator(t)
	email := fmt.Sprintf("player-%d-%d@example.com", os.Getpid(), authUsers.Add(1))
	var out struct {
		LocalID string `json:"localId"`
		IDToken string `json:"idToken"`
	}
	identityToolkit(t, host, "accounts:signUp", map[string]any{"email": email, "password": "secret-123", "returnSecureToken": true}, &out)
	if out.IDToken == "" || out.LocalID == "" {
		t.Fatalf("sign-up returned no token: %+v", out)
	}
	return &fbUser{UID: out.LocalID, Email: email, Password: "secret-123", IDToken: out.IDToken}
}

// signIn signs the user in again, so the new ID token carries the custom
// claims set since the last one.
func (u *fbUser) signIn(t testing.TB) {
	t.Helper()
	var out struct {
		IDToken string `json:"idToken"`
	}
	identityToolkit(t, authEmulator(t), "accounts:signInWithPassword", map[string]any{"email": u.Email, "password": u.Password, "returnSecureToken": true}, &out)
	if out.IDToken == "" {
		t.Fatal("sign-in returned no token")
	}
	u.IDToken = out.IDToken
}

// claims decodes the payload of the user's ID token.
func (u *fbUser) claims(t testing.TB) map[string]any {
	t.Helper()
	parts := strings.Split(u.IDToken, ".")
	if len(parts) < 2 {
		t.Fatalf("ID token has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// identityToolkit calls the emulator's Identity Toolkit REST API.
func identityToolkit(t testing.TB, host, method string, body, out any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+host+"/identitytoolkit.googleapis.com/v1/"+method+"?key=any", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", method, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %v: %s", method, err, b)
	}
}

// unsignedToken builds an emulator-style (alg "none") ID token with chosen
// claims, for expired or foreign tokens the emulator would never issue.
func unsignedToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT"})
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// TestAuthUnreachableIsUnavailable verifies a well-formed token while
// Firebase Auth cannot be reached: the caller is told to retry (503), not
// that its token is bad, and nothing internal leaks.
func TestAuthUnreachableIsUnavailable(t *testing.T) {
	t.Setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
	fa, err := handlers.NewFirebaseAuth(context.Background(), authProject)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	token := unsignedToken(t, map[string]any{
		"aud": authProject, "iss": "https://securetoken.google.com/" + authProject,
		"sub": "uid-1", "user_id": "uid-1", "auth_time": now, "iat": now, "exp": now + 3600,
	})
	_, err = fa.Verify(context.Background(), token)
	if save.ErrorCode(err) != save.CodeUnavailable {
		t.Errorf("Verify with Firebase Auth unreachable = %v, want UNAVAILABLE", err)
	}
}
