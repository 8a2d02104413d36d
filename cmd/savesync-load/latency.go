package main

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// emulatorLatencyArgs are the standalone emulator's flags for the run's
// latency model (the in-process one gets it in its Options).
func emulatorLatencyArgs(p params) []string {
	if p.Latency == 0 && p.Jitter == 0 {
		return nil
	}
	return []string{"--latency", p.Latency.String(), "--jitter", p.Jitter.String()}
}

// FloorReport is the physical floor of a checked mutation, measured in the
// run: the time of 2 sequential emulator round trips (a read, then
// another), which is what a mutation's transactional read and commit cost
// at the least, whatever the service does.
type FloorReport struct {
	Samples int `json:"samples"`
	// NominalMs is 2 × --latency: the floor the latency model promises.
	NominalMs float64 `json:"nominalMs"`
	P50ms     float64 `json:"p50ms"`
	P99ms     float64 `json:"p99ms"`
}

// measureFloor times n pairs of sequential single-document reads through
// the Firestore client, one pair at a time, before the load starts.
func measureFloor(ctx context.Context, fs *firestore.Client, n int, latency time.Duration) (FloorReport, error) {
	ref := fs.Collection("loadFloor").Doc("probe")
	ds := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		for range 2 {
			if _, err := ref.Get(ctx); err != nil && status.Code(err) != codes.NotFound {
				return FloorReport{}, fmt.Errorf("measure the floor: %w", err)
			}
		}
		ds = append(ds, time.Since(start))
	}
	st := routeStats("2 sequential emulator reads", ds)
	return FloorReport{Samples: n, NominalMs: 2 * float64(latency.Microseconds()) / 1000, P50ms: st.P50ms, P99ms: st.P99ms}, nil
}

// LatencyRow is one route's latency beside the floor.
type LatencyRow struct {
	Route      string  `json:"route"`
	Count      int     `json:"count"`
	P50ms      float64 `json:"p50ms"`
	P99ms      float64 `json:"p99ms"`
	P50ByFloor float64 `json:"p50ByFloor"`
	P99ByFloor float64 `json:"p99ByFloor"`
}

// LatencyReport is the mixed workload's latency per route at the run's
// per-instance concurrency, beside the floor (its median).
type LatencyReport struct {
	Phase                 string       `json:"phase"`
	InstanceConcurrency   int          `json:"instanceConcurrency"`
	CallersPerInstance    float64      `json:"callersPerInstance"`
	EmulatorLatencyMs     float64      `json:"emulatorLatencyMs"`
	EmulatorJitterMs      float64      `json:"emulatorJitterMs"`
	Floor                 FloorReport  `json:"floor"`
	Routes                []LatencyRow `json:"routes"`
	MutationP50ByFloor    float64      `json:"mutationP50ByFloor"`
	MutationP99ms         float64      `json:"mutationP99ms"`
	MutationP50TargetMet  bool         `json:"mutationP50TargetMet"`
	MutationP99Under200ms bool         `json:"mutationP99Under200ms"`
}

// latencyReport puts ph's routes beside the floor. The targets are a
// mutation p50 at most 1.3 × the floor and a p99 within the 200 ms a
// player tolerates for a purchase.
func latencyReport(ph *PhaseReport, floor FloorReport, p params) *LatencyReport {
	if ph == nil {
		return nil
	}
	r := &LatencyReport{
		Phase:               ph.Name,
		InstanceConcurrency: p.Concurrency,
		CallersPerInstance:  float64(p.Workers) / float64(max(p.Instances, 1)),
		EmulatorLatencyMs:   float64(p.Latency.Microseconds()) / 1000,
		EmulatorJitterMs:    float64(p.Jitter.Microseconds()) / 1000,
		Floor:               floor,
	}
	for _, rt := range ph.Routes {
		row := LatencyRow{Route: rt.Route, Count: rt.Count, P50ms: rt.P50ms, P99ms: rt.P99ms,
			P50ByFloor: ratio(rt.P50ms, floor.P50ms), P99ByFloor: ratio(rt.P99ms, floor.P50ms)}
		r.Routes = append(r.Routes, row)
		if rt.Route == routeMutation {
			r.MutationP50ByFloor = row.P50ByFloor
			r.MutationP99ms = rt.P99ms
			r.MutationP50TargetMet = row.P50ByFloor <= 1.3
			r.MutationP99Under200ms = rt.P99ms <= 200
		}
	}
	return r
}
