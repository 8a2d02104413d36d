package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
)

// Browser routes are the path prefixes a page on another origin may call:
// the companion API and the support console's admin API. Game-server,
// webhook and health routes are never granted to a browser.
var browserRoutePrefixes = []string{"/v1/me", "/v1/admin"}

// CORS header values. Every call carries a bearer token, never a cookie,
// so credentials are not allowed and the origin is always named exactly.
const (
	corsAllowMethods  = "GET, POST, PUT, DELETE"
	corsAllowHeaders  = "Authorization, Content-Type, Idempotency-Key, X-Request-Id, Last-Event-ID"
	corsExposeHeaders = "Idempotent-Replayed, X-Request-Id, Retry-After"
	// CORSMaxAge is how long, in seconds, a browser may cache a preflight.
	CORSMaxAge = 600
)

// corsAllowedHeaders and corsAllowedMethods are the lists above as sets
// for checking a preflight's request, in lower case (header names) and
// upper case (methods).
var (
	corsAllowedHeaders = listSet(corsAllowHeaders, strings.ToLower)
	corsAllowedMethods = listSet(corsAllowMethods, strings.ToUpper)
)

func listSet(list string, norm func(string) string) map[string]bool {
	set := map[string]bool{}
	for _, v := range strings.Split(list, ",") {
		set[norm(strings.TrimSpace(v))] = true
	}
	return set
}

// ParseCORSOrigins reads a comma-separated list of exact browser origins,
// each a scheme (http or https), a host and an optional port, such as
// https://app.example.com or http://localhost:5173, and returns them in
// the form browsers send in the Origin header (lower case, no default
// port). An empty spec is no origin. A wildcard, a path, a query or
// anything else that is not an origin is an error saying which entry.
func ParseCORSOrigins(spec string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		origin, err := parseOrigin(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not an origin: %w", part, err)
		}
		if !seen[origin] {
			seen[origin] = true
			out = append(out, origin)
		}
	}
	return out, nil
}

// parseOrigin checks one origin and returns its serialization.
func parseOrigin(s string) (string, error) {
	if strings.Contains(s, "*") {
		return "", errors.New("wildcards are not allowed, every call carries a bearer token: name each origin")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("write scheme://host[:port], e.g. https://app.example.com")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", errors.New("the scheme must be http or https, e.g. https://app.example.com")
	}
	switch {
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "", errors.New("write scheme://host[:port], e.g. https://app.example.com")
	case u.User != nil:
		return "", errors.New("leave out the user name and password")
	case u.Path != "" || u.RawPath != "":
		return "", errors.New("leave out the path (an origin has none, not even a trailing /)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return "", errors.New("leave out the query and the fragment")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") { // an IPv6 literal
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", errors.New("the port must be a number from 1 to 65535")
		}
		if !(scheme == "http" && n == 80) && !(scheme == "https" && n == 443) {
			host += ":" + strconv.Itoa(n)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", errors.New("the port must be a number from 1 to 65535")
	}
	return scheme + "://" + host, nil
}

// CORS grants the origins given (as ParseCORSOrigins returns them) access
// to the browser routes (/v1/me/…, /v1/admin/…) and to nothing else. Put
// it before authentication, the body limit and the routes, so a preflight
// is answered before any of them and an error from any of them carries the
// grant.
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) to a
// browser route is answered 204 here and goes no further. It carries the
// grant (Access-Control-Allow-Origin, -Methods, -Headers, -Max-Age) only
// when the origin is allowed, the method is one of the API's and every
// requested header is one the API reads; otherwise it is a 204 without
// any grant, which the browser treats as a refusal, logged at debug.
//
// Any other request to a browser route from an allowed origin is answered
// by the route as usual, with Access-Control-Allow-Origin and
// Access-Control-Expose-Headers. Every response of a browser route says
// Vary: Origin. Other routes are passed through untouched, so their
// OPTIONS stays the usual 404 or 405.
func CORS(origins []string) gin.HandlerFunc {
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[o] = true
	}
	return func(c *gin.Context) {
		if !isBrowserRoute(c.Request.URL.Path) {
			c.Next()
			return
		}
		h := c.Writer.Header()
		h.Add("Vary", "Origin")
		origin := c.Request.Header.Get("Origin")
		method := c.Request.Header.Get("Access-Control-Request-Method")
		if c.Request.Method == http.MethodOptions && origin != "" && method != "" {
			if reason := refusePreflight(allowed, origin, method, c.Request.Header.Values("Access-Control-Request-Headers")); reason != "" {
				logging.FromContext(c.Request.Context()).DebugContext(c.Request.Context(), "CORS preflight refused",
					slog.String("origin", origin), slog.String("reason", reason))
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Allow-Methods", corsAllowMethods)
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
				h.Set("Access-Control-Max-Age", strconv.Itoa(CORSMaxAge))
			}
			c.AbortWithStatus(http.StatusNoContent)
			return
		}
		if origin != "" && allowed[origin] {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		c.Next()
	}
}

// refusePreflight says why a preflight gets no grant, or "" when it does.
func refusePreflight(allowed map[string]bool, origin, method string, headers []string) string {
	if !allowed[origin] {
		return "origin not on the allowed list"
	}
	if !corsAllowedMethods[strings.ToUpper(strings.TrimSpace(method))] {
		return "method " + method + " not allowed"
	}
	for _, list := range headers {
		for _, name := range strings.Split(list, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "" && !corsAllowedHeaders[name] {
				return "header " + name + " not allowed"
			}
		}
	}
	return ""
}

// isBrowserRoute reports whether path is one of the browser routes.
func isBrowserRoute(path string) bool {
	for _, p := range browserRoutePrefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}
