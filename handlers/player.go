package handlers

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// getPlayer reads a save, migrated in memory to the current schema.
func (a *ServerAPI) getPlayer(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	p, err := a.store.GetPlayer(c.Request.Context(), userID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, p)
	return nil
}
