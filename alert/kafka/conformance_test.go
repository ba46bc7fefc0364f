package kafka

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"auditwatch/alert/notify/notifytest"
	"auditwatch/alert/outputtest"
	"auditwatch/config/duration"
)

// kafkaPeer is an in-process kfake cluster whose Produce handling the
// suite switches: normal, a retriable broker error (NOT_ENOUGH_REPLICAS),
// a permanent one (TOPIC_AUTHORIZATION_FAILED), or no answer at all.
type kafkaPeer struct {
	c       *kfake.Cluster
	brokers []string
	mu      sync.Mutex
	mode    outputtest.Mode
}

func newKafkaPeer(t *testing.T, topics ...string) *kafkaPeer {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		notifytest.MissingPeer(t, "in-process kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	p := &kafkaPeer{c: c, brokers: c.ListenAddrs()}
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		var code int16
		switch mode {
		case outputtest.Accept:
			return nil, nil, false // handled by the cluster as usual
		case outputtest.Hang:
			c.KeepControl()
			return nil, nil, true // no answer
		case outputtest.FailRetryable:
			code = 19 // NOT_ENOUGH_REPLICAS
		case outputtest.FailPermanent:
			code = 29 // TOPIC_AUTHORIZATION_FAILED
		}
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return p
}

// values returns the values of every message on topic (one partition).
func (p *kafkaPeer) values(t *testing.T, topic string) [][]byte {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafkago.DialLeader(ctx, "tcp", p.brokers[0], topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	last, err := conn.ReadLastOffset()
	if err != nil || last == 0 {
		return nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: p.brokers, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	var out [][]byte
	for off := int64(0); off < last; off++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		out = append(out, m.Value)
	}
	return out
}

func TestConformance(t *testing.T) {
	outputtest.Run(t, func(t *testing.T) outputtest.Target {
		p := newKafkaPeer(t, "f", "e")
		n, err := New(Config{Brokers: p.brokers, Topic: "f", EventsTopic: "e", BatchTimeout: duration.Duration(time.Millisecond),
			// kafka-go bounds an in-flight write by write_timeout, not by
			// the context: a hung broker holds an attempt this long.
			WriteTimeout: duration.Duration(2 * time.Second)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return outputtest.Target{
			Output:   n,
			Payloads: func() [][]byte { return p.values(t, "f") },
			Decode: func(b []byte) (string, int, error) {
				var v Body
				err := json.Unmarshal(b, &v)
				return v.Finding.ID, v.Finding.Revision, err
			},
			SetMode: func(m outputtest.Mode) {
				p.mu.Lock()
				p.mode = m
				p.mu.Unlock()
			},
			SendEvents: n.SendEvents,
			Events:     func() (int, int) { return len(p.values(t, "e")), 1 },
		}
	})
}
