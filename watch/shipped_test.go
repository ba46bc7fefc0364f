package watch_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/watch"
)

// TestShippedCanaryAndSilenceConfigs: the `canary:` examples deploy/vault
// and deploy/aws document decode and validate as shipped, with the
// documented deadlines; silence's defaults are the documented ones
// (10x the usual gap, at least 5 minutes, after an hour of learning).
func TestShippedCanaryAndSilenceConfigs(t *testing.T) {
	block := regexp.MustCompile("(?s)```yaml\n(canary:.*?)```")
	want := map[string]func(c watch.CanaryConfig) bool{
		"vault": func(c watch.CanaryConfig) bool {
			return c.Vault != nil && c.Vault.Deadline.D() == 2*time.Minute && c.Interval.D() == time.Minute && !c.HeartbeatURL.IsZero()
		},
		"aws": func(c watch.CanaryConfig) bool {
			return c.AWS != nil && c.AWS.Deadline.D() == 25*time.Minute && c.AWS.SecretID == "auditwatch-canary"
		},
	}
	for dir, ok := range want {
		b, err := os.ReadFile(filepath.Join("..", "deploy", dir, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		ms := block.FindAllSubmatch(b, -1)
		if len(ms) == 0 {
			t.Fatalf("deploy/%s/README.md: no canary example", dir)
		}
		for _, m := range ms {
			var root struct {
				Canary yaml.Node `yaml:"canary"`
			}
			if err := yaml.Unmarshal(m[1], &root); err != nil {
				t.Fatalf("deploy/%s/README.md: %v\n%s", dir, err, m[1])
			}
			c, err := watch.DecodeCanary(&root.Canary)
			if err != nil {
				t.Fatalf("deploy/%s/README.md: canary example does not validate: %v", dir, err)
			}
			if !c.Active() || !ok(c) || c.CheckInterval.D() != 5*time.Second {
				t.Errorf("deploy/%s/README.md: canary example %+v", dir, c)
			}
		}
	}
	s, err := watch.DecodeSilence(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !*s.Enabled || s.Factor != 10 || s.MinQuiet.D() != 5*time.Minute || s.LearningPeriod.D() != time.Hour || s.CheckInterval.D() != 5*time.Second {
		t.Fatalf("silence defaults %+v", s)
	}
}
