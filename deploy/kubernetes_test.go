package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// k8sObjects parses every manifest of deploy/kubernetes except the
// kustomization, and checks the kustomization lists exactly those files.
func k8sObjects(t *testing.T) []map[string]any {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "kubernetes")
	kust := yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	var listed []string
	for _, r := range list(kust["resources"]) {
		listed = append(listed, str(r))
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		if !slices.Contains(listed, base) {
			t.Errorf("kustomization.yaml does not list %s", base)
		}
		objs = append(objs, yamlDocs(t, f)...)
	}
	for _, r := range listed {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("kustomization.yaml: %v", err)
		}
	}
	return objs
}

func TestKubernetes(t *testing.T) {
	objs := k8sObjects(t)
	byKind := map[string][]map[string]any{}
	for _, o := range objs {
		if str(o["apiVersion"]) == "" || str(o["kind"]) == "" || str(get(o, "metadata", "name")) == "" {
			t.Errorf("object without apiVersion, kind or name: %v", o["metadata"])
		}
		if ns := str(get(o, "metadata", "namespace")); o["kind"] != "Namespace" && ns != "auditwatch" {
			t.Errorf("%s %s: namespace %q", o["kind"], get(o, "metadata", "name"), ns)
		}
		byKind[str(o["kind"])] = append(byKind[str(o["kind"])], o)
	}
	// Secrets are created out of band (README), never committed.
	if len(byKind["Secret"]) > 0 {
		t.Error("deploy/kubernetes commits a Secret object: reference Secrets by name instead")
	}
	for _, k := range []string{"Namespace", "ConfigMap", "Deployment", "Service", "ServiceMonitor"} {
		if len(byKind[k]) == 0 {
			t.Errorf("no %s", k)
		}
	}

	configMaps := map[string]map[string]any{}
	for _, cm := range byKind["ConfigMap"] {
		configMaps[str(get(cm, "metadata", "name"))] = cm
	}
	cfgs := stageConfigs{}
	containerPorts := map[string]map[string]int{} // stage -> port name -> number
	podLabels := map[string]map[string]any{}
	for _, d := range byKind["Deployment"] {
		name := str(get(d, "metadata", "name"))
		stage := strings.TrimPrefix(name, "auditwatch-")
		pod := get(d, "spec", "template", "spec")
		podLabels[stage], _ = get(d, "spec", "template", "metadata", "labels").(map[string]any)
		if get(pod, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
		}
		containers := list(get(pod, "containers"))
		if len(containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", name, len(containers))
		}
		c := containers[0]
		args := list(get(c, "args"))
		if len(args) != 3 || str(args[0]) != stage || str(args[1]) != "--config" {
			t.Fatalf("%s: args %v, want [%s --config FILE]", name, args, stage)
		}
		if !strings.HasPrefix(str(get(c, "image")), "ghcr.io/example-org/auditwatch:") {
			t.Errorf("%s: image %v", name, get(c, "image"))
		}
		// The config file: from the ConfigMap mounted at its directory.
		cfgPath := str(args[2])
		var cmName string
		for _, m := range list(get(c, "volumeMounts")) {
			if str(get(m, "mountPath")) == filepath.Dir(cfgPath) {
				for _, v := range list(get(pod, "volumes")) {
					if get(v, "name") == get(m, "name") {
						cmName = str(get(v, "configMap", "name"))
					}
				}
			}
		}
		body := str(get(configMaps[cmName], "data", filepath.Base(cfgPath)))
		if body == "" {
			t.Fatalf("%s: %s does not come from a ConfigMap key", name, cfgPath)
		}
		cfg := loadConfig(t, "ConfigMap "+cmName, []byte(body))
		cfgs[stage] = cfg

		ports := map[string]int{}
		for _, p := range list(get(c, "ports")) {
			n, _ := get(p, "containerPort").(int)
			ports[str(get(p, "name"))] = n
		}
		containerPorts[stage] = ports
		metrics := port(t, cfg.HTTP.Listen)
		for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
			hg := get(c, probe, "httpGet")
			if hg == nil {
				t.Errorf("%s: no %s.httpGet", name, probe)
				continue
			}
			if got := str(get(hg, "path")); got != path {
				t.Errorf("%s: %s path %q, want %s", name, probe, got, path)
			}
			p := get(hg, "port")
			if s, ok := p.(string); ok {
				p = ports[s]
			}
			if p != metrics {
				t.Errorf("%s: %s port %v, want the metrics port %d (http.listen %s)", name, probe, get(hg, "port"), metrics, cfg.HTTP.Listen)
			}
		}
		for _, r := range []string{"cpu", "memory"} {
			if get(c, "resources", "requests", r) == nil {
				t.Errorf("%s: no resources.requests.%s", name, r)
			}
			if get(c, "resources", "limits", r) == nil {
				t.Errorf("%s: no resources.limits.%s", name, r)
			}
		}
		sc := get(c, "securityContext")
		if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false {
			t.Errorf("%s: container securityContext %v: want readOnlyRootFilesystem and no privilege escalation", name, sc)
		}
		// State under state.dir is a mounted volume (the root fs is read-only).
		mounted := false
		for _, m := range list(get(c, "volumeMounts")) {
			if str(get(m, "mountPath")) == cfg.State.Dir {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s: state.dir %s is not a mounted volume", name, cfg.State.Dir)
		}
		// Secrets: by name only, and every {env: X} the config reads is set.
		envs, files := secretRefs(t, []byte(body))
		if len(files) > 0 {
			t.Errorf("%s: secret files %v: the manifests provide secrets as env from Secrets", name, files)
		}
		set := map[string]bool{}
		for _, e := range list(get(c, "env")) {
			en := str(get(e, "name"))
			set[en] = true
			if get(e, "value") != nil {
				t.Errorf("%s: env %s has a literal value; reference a Secret", name, en)
			}
			ref := get(e, "valueFrom", "secretKeyRef")
			if ref == nil || str(get(ref, "name")) == "" || str(get(ref, "key")) == "" {
				t.Errorf("%s: env %s is not a secretKeyRef by name and key", name, en)
			}
		}
		for _, e := range envs {
			if !set[e] {
				t.Errorf("%s: the config reads $%s, which the Deployment does not set", name, e)
			}
		}
	}
	for _, stage := range []string{"ingest", "detect", "alert"} {
		if cfgs[stage] == nil {
			t.Fatalf("no Deployment auditwatch-%s", stage)
		}
	}
	metrics, socket := checkStagePorts(t, "kubernetes", cfgs)
	if containerPorts["ingest"]["vault-socket"] != socket {
		t.Errorf("ingest: container port vault-socket %d, socket source listens on %d", containerPorts["ingest"]["vault-socket"], socket)
	}

	services := map[string]map[string]any{}
	for _, s := range byKind["Service"] {
		services[str(get(s, "metadata", "name"))] = s
	}
	// The Vault socket listener and the metrics endpoints as Services whose
	// target ports are the ones the configs listen on.
	for svcName, want := range map[string]struct {
		port  int
		stage string
	}{"auditwatch-socket": {socket, "ingest"}, "auditwatch-metrics": {metrics, "detect"}} {
		s := services[svcName]
		if s == nil {
			t.Errorf("no Service %s", svcName)
			continue
		}
		if !selects(get(s, "spec", "selector"), podLabels[want.stage]) {
			t.Errorf("Service %s does not select the %s pods", svcName, want.stage)
		}
		ok := false
		for _, p := range list(get(s, "spec", "ports")) {
			tp := get(p, "targetPort")
			if n, isName := tp.(string); isName {
				tp = containerPorts[want.stage][n]
			}
			if tp == want.port && get(p, "port") == want.port {
				ok = true
			}
		}
		if !ok {
			t.Errorf("Service %s: no port %d to target port %d", svcName, want.port, want.port)
		}
	}
	for stage := range cfgs {
		if !selects(get(services["auditwatch-metrics"], "spec", "selector"), podLabels[stage]) {
			t.Errorf("Service auditwatch-metrics does not select the %s pods", stage)
		}
	}
	// The ServiceMonitor scrapes the metrics Service's named port.
	for _, sm := range byKind["ServiceMonitor"] {
		if str(sm["apiVersion"]) != "monitoring.coreos.com/v1" {
			t.Errorf("ServiceMonitor apiVersion %v", sm["apiVersion"])
		}
		if !selects(get(sm, "spec", "selector", "matchLabels"), get(services["auditwatch-metrics"], "metadata", "labels").(map[string]any)) {
			t.Error("the ServiceMonitor does not select Service auditwatch-metrics")
		}
		for _, e := range list(get(sm, "spec", "endpoints")) {
			if str(get(e, "port")) != "metrics" || str(get(e, "path")) != "/metrics" {
				t.Errorf("ServiceMonitor endpoint %v: want port metrics, path /metrics", e)
			}
		}
	}
	// Volumes: every PVC a Deployment claims exists.
	claims := map[string]bool{}
	for _, p := range byKind["PersistentVolumeClaim"] {
		claims[str(get(p, "metadata", "name"))] = true
	}
	for _, d := range byKind["Deployment"] {
		for _, v := range list(get(d, "spec", "template", "spec", "volumes")) {
			if c := str(get(v, "persistentVolumeClaim", "claimName")); c != "" && !claims[c] {
				t.Errorf("%s claims %s, which is not declared", get(d, "metadata", "name"), c)
			}
		}
	}
}

// selects reports whether every label of selector is set in labels.
func selects(selector any, labels map[string]any) bool {
	sel, ok := selector.(map[string]any)
	if !ok || len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if fmt.Sprint(labels[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}
