package emulator

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
)

// BenchmarkRestart measures a start and clean shutdown from a data
// directory of 1000 documents with 10 versions each, written 5 minutes
// apart (half of them older than the hour of retention), and reports the
// snapshot's size after the last shutdown.
func BenchmarkRestart(b *testing.B) {
	dir := b.TempDir()
	now := time.Now()
	root := "projects/bench-restart/databases/(default)/documents/docs/"
	var log []byte
	for v := 9; v >= 0; v-- {
		t := now.Add(-time.Duration(v)*12*time.Minute - time.Minute).UnixMicro()
		for d := 0; d < 1000; d++ {
			name := fmt.Sprintf("%sd%04d", root, d)
			doc := &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{
				"n": intValue(int64(v)), "payload": {ValueType: &firestorepb.Value_StringValue{StringValue: fmt.Sprintf("%0200d", d)}},
			}, CreateTime: tsMicros(t), UpdateTime: tsMicros(t)}
			log = frame(log, commitPayload(t, []docChange{{name: name, new: doc}}))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "wal-0.log"), log, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		srv, err := Start(Options{DataDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	fi, err := os.Stat(filepath.Join(dir, snapshotFile))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size()), "snapshot-bytes")
}
