package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/config/duration"
	"auditwatch/schema"
)

func startKafka(t *testing.T, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		notifytest.MissingPeer(t, "in-process kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func readAll(t *testing.T, brokers []string, topic string, n int) []kafkago.Message {
	t.Helper()
	var out []kafkago.Message
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for p := 0; p < 3; p++ {
		conn, err := kafkago.DialLeader(ctx, "tcp", brokers[0], topic, p)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			conn.Close()
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for off := int64(0); off < last; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("reading %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
		}
		r.Close()
		conn.Close()
	}
	if len(out) != n {
		t.Fatalf("topic %s holds %d messages, want %d", topic, len(out), n)
	}
	return out
}

func header(m kafkago.Message, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func TestKafka(t *testing.T) {
	brokers := startKafka(t, "auditwatch.findings", "auditwatch.events")
	n, err := New(Config{Brokers: brokers, Topic: "auditwatch.findings", EventsTopic: "auditwatch.events"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	a := notifytest.Alert()
	up := a
	up.Finding.ID, up.Finding.Revision, up.Update, up.Repeat = "second", 1, true, 2
	hostile := notify.Alert{Finding: notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32)}
	hostile.Finding.ID = "hostile"
	for _, x := range []notify.Alert{a, up, hostile} {
		if err := n.Notify(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.SendEvents(ctx, []schema.Event{{ID: "ev-1", Action: "vault:read"}, {ID: "ev-2", Action: "vault:list"}}); err != nil {
		t.Fatal(err)
	}
	msgs := readAll(t, brokers, "auditwatch.findings", 3)
	byID := map[string]kafkago.Message{}
	for _, m := range msgs {
		byID[header(m, "auditwatch-finding-id")] = m
	}
	first, second := byID[a.Finding.ID], byID["second"]
	if string(first.Key) != a.Finding.DedupeKey || first.Partition != second.Partition {
		t.Errorf("updates of one dedupe key must share key and partition: %q p%d vs p%d", first.Key, first.Partition, second.Partition)
	}
	if header(second, "auditwatch-revision") != "1" {
		t.Errorf("revision header = %q", header(second, "auditwatch-revision"))
	}
	var body Body
	if err := json.Unmarshal(second.Value, &body); err != nil || !body.Update || body.Repeat != 2 || body.Finding.ID != "second" {
		t.Errorf("update body = %s (%v)", second.Value, err)
	}
	h := byID[hostile.Finding.ID]
	if h.Value == nil {
		t.Fatal("hostile finding missing")
	}
	if bytes.ContainsAny(h.Value, "<>&\r\n\x00") {
		t.Error("Kafka value holds a raw <, >, &, CR, LF or NUL")
	}
	var hb Body
	if err := json.Unmarshal(h.Value, &hb); err != nil || hb.Finding.Principal != hostile.Finding.Principal {
		t.Errorf("hostile finding did not round-trip: %v", err)
	}
	evs := readAll(t, brokers, "auditwatch.events", 2)
	if header(evs[0], "auditwatch-kind") != "event" {
		t.Errorf("event headers = %v", evs[0].Headers)
	}
}

func TestGolden(t *testing.T) {
	n, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "f"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := n.Message(notifytest.Alert())
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, m.Value, "", "  ")
	notifytest.Golden(t, "finding", append(pretty.Bytes(), '\n'))
}

func TestUnreachable(t *testing.T) {
	n, _ := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "f", WriteTimeout: duration.Duration(time.Second)}, nil)
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := n.Notify(ctx, notifytest.Alert())
	if d := notify.Classify(err); err == nil || !d.Retry {
		t.Errorf("unreachable broker: %v classified %+v, want retryable", err, d)
	}
}
