package stream

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// A consumer group whose coordinator holds a request (as a broker holds
// JoinGroup during a rebalance) still stops promptly when its context
// ends: the group's connections are cut after the grace instead of
// waiting for the request's own timeout (5 s here; the rebalance timeout
// in a real rebalance). The broker here accepts connections and never
// answers.
func TestConsumeStopsWhileTheCoordinatorHoldsARequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	old := closeGrace
	closeGrace = 200 * time.Millisecond
	defer func() { closeGrace = old }()

	cfg := Config{Type: "kafka", Kafka: KafkaConfig{Brokers: []string{ln.Addr().String()}, ClientID: "test"}}
	cfg.SetDefaults()
	k, err := NewKafka(cfg.Kafka, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Consume(ctx, "events", "g", nopHandler{}) }()
	// let the group's loop reach the coordinator request
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(held)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	stopped := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume: %v", err)
		}
		if d := time.Since(stopped); d > 3*time.Second {
			t.Errorf("Consume returned %v after its context ended, want about the %v grace", d, closeGrace)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Consume did not return 30 s after its context ended")
	}
}

type nopHandler struct{}

func (nopHandler) Assigned(context.Context, Assignment) (map[int]int64, error) { return nil, nil }
func (nopHandler) Handle(context.Context, int, []Record) error                 { return nil }
func (nopHandler) Revoked(context.Context, []int) error                        { return nil }
