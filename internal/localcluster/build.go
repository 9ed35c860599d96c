package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// The packages built into binaries, by binary name.
const (
	natsServerPkg = "github.com/nats-io/nats-server/v2"
	edgePkg       = "./cmd/edge"
	toolWorkerPkg = "./cmd/toolworker"
)

// builds is the build-once cache: which (module root, binary directory,
// package) triples this process has built. sem serialises builds, so
// concurrent Starts wait for one build instead of racing.
var builds = struct {
	sem  chan struct{}
	done map[string]bool
}{sem: make(chan struct{}, 1), done: map[string]bool{}}

// binName is the file go build names a main package's binary.
func binName(pkg string) string {
	base := path.Base(pkg)
	if len(base) > 1 && base[0] == 'v' && strings.Trim(base[1:], "0123456789") == "" {
		base = path.Base(path.Dir(pkg)) // a major-version suffix (…/v2)
	}
	return base
}

// buildBinaries builds pkgs (main packages of the module at root) into
// binDir once per process, and returns their paths by package. Each run
// builds into a private directory and renames the binaries into place, so
// concurrent processes sharing binDir never execute a partial file; the Go
// build cache makes a rebuild cheap. A failed build is not remembered.
func buildBinaries(ctx context.Context, root, binDir string, logf func(string, ...any), pkgs ...string) (map[string]string, error) {
	select {
	case builds.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another build: %w", ctx.Err())
	}
	defer func() { <-builds.sem }()
	paths := map[string]string{}
	var todo []string
	for _, pkg := range pkgs {
		paths[pkg] = filepath.Join(binDir, binName(pkg))
		if !builds.done[root+"\x00"+binDir+"\x00"+pkg] {
			todo = append(todo, pkg)
		}
	}
	if len(todo) == 0 {
		return paths, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, fmt.Errorf("binary directory: %w", err)
	}
	tmp, err := os.MkdirTemp(binDir, ".build-*")
	if err != nil {
		return nil, fmt.Errorf("binary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	logf("building %s into %s", strings.Join(todo, " "), binDir)
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", tmp + string(filepath.Separator)}, todo...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return nil, fmt.Errorf("go build %s: %w\n%s", strings.Join(todo, " "), err, out)
	}
	for _, pkg := range todo {
		if err := os.Rename(filepath.Join(tmp, binName(pkg)), paths[pkg]); err != nil {
			return nil, fmt.Errorf("install %s: %w", binName(pkg), err)
		}
		builds.done[root+"\x00"+binDir+"\x00"+pkg] = true
	}
	return paths, nil
}

// defaultBinDir is the shared binary cache used when Options.Dir is empty.
func defaultBinDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("haipfabric-localcluster-%d", os.Getuid()))
}

// FindRoot walks up from the working directory to the directory holding
// go.mod and nats.conf: the module root the binaries are built from.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "nats.conf")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod with nats.conf above the working directory")
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
