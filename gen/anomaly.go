package gen

import (
	"fmt"
	"sort"
	"time"

	"auditwatch/schema"
)

// anomalyPlanner builds the labelled anomalies. It draws from its own random
// stream, so the normal traffic does not depend on which anomalies exist.
type anomalyPlanner struct {
	g        *Generator
	r        *rng
	nextIP   int
	used     map[*principal]bool
	touched  map[string]bool // principal idx + resource pairs used by earlier anomalies
	ops      []op
	labelSeq int
}

// AnomalyDetectors are the detectors the generator plans anomalies for,
// in turn.
var AnomalyDetectors = []string{schema.DetectorUnexpectedIP, schema.DetectorFirstTimeAccess, schema.DetectorAuthFailureSpike,
	schema.DetectorPrivilegedUse, schema.DetectorAccessVolumeSpike}

var unknownUsers = []string{"admin", "root", "administrator", "deploy", "jenkins", "test", "oracle", "support"}

func (g *Generator) planAnomalies(r *rng) error {
	cfg := g.cfg
	var sources []source
	if len(g.pop.ct) > 0 {
		sources = append(sources, srcCloudTrail)
	}
	if len(g.pop.vault) > 0 {
		sources = append(sources, srcVault)
	}
	end := cfg.Start.Add(cfg.Duration)
	margin := cfg.Duration / 100
	span := end.Sub(g.learnEnd) - 2*margin
	spacing := cfg.AnomalySpacing
	if spacing == 0 {
		spacing = span / time.Duration(cfg.AnomalyCount+1)
	}
	if spacing <= 0 || time.Duration(cfg.AnomalyCount)*spacing > span {
		return fmt.Errorf("%w: generate.anomaly_spacing: %d anomalies %s apart do not fit in the %s after the learning period", ErrInvalidConfig, cfg.AnomalyCount, spacing, span)
	}
	// The longest burst lasts about one second per request; keep at least
	// twice that between anomaly starts so that no two overlap.
	burst := cfg.BruteForceAttempts
	if cfg.BulkReads+1 > burst {
		burst = cfg.BulkReads + 1
	}
	if 2*cfg.DeniedBurst > burst {
		burst = 2 * cfg.DeniedBurst
	}
	if minGap := 2 * time.Duration(burst+1) * time.Second; spacing < minGap {
		return fmt.Errorf("%w: generate.anomaly_count: %d anomalies would start only %s apart, less than %s (twice the longest burst); lower the count or lengthen the duration", ErrInvalidConfig, cfg.AnomalyCount, spacing, minGap)
	}
	if cfg.AnomalyCount > 500 {
		return fmt.Errorf("%w: generate.anomaly_count: at most 500, got %d", ErrInvalidConfig, cfg.AnomalyCount)
	}
	ap := &anomalyPlanner{g: g, r: r, used: map[*principal]bool{}, touched: map[string]bool{}}
	dets := AnomalyDetectors
	for k := 0; k < cfg.AnomalyCount; k++ {
		det := dets[k%len(dets)]
		src := sources[(k/len(dets))%len(sources)]
		variant := k / (len(dets) * len(sources))
		at := g.learnEnd.Add(margin + time.Duration(k+1)*spacing - spacing/2)
		ap.plan(det, src, variant, at)
	}
	// Secret rollouts between the anomalies: normal traffic (unlabelled)
	// that must raise nothing.
	for k := 0; k < cfg.AnomalyCount && !cfg.NoRollouts; k++ {
		ap.planRollout(sources[k%len(sources)], k, g.learnEnd.Add(margin+time.Duration(k+1)*spacing))
	}
	sort.SliceStable(ap.ops, func(i, j int) bool { return ap.ops[i].t.Before(ap.ops[j].t) })
	g.anoms = ap.ops
	sort.SliceStable(g.labels, func(i, j int) bool { return g.labels[i].Time.Before(g.labels[j].Time) })
	return nil
}

// newIP returns an address no principal of the population uses.
func (ap *anomalyPlanner) newIP(v6 bool) string {
	for {
		k := ap.nextIP
		ap.nextIP++
		var ip string
		switch {
		case v6:
			ip = fmt.Sprintf("2001:db8:bad:%x::%x", k+1, 0x10+k%200)
		case k < 250:
			ip = fmt.Sprintf("203.0.113.%d", k+1)
		default:
			ip = fmt.Sprintf("192.0.2.%d", k-250+1)
		}
		if !ap.g.pop.usedIPs[ip] {
			return ip
		}
	}
}

// pick returns a principal of src matching want, preferring ones no earlier
// anomaly used.
func (ap *anomalyPlanner) pick(src source, want func(*principal) bool) *principal {
	list := ap.g.pop.ct
	if src == srcVault {
		list = ap.g.pop.vault
	}
	var cands, fresh []*principal
	for _, p := range list {
		if want == nil || want(p) {
			cands = append(cands, p)
			if !ap.used[p] {
				fresh = append(fresh, p)
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	if len(fresh) > 0 {
		cands = fresh
	}
	p := cands[ap.r.intn(len(cands))]
	ap.used[p] = true
	return p
}

func isHuman(p *principal) bool   { return p.human }
func isMachine(p *principal) bool { return !p.human }

// unusualSecrets returns n resources pr never touches in its routine nor in
// an earlier anomaly: secret ARNs (CloudTrail) or KV paths (Vault).
func (ap *anomalyPlanner) unusualSecrets(pr *principal, n int) []string {
	usual := map[string]bool{}
	for _, it := range pr.routine {
		usual[it.res] = true
		usual[it.extra] = true
	}
	var all []string
	if pr.src == srcVault {
		for _, s := range ap.g.pop.vaultSecrets {
			all = append(all, s.path)
		}
	} else {
		for _, s := range pr.acct.secrets {
			if usual[s.name] {
				continue
			}
			all = append(all, s.arn)
		}
	}
	var cands []string
	for _, s := range all {
		if !usual[s] && !ap.touched[fmt.Sprint(pr.idx, s)] {
			cands = append(cands, s)
		}
	}
	out := pickDistinct(ap.r, cands, n, nil)
	for i := len(out) - 1; i > 0; i-- { // random order of access
		j := ap.r.intn(i + 1)
		out[i], out[j] = out[j], out[i]
	}
	for _, s := range out {
		ap.touched[fmt.Sprint(pr.idx, s)] = true
	}
	return out
}

func (ap *anomalyPlanner) usualSecret(pr *principal, i int) routineItem {
	var reads []routineItem
	for _, it := range pr.routine {
		if it.kind == ctGetSecretValue || it.kind == vRead {
			reads = append(reads, it)
		}
	}
	return reads[i%len(reads)]
}

// add records the ops of one anomaly and its label.
func (ap *anomalyPlanner) add(l Label, ops []op) {
	ap.labelSeq++
	l.ID = fmt.Sprintf("anomaly-%03d", ap.labelSeq)
	l.Time = ops[0].t
	l.EndTime = ops[len(ops)-1].t
	if l.Source == SourceCloudTrail { // eventTime has whole seconds
		l.Time, l.EndTime = l.Time.Truncate(time.Second), l.EndTime.Truncate(time.Second)
	}
	seen := map[string]bool{}
	for i := range ops {
		o := &ops[i]
		if o.p != nil && o.p.src == srcVault || o.p == nil {
			o.id = string(ap.r.appendVaultID(nil))
		} else {
			o.id = string(ap.r.appendUUID(nil))
		}
		l.EventIDs = append(l.EventIDs, o.id)
		if o.fail != failNone {
			l.Failed++
		}
		res := o.res
		if o.kind == vLoginAppRole || o.kind == vLoginUserpass || o.kind == ctConsoleLogin || o.kind == ctGetCallerIdentity {
			res = ""
		}
		if res != "" && !seen[res] {
			seen[res] = true
			l.Resources = append(l.Resources, res)
		}
	}
	if len(l.Resources) > 0 {
		l.Resource = l.Resources[0]
	}
	if l.Key == "" {
		l.Key = "principal"
	}
	ap.g.labels = append(ap.g.labels, l)
	ap.ops = append(ap.ops, ops...)
}

func principalKey(p *principal) string {
	if p.src == srcVault {
		return p.entityID
	}
	return p.arn
}

func accountOf(p *principal) string {
	if p != nil && p.acct != nil {
		return p.acct.id
	}
	return ""
}

func (ap *anomalyPlanner) plan(det string, src source, variant int, at time.Time) {
	r := ap.r
	sec := func(i int) time.Duration {
		return time.Duration(i)*time.Second + time.Duration(r.intn(900))*time.Millisecond
	}
	switch det {
	case schema.DetectorUnexpectedIP:
		want := isMachine
		if variant%2 == 1 {
			want = isHuman
		}
		pr := ap.pick(src, want)
		if pr == nil {
			pr = ap.pick(src, nil)
		}
		ip := ap.newIP(variant%2 == 1) // humans come back over IPv6
		var ops []op
		if src == srcCloudTrail {
			if pr.human {
				ops = append(ops, op{t: at, p: pr, kind: ctConsoleLogin, ip: ip})
			} else {
				ops = append(ops, op{t: at, p: pr, kind: ctGetCallerIdentity, ip: ip})
			}
			for i := 0; i < 2; i++ {
				it := ap.usualSecret(pr, i)
				ops = append(ops, op{t: at.Add(sec(2 + 3*i)), p: pr, kind: ctGetSecretValue, res: it.res, ip: ip})
			}
		} else {
			k := vLoginAppRole
			if pr.human {
				k = vLoginUserpass
			}
			ops = append(ops, op{t: at, p: pr, kind: k, ip: ip})
			for i := 0; i < 2; i++ {
				it := ap.usualSecret(pr, i)
				ops = append(ops, op{t: at.Add(sec(2 + 3*i)), p: pr, kind: vRead, res: it.res, ip: ip})
			}
		}
		ap.add(Label{Detector: det, Kind: "new_ip", Source: src.String(), Principal: principalKey(pr), PrincipalName: pr.name, Account: accountOf(pr), SourceIP: ip,
			Description: fmt.Sprintf("%s logs in and reads its usual secrets from %s, an address outside its usual networks", pr.name, ip)}, ops)

	case schema.DetectorFirstTimeAccess:
		pr := ap.pick(src, isMachine)
		if pr == nil {
			pr = ap.pick(src, nil)
		}
		ip := pr.ips[0]
		res := ap.unusualSecrets(pr, 2)
		if src == srcVault && variant%2 == 1 && len(res) == 2 {
			// Dynamic credentials of another team's database.
			other := teams[(indexOf(teams, pr.team)+1+ap.r.intn(len(teams)-1))%len(teams)]
			res[1] = "database/creds/" + other + "-ro"
		}
		var ops []op
		for i, s := range res {
			k := ctGetSecretValue
			if src == srcVault {
				k = vRead
			}
			ops = append(ops, op{t: at.Add(sec(3 * i)), p: pr, kind: k, res: s, ip: ip})
		}
		ap.add(Label{Detector: det, Kind: "first_time_read", Source: src.String(), Principal: principalKey(pr), PrincipalName: pr.name, Account: accountOf(pr), SourceIP: ip,
			Description: fmt.Sprintf("%s reads %d secrets it has never read, from its usual address", pr.name, len(res))}, ops)

	case schema.DetectorAuthFailureSpike:
		if variant%2 == 0 {
			ap.planBruteForce(src, at)
			return
		}
		pr := ap.pick(src, isMachine)
		if pr == nil {
			pr = ap.pick(src, nil)
		}
		ip := pr.ips[0]
		res := ap.unusualSecrets(pr, ap.g.cfg.DeniedBurst)
		var ops []op
		for i := 0; i < ap.g.cfg.DeniedBurst; i++ {
			k := ctGetSecretValue
			if src == srcVault {
				k = vRead
			}
			ops = append(ops, op{t: at.Add(sec(2 * i)), p: pr, kind: k, res: res[i%len(res)], ip: ip, fail: failDenied})
		}
		ap.add(Label{Detector: det, Kind: "denied_burst", Source: src.String(), Principal: principalKey(pr), PrincipalName: pr.name, Account: accountOf(pr), SourceIP: ip,
			AlsoMatches: []string{schema.DetectorFirstTimeAccess, schema.DetectorAccessVolumeSpike},
			Description: fmt.Sprintf("%s makes %d calls refused by policy on secrets outside its routine", pr.name, len(ops))}, ops)

	case schema.DetectorPrivilegedUse:
		ap.planPrivileged(src, variant, at, sec)

	case schema.DetectorAccessVolumeSpike:
		want := isHuman
		if variant%2 == 1 {
			want = isMachine
		}
		pr := ap.pick(src, want)
		if pr == nil {
			pr = ap.pick(src, nil)
		}
		ip := pr.ips[0]
		res := ap.unusualSecrets(pr, ap.g.cfg.BulkReads)
		var ops []op
		if src == srcVault {
			ops = append(ops, op{t: at, p: pr, kind: vList, res: "secret/metadata/", ip: ip})
		} else {
			ops = append(ops, op{t: at, p: pr, kind: ctListSecrets, ip: ip})
		}
		for i, s := range res {
			k := ctGetSecretValue
			if src == srcVault {
				k = vRead
			}
			ops = append(ops, op{t: at.Add(sec(1 + i)), p: pr, kind: k, res: s, ip: ip})
		}
		ap.add(Label{Detector: det, Kind: "bulk_read", Source: src.String(), Principal: principalKey(pr), PrincipalName: pr.name, Account: accountOf(pr), SourceIP: ip,
			AlsoMatches: []string{schema.DetectorFirstTimeAccess},
			Description: fmt.Sprintf("%s lists the secrets and reads %d different ones within about %d s", pr.name, len(res), len(res)+1)}, ops)
	}
}

func (ap *anomalyPlanner) planBruteForce(src source, at time.Time) {
	r := ap.r
	ip := ap.newIP(false)
	list := ap.g.pop.ct
	if src == srcVault {
		list = ap.g.pop.vault
	}
	anchor := list[r.intn(len(list))]
	var humans []*principal
	for _, p := range list {
		if p.human && (src == srcVault || p.acct == anchor.acct) {
			humans = append(humans, p)
		}
	}
	humans = pickDistinct(r, humans, 3, nil)
	names := pickDistinct(r, unknownUsers, 4, nil)
	var ops []op
	var principals, users []string
	seenP, seenU := map[string]bool{}, map[string]bool{}
	n := ap.g.cfg.BruteForceAttempts
	probes := 0
	if src == srcVault {
		probes = n / 5
	}
	for i := 0; i < n; i++ {
		t := at.Add(time.Duration(i)*time.Second + time.Duration(r.intn(700))*time.Millisecond)
		slot := i % (len(humans) + len(names))
		o := op{t: t, ip: ip}
		if slot < len(humans) {
			o.p = humans[slot]
			o.fail = failCredentials
			o.user = humans[slot].login
			if key := principalKey(humans[slot]); !seenP[key] {
				seenP[key] = true
				principals = append(principals, key)
			}
		} else {
			o.fail = failUnknownUser
			o.user = names[slot-len(humans)]
			if src == srcCloudTrail {
				o.p = anchor
			}
		}
		if src == srcCloudTrail {
			o.kind = ctConsoleLogin
		} else {
			o.kind = vLoginUserpass
		}
		if src == srcVault && i >= n-probes {
			// then probes secrets with made-up tokens
			vs := ap.g.pop.vaultSecrets
			ops = append(ops, op{t: t, ip: ip, kind: vRead, res: vs[r.intn(len(vs))].path, fail: failInvalidToken})
			continue
		}
		shown := o.user
		if src == srcCloudTrail && o.fail == failUnknownUser {
			shown = "HIDDEN_DUE_TO_SECURITY_REASONS"
		}
		if !seenU[shown] {
			seenU[shown] = true
			users = append(users, shown)
		}
		ops = append(ops, o)
	}
	ap.add(Label{Detector: schema.DetectorAuthFailureSpike, Kind: "brute_force", Source: src.String(), Key: "source_ip", Principals: principals, Users: users, Account: accountOf(anchor), SourceIP: ip,
		AlsoMatches: []string{schema.DetectorUnexpectedIP},
		Description: fmt.Sprintf("%d failed logins from %s in about %d s, cycling over %d existing and %d unknown users, then %d reads with made-up tokens", n-probes, ip, n, len(humans), len(names), probes)}, ops)
}

func (ap *anomalyPlanner) planPrivileged(src source, variant int, at time.Time, sec func(int) time.Duration) {
	det := schema.DetectorPrivilegedUse
	if src == srcCloudTrail {
		switch variant % 3 {
		case 0: // root account console login
			anchor := ap.pick(src, nil)
			ip := ap.newIP(false)
			acct := anchor.acct.id
			ops := []op{{t: at, p: anchor, kind: ctConsoleLogin, ip: ip, root: true}}
			ap.add(Label{Detector: det, Kind: "root_console_login", Source: src.String(), Principal: "arn:aws:iam::" + acct + ":root", PrincipalName: "root", Account: acct, SourceIP: ip,
				AlsoMatches: []string{schema.DetectorUnexpectedIP},
				Description: fmt.Sprintf("the root user of account %s signs in to the console from %s", acct, ip)}, ops)
		default: // audit tampering by a human from a usual address
			pr := ap.pick(src, isHuman)
			if pr == nil {
				pr = ap.pick(src, nil)
			}
			kind, name := ctStopLogging, "stop_logging"
			if variant%3 == 2 {
				kind, name = ctDeleteTrail, "delete_trail"
			}
			ops := []op{{t: at, p: pr, kind: kind, res: pr.acct.trail, ip: pr.ips[0]}}
			ap.add(Label{Detector: det, Kind: name, Source: src.String(), Principal: principalKey(pr), PrincipalName: pr.name, Account: accountOf(pr), SourceIP: pr.ips[0],
				Description: fmt.Sprintf("%s calls %s on the account's trail", pr.name, map[opKind]string{ctStopLogging: "StopLogging", ctDeleteTrail: "DeleteTrail"}[kind])}, ops)
		}
		return
	}
	if variant%2 == 0 { // root token use
		ip := ap.newIP(false)
		paths := []string{"sys/auth", "secret/data/" + ap.g.pop.vaultSecrets[ap.r.intn(len(ap.g.pop.vaultSecrets))].path[len("secret/data/"):]}
		var ops []op
		for i, pth := range paths {
			ops = append(ops, op{t: at.Add(sec(3 * i)), kind: vRead, res: pth, ip: ip, root: true})
		}
		ap.add(Label{Detector: det, Kind: "root_token", Source: src.String(), Principal: "root", PrincipalName: "root", SourceIP: ip,
			AlsoMatches: []string{schema.DetectorUnexpectedIP, schema.DetectorFirstTimeAccess},
			Description: fmt.Sprintf("the initial root token is used from %s", ip)}, ops)
		return
	}
	pr := ap.pick(src, isHuman)
	if pr == nil {
		pr = ap.pick(src, nil)
	}
	ops := []op{{t: at, p: pr, kind: vAuditDisable, res: "sys/audit/file", ip: pr.ips[0]}}
	ap.add(Label{Detector: det, Kind: "audit_disable", Source: src.String(), Principal: principalKey(pr), PrincipalName: pr.name, SourceIP: pr.ips[0],
		Description: fmt.Sprintf("%s disables the file audit device", pr.name)}, ops)
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return 0
}

// planRollout writes a secret's new value (AWS) or a new secret (Vault)
// and has two principals that never read it before start reading it within
// minutes, then again later: a deployment, not an anomaly.
func (ap *anomalyPlanner) planRollout(src source, k int, at time.Time) {
	r := ap.r
	list := ap.g.pop.ct
	if src == srcVault {
		list = ap.g.pop.vault
	}
	var machines []*principal
	for _, p := range list {
		if !p.human && !ap.used[p] {
			machines = append(machines, p)
		}
	}
	if len(machines) < 3 {
		return
	}
	writer := machines[r.intn(len(machines))]
	var readers []*principal
	for _, p := range machines {
		if p != writer && (src == srcVault || p.acct == writer.acct) {
			readers = append(readers, p)
		}
	}
	if len(readers) < 2 {
		return
	}
	r1 := readers[r.intn(len(readers))]
	r2 := readers[r.intn(len(readers))]
	var secret string
	readKind, writeKind := ctGetSecretValue, ctPutSecretValue
	if src == srcVault {
		secret = fmt.Sprintf("secret/data/%s/release-%d", r1.team, k)
		readKind, writeKind = vRead, vWrite
	} else {
		cands := ap.unusualSecrets(r1, 1)
		if len(cands) == 0 {
			return
		}
		secret = cands[0]
	}
	sec := func(s int) time.Duration {
		return time.Duration(s)*time.Second + time.Duration(r.intn(900))*time.Millisecond
	}
	ap.ops = append(ap.ops, op{t: at, p: writer, kind: writeKind, res: secret, ip: writer.ips[0]})
	for i, rd := range []*principal{r1, r2} {
		for _, d := range []int{40 + 60*i, 150 + 90*i, 1500 + 600*i} { // two reads within minutes, one later
			ap.ops = append(ap.ops, op{t: at.Add(sec(d)), p: rd, kind: readKind, res: secret, ip: rd.ips[0]})
		}
	}
}
