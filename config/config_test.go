package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadFull(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sources) != 5 {
		t.Fatalf("sources = %d, want 5", len(c.Sources))
	}
	if got := c.Sources[0].FileTail.PollInterval.D(); got != 250*time.Millisecond {
		t.Errorf("filetail poll_interval default = %v", got)
	}
	if got := c.Sources[1].Socket.SpoolDir; got != "/var/lib/auditwatch/spool/vault-socket" {
		t.Errorf("socket spool_dir default = %q", got)
	}
	if got := c.Sources[4].Lookup.Rate; got != 1.5 {
		t.Errorf("lookup rate = %v", got)
	}
	if c.Stream.Kafka.EventsTopic != "auditwatch.events" || c.Stream.Kafka.SASL.Password.Env != "KAFKA_PASSWORD" {
		t.Errorf("kafka = %+v", c.Stream.Kafka)
	}
	if c.State.CheckpointInterval.D() != 2*time.Second || c.ShutdownTimeout.D() != 20*time.Second {
		t.Errorf("state = %+v shutdown = %v", c.State, c.ShutdownTimeout)
	}
}

func TestEmptyConfigDefaults(t *testing.T) {
	c, err := Parse(strings.NewReader(""), "empty")
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream.Type != "embedded" || c.Stream.Embedded.QueueSize <= 0 || c.Logging.Level != "info" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	// One stored block per checkpoint: 3 s keeps the embedded store's
	// blocks large enough (docs/PERFORMANCE.md, Storage).
	if c.State.CheckpointInterval.D() != 3*time.Second || c.State.CheckpointEvents != 20000 {
		t.Errorf("state defaults = %+v", c.State)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every one must appear
	}{
		{"unknown root key", "sourcez: []\n", []string{"field sourcez not found"}},
		{"unknown nested key", "sources:\n - name: a\n   type: dir\n   dir: {path: /x, bogus: 1}\n", []string{"field bogus not found"}},
		{"every bad field reported", `
sources:
  - name: a
    type: filetail
    filetail: {path: "", start_at: middle}
  - name: a
    type: socket
    socket: {listen: nope}
    dir: {path: /x}
  - type: ftp
stream: {type: kafka}
state: {checkpoint_events: -1}
http: {listen: "9464"}
logging: {level: loud, format: xml}
`, []string{
			"sources[0].filetail.path: required",
			`sources[0].filetail.start_at: must be "beginning" or "end"`,
			`sources[1].name: "a" already names sources[0]`,
			"sources[1].socket.listen: want host:port",
			`sources[1].dir: section not allowed for type "socket"`,
			"sources[2].name: required",
			`sources[2].type: want dir, filetail, socket, s3sqs or lookup, got "ftp"`,
			"stream.kafka.brokers: at least one required",
			"state.checkpoint_events: must be positive",
			`http.listen: want host:port, got "9464"`,
			"logging.level:",
			"logging.format: want json or text",
		}},
		{"aws credentials half set", `
sources:
  - name: l
    type: lookup
    lookup: {rate: 5, lookback: 2400h, aws: {access_key_id: {env: A}}}
`, []string{
			"sources[0].lookup.aws.region: required",
			"sources[0].lookup.aws.access_key_id, secret_access_key: set both or neither",
			"sources[0].lookup.rate: must be within (0, 2]",
			"sources[0].lookup.lookback: must be within (0, 90 days]",
		}},
		{"secret with both sources", `
stream:
  type: kafka
  kafka: {brokers: ["127.0.0.1:9092"], sasl: {mechanism: plain, username: u, password: {env: A, file: /b}}}
`, []string{"stream.kafka.sasl.password: set either env or file, not both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml), "test.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if !strings.Contains(err.Error(), "test.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func TestValidationErrorIsInvalid(t *testing.T) {
	_, err := Parse(strings.NewReader("logging: {level: loud}\n"), "x")
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeSectionStrict(t *testing.T) {
	c, err := Parse(strings.NewReader("detectors:\n  a: 1\n  b: x\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		A int `yaml:"a"`
	}
	if err := DecodeSection(c.Detectors, "detectors", &v); err == nil || !strings.Contains(err.Error(), "field b not found") {
		t.Fatalf("err = %v", err)
	}
}
