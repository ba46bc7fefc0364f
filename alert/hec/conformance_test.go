package hec

import (
	"encoding/json"
	"testing"

	"auditwatch/alert/outputtest"
)

func TestConformance(t *testing.T) {
	outputtest.Run(t, func(t *testing.T) outputtest.Target {
		c := newCollector(false, 0)
		t.Cleanup(c.Close)
		n := newHEC(t, c.URL, func(cfg *Config) { cfg.BatchSize = 10 })
		t.Cleanup(func() { n.Close() })
		findings := func() [][]byte {
			c.mu.Lock()
			defer c.mu.Unlock()
			var out [][]byte
			for i, evs := range c.requests {
				if len(evs) == 1 {
					if e, ok := evs[0]["event"].(map[string]any); ok && e["kind"] == "finding" {
						out = append(out, c.raw[i])
					}
				}
			}
			return out
		}
		return outputtest.Target{
			Output:   n,
			Payloads: findings,
			Decode: func(b []byte) (string, int, error) {
				var v struct {
					Event struct {
						Finding struct {
							ID       string `json:"id"`
							Revision int    `json:"revision"`
						} `json:"finding"`
					} `json:"event"`
				}
				err := json.Unmarshal(b, &v)
				return v.Event.Finding.ID, v.Event.Finding.Revision, err
			},
			SetMode: func(m outputtest.Mode) {
				c.mu.Lock()
				defer c.mu.Unlock()
				c.hang = m == outputtest.Hang
				switch m {
				case outputtest.FailRetryable:
					c.fail = func(int) (int, string) { return 503, `{"text":"Server is busy","code":9}` }
				case outputtest.FailPermanent:
					c.fail = func(int) (int, string) { return 400, `{"text":"Incorrect index","code":7}` }
				default:
					c.fail = nil
				}
			},
			Secrets:    []string{token},
			SendEvents: n.SendEvents,
			Events: func() (int, int) {
				c.mu.Lock()
				defer c.mu.Unlock()
				evs, reqs := 0, 0
				for _, r := range c.requests {
					if len(r) > 0 {
						if e, ok := r[0]["event"].(map[string]any); ok && e["kind"] != "finding" {
							evs += len(r)
							reqs++
						}
					}
				}
				return evs, reqs
			},
			Batch: 10,
		}
	})
}
