package identity_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"auditwatch/identity"
	it "auditwatch/identity/identitytest"
	"auditwatch/schema"
)

// TestSharedLinksAcrossInstances: three linkers stand for three detect
// instances of a Kafka deployment: one gets the Vault log (the issues),
// the other two the CloudTrail uses of every other day's key (the
// principal partitioning splits them). They exchange their changes
// (TakeShared → Apply, both ways) at each "checkpoint". The week scenario
// (HMAC'd and clear keys) still yields exactly one exfiltration finding,
// naming the Vault identity, and none for the NAT uses: links, learned
// networks and resolved keys cross instances. Without the exchange the
// uses stay unlinked.
func TestSharedLinksAcrossInstances(t *testing.T) {
	fv := &it.FakeVault{}
	srv := httptest.NewServer(fv)
	defer srv.Close()
	vault, ct := it.Week(func(d int) bool { return d%2 == 0 })
	for _, share := range []bool{true, false} {
		vevs := normalize(t, "vault.log", vault)
		cevs := normalize(t, "cloudtrail.json", ct)
		dir := t.TempDir()
		var ls []*identity.Linker
		for _, name := range []string{"a", "b", "c"} {
			l := hashLinker(t, filepath.Join(dir, name), srv.URL)
			defer l.Close()
			if share {
				l.ShareChanges()
			}
			ls = append(ls, l)
		}
		exchange := func() {
			for i, from := range ls {
				for _, s := range from.TakeShared() {
					// the wire form, as the links topic carries it
					b, err := identity.MarshalShared(s)
					if err != nil {
						t.Fatal(err)
					}
					got, err := identity.UnmarshalShared(b)
					if err != nil {
						t.Fatal(err)
					}
					for j, to := range ls {
						if j != i {
							if err := to.Apply(got); err != nil {
								t.Fatal(err)
							}
						}
					}
				}
			}
		}
		ctx := context.Background()
		var fs []schema.Finding
		for i := range vevs {
			fs = ls[0].Process(ctx, &vevs[i], fs)
		}
		exchange()
		unlinked := 0
		for i := range cevs {
			ev := &cevs[i]
			day := int(ev.AccessKey[len(ev.AccessKey)-1] - '0')
			fs = ls[1+day%2].Process(ctx, ev, fs)
			if ev.KeyIssue == "" {
				unlinked++
			}
			exchange()
		}
		if !share {
			if unlinked != len(cevs) || len(fs) != 0 {
				t.Fatalf("without sharing: %d of %d uses unlinked, %d findings", unlinked, len(cevs), len(fs))
			}
			continue
		}
		if unlinked != 0 {
			t.Fatalf("%d uses unlinked", unlinked)
		}
		if len(fs) != 1 || fs[0].Detector != identity.DetectorExfiltration || fs[0].SourceIP != it.Elsewhere ||
			fs[0].Principal != it.EntityID || !strings.Contains(fs[0].Reason, "payments-api") {
			for _, f := range fs {
				t.Logf("finding %s %s: %s", f.Detector, f.SourceIP, f.Reason)
			}
			t.Fatalf("want one exfiltration finding, got %d", len(fs))
		}
		// every instance converged on the same links and networks
		for i, l := range ls {
			if n := l.Links(); n != 7 {
				t.Errorf("instance %d knows %d links, want 7", i, n)
			}
		}
		// a restart keeps what was merged (the link store)
		ls[2].Close()
		r := hashLinker(t, filepath.Join(dir, "c"), srv.URL)
		defer r.Close()
		if n := r.Links(); n != 7 {
			t.Errorf("after restart %d links", n)
		}
	}
}

// TestSharedMerge: applying changes is idempotent and keeps the earliest
// revocation and the union of networks whatever the order.
func TestSharedMerge(t *testing.T) {
	a := defaultLinker(t, nil)
	b := defaultLinker(t, nil)
	a.ShareChanges()
	b.ShareChanges()
	vault, ct := it.Week(func(int) bool { return true })
	ctx := context.Background()
	for _, ev := range normalize(t, "vault.log", vault) {
		a.Process(ctx, &ev, nil)
	}
	evs := normalize(t, "cloudtrail.json", ct)
	for i := range evs[:6] {
		b.Process(ctx, &evs[i], nil)
	}
	sa, sb := a.TakeShared(), b.TakeShared()
	if len(sa) != 7 {
		t.Fatalf("a shared %d changes, want the 7 issues", len(sa))
	}
	for range 2 { // twice: idempotent
		for _, s := range sa {
			must(t, b.Apply(s))
		}
		for _, s := range sb {
			must(t, a.Apply(s))
		}
	}
	if len(a.TakeShared())+len(b.TakeShared()) != 0 {
		t.Fatal("applied changes were shared again")
	}
	keys := func(ss []identity.Shared) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Key())
		}
		sort.Strings(out)
		return out
	}
	if k := keys(sa); len(k) != 7 || !strings.HasPrefix(k[0], "r:") {
		t.Errorf("keys %v", k)
	}
	if _, err := identity.UnmarshalShared([]byte(`{}`)); err == nil {
		t.Error("an empty change accepted")
	}
	if _, err := identity.UnmarshalShared([]byte(`{"issue":`)); err == nil {
		t.Error("a torn change accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
