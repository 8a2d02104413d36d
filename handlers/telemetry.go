package handlers

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// RequestObserver hears about answered mutation requests and open streams,
// for the service's metrics. Its methods must be quick and safe for
// concurrent use.
type RequestObserver interface {
	// MutationAnswered is called once a mutation request (a route of
	// MutationRoutes) is answered, with its route template and outcome:
	// "ok", "replayed" (answered from its idempotency record), or the
	// error code of the answer (VERSION_CONFLICT, INSUFFICIENT_FUNDS, …).
	MutationAnswered(ctx context.Context, route, outcome string)
	// StreamsChanged adds delta (+1 when a stream of StreamRoutes opens,
	// −1 when it ends) to the streams open on route.
	StreamsChanged(ctx context.Context, route string, delta int64)
}

// errorCodeKey is the gin context key under which writeError leaves the
// code it answered with.
const errorCodeKey = "savesync.errorCode"

// MutationRoutes are the routes whose requests change saves: their
// answers are counted by outcome.
func MutationRoutes() []string {
	return []string{
		"/v1/players/:userId/mutations",
		"/v1/batch/mutations",
		"/v1/me/mutations",
		"/v1/me/purchases",
		"/v1/me/settings/:key",
		"/v1/me/collections/:collection",
		"/v1/me/collections/:collection/:element",
		"/v1/admin/players/:userId/compensations",
		"/v1/admin/players/:userId/restore",
	}
}

// StreamRoutes are the long-lived requests: the game servers' long-poll
// and the companion's event stream.
func StreamRoutes() []string {
	return []string{"/v1/servers/:jobId/changes", "/v1/me/events"}
}

// ObserveRequests tells obs about every answered request of
// MutationRoutes and every open request of StreamRoutes. Put it before
// the routes' own middleware (authentication), so refusals count too.
func ObserveRequests(obs RequestObserver) gin.HandlerFunc {
	mutations := make(map[string]bool)
	for _, r := range MutationRoutes() {
		mutations[r] = true
	}
	streams := make(map[string]bool)
	for _, r := range StreamRoutes() {
		streams[r] = true
	}
	return func(c *gin.Context) {
		route := c.FullPath()
		switch {
		case streams[route]:
			ctx := c.Request.Context()
			obs.StreamsChanged(ctx, route, 1)
			defer obs.StreamsChanged(ctx, route, -1)
			c.Next()
		case mutations[route] && c.Request.Method != http.MethodOptions:
			c.Next()
			obs.MutationAnswered(c.Request.Context(), route, outcome(c))
		default:
			c.Next()
		}
	}
}

// outcome names how a request was answered: the error code writeError
// used, "replayed", or "ok".
func outcome(c *gin.Context) string {
	if code := c.GetString(errorCodeKey); code != "" {
		return code
	}
	status := c.Writer.Status()
	switch {
	case status >= http.StatusBadRequest:
		return "HTTP_" + strconv.Itoa(status)
	case c.Writer.Header().Get(headerReplayed) == "true":
		return "replayed"
	default:
		return "ok"
	}
}
