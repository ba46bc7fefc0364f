// Package kafkatest owns the in-process Kafka cluster (franz-go's kfake)
// that tests and benchmarks run the Kafka stream against, on loopback.
package kafkatest

import (
	"net"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// NewCluster starts a one-broker kfake cluster on 127.0.0.1 with the given
// topics, each with partitions partitions, and returns its addresses. The
// cluster stops when the test ends. kfake is a Go library, so it is always
// present; a failure to start still follows the project's integration rule
// (fatal when AUDITWATCH_REQUIRE_INTEGRATION is set, else a skip).
func NewCluster(t testing.TB, partitions int32, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
	if err != nil {
		if os.Getenv("AUDITWATCH_REQUIRE_INTEGRATION") != "" {
			t.Fatalf("kfake cluster: %v", err)
		}
		t.Skipf("kfake cluster could not start: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}
