package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// stageSpec is one stage command run in process: its name, its entry
// point (runIngest, runDetect, runAlert) and its config file.
type stageSpec struct {
	name string
	fn   func(context.Context, []string, io.Reader, io.Writer, io.Writer) int
	cfg  string
}

// stageResult is how a stage ended and what it logged.
type stageResult struct {
	name string
	code int
	log  string
}

// stageRun is a set of stages running until Stop.
type stageRun struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	results chan stageResult
	once    sync.Once
	out     []stageResult
}

// startStages runs each spec on its own goroutine until ctx ends or Stop
// (which calls cancel) is called.
func startStages(ctx context.Context, cancel context.CancelFunc, specs ...stageSpec) *stageRun {
	r := &stageRun{cancel: cancel, results: make(chan stageResult, len(specs))}
	for _, st := range specs {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			var errb lockedWriter
			errb.w = &bytes.Buffer{}
			code := st.fn(ctx, []string{"--config", st.cfg}, nil, io.Discard, &errb)
			errb.mu.Lock()
			r.results <- stageResult{st.name, code, errb.w.String()}
			errb.mu.Unlock()
		}()
	}
	return r
}

// Stop cancels the stages, waits for them and returns how each ended (the
// same results on every call).
func (r *stageRun) Stop() []stageResult {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
		close(r.results)
		for res := range r.results {
			r.out = append(r.out, res)
		}
	})
	return r.out
}

// kafkaStreamYAML is the stream: section of the Kafka stage tests: the
// in-process broker, the test topics (events, events-by-ip, findings),
// 5 ms producer batches and the given commit interval; extra lines (other
// stream.kafka keys, e.g. "links_topic: links") follow.
func kafkaStreamYAML(broker, commitInterval string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `stream:
  type: kafka
  kafka:
    brokers: [%q]
    events_topic: events
    events_by_ip_topic: events-by-ip
    findings_topic: findings
    batch_timeout: 5ms
    commit_interval: %s
`, broker, commitInterval)
	for _, l := range extra {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	return b.String()
}
