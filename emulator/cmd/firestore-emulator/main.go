// Command firestore-emulator runs savesync's Firestore emulator as its own
// process: a google.firestore.v1 gRPC server (plus the emulator's REST
// endpoints) for local development and tests.
//
// Usage:
//
//	firestore-emulator [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--indexes firestore.indexes.json]
//
// With --indexes it refuses, as Cloud Firestore does, every query that
// needs an index the file does not declare.
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
	indexesPath := fs.String("indexes", "", "firestore.indexes.json whose indexes queries need, as in Cloud Firestore (empty: no index check)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("--port %d is out of range", *port)
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
		Indexes: indexes,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "export FIRESTORE_EMULATOR_HOST=%s\n", srv.Addr())
	<-ctx.Done()
	logger.Info("shutting down")
	return srv.Close()
}
