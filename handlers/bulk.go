package handlers

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// registerBulk adds the bulk job routes to the administrators' group.
func (a *AdminAPI) registerBulk(admin gin.IRouter) {
	admin.POST("/bulk-jobs", handle(a.postBulkJob))
	admin.GET("/bulk-jobs", handle(a.listBulkJobs))
	admin.GET("/bulk-jobs/:bulkJobId", handle(a.getBulkJob))
	admin.GET("/bulk-jobs/:bulkJobId/results", handle(a.bulkResults))
	for _, action := range []string{store.BulkStart, store.BulkPause, store.BulkResume, store.BulkCancel} {
		admin.POST("/bulk-jobs/:bulkJobId/"+action, handle(func(c *gin.Context) error {
			job, err := a.store.ChangeBulkJob(c.Request.Context(), c.Param("bulkJobId"), action)
			if err != nil {
				return err
			}
			c.JSON(http.StatusOK, job)
			return nil
		}))
	}
}

// bulkJobBody is the body of POST /v1/admin/bulk-jobs.
type bulkJobBody struct {
	Selection save.BulkSelection `json:"selection"`
	Ops       json.RawMessage    `json:"ops"`
	Reason    string             `json:"reason"`
	Ticket    string             `json:"ticket"`
	Rate      int                `json:"rate"`
	DryRun    bool               `json:"dryRun"`
}

// bulkJobCreated is the answer to a job's creation or dry run.
type bulkJobCreated struct {
	Job     *store.BulkJob    `json:"job,omitempty"`
	Preview store.BulkPreview `json:"preview"`
}

// postBulkJob previews a bulk job and, unless it is a dry run, stores it
// as a draft under the administrator's Idempotency-Key.
func (a *AdminAPI) postBulkJob(c *gin.Context) error {
	var req bulkJobBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if _, err := ticketedReason(req.Reason, req.Ticket); err != nil {
		return err
	}
	job, preview, replayed, err := a.store.CreateBulkJob(c.Request.Context(), store.BulkJobRequest{
		Selection: req.Selection, Ops: req.Ops, Reason: req.Reason, Ticket: req.Ticket, Rate: req.Rate,
		Actor: actorOf(c), IdempotencyKey: c.GetHeader(headerIdempotencyKey),
	}, req.DryRun)
	switch {
	case err != nil:
		return err
	case req.DryRun:
		c.JSON(http.StatusOK, bulkJobCreated{Preview: preview})
	case replayed:
		c.Header(headerReplayed, "true")
		c.JSON(http.StatusOK, bulkJobCreated{Job: &job, Preview: preview})
	default:
		c.JSON(http.StatusCreated, bulkJobCreated{Job: &job, Preview: preview})
	}
	return nil
}

// listBulkJobs answers a page of jobs, newest first.
func (a *AdminAPI) listBulkJobs(c *gin.Context) error {
	limit := 0
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil {
			return badField("limit", "must be an integer between 1 and 100, got %q", raw)
		}
		limit = n
	}
	page, err := a.store.ListBulkJobs(c.Request.Context(), c.Query("cursor"), limit)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, page)
	return nil
}

// getBulkJob answers a job's definition and progress.
func (a *AdminAPI) getBulkJob(c *gin.Context) error {
	job, err := a.store.GetBulkJob(c.Request.Context(), c.Param("bulkJobId"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, job)
	return nil
}

// bulkCSVHeader names the columns of a job's results.
var bulkCSVHeader = []string{"userId", "outcome", "code", "message", "entryId", "version", "changes", "at"}

// bulkResults streams a job's per-player outcomes as CSV, page by page.
func (a *AdminAPI) bulkResults(c *gin.Context) error {
	ctx := c.Request.Context()
	jobID := c.Param("bulkJobId")
	if _, err := a.store.GetBulkJob(ctx, jobID); err != nil {
		return err
	}
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", "attachment; filename=\"bulk-"+jobID+".csv\"")
	c.Status(http.StatusOK)
	w := csv.NewWriter(c.Writer)
	_ = w.Write(bulkCSVHeader)
	rows := 0
	err := a.store.BulkResults(ctx, jobID, func(r store.BulkResult) error {
		changes, _ := json.Marshal(r.Changes)
		row := []string{strconv.FormatInt(r.UserID, 10), r.Outcome, r.Code, r.Message, r.EntryID, strconv.FormatInt(r.Version, 10), string(changes), r.At.Format(time.RFC3339Nano)}
		for i := range row {
			row[i] = spreadsheetSafe(row[i])
		}
		if err := w.Write(row); err != nil {
			return err
		}
		if rows++; rows%500 == 0 {
			w.Flush()
			c.Writer.Flush()
		}
		return nil
	})
	w.Flush()
	if err != nil {
		// The status is sent; the truncated report ends without its last rows.
		logging.FromContext(ctx).Error("bulk job results stopped", "error", err.Error(), "jobId", jobID)
	}
	return nil
}
