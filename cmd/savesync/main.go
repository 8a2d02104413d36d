// Command savesync serves the savesync API: Roblox game servers and the
// companion web app read and change player saves through it, with Firestore
// as the single authority. Configuration comes from the environment (see the
// README); with none at all it runs on an embedded Firestore emulator and an
// in-process Pub/Sub, keeping data under .data/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/savesync/savesync/cmd/internal/app"
)

func main() {
	// Cloud Run sends SIGTERM and kills the instance 10 s later.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "savesync:", err)
		stop()
		os.Exit(1)
	}
}
