package app

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawExchange writes raw to the service at base over TCP and reads the
// answers to as many requests, each with a generous deadline.
func rawExchange(t *testing.T, base, raw string, answers int) []*http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// A write may fail once the server has answered and closed (431).
	_, _ = io.WriteString(conn, raw)
	br := bufio.NewReader(conn)
	var out []*http.Response
	for range answers {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading answer %d: %v", len(out)+1, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading answer %d's body: %v", len(out)+1, err)
		}
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
	return out
}

// errorCode returns the code of a JSON error body, failing the test when
// the answer is not in the error shape.
func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Errorf("body is not the error shape (%v): %q", err, raw)
	}
	return body.Error.Code
}

// TestRunAnswersEveryRequestInTheErrorShape sends what gin would redirect
// and what net/http refuses by itself through a real listener: every answer
// is the JSON error shape with a documented status, and none is a redirect.
func TestRunAnswersEveryRequestInTheErrorShape(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startRun(t, ctx, embeddedEnv(t), io.Discard)
	defer func() {
		cancel()
		<-done
	}()

	const key = "Authorization: Bearer " + devServerKey + "\r\n"
	tests := []struct {
		name   string
		raw    string
		status int
		code   string
	}{
		// Routes match the path as sent: %2F is a parameter, not a separator.
		{"escaped slash as a player id", "GET /v1/players/%2F HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 400, "INVALID_ARGUMENT"},
		{"trailing slash", "GET /v1/players/42/ HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 404, "NOT_FOUND"},
		{"trailing slash on a POST", "POST /v1/players/42/mutations/ HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 2\r\n\r\n{}", 404, "NOT_FOUND"},
		{"trailing slash on a DELETE", "DELETE /v1/me/collections/wishlist/ HTTP/1.1\r\nHost: x\r\n\r\n", 404, "NOT_FOUND"},
		{"unclean path", "GET /v1//players/42 HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 404, "NOT_FOUND"},
		{"dot segments", "GET /v1/players/../players/42 HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 404, "NOT_FOUND"},
		{"wrong method", "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "METHOD_NOT_ALLOWED"},
		{"headers over our limit", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 40<<10) + "\r\n\r\n", 431, "HEADERS_TOO_LARGE"},
		{"headers over the server's limit", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 200<<10) + "\r\n\r\n", 431, "HEADERS_TOO_LARGE"},
		{"not HTTP", "GARBAGE\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"bad header name", "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"bad header value", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"unknown transfer coding", "POST /v1/players/42/mutations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"unknown HTTP version", "GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"HTTP/2 version", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"unknown expectation", "GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"bad chunk", "POST /v1/players/42/mutations HTTP/1.1\r\nHost: x\r\n" + key + "Idempotency-Key: k\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchange(t, base, tt.raw, 1)[0]
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("a redirect to %s", loc)
			}
			if got := errorCode(t, resp); got != tt.code {
				t.Errorf("code = %s, want %s", got, tt.code)
			}
		})
	}

	t.Run("Allow header", func(t *testing.T) {
		resp := rawExchange(t, base, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 1)[0]
		if got := resp.Header.Get("Allow"); got != "GET" {
			t.Errorf("Allow = %q, want GET", got)
		}
	})
	// A malformed request after a good one on the same connection: the
	// good answer passes through untouched, the refusal is reshaped.
	t.Run("after a good request", func(t *testing.T) {
		answers := rawExchange(t, base, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nBad Header: 1\r\n\r\n", 2)
		body, _ := io.ReadAll(answers[0].Body)
		if answers[0].StatusCode != 200 || string(body) != `{"status":"ok"}` {
			t.Errorf("first answer = %d %s, want 200 {\"status\":\"ok\"}", answers[0].StatusCode, body)
		}
		if answers[1].StatusCode != 400 || errorCode(t, answers[1]) != "INVALID_ARGUMENT" {
			t.Errorf("second answer = %d, want 400 INVALID_ARGUMENT", answers[1].StatusCode)
		}
	})
}

// TestRunBoundsSlowBodies sends a body a byte at a time, slower than the
// configured body read time: the service answers 408 and closes the
// connection instead of waiting for ever. A long-poll without a body still
// outlives that limit.
func TestRunBoundsSlowBodies(t *testing.T) {
	vars := embeddedEnv(t)
	vars[envBodyReadTimeout] = "200ms"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startRun(t, ctx, vars, io.Discard)
	defer func() {
		cancel()
		<-done
	}()

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`
	head := "POST /v1/players/42/mutations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + devServerKey +
		"\r\nIdempotency-Key: slow-1\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < len(body); i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
		}
	}()
	// Generous: the limit is 200 ms, the whole body would take 6 s.
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || errorCode(t, resp) != "REQUEST_TIMEOUT" {
		t.Errorf("answer = %d, want 408 REQUEST_TIMEOUT", resp.StatusCode)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection stayed open after the 408")
	}

	// Nothing was applied.
	code, _, got := get(t, base+"/healthz")
	if code != 200 {
		t.Fatalf("healthz = %d %s", code, got)
	}
	req, _ := http.NewRequest("GET", base+"/v1/players/42", nil)
	req.Header.Set("Authorization", "Bearer "+devServerKey)
	pr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(pr.Body)
	pr.Body.Close()
	if strings.Contains(string(raw), `"coins":255`) {
		t.Errorf("the timed-out mutation was applied: %s", raw)
	}

	// A long-poll (no body) lasting longer than the body limit ends normally.
	req, _ = http.NewRequest("GET", base+"/v1/servers/job-1/changes?timeout=1s", nil)
	req.Header.Set("Authorization", "Bearer "+devServerKey)
	lp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lp.Body.Close()
	if lp.StatusCode != http.StatusOK {
		t.Errorf("long-poll = %d, want 200", lp.StatusCode)
	}

	// A body sent at once is unaffected, and so is a handler that runs on
	// after reading it.
	if code, body := post(t, base+"/v1/players/42/mutations", "fast-1", body); code != 200 {
		t.Errorf("a prompt body = %d %s, want 200", code, body)
	}
}
