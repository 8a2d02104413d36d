// Command firestore-emulator runs savesync's Firestore emulator as its own
// process: a google.firestore.v1 gRPC server, Firestore's REST/JSON API on
// the same port, and the emulator's own HTTP endpoints (reset, counters,
// faults) for local development and tests.
//
// Usage:
//
//	firestore-emulator [--host 127.0.0.1] [--port 8080] [--data-dir DIR]
//	                   [--indexes firestore.indexes.json]
//	                   [--latency 15ms] [--jitter 5ms]
//
// With --indexes it refuses, as Cloud Firestore does, every query that
// needs an index the file does not declare.
//
// --latency and --jitter turn on the standing latency model: every RPC waits
// a delay whose median is --latency, with a right-skewed (exponential) tail
// of mean --jitter; p99 is latency + 3.91 × jitter, so --latency 16ms
// --jitter 4.35ms resembles Cloud Firestore in-region (p50 16 ms, p99 33 ms).
// PUT /emulator/v1/latency changes it while the emulator runs.
//
// It prints the line to export FIRESTORE_EMULATOR_HOST and runs until SIGINT
// or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/savesync/savesync/emulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "firestore-emulator:", err)
		os.Exit(1)
	}
}

// run starts the emulator with the given command-line arguments, prints the
// export line to stdout and serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("firestore-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 8080, "port to listen on (0 picks a free one)")
	dataDir := fs.String("data-dir", "", "directory that keeps the data across restarts (empty: memory only)")
	latency := fs.Duration("latency", 0, "median delay added to every RPC, e.g. 15ms (0: none)")
	jitter := fs.Duration("jitter", 0, "mean of the delay's exponential tail above its floor, e.g. 5ms (0: a constant delay)")
	indexesPath := fs.String("indexes", "", "firestore.indexes.json whose indexes queries need, as in Cloud Firestore (empty: no index check)")
	retention := fs.Duration("version-retention", emulator.DefaultVersionRetention, "how long old document versions stay readable through read_time (at least 1m)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("--port %d is out of range", *port)
	}
	if err := emulator.CheckLatency(*latency, *jitter); err != nil {
		return fmt.Errorf("--%w", err)
	}
	if *retention < emulator.MinVersionRetention {
		return fmt.Errorf("--version-retention %s is below the minimum %s", *retention, emulator.MinVersionRetention)
	}
	var indexes *emulator.IndexConfig
	if *indexesPath != "" {
		cfg, err := emulator.LoadIndexConfig(*indexesPath)
		if err != nil {
			return err
		}
		indexes = cfg
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := emulator.Start(emulator.Options{
		Addr:    net.JoinHostPort(*host, strconv.Itoa(*port)),
		DataDir: *dataDir,
		Logger:  logger,
		Latency: *latency,
		Jitter:  *jitter,
		Indexes: indexes,

		VersionRetention: *retention,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "export FIRESTORE_EMULATOR_HOST=%s\n", srv.Addr())
	<-ctx.Done()
	logger.Info("shutting down")
	return srv.Close()
}
