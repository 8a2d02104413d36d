package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
)

// ReadinessTimeout bounds one readiness check, so a hung dependency makes
// /readyz answer 503 quickly instead of stalling the probe.
const ReadinessTimeout = 2 * time.Second

// Healthz answers 200 {"status":"ok"} while the process can serve HTTP at all.
// It checks no dependency: a liveness probe that fails on a database outage
// would restart healthy instances for nothing.
func Healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// Readyz returns a handler that runs check with a ReadinessTimeout deadline
// and answers 200 {"status":"ok"} when it succeeds, or 503 UNAVAILABLE when it
// fails; the failure's detail is logged, not sent. A nil check is always
// ready.
func Readyz(check func(ctx context.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if check != nil {
			ctx, cancel := context.WithTimeout(c.Request.Context(), ReadinessTimeout)
			defer cancel()
			if err := check(ctx); err != nil {
				logging.FromContext(ctx).WarnContext(ctx, "readiness check failed", slog.Any("error", err))
				writeError(c, save.Errorf(save.CodeUnavailable, "a dependency is unreachable: retry later"))
				return
			}
		}
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	}
}
