package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcessSample is one reading of a process's resident memory and open
// file descriptors.
type ProcessSample struct {
	Seconds float64 `json:"s"`
	RSSKiB  int64   `json:"rssKiB"`
	FDs     int     `json:"fds"`
}

// ProcessSeries is one process incarnation over the run (a restart after a
// crash starts a new one).
type ProcessSeries struct {
	Name        string          `json:"name"`
	Incarnation int             `json:"incarnation"`
	PID         int             `json:"pid"`
	Samples     []ProcessSample `json:"samples"`
	// Growth compares the mean of the last quarter of the samples with
	// that of the second quarter (after the start-up's first quarter).
	RSSGrowthKiB int64   `json:"rssGrowthKiB"`
	FDGrowth     float64 `json:"fdGrowth"`
	MaxRSSKiB    int64   `json:"maxRssKiB"`
	MaxFDs       int     `json:"maxFds"`
}

// ResourceReport is the run's resource use over time.
type ResourceReport struct {
	EverySeconds float64         `json:"everySeconds"`
	Processes    []ProcessSeries `json:"processes"`
	// DataDirBytes is the emulator's data directory at each sample and
	// at the end.
	DataDir        []int64   `json:"dataDirBytes"`
	DataDirEnd     int64     `json:"dataDirEndBytes"`
	DataDirSamples []float64 `json:"dataDirSeconds"`
}

// sampler reads /proc/<pid>/status and /proc/<pid>/fd of every process
// of the run (the tool itself included) every interval.
type sampler struct {
	start  time.Time
	every  time.Duration
	procs  func() []*proc
	data   string
	stopCh chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	series map[string]*ProcessSeries
	order  []string
	dir    []int64
	dirAt  []float64
}

func startSampler(every time.Duration, procs func() []*proc, dataDir string) *sampler {
	s := &sampler{start: time.Now(), every: every, procs: procs, data: dataDir,
		stopCh: make(chan struct{}), done: make(chan struct{}), series: map[string]*ProcessSeries{}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	at := time.Since(s.start).Seconds()
	type target struct {
		name        string
		pid, incarn int
	}
	targets := []target{{"savesync-load", os.Getpid(), 1}}
	for _, p := range s.procs() {
		pid, inc := p.pid()
		if pid != 0 {
			targets = append(targets, target{p.name, pid, inc})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range targets {
		rss, err := readRSS(t.pid)
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", t.pid))
		if err != nil {
			continue
		}
		key := fmt.Sprintf("%s#%d", t.name, t.incarn)
		ser := s.series[key]
		if ser == nil {
			ser = &ProcessSeries{Name: t.name, Incarnation: t.incarn, PID: t.pid}
			s.series[key] = ser
			s.order = append(s.order, key)
		}
		ser.Samples = append(ser.Samples, ProcessSample{Seconds: at, RSSKiB: rss, FDs: len(fds)})
	}
	if s.data != "" {
		s.dir = append(s.dir, dirSize(s.data))
		s.dirAt = append(s.dirAt, at)
	}
}

// readRSS reads VmRSS (KiB) from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// stop takes a last sample and summarises.
func (s *sampler) stop() ResourceReport {
	if s == nil {
		return ResourceReport{}
	}
	close(s.stopCh)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ResourceReport{EverySeconds: s.every.Seconds(), DataDir: s.dir, DataDirSamples: s.dirAt}
	if s.data != "" {
		r.DataDirEnd = dirSize(s.data)
	}
	for _, k := range s.order {
		ser := *s.series[k]
		n := len(ser.Samples)
		for _, x := range ser.Samples {
			ser.MaxRSSKiB = max(ser.MaxRSSKiB, x.RSSKiB)
			ser.MaxFDs = max(ser.MaxFDs, x.FDs)
		}
		if n >= 8 {
			mean := func(xs []ProcessSample) (float64, float64) {
				var rss, fd float64
				for _, x := range xs {
					rss += float64(x.RSSKiB)
					fd += float64(x.FDs)
				}
				return rss / float64(len(xs)), fd / float64(len(xs))
			}
			r1, f1 := mean(ser.Samples[n/4 : n/2])
			r2, f2 := mean(ser.Samples[3*n/4:])
			ser.RSSGrowthKiB = int64(r2 - r1)
			ser.FDGrowth = f2 - f1
		}
		r.Processes = append(r.Processes, ser)
	}
	return r
}
