package alert

import "auditwatch/schema"

// route returns the distinct outputs f goes to, in route order: the
// outputs of the first matching route (and of later ones while a matching
// route sets continue), else the default outputs.
func (c *Config) route(f schema.Finding) []string {
	var names []string
	seen := map[string]bool{}
	add := func(ns []string) {
		for _, n := range ns {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	matched := false
	for _, rt := range c.Routes {
		if !rt.Match.matches(f) {
			continue
		}
		matched = true
		add(rt.Outputs)
		if !rt.Continue {
			break
		}
	}
	if !matched {
		add(c.DefaultOutputs)
	}
	return names
}
