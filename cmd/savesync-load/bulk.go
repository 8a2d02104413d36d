package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/handlers"
	"github.com/savesync/savesync/internal/sleep"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// bulkParams are the knobs of the bulk job run (--bulk-players > 0).
type bulkParams struct {
	Players     int           `json:"players"`
	Rate        int           `json:"rate"`
	Service     string        `json:"service"`
	KillAt      float64       `json:"killAt"`
	LiveWorkers int           `json:"liveWorkers"`
	LiveFor     time.Duration `json:"liveFor"`
	LivePlayers int           `json:"livePlayers"`
}

// BulkReport is what the bulk job run measured and checked.
type BulkReport struct {
	Params  bulkParams `json:"params"`
	Machine Machine    `json:"machine"`
	// SeedSeconds is how long making the players took.
	SeedSeconds float64 `json:"seedSeconds"`
	// Live latency of game-server mutations without and with the job.
	LiveAlone   LiveReport `json:"liveAlone"`
	LiveWithJob LiveReport `json:"liveWithJob"`
	// Job figures: wall time from start to done (the restart included),
	// players per second over the runs before and after the kill.
	JobSeconds       float64 `json:"jobSeconds"`
	PlayersPerSecond float64 `json:"playersPerSecond"`
	BeforeKillRate   float64 `json:"beforeKillRate"`
	KilledAtMatched  int64   `json:"killedAtMatched"`
	// PausedAtMatched is where a pause held the job; PauseHeld whether
	// nothing moved while it was paused (3 s).
	PausedAtMatched   int64         `json:"pausedAtMatched"`
	PauseHeld         bool          `json:"pauseHeld"`
	RestartSeconds    float64       `json:"restartSeconds"`
	Job               store.BulkJob `json:"job"`
	PlayersChecked    int           `json:"playersChecked"`
	ChangedOnce       int           `json:"changedOnce"`
	NotChangedOnce    []int64       `json:"notChangedOnce"`
	LedgerEntries     int           `json:"ledgerEntries"`
	InvariantFailures []Violation   `json:"invariantFailures"`
}

// LiveReport is the latency of the live game-server mutations of a window.
type LiveReport struct {
	Mutations int     `json:"mutations"`
	Errors    int     `json:"errors"`
	PerSecond float64 `json:"perSecond"`
	P50ms     float64 `json:"p50ms"`
	P99ms     float64 `json:"p99ms"`
}

// bulkGems is the op every player gets once: the check reads it back.
const bulkGems = `[{"op":"currency.add","currency":"gems","amount":1}]`

// bulkFirstUser is the first player of the run.
const bulkFirstUser = 5_000_000_001

// runBulk measures a bulk job over many players on the local stack: the
// Firestore emulator in this process, the service as a separate process
// (--bulk-service, a built savesync); the job is paused and resumed, and
// the service killed with SIGKILL mid-job and started again on the same
// emulator. It reports players per second, the
// latency of live mutations with and without the job, and checks that
// every player was changed exactly once and the ledger invariants hold.
func runBulk(ctx context.Context, p params, bp bulkParams, stdout io.Writer) error {
	cfg, err := save.LoadConfig(p.GameConfig)
	if err != nil {
		return fmt.Errorf("game config %s: %w", p.GameConfig, err)
	}
	emu, err := emulator.Start(emulator.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("start the Firestore emulator: %w", err)
	}
	defer emu.Close()
	clients, err := store.Dial(ctx, p.Project, emu.Addr())
	if err != nil {
		return err
	}
	defer clients.Close()
	st := store.New(clients.Firestore, clients.GAPIC, p.Project, cfg, store.Options{})

	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	svc := &serviceProcess{binary: bp.Service, env: []string{
		"GOOGLE_CLOUD_PROJECT=" + p.Project,
		"FIRESTORE_EMULATOR_HOST=" + emu.Addr(),
		"SAVESYNC_SERVER_KEYS=7:" + handlers.HashKey(hex.EncodeToString(key)),
		"SAVESYNC_GAME_CONFIG=" + p.GameConfig,
		"SAVESYNC_OUTBOX_RELAY=off",
		"SAVESYNC_LISTEN_HOST=127.0.0.1",
	}}
	if err := svc.start(ctx); err != nil {
		return err
	}
	defer svc.kill()
	c := &bulkClient{key: hex.EncodeToString(key), svc: svc}
	rep := BulkReport{Params: bp, Machine: describeMachine(), InvariantFailures: []Violation{}, NotChangedOnce: []int64{}}

	began := time.Now()
	if err := c.seed(ctx, bp.Players); err != nil {
		return err
	}
	rep.SeedSeconds = time.Since(began).Seconds()
	fmt.Fprintf(stdout, "seeded %d players in %.0fs\n", bp.Players, rep.SeedSeconds)

	rep.LiveAlone = c.live(ctx, bp, bp.LiveFor)
	fmt.Fprintf(stdout, "live alone: %+v\n", rep.LiveAlone)

	job, _, _, err := st.CreateBulkJob(ctx, store.BulkJobRequest{
		Selection: save.BulkSelection{Kind: save.SelectAll}, Ops: json.RawMessage(bulkGems),
		Reason: "load test", Ticket: "LOAD-1", Rate: bp.Rate,
		Actor: save.Actor{Kind: save.ActorAdmin, ID: "load-admin"}, IdempotencyKey: "load-" + strconv.FormatInt(time.Now().UnixNano(), 10),
	}, false)
	if err != nil {
		return err
	}
	if _, err := st.ChangeBulkJob(ctx, job.JobID, store.BulkStart); err != nil {
		return err
	}
	started := time.Now()
	// Live traffic while the job runs, then the kill once it is past
	// KillAt of the players.
	rep.LiveWithJob = c.live(ctx, bp, bp.LiveFor)
	fmt.Fprintf(stdout, "live with the job: %+v\n", rep.LiveWithJob)
	if err := pauseAndResume(ctx, st, job.JobID, &rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "paused at %d players (held: %v), resumed\n", rep.PausedAtMatched, rep.PauseHeld)
	killAt := int64(float64(bp.Players) * bp.KillAt)
	for {
		j, err := st.GetBulkJob(ctx, job.JobID)
		if err != nil {
			return err
		}
		if j.Matched >= killAt || j.State == store.BulkDone {
			rep.KilledAtMatched = j.Matched
			rep.BeforeKillRate = float64(j.Matched) / time.Since(started).Seconds()
			break
		}
		if err := sleep.For(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	svc.kill()
	fmt.Fprintf(stdout, "killed the service at %d players (%.0f players/s so far)\n", rep.KilledAtMatched, rep.BeforeKillRate)
	restarted := time.Now()
	if err := svc.start(ctx); err != nil {
		return err
	}
	for {
		j, err := st.GetBulkJob(ctx, job.JobID)
		if err != nil {
			return err
		}
		if rep.RestartSeconds == 0 && j.Matched > rep.KilledAtMatched {
			rep.RestartSeconds = time.Since(restarted).Seconds()
		}
		if j.State == store.BulkDone || j.State == store.BulkCancelled {
			rep.Job = j
			break
		}
		if err := sleep.For(ctx, time.Second); err != nil {
			return err
		}
	}
	rep.JobSeconds = time.Since(started).Seconds()
	rep.PlayersPerSecond = float64(rep.Job.Matched) / rep.JobSeconds
	fmt.Fprintf(stdout, "job %s %s: %d matched, %d done, %d failed, %d skipped in %.0fs (%.0f players/s; resumed %.0fs after the restart)\n",
		rep.Job.JobID, rep.Job.State, rep.Job.Matched, rep.Job.Done, rep.Job.Failed, rep.Job.Skipped, rep.JobSeconds, rep.PlayersPerSecond, rep.RestartSeconds)
	svc.kill()

	if err := checkBulk(ctx, clients.Firestore, cfg, &rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checked %d players and %d ledger entries: %d changed exactly once, %d not, %d invariant violations\n",
		rep.PlayersChecked, rep.LedgerEntries, rep.ChangedOnce, len(rep.NotChangedOnce), len(rep.InvariantFailures))
	if p.Out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(p.Out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if len(rep.NotChangedOnce) > 0 || len(rep.InvariantFailures) > 0 || rep.Job.Done != int64(bp.Players) || !rep.PauseHeld {
		return errViolations
	}
	return nil
}

// pauseAndResume pauses a running job, waits for the runner to stop at
// its page's end, checks that nothing moves for 3 s, and resumes it.
func pauseAndResume(ctx context.Context, st *store.Store, jobID string, rep *BulkReport) error {
	j, err := st.ChangeBulkJob(ctx, jobID, store.BulkPause)
	if store.BulkDone == j.State || err != nil {
		return err
	}
	// The runner records the page it was on, then stops.
	for last := int64(-1); ; {
		if err := sleep.For(ctx, time.Second); err != nil {
			return err
		}
		j, err := st.GetBulkJob(ctx, jobID)
		if err != nil {
			return err
		}
		if j.Matched == last {
			break
		}
		last = j.Matched
	}
	before, err := st.GetBulkJob(ctx, jobID)
	if err != nil {
		return err
	}
	if err := sleep.For(ctx, 3*time.Second); err != nil {
		return err
	}
	after, err := st.GetBulkJob(ctx, jobID)
	if err != nil {
		return err
	}
	rep.PausedAtMatched, rep.PauseHeld = before.Matched, before.Matched == after.Matched && after.State == store.BulkPaused
	_, err = st.ChangeBulkJob(ctx, jobID, store.BulkResume)
	return err
}

// checkBulk reads every player and ledger entry, page by page in name
// order (entries of one player are contiguous), and checks each player
// with the load tool's invariants and for exactly one +1 of gems.
func checkBulk(ctx context.Context, fs *firestore.Client, cfg *save.Config, rep *BulkReport) error {
	const page = 2000
	var entries []*firestore.DocumentSnapshot
	var lastEntry *firestore.DocumentSnapshot
	entriesDone := false
	nextEntries := func() error {
		q := fs.CollectionGroup("ledger").OrderBy(firestore.DocumentID, firestore.Asc).Limit(page)
		if lastEntry != nil {
			q = q.StartAfter(lastEntry.Ref)
		}
		docs, err := q.Documents(ctx).GetAll()
		if err != nil {
			return err
		}
		entries = append(entries, docs...)
		if len(docs) > 0 {
			lastEntry = docs[len(docs)-1]
		}
		entriesDone = len(docs) < page
		return nil
	}
	start := cfg.Currencies["gems"].Start
	var lastPlayer *firestore.DocumentSnapshot
	for {
		q := fs.Collection("players").OrderBy(firestore.DocumentID, firestore.Asc).Limit(page)
		if lastPlayer != nil {
			q = q.StartAfter(lastPlayer.Ref)
		}
		players, err := q.Documents(ctx).GetAll()
		if err != nil {
			return err
		}
		for _, pl := range players {
			prefix := pl.Ref.Path + "/ledger/"
			var mine []ledgerDoc
			for {
				for len(entries) > 0 && entries[0].Ref.Path < prefix {
					entries = entries[1:] // an entry of a player with no document
				}
				for len(entries) > 0 && strings.HasPrefix(entries[0].Ref.Path, prefix) {
					mine = append(mine, decodeLedger(entries[0]))
					entries = entries[1:]
				}
				if len(entries) > 0 || entriesDone {
					break
				}
				if err := nextEntries(); err != nil {
					return err
				}
			}
			id, _ := strconv.ParseInt(pl.Ref.ID, 10, 64)
			rep.PlayersChecked++
			rep.LedgerEntries += len(mine)
			rep.InvariantFailures = append(rep.InvariantFailures, checkPlayer(cfg, id, pl.Data(), mine, nil, nil, false).violations...)
			gems := int64(0)
			if s, ok := pl.Data()["save"].(map[string]any); ok {
				if cur, ok := s["currencies"].(map[string]any); ok {
					gems = toInt(cur["gems"])
				}
			}
			if gems == start+1 {
				rep.ChangedOnce++
			} else if len(rep.NotChangedOnce) < 100 {
				rep.NotChangedOnce = append(rep.NotChangedOnce, id)
			}
		}
		if len(players) < page {
			return nil
		}
		lastPlayer = players[len(players)-1]
	}
}

// serviceProcess is the savesync service run as its own process, so it
// can be killed without a chance to clean up.
type serviceProcess struct {
	binary string
	env    []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	url    string
}

// start runs the service on a free loopback port and waits for /readyz.
func (s *serviceProcess) start(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(s.binary)
	cmd.Env = append(append(os.Environ(), s.env...), "PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.binary, err)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	s.mu.Lock()
	s.cmd, s.url = cmd, url
	s.mu.Unlock()
	return waitReady(ctx, url)
}

// kill ends the service with SIGKILL: no shutdown, no lease released.
func (s *serviceProcess) kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// base is the running service's URL.
func (s *serviceProcess) base() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// bulkClient calls the service as a game server.
type bulkClient struct {
	key string
	svc *serviceProcess
	seq atomic.Int64
}

// post sends a JSON request with the server key.
func (c *bulkClient) post(ctx context.Context, path string, body any, idemKey string) (int, []byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.svc.base()+path, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// seed makes n players, 100 per batch request, 4 requests at a time.
func (c *bulkClient) seed(ctx context.Context, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				from := next.Add(100) - 100
				if from >= int64(n) {
					return
				}
				var items []any
				for i := from; i < min(from+100, int64(n)); i++ {
					id := bulkFirstUser + i
					items = append(items, map[string]any{"userId": id, "idempotencyKey": "seed-" + strconv.FormatInt(id, 10),
						"mutation": map[string]any{"ops": []any{map[string]any{"op": "currency.add", "currency": "coins", "amount": 1000}}}})
				}
				for attempt := 1; ; attempt++ {
					status, body, err := c.post(ctx, "/v1/batch/mutations", map[string]any{"mutations": items}, "")
					if err == nil && status == http.StatusOK {
						break
					}
					if attempt == 5 || ctx.Err() != nil {
						errs <- fmt.Errorf("seed players %d..: %d %s %v", bulkFirstUser+from, status, body, err)
						return
					}
					_ = sleep.For(ctx, time.Second)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs)
}

// live runs game-server mutations (coins +1) on the first LivePlayers
// players with LiveWorkers callers for d, and reports their latency.
func (c *bulkClient) live(ctx context.Context, bp bulkParams, d time.Duration) LiveReport {
	var mu sync.Mutex
	var lat []float64
	errCount := 0
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range bp.LiveWorkers {
		wg.Go(func() {
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				n := c.seq.Add(1)
				id := bulkFirstUser + (n*7919+int64(w))%int64(bp.LivePlayers)
				t := time.Now()
				status, _, err := c.post(ctx, "/v1/players/"+strconv.FormatInt(id, 10)+"/mutations",
					map[string]any{"ops": []any{map[string]any{"op": "currency.add", "currency": "coins", "amount": 1}}},
					"live-"+strconv.FormatInt(n, 10))
				ms := float64(time.Since(t).Microseconds()) / 1000
				mu.Lock()
				if err != nil || status != http.StatusOK {
					errCount++
				} else {
					lat = append(lat, ms)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return LiveReport{Mutations: len(lat), Errors: errCount, PerSecond: float64(len(lat)) / d.Seconds(), P50ms: quantile(lat, 0.5), P99ms: quantile(lat, 0.99)}
}

// quantile is the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
