package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRunBulkSurvivesAKill runs the bulk job measurement on 300 players:
// the job is paused and resumed; the service, built and run as its own
// process, is killed with SIGKILL mid-job and started again on the same emulator; the job must finish
// with every player changed exactly once and the invariants holding.
func TestRunBulkSurvivesAKill(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "savesync")
	if out, err := exec.Command("go", "build", "-o", bin, "../savesync").CombinedOutput(); err != nil {
		t.Fatalf("build the service: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "bulk.json")
	args := []string{
		"--game-config", "../../config/sample-game.json",
		"--bulk-players", "300", "--bulk-rate", "100", "--bulk-service", bin,
		"--bulk-kill-at", "0.3", "--bulk-live", "1s", "--bulk-live-workers", "2", "--bulk-live-players", "20",
		"--out", out,
	}
	var rep BulkReport
	stdout := runReport(t, args, out, 5*time.Minute, &rep)
	got := []any{rep.Job.State, rep.Job.Done, rep.PlayersChecked, rep.ChangedOnce, len(rep.NotChangedOnce), len(rep.InvariantFailures)}
	if diff := cmp.Diff([]any{"done", int64(300), 300, 300, 0, 0}, got); diff != "" {
		t.Errorf("state, done, checked, changed once, not once, violations (-want +got):\n%s\n%s", diff, stdout)
	}
	if !rep.PauseHeld || rep.PausedAtMatched == 0 || rep.PausedAtMatched >= 300 {
		t.Errorf("paused at %d players, held %v; want a pause mid-job that holds", rep.PausedAtMatched, rep.PauseHeld)
	}
	if rep.KilledAtMatched >= 300 {
		t.Errorf("the service was killed after the job finished (%d players); the kill must come mid-job", rep.KilledAtMatched)
	}
}
