// Package docker holds the container images and compose file. There is no
// Docker engine on the build machines, so this test checks what can be checked
// without one: the compose file parses, every service is complete, and every
// file the Dockerfiles and the compose file refer to exists.
package docker

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type compose struct {
	Name     string             `yaml:"name"`
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image      string   `yaml:"image"`
	Command    []string `yaml:"command"`
	Entrypoint []string `yaml:"entrypoint"`
	User       string   `yaml:"user"`
	Ports      []string `yaml:"ports"`
	Build      *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
}

func load(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a misspelt key is an error, as in `docker compose config`
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c
}

func TestComposeFileHasTheWholePipeline(t *testing.T) {
	c := load(t)
	for _, want := range []string{"redis", "keyalertd", "fluent-bit", "loggen", "pdreceiver"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("service %q missing", want)
		}
	}
	for name, s := range c.Services {
		if (s.Image == "") == (s.Build == nil) {
			t.Errorf("service %s: want exactly one of image or build", name)
		}
		if s.Build != nil {
			df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("service %s: dockerfile %s: %v", name, df, err)
			}
		}
		for dep, d := range s.DependsOn {
			dsvc, ok := c.Services[dep]
			if !ok {
				t.Errorf("service %s depends on unknown service %q", name, dep)
			}
			if d.Condition == "service_healthy" && dsvc.Healthcheck == nil {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s uses undeclared volume %q", name, src)
				}
			}
		}
	}
	kd := c.Services["keyalertd"]
	for _, k := range []string{"KEYALERT_REDIS_URL", "KEYALERT_API_TOKENS", "KEYALERT_PAGERDUTY_URL", "KEYALERT_LISTEN"} {
		if kd.Environment[k] == "" {
			t.Errorf("keyalertd: %s not set", k)
		}
	}
}

var copyRE = regexp.MustCompile(`(?m)^COPY\s+(?:--\S+\s+)*(.+)$`)

func TestDockerfilesCopyFilesThatExist(t *testing.T) {
	for _, df := range []string{"Dockerfile.fluent-bit", "Dockerfile.keyalertd", "Dockerfile.plugin"} {
		b, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range copyRE.FindAllStringSubmatch(string(b), -1) {
			if strings.Contains(m[0], "--from=") {
				continue
			}
			args := strings.Fields(m[1])
			for _, src := range args[:len(args)-1] {
				if src == "." {
					continue
				}
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s: COPY source %s: %v", df, src, err)
				}
			}
		}
		// The Go packages the images build must exist in the module.
		for _, m := range regexp.MustCompile(`\./(plugin|cmd/[a-z-]+)\b`).FindAllStringSubmatch(string(b), -1) {
			if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
				t.Errorf("%s builds ./%s: %v", df, m[1], err)
			}
		}
	}
}

// TestPluginImageHoldsOnlyThePlugin: the init-container image is the plugin
// at /keyalert.so on a base with cp and nothing else copied in, built like
// Dockerfile.fluent-bit's plugin (same Go base, so the same glibc), and its
// default command copies the plugin where conf/kubernetes/helm-values.yaml
// expects it.
func TestPluginImageHoldsOnlyThePlugin(t *testing.T) {
	b, err := os.ReadFile("Dockerfile.plugin")
	if err != nil {
		t.Fatal(err)
	}
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(b), -1)
	if len(stages) != 2 || !strings.HasPrefix(stages[0][1], "golang:") || !strings.HasPrefix(stages[1][1], "busybox:") {
		t.Fatalf("stages %v: want a golang build stage and a busybox final stage", stages)
	}
	final := string(b)[strings.LastIndex(string(b), "\nFROM "):]
	copies := copyRE.FindAllString(final, -1)
	if len(copies) != 1 || copies[0] != "COPY --from=build /out/keyalert.so /keyalert.so" {
		t.Errorf("final stage copies %q, want only the plugin to /keyalert.so", copies)
	}
	fb, err := os.ReadFile("Dockerfile.fluent-bit")
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`(?m)^RUN CGO_ENABLED=1 go build -buildmode=c-shared .*\./plugin$`)
	if a, f := build.FindString(string(b)), build.FindString(string(fb)); a == "" || a != f {
		t.Errorf("plugin build %q differs from Dockerfile.fluent-bit's %q", a, f)
	}
	if !strings.Contains(final, `CMD ["cp", "/keyalert.so", "/fluent-bit/keyalert/keyalert.so"]`) {
		t.Error("default command does not copy the plugin to /fluent-bit/keyalert (conf/kubernetes)")
	}
}
