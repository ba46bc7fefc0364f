package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// wantActions is the least privilege of the CloudTrail sources: read the
// trail's objects, receive/delete (and extend the visibility of, while a
// large object is read) messages of one queue, decrypt with one key, and
// LookupEvents, and ListPublicKeys for digest signatures.
var wantActions = []string{
	"cloudtrail:ListPublicKeys",
	"cloudtrail:LookupEvents",
	"kms:Decrypt",
	"s3:GetObject",
	"sqs:ChangeMessageVisibility",
	"sqs:DeleteMessage",
	"sqs:ReceiveMessage",
}

type policy struct {
	Version   string
	Statement []struct {
		Sid      string
		Effect   string
		Action   any
		Resource any
	}
}

func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			s, _ := e.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// noResourceLevel: actions that take no resource (Resource "*" only).
func noResourceLevel(acts []string) bool {
	return slices.Equal(acts, []string{"cloudtrail:LookupEvents"}) || slices.Equal(acts, []string{"cloudtrail:ListPublicKeys"})
}

func TestIAMPolicy(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "aws", "iam-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p policy
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("Version %q", p.Version)
	}
	var got []string
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Errorf("%s: Effect %q", s.Sid, s.Effect)
		}
		acts := strs(s.Action)
		got = append(got, acts...)
		res := strs(s.Resource)
		if len(res) == 0 {
			t.Errorf("%s: no Resource", s.Sid)
		}
		for _, r := range res {
			// LookupEvents and ListPublicKeys have no resource-level
			// permissions; everything else names its one bucket prefix,
			// queue or key.
			if strings.Contains(r, "*") && !(noResourceLevel(acts) && r == "*") && !strings.HasSuffix(r, "/*") {
				t.Errorf("%s: Resource %q is broader than one bucket prefix, queue or key", s.Sid, r)
			}
			if r == "*" && !noResourceLevel(acts) {
				t.Errorf("%s: Resource * for %v", s.Sid, acts)
			}
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, wantActions) {
		t.Errorf("actions %v, want exactly %v", got, wantActions)
	}
}

// TestTerraform: braces balance, the README's resources are declared, and
// its IAM policy grants the same actions as iam-policy.json.
func TestTerraform(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "aws", "terraform", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := balanced(string(b)); err != "" {
		t.Errorf("main.tf: %s", err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "deploy", "aws", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`(aws_[a-z0-9_]+)\\.([a-z0-9_]+)`").FindAllStringSubmatch(string(readme), -1)
	if len(named) < 4 {
		t.Fatalf("deploy/aws/README.md names %d resources", len(named))
	}
	for _, m := range named {
		decl := `resource "` + m[1] + `" "` + m[2] + `"`
		if !strings.Contains(string(b), decl) {
			t.Errorf("main.tf does not declare %s", decl)
		}
	}
	var got []string
	quoted := regexp.MustCompile(`"([^"]+)"`)
	for _, a := range regexp.MustCompile(`Action\s*=\s*(\[[^\]]*\]|"[^"]*")`).FindAllStringSubmatch(string(b), -1) {
		for _, m := range quoted.FindAllStringSubmatch(a[1], -1) {
			if m[1] != "sqs:SendMessage" { // the queue policy's grant to S3
				got = append(got, m[1])
			}
		}
	}
	sort.Strings(got)
	got = slices.Compact(got)
	if !slices.Equal(got, wantActions) {
		t.Errorf("main.tf actions %v, want exactly %v", got, wantActions)
	}
}

// balanced checks {}, [] and () nest properly outside strings and
// comments; it returns what is wrong, or "".
func balanced(src string) string {
	var stack []byte
	line := 1
	pairs := map[byte]byte{'}': '{', ']': '[', ')': '('}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\n':
			line++
		case c == '#' || (c == '/' && i+1 < len(src) && src[i+1] == '/'):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			line++
		case c == '"':
			for i++; i < len(src) && src[i] != '"'; i++ {
				if src[i] == '\\' {
					i++
				}
				if src[i] == '\n' {
					return "unterminated string at line " + itoa(line)
				}
			}
		case c == '{' || c == '[' || c == '(':
			stack = append(stack, c)
		case c == '}' || c == ']' || c == ')':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return "unbalanced " + string(c) + " at line " + itoa(line)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return "unclosed " + string(stack) + " at end of file"
	}
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestBalanced(t *testing.T) {
	for src, ok := range map[string]bool{
		`a { b = [1, 2] c = f(x) }`:     true,
		`a { b = "}" } # }`:             true,
		`a { b = [1, 2 }`:               false,
		`a { b = 1`:                     false,
		`a } {`:                         false,
		"a { b = \"unterminated\n }":    false,
		"a {\n  // comment with {\n}\n": true,
	} {
		if got := balanced(src) == ""; got != ok {
			t.Errorf("balanced(%q) = %q, want ok=%v", src, balanced(src), ok)
		}
	}
}
