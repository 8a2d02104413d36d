package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"
)

// linkCompanion creates a Firebase account on the Auth emulator and links
// it to the player the way people do: the app asks for a code, the game
// server redeems it for the player, the app signs in again.
func (w *world) linkCompanion(ctx context.Context, rec *recorder, p *player) error {
	u := &companionUser{email: "load-" + uuid.NewString() + "@example.com", password: "load-secret-1"}
	var signUp struct {
		LocalID string `json:"localId"`
		IDToken string `json:"idToken"`
	}
	if err := w.identityToolkit(ctx, "accounts:signUp", map[string]any{"email": u.email, "password": u.password, "returnSecureToken": true}, &signUp); err != nil {
		return err
	}
	u.uid, u.token = signUp.LocalID, signUp.IDToken

	h := http.Header{}
	h.Set("Authorization", "Bearer "+u.token)
	a, err := w.c.call(ctx, rec, routeLinkCode, "POST", "/v1/me/link-codes", h, map[string]any{})
	if err != nil {
		return err
	}
	if !a.ok() {
		return fmt.Errorf("link code: %d %s", a.Status, a.Code)
	}
	var code struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(a.Body, &code); err != nil {
		return err
	}
	a, err = w.c.call(ctx, rec, routeRedeem, "POST", "/v1/link-codes/"+url.PathEscape(code.Code)+"/redeem",
		w.serverHeaders(p.holder(), ""), map[string]any{"userId": p.id})
	if err != nil {
		return err
	}
	if !a.ok() {
		return fmt.Errorf("redeem link code for %d: %d %s", p.id, a.Status, a.Code)
	}
	var signIn struct {
		IDToken string `json:"idToken"`
	}
	if err := w.identityToolkit(ctx, "accounts:signInWithPassword", map[string]any{"email": u.email, "password": u.password, "returnSecureToken": true}, &signIn); err != nil {
		return err
	}
	u.token = signIn.IDToken
	p.companion = u
	return nil
}

// identityToolkit calls the Auth emulator's sign-up and sign-in REST API.
func (w *world) identityToolkit(ctx context.Context, method string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	endpoint := "http://" + w.st.authHost + "/identitytoolkit.googleapis.com/v1/" + method + "?key=any"
	req, err := http.NewRequestWithContext(ctx, "POST", endpoint, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.c.client.Do(req)
	if err != nil {
		return fmt.Errorf("the Auth emulator's %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the Auth emulator's %s: %s %s", method, strconv.Itoa(resp.StatusCode), bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}
