package handlers

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// ChangesAPI serves the long-poll through which a game server learns that
// saves of players it holds changed from elsewhere: the fallback for when
// an Open Cloud message is lost or late.
type ChangesAPI struct {
	changes *store.Changes
}

// NewChangesAPI returns the long-poll routes over a changes reader.
func NewChangesAPI(ch *store.Changes) *ChangesAPI {
	return &ChangesAPI{changes: ch}
}

// Register adds GET /v1/servers/:jobId/changes to a router behind auth
// (the game-server key check).
func (a *ChangesAPI) Register(r gin.IRouter, auth gin.HandlerFunc) {
	r.GET("/v1/servers/:jobId/changes", auth, handle(a.getChanges))
}

// getChanges answers GET /v1/servers/{jobId}/changes?cursor=…&timeout=25s:
// the changes since cursor, as soon as there is one or when the timeout
// (at most the configured maximum) ends.
func (a *ChangesAPI) getChanges(c *gin.Context) error {
	wait, err := a.timeout(c.Query("timeout"))
	if err != nil {
		return err
	}
	page, err := a.changes.Wait(c.Request.Context(), c.Param("jobId"), c.Query("cursor"), wait)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, page)
	return nil
}

// timeout reads the timeout parameter: a Go duration ("25s", "500ms") or
// whole seconds ("25"); absent means the maximum. Longer values are
// capped at the maximum.
func (a *ChangesAPI) timeout(raw string) (time.Duration, error) {
	if raw == "" {
		return a.changes.MaxWait(), nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		n, nerr := strconv.Atoi(raw)
		if nerr != nil {
			return 0, badField("timeout", "want a duration such as 25s or a number of seconds, got %q", raw)
		}
		d = time.Duration(min(n, 3600)) * time.Second
	}
	if d < 0 {
		return 0, save.Errorf(save.CodeInvalidArgument, "timeout: must not be negative, got %q", raw)
	}
	return min(d, a.changes.MaxWait()), nil
}
