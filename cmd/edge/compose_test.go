package main_test

import (
	"cmp"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// envNames collects the environment variable names a component reads:
// `env:"NAME"` tags in Go files, or $NAME references in nats.conf.
func envNames(t *testing.T, pattern string, files ...string) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(pattern)
	names := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
	}
	return names
}

// envDefault is the envDefault of variable name in a Go file.
func envDefault(t *testing.T, name, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`env:"` + name + `" envDefault:"([^"]*)"`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no default for %s", file, name)
	}
	return string(m[1])
}

// docker-compose.yml cannot be run here (no Docker engine); this keeps it
// correct by construction: every service, entry point, port and variable
// it names exists in the code and the Dockerfile.
func TestComposeFileMatchesTheCode(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			StopGrace   string            `yaml:"stop_grace_period"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	goTags := `env:"([A-Z0-9_]+)"`
	edgeVars := envNames(t, goTags, "run.go", "../../edge/config.go", "../../internal/agentcfg/agentcfg.go")
	workerVars := envNames(t, goTags, "../toolworker/main.go", "../../internal/agentcfg/agentcfg.go")
	natsVars := envNames(t, `\$(NATS_[A-Z0-9_]+)`, "../../nats.conf")
	shutdownDefault := map[string]string{
		"edge":       envDefault(t, "SHUTDOWN_TIMEOUT", "run.go"),
		"toolworker": envDefault(t, "SHUTDOWN_TIMEOUT", "../toolworker/main.go"),
	}

	kinds := map[string]int{}
	for name, svc := range compose.Services {
		if len(svc.Entrypoint) == 0 {
			t.Fatalf("%s has no entrypoint", name)
		}
		bin := strings.TrimPrefix(svc.Entrypoint[0], "/")
		if !strings.Contains(string(dockerfile), "-o /out/"+bin+" ") {
			t.Errorf("%s runs /%s, which the Dockerfile does not build", name, bin)
		}
		var known map[string]bool
		switch bin {
		case "nats-server":
			kinds["nats"]++
			known = natsVars
			for v := range natsVars {
				if _, ok := svc.Environment[v]; !ok {
					t.Errorf("%s does not set %s, which nats.conf needs", name, v)
				}
			}
			if !slices.Equal(svc.Entrypoint, []string{"/nats-server", "-c", "/nats.conf"}) || !strings.Contains(string(dockerfile), "COPY nats.conf /nats.conf") {
				t.Errorf("%s: entrypoint %v or nats.conf not in the image", name, svc.Entrypoint)
			}
		case "edge":
			kinds["edge"]++
			known = edgeVars
			for _, p := range svc.Ports {
				if !strings.HasSuffix(p, ":"+svc.Environment["PORT"]) {
					t.Errorf("%s publishes %s but listens on PORT %s", name, p, svc.Environment["PORT"])
				}
			}
		case "toolworker":
			kinds["toolworker"]++
			known = workerVars
		default:
			t.Errorf("%s runs unknown binary %s", name, bin)
			continue
		}
		if def, ok := shutdownDefault[bin]; ok {
			// Docker must not SIGKILL a process still within its drain.
			drain := cmp.Or(svc.Environment["SHUTDOWN_TIMEOUT"], def)
			d, derr := time.ParseDuration(drain)
			g, gerr := time.ParseDuration(svc.StopGrace)
			if derr != nil || gerr != nil || g <= d {
				t.Errorf("%s: stop_grace_period %q is not longer than its SHUTDOWN_TIMEOUT %s", name, svc.StopGrace, drain)
			}
		}
		for v := range svc.Environment {
			if !known[v] {
				t.Errorf("%s sets %s, which /%s does not read", name, v, bin)
			}
		}
		if bin != "toolworker" && (svc.Healthcheck == nil || !slices.Contains(svc.Healthcheck.Test, "/edge") || !slices.Contains(svc.Healthcheck.Test, "health")) {
			t.Errorf("%s has no '/edge health' health check", name)
		}
	}
	if kinds["nats"] != 3 || kinds["edge"] != 2 || kinds["toolworker"] != 2 {
		t.Fatalf("services %v: want 3 nats, 2 edges, 2 toolworkers", kinds)
	}
}

// `edge health` is the health check of images without a shell.
func TestHealthCommand(t *testing.T) {
	t.Parallel()
	e := startEdge(t, t.TempDir(), nil)
	base := strings.TrimSuffix(strings.Replace(e.ws, "ws://", "http://", 1), "/haip/websocket")
	if out, err := exec.Command(bins.edge, "health", "-url", base+"/health").CombinedOutput(); err != nil {
		t.Fatalf("healthy edge: %v %s", err, out)
	}
	if err := exec.Command(bins.edge, "health", "-url", base+"/nope", "-timeout", time.Second.String()).Run(); err == nil {
		t.Fatal("a 404 passed the health check")
	}
}
