package deploy

import (
	"auditwatch/internal/testenv"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"auditwatch/config"
	"auditwatch/internal/configcheck"
	"auditwatch/stream"
)

func repoRoot(t *testing.T) string { return testenv.RepoRoot(t) }

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// get walks maps and lists: get(v, "spec", "template", 0).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func list(v any) []any { l, _ := v.([]any); return l }

// port is the port of a host:port.
func port(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return n
}

// loadConfig checks an auditwatch config exactly as `auditwatch
// check-config` does and loads it as the stage commands do.
func loadConfig(t *testing.T, name string, body []byte) *config.Config {
	t.Helper()
	if probs := configcheck.Check(body); len(probs) > 0 {
		var lines []string
		for _, p := range probs {
			lines = append(lines, p.String())
		}
		t.Fatalf("%s: check-config reports:\n%s", name, strings.Join(lines, "\n"))
	}
	c, err := config.Parse(bytes.NewReader(body), name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// secretRefs lists the {env: X} and {file: Y} secret sources a config
// names.
func secretRefs(t *testing.T, body []byte) (envs, files []string) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[1].Kind == yaml.ScalarNode {
			switch n.Content[0].Value {
			case "env":
				envs = append(envs, n.Content[1].Value)
			case "file":
				files = append(files, n.Content[1].Value)
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&n)
	return envs, files
}

// TestManifestsParse: every YAML and JSON file under deploy/ and
// dashboards/ is well formed.
func TestManifestsParse(t *testing.T) {
	root := repoRoot(t)
	n := 0
	for _, dir := range []string{"deploy", "dashboards"} {
		base := filepath.Join(root, dir)
		if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) && dir == "dashboards" {
			t.Logf("no dashboards/ in this tree")
			continue
		}
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			switch filepath.Ext(p) {
			case ".yaml", ".yml":
				n++
				yamlDocs(t, p)
			case ".json":
				n++
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				var v any
				if err := json.Unmarshal(b, &v); err != nil {
					t.Errorf("%s: %v", rel, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 10 {
		t.Fatalf("only %d YAML/JSON files found under deploy/ and dashboards/", n)
	}
}

// shippedConfigs lists every auditwatch config file shipped under deploy/:
// the compose stage files, the files embedded in the Kubernetes
// ConfigMaps, the quickstart's config and deploy/*.example.yaml.
func shippedConfigs(t *testing.T) map[string][]byte {
	t.Helper()
	root := repoRoot(t)
	out := map[string][]byte{}
	read := func(rel string) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		out[rel] = b
	}
	for _, s := range []string{"ingest", "detect", "alert"} {
		read(filepath.Join("deploy", "compose", s+".yaml"))
	}
	read(filepath.Join("deploy", "quickstart.yaml"))
	examples, err := filepath.Glob(filepath.Join(root, "deploy", "*.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range examples {
		rel, _ := filepath.Rel(root, e)
		read(rel)
	}
	for _, d := range yamlDocs(t, filepath.Join(root, "deploy", "kubernetes", "configmaps.yaml")) {
		if str(d["kind"]) != "ConfigMap" {
			continue
		}
		data, _ := d["data"].(map[string]any)
		for k, v := range data {
			out[fmt.Sprintf("deploy/kubernetes/configmaps.yaml#%s/%s", str(get(d, "metadata", "name")), k)] = []byte(str(v))
		}
	}
	return out
}

// TestShippedConfigsPassCheckConfig: every shipped config is accepted by
// the code path of `auditwatch check-config` and of the stage commands.
func TestShippedConfigsPassCheckConfig(t *testing.T) {
	cfgs := shippedConfigs(t)
	// 3 compose files, 3 ConfigMaps, and at least the alerts example.
	if len(cfgs) < 7 {
		t.Fatalf("found only %d shipped configs: %v", len(cfgs), keys(cfgs))
	}
	// The example configs are run from the repository's root (`make demo`,
	// README): relative paths in them (rules: [rules]) are checked from there.
	t.Chdir("..")
	for name, body := range cfgs {
		t.Run(name, func(t *testing.T) { loadConfig(t, name, body) })
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// stageConfigs are the stage files of one deployment, by stage.
type stageConfigs map[string]*config.Config

// checkStagePorts: every stage serves metrics on the same port, the ingest
// stage's socket source listens on the same port everywhere, and every
// Kafka stage uses the code's default topic names (so stages configured
// separately meet on the same topics).
func checkStagePorts(t *testing.T, where string, cfgs stageConfigs) (metrics, socket int) {
	t.Helper()
	var defaults stream.Config
	defaults.SetDefaults()
	for stage, c := range cfgs {
		if c.HTTP.Listen == "" {
			t.Errorf("%s %s: http.listen is empty: no /metrics, /healthz or /readyz", where, stage)
			continue
		}
		p := port(t, c.HTTP.Listen)
		if metrics == 0 {
			metrics = p
		} else if p != metrics {
			t.Errorf("%s %s: metrics port %d, other stages %d", where, stage, p, metrics)
		}
		if c.Stream.Type != stream.TypeKafka {
			t.Errorf("%s %s: stream.type %q, the stage commands need kafka", where, stage, c.Stream.Type)
		}
		k := c.Stream.Kafka
		for _, f := range [][3]string{
			{"events_topic", k.EventsTopic, defaults.Kafka.EventsTopic},
			{"events_by_ip_topic", k.EventsByIPTopic, defaults.Kafka.EventsByIPTopic},
			{"findings_topic", k.FindingsTopic, defaults.Kafka.FindingsTopic},
			{"detect_group", k.DetectGroup, defaults.Kafka.DetectGroup},
			{"alert_group", k.AlertGroup, defaults.Kafka.AlertGroup},
			{"findings_store_group", k.FindingsStoreGroup, defaults.Kafka.FindingsStoreGroup},
		} {
			if f[1] != f[2] {
				t.Errorf("%s %s: stream.kafka.%s %q, the code's default is %q", where, stage, f[0], f[1], f[2])
			}
		}
		for _, s := range c.Sources {
			if s.Socket == nil {
				continue
			}
			if stage != "ingest" {
				t.Errorf("%s %s: a socket source outside the ingest stage", where, stage)
			}
			socket = port(t, s.Socket.Listen)
			// beyond loopback, an explicit allowlist that is not everyone
			if host, _, _ := net.SplitHostPort(s.Socket.Listen); host != "127.0.0.1" && host != "localhost" && host != "::1" {
				if len(s.Socket.Allow) == 0 {
					t.Errorf("%s %s: socket source listens on %s with no allowlist", where, stage, s.Socket.Listen)
				}
				for _, a := range s.Socket.Allow {
					if a == "0.0.0.0/0" || a == "::/0" {
						t.Errorf("%s %s: socket allowlist %s lets anyone in", where, stage, a)
					}
				}
			}
		}
	}
	if metrics == 0 || socket == 0 {
		t.Fatalf("%s: metrics port %d, socket port %d: want both set", where, metrics, socket)
	}
	return metrics, socket
}

// dockerfilePorts are the ports the image EXPOSEs.
func dockerfilePorts(t *testing.T) []int {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == "EXPOSE" {
			for _, p := range f[1:] {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					t.Fatalf("Dockerfile: EXPOSE %s: %v", p, err)
				}
				ports = append(ports, n)
			}
		}
	}
	return ports
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Count(s, "\nFROM ") < 2 {
		t.Error("Dockerfile: want a multi-stage build")
	}
	if !regexp.MustCompile(`(?m)^USER [1-9][0-9]*`).MatchString(s) {
		t.Error("Dockerfile: the runtime stage must set a numeric non-root USER")
	}
	if !strings.Contains(s, "./cmd/auditwatch") {
		t.Error("Dockerfile: does not build ./cmd/auditwatch")
	}
	if len(dockerfilePorts(t)) == 0 {
		t.Error("Dockerfile: no EXPOSE")
	}
}

// TestCompose checks compose.yaml against the stage configs it mounts and
// the code's defaults.
func TestCompose(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "deploy", "compose")
	docs := yamlDocs(t, filepath.Join(dir, "compose.yaml"))
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	c := docs[0]
	services, _ := c["services"].(map[string]any)
	image := func(name string) string { return str(get(services, name, "image")) }
	for svc, prefix := range map[string]string{
		"kafka": "apache/kafka:", "kafka-init": "apache/kafka:", "clickhouse": "clickhouse/clickhouse-server:",
		"grafana": "grafana/grafana:", "prometheus": "prom/prometheus:",
	} {
		if !strings.HasPrefix(image(svc), prefix) {
			t.Errorf("service %s: image %q, want %s<tag>", svc, image(svc), prefix)
		}
	}
	// Kafka in KRaft mode, one broker.
	kenv, _ := get(services, "kafka", "environment").(map[string]any)
	if !strings.Contains(str(kenv["KAFKA_PROCESS_ROLES"]), "controller") || kenv["KAFKA_CONTROLLER_QUORUM_VOTERS"] == nil {
		t.Errorf("kafka: not in KRaft mode: %v", kenv)
	}
	advertised := str(kenv["KAFKA_ADVERTISED_LISTENERS"])
	// Topics: the ones the code uses by default, created before the stages start.
	var defaults stream.Config
	defaults.SetDefaults()
	initCmd := fmt.Sprint(get(services, "kafka-init", "command"))
	for _, topic := range []string{defaults.Kafka.EventsTopic, defaults.Kafka.EventsByIPTopic, defaults.Kafka.FindingsTopic} {
		if !strings.Contains(initCmd, "--topic "+topic+" ") {
			t.Errorf("kafka-init does not create topic %s", topic)
		}
	}
	// Grafana: ClickHouse plugin, provisioning and dashboards from ../../dashboards.
	genv, _ := get(services, "grafana", "environment").(map[string]any)
	if !strings.Contains(str(genv["GF_INSTALL_PLUGINS"]), "grafana-clickhouse-datasource") {
		t.Error("grafana: GF_INSTALL_PLUGINS lacks grafana-clickhouse-datasource")
	}
	gvols := fmt.Sprint(get(services, "grafana", "volumes"))
	for _, want := range []string{"../../dashboards/provisioning:/etc/grafana/provisioning", "../../dashboards:/var/lib/grafana/dashboards/auditwatch"} {
		if !strings.Contains(gvols, want) {
			t.Errorf("grafana volumes %s lack %s", gvols, want)
		}
	}
	checkDashboardProvisioning(t, root)

	// The stage services: built from the root Dockerfile, one config each.
	topConfigs, _ := c["configs"].(map[string]any)
	topSecrets, _ := c["secrets"].(map[string]any)
	cfgs := stageConfigs{}
	for _, stage := range []string{"ingest", "detect", "alert"} {
		name := "auditwatch-" + stage
		svc, ok := services[name].(map[string]any)
		if !ok {
			t.Fatalf("no service %s", name)
		}
		if ctx := str(get(svc, "build", "context")); filepath.Clean(filepath.Join(dir, ctx)) != root {
			t.Errorf("%s: build context %q is not the repository root", name, ctx)
		}
		if df := str(get(svc, "build", "dockerfile")); df != "Dockerfile" {
			t.Errorf("%s: dockerfile %q", name, df)
		}
		cmd := list(svc["command"])
		if len(cmd) != 3 || str(cmd[0]) != stage || str(cmd[1]) != "--config" {
			t.Fatalf("%s: command %v, want [%s --config FILE]", name, cmd, stage)
		}
		target := str(cmd[2])
		var file string
		for _, m := range list(svc["configs"]) {
			if str(get(m, "target")) == target {
				file = str(get(topConfigs, str(get(m, "source")), "file"))
			}
		}
		if file == "" {
			t.Fatalf("%s: %s is not mounted from a compose config", name, target)
		}
		if filepath.Base(file) != stage+".yaml" {
			t.Errorf("%s: mounts %s, want %s.yaml", name, file, stage)
		}
		body, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		cfg := loadConfig(t, file, body)
		cfgs[stage] = cfg
		for _, b := range cfg.Stream.Kafka.Brokers {
			if !strings.Contains(advertised, "//"+b) {
				t.Errorf("%s: broker %s is not what kafka advertises (%s)", name, b, advertised)
			}
		}
		// Every secret file the config names is a compose secret of this service.
		envs, files := secretRefs(t, body)
		if len(envs) > 0 {
			t.Errorf("%s: secrets from env %v: compose mounts secrets as files under /run/secrets", name, envs)
		}
		mounted := map[string]bool{}
		for _, s := range list(svc["secrets"]) {
			mounted["/run/secrets/"+str(s)] = true
			if _, ok := topSecrets[str(s)]; !ok {
				t.Errorf("%s: secret %s is not declared", name, s)
			}
		}
		for _, f := range files {
			if strings.HasPrefix(f, "/run/secrets/") && !mounted[f] {
				t.Errorf("%s: config reads %s, which is not among the service's secrets", name, f)
			}
		}
	}
	metrics, socket := checkStagePorts(t, "compose", cfgs)
	// The ingest socket source allows the compose network's gateway, the
	// address the published port's connections come from.
	gateway := fmt.Sprint(get(c, "networks", "default", "ipam", "config"))
	for _, s := range cfgs["ingest"].Sources {
		if s.Socket == nil {
			continue
		}
		for _, a := range s.Socket.Allow {
			if !strings.Contains(gateway, "gateway:"+strings.TrimSuffix(a, "/32")) {
				t.Errorf("ingest socket allow %s is not the compose network's gateway (%s)", a, gateway)
			}
		}
	}
	for _, p := range []int{metrics, socket} {
		if !slices.Contains(dockerfilePorts(t), p) {
			t.Errorf("Dockerfile does not EXPOSE %d", p)
		}
	}
	for _, stage := range []string{"ingest", "detect", "alert"} {
		exp := fmt.Sprint(get(services, "auditwatch-"+stage, "expose"))
		if !strings.Contains(exp, strconv.Itoa(metrics)) {
			t.Errorf("auditwatch-%s: expose %s lacks the metrics port %d", stage, exp, metrics)
		}
	}
	published := fmt.Sprint(get(services, "auditwatch-ingest", "ports"))
	if !strings.Contains(published, fmt.Sprintf(":%d:%d", socket, socket)) {
		t.Errorf("auditwatch-ingest: ports %s do not publish the socket listener %d", published, socket)
	}
	prom, err := os.ReadFile(filepath.Join(dir, "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"ingest", "detect", "alert"} {
		if want := fmt.Sprintf("auditwatch-%s:%d", stage, metrics); !bytes.Contains(prom, []byte(want)) {
			t.Errorf("prometheus.yml does not scrape %s", want)
		}
	}
	// Secrets come from the environment, never from values in this file.
	for name, s := range topSecrets {
		if get(s, "environment") == nil && get(s, "file") == nil {
			t.Errorf("secret %s: want environment or file", name)
		}
	}
}

// checkDashboardProvisioning: the provisioned data sources include the
// ClickHouse plugin at the compose ClickHouse service, when the storage
// work's dashboards/ is present.
func checkDashboardProvisioning(t *testing.T, root string) {
	t.Helper()
	ds := filepath.Join(root, "dashboards", "provisioning", "datasources")
	files, _ := filepath.Glob(filepath.Join(ds, "*.yaml"))
	if len(files) == 0 {
		t.Logf("no dashboards/provisioning/datasources in this tree")
		return
	}
	found := false
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			for _, s := range list(d["datasources"]) {
				if str(get(s, "type")) == "grafana-clickhouse-datasource" {
					found = true
					if h := str(get(s, "jsonData", "host")); h != "clickhouse" {
						t.Errorf("%s: ClickHouse data source host %q, the compose service is clickhouse", f, h)
					}
				}
			}
		}
	}
	if !found {
		t.Errorf("%s: no grafana-clickhouse-datasource data source", ds)
	}
}
