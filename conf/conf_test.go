// Package conf holds the example Fluent Bit configurations. This test checks
// that every keyalert [OUTPUT] in them, classic or YAML, standalone or inside
// the Helm chart values, sets only keys of the plugin's key table with values
// the plugin accepts, and that the Kubernetes example wires the plugin image,
// volume, plugins file and Secret together; so the examples cannot drift from
// the plugin.
package conf

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/plugin/config"
	"go.yaml.in/yaml/v3"
)

// env stands in for the environment the examples read.
var env = map[string]string{
	"KEYALERT_REDIS_URL": "redis://:secret@redis.example:6379/0",
	"KEYALERT_LOG_PATH":  "/var/log/app/*.log",
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// output is one keyalert [OUTPUT]: its keys as written (any case) and values.
type output struct {
	where string
	props map[string]string
}

// section is one [NAME] of a classic configuration with its key/value lines.
type section struct {
	name  string
	props [][2]string // in order; a key may repeat (Parsers_File)
}

// parseClassic reads Fluent Bit's classic format: [SECTION] headers, then
// "Key value" lines; # comments and @ directives are skipped.
func parseClassic(t *testing.T, where, text string) []section {
	t.Helper()
	var out []section
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "@"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			out = append(out, section{name: strings.ToUpper(line[1 : len(line)-1])})
		case len(out) == 0:
			t.Errorf("%s line %d: %q outside a section", where, i+1, line)
		default:
			k, v, _ := strings.Cut(line, " ")
			out[len(out)-1].props = append(out[len(out)-1].props, [2]string{k, strings.TrimSpace(v)})
		}
	}
	return out
}

func get(s section, key string) []string {
	var out []string
	for _, p := range s.props {
		if strings.EqualFold(p[0], key) {
			out = append(out, p[1])
		}
	}
	return out
}

func classicOutputs(t *testing.T, where, text string) []output {
	var out []output
	for _, s := range parseClassic(t, where, text) {
		if s.name != "OUTPUT" || !slices.ContainsFunc(get(s, "Name"), func(n string) bool { return strings.EqualFold(n, "keyalert") }) {
			continue
		}
		o := output{where: where, props: map[string]string{}}
		for _, p := range s.props {
			o.props[p[0]] = p[1]
		}
		out = append(out, o)
	}
	return out
}

func yamlOutputs(t *testing.T, where string, doc map[string]any) []output {
	pipeline, _ := doc["pipeline"].(map[string]any)
	outs, _ := pipeline["outputs"].([]any)
	var out []output
	for _, x := range outs {
		m, _ := x.(map[string]any)
		if name, _ := m["name"].(string); !strings.EqualFold(name, "keyalert") {
			continue
		}
		o := output{where: where, props: map[string]string{}}
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				b, _ := yaml.Marshal(v)
				s = strings.TrimSpace(string(b))
			}
			o.props[k] = s
		}
		out = append(out, o)
	}
	return out
}

func readYAML(t *testing.T, p string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return doc
}

// allOutputs finds every keyalert output of the examples.
func allOutputs(t *testing.T) []output {
	t.Helper()
	var out []output
	classic, _ := filepath.Glob("*.conf")
	for _, p := range classic {
		if strings.HasPrefix(p, "redis-") {
			continue // a redis-server configuration, not Fluent Bit's
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, classicOutputs(t, p, string(b))...)
	}
	for _, p := range []string{"fluent-bit.yaml", "kubernetes/fluent-bit.yaml"} {
		out = append(out, yamlOutputs(t, p, readYAML(t, p))...)
	}
	cfg, _ := readYAML(t, "kubernetes/helm-values.yaml")["config"].(map[string]any)
	outputs, _ := cfg["outputs"].(string)
	out = append(out, classicOutputs(t, "kubernetes/helm-values.yaml config.outputs", outputs)...)
	return out
}

// TestExampleOutputsUseOnlyPluginKeys: every key of every keyalert output is
// the plugin's or Fluent Bit core's, and the plugin accepts the whole output.
func TestExampleOutputsUseOnlyPluginKeys(t *testing.T) {
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[strings.ToLower(s.Key)] = true
	}
	for _, k := range config.CoreKeys {
		known[k] = true
	}
	outs := allOutputs(t)
	if len(outs) < 5 {
		t.Fatalf("found %d keyalert outputs in the examples, want at least 5", len(outs))
	}
	for _, o := range outs {
		for k := range o.props {
			lk := strings.ToLower(k)
			core := slices.ContainsFunc(config.CorePrefixes, func(p string) bool { return strings.HasPrefix(lk, p) })
			if !known[lk] && !core {
				t.Errorf("%s: %s is not a keyalert key", o.where, k)
			}
		}
		c, err := config.Parse(func(key string) string {
			for k, v := range o.props {
				if strings.EqualFold(k, key) {
					return envRef.ReplaceAllStringFunc(v, func(ref string) string { return env[ref[2:len(ref)-1]] })
				}
			}
			return ""
		})
		if err != nil {
			t.Errorf("%s: the plugin refuses it: %v", o.where, err)
			continue
		}
		if strings.HasPrefix(o.where, "kubernetes/") {
			if got := strings.Join(c.LabelNames(), ","); got != "namespace,app,container" || c.TagLabel {
				t.Errorf("%s: labels %s, tag label %v; want namespace,app,container and off", o.where, got, c.TagLabel)
			}
		}
	}
}

// TestHelmValuesWireThePlugin: the init container copies the plugin image's
// /keyalert.so into an emptyDir the Fluent Bit container mounts; plugins.conf
// (config.extraFiles) loads it from there; the service section's
// Plugins_File names that file in the chart's ConfigMap mount; Redis_URL comes
// from a Secret.
func TestHelmValuesWireThePlugin(t *testing.T) {
	b, err := os.ReadFile("kubernetes/helm-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Kind           string `yaml:"kind"`
		InitContainers []struct {
			Name         string   `yaml:"name"`
			Image        string   `yaml:"image"`
			Command      []string `yaml:"command"`
			VolumeMounts []struct {
				Name      string `yaml:"name"`
				MountPath string `yaml:"mountPath"`
			} `yaml:"volumeMounts"`
		} `yaml:"initContainers"`
		ExtraVolumes []struct {
			Name     string    `yaml:"name"`
			EmptyDir *struct{} `yaml:"emptyDir"`
		} `yaml:"extraVolumes"`
		ExtraVolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"extraVolumeMounts"`
		Env []struct {
			Name      string `yaml:"name"`
			ValueFrom struct {
				SecretKeyRef struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Config struct {
			Service    string            `yaml:"service"`
			Inputs     string            `yaml:"inputs"`
			Filters    string            `yaml:"filters"`
			Outputs    string            `yaml:"outputs"`
			ExtraFiles map[string]string `yaml:"extraFiles"`
		} `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Kind != "DaemonSet" {
		t.Errorf("kind %q, want DaemonSet", v.Kind)
	}

	// The plugin image puts the library at /keyalert.so.
	df, err := os.ReadFile("../docker/Dockerfile.plugin")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build /out/keyalert\.so /keyalert\.so$`).Match(df) {
		t.Error("docker/Dockerfile.plugin does not put the plugin at /keyalert.so")
	}

	if len(v.InitContainers) != 1 {
		t.Fatalf("%d init containers, want 1", len(v.InitContainers))
	}
	ic := v.InitContainers[0]
	if len(ic.Command) != 3 || ic.Command[0] != "cp" || ic.Command[1] != "/keyalert.so" || len(ic.VolumeMounts) != 1 {
		t.Fatalf("init container command %q mounts %v: want cp /keyalert.so <dir>/keyalert.so and one volume", ic.Command, ic.VolumeMounts)
	}
	vol, dir := ic.VolumeMounts[0].Name, ic.VolumeMounts[0].MountPath
	if path.Dir(ic.Command[2]) != dir {
		t.Errorf("init container copies to %s, outside its volume at %s", ic.Command[2], dir)
	}
	if !slices.ContainsFunc(v.ExtraVolumes, func(x struct {
		Name     string    `yaml:"name"`
		EmptyDir *struct{} `yaml:"emptyDir"`
	}) bool {
		return x.Name == vol && x.EmptyDir != nil
	}) {
		t.Errorf("volume %s is not an emptyDir in extraVolumes", vol)
	}
	mounted := false
	for _, m := range v.ExtraVolumeMounts {
		mounted = mounted || m.Name == vol && m.MountPath == dir
	}
	if !mounted {
		t.Errorf("Fluent Bit does not mount %s at %s (extraVolumeMounts)", vol, dir)
	}

	// Plugins_File → config.extraFiles → the copied library.
	service := parseClassic(t, "config.service", v.Config.Service)
	if len(service) != 1 || service[0].name != "SERVICE" {
		t.Fatalf("config.service: %v", service)
	}
	pf := get(service[0], "Plugins_File")
	const confDir = "/fluent-bit/etc/conf" // where the chart mounts its ConfigMap
	if len(pf) != 1 || path.Dir(pf[0]) != confDir {
		t.Fatalf("Plugins_File %q: want one file in %s", pf, confDir)
	}
	plugins, ok := v.Config.ExtraFiles[path.Base(pf[0])]
	if !ok {
		t.Fatalf("Plugins_File %s is not in config.extraFiles", pf[0])
	}
	ps := parseClassic(t, "plugins.conf", plugins)
	if len(ps) != 1 || ps[0].name != "PLUGINS" || !slices.Equal(get(ps[0], "Path"), []string{ic.Command[2]}) {
		t.Errorf("plugins.conf %v does not load %s", ps, ic.Command[2])
	}

	// Redis_URL from the Secret.
	outs := classicOutputs(t, "config.outputs", v.Config.Outputs)
	if len(outs) != 1 {
		t.Fatalf("%d keyalert outputs, want 1", len(outs))
	}
	m := envRef.FindStringSubmatch(outs[0].props["Redis_URL"])
	if m == nil {
		t.Fatalf("Redis_URL %q is not from the environment", outs[0].props["Redis_URL"])
	}
	fromSecret := false
	for _, e := range v.Env {
		fromSecret = fromSecret || e.Name == m[1] && e.ValueFrom.SecretKeyRef.Name != "" && e.ValueFrom.SecretKeyRef.Key != ""
	}
	if !fromSecret {
		t.Errorf("%s is not set from a Secret (env[].valueFrom.secretKeyRef)", m[1])
	}

	// The input and filter the labels depend on.
	in := parseClassic(t, "config.inputs", v.Config.Inputs)
	fl := parseClassic(t, "config.filters", v.Config.Filters)
	if len(in) != 1 || !slices.Equal(get(in[0], "Path"), []string{"/var/log/containers/*.log"}) {
		t.Errorf("inputs: want tail on /var/log/containers/*.log: %v", in)
	}
	if len(fl) != 1 || !slices.Equal(get(fl[0], "Name"), []string{"kubernetes"}) {
		t.Errorf("filters: want the kubernetes filter: %v", fl)
	}
}
