// Package browser drives a headless Chromium for tests: start it, open a
// page, wait for a condition in the page with a deadline, read results
// out of it, take a screenshot. It speaks the DevTools protocol through
// chromedp.
//
// Start with ForTest in a test (it fails the test when no Chromium can
// run, unless HAIP_SKIP_BROWSER=1), or Start elsewhere. A Browser runs
// one Chromium process with a fresh profile; Close ends it and everything
// it started. Pages may be used from one goroutine each; a Browser's
// methods are safe for concurrent use.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// SkipEnv names the variable that, set to 1, makes ForTest skip instead
// of fail when no browser can run.
const SkipEnv = "HAIP_SKIP_BROWSER"

// ErrNoBrowser is returned by Find when no Chromium is on PATH.
var ErrNoBrowser = errors.New("no chromium on PATH (apt-get install chromium)")

// names are the executables Find looks for, in order.
var names = [...]string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the path of a Chromium on PATH.
func Find() (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", ErrNoBrowser
}

// Options configure Start.
type Options struct {
	// Path is the Chromium executable; empty means Find.
	Path string
	// ProfileDir is the fresh, empty user-data directory (required).
	ProfileDir string
	// Logf, if set, receives the browser's console messages and errors.
	Logf func(format string, args ...any)
}

// Browser is one headless Chromium process.
type Browser struct {
	allocCancel context.CancelFunc
	ctx         context.Context // the browser's
	cancel      context.CancelFunc
}

// Start starts Chromium headless, with the flags that keep it off the
// network on its own (no background networking, updates or sync). ctx
// bounds the start only.
func Start(ctx context.Context, o Options) (*Browser, error) {
	if o.ProfileDir == "" {
		return nil, errors.New("cannot start browser: no ProfileDir")
	}
	path := o.Path
	if path == "" {
		p, err := Find()
		if err != nil {
			return nil, fmt.Errorf("cannot start browser: %w", err)
		}
		path = p
	}
	flags := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(o.ProfileDir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), flags...)
	var opts []chromedp.ContextOption
	if o.Logf != nil {
		opts = append(opts, chromedp.WithErrorf(o.Logf))
	}
	bctx, cancel := chromedp.NewContext(allocCtx, opts...)
	b := &Browser{allocCancel: allocCancel, ctx: bctx, cancel: cancel}
	// The first Run starts the process; bound it by ctx.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(bctx) }()
	select {
	case err := <-started:
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("cannot start browser %s: %w", path, err)
		}
	case <-ctx.Done():
		b.Close()
		<-started
		return nil, fmt.Errorf("cannot start browser %s: %w", path, ctx.Err())
	}
	return b, nil
}

// ForTest starts a browser for t, closed when t ends. Without a usable
// Chromium it fails t (or skips it when HAIP_SKIP_BROWSER=1).
func ForTest(t testing.TB) *Browser {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(SkipEnv) == "1" {
			t.Skipf(SkipEnv+"=1: no browser test: "+format, args...)
		}
		t.Fatalf("browser test cannot run: "+format+" (install Debian's chromium, as .ci/run does, or set "+SkipEnv+"=1 to skip the browser tests on purpose)", args...)
	}
	path, err := Find()
	if err != nil {
		unavailable("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Start(ctx, Options{Path: path, ProfileDir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		unavailable("%v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// Close ends the browser and waits for it. It may be called more than once.
func (b *Browser) Close() {
	b.cancel()
	_ = chromedp.Cancel(b.ctx)
	b.allocCancel()
}

// Page is one tab.
type Page struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// Open opens url in a new tab and waits, within ctx, until it has loaded.
func (b *Browser) Open(ctx context.Context, url string) (*Page, error) {
	pctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{ctx: pctx, cancel: cancel}
	// The tab belongs to the context of its first run: make it with the
	// page's own, not one that a deadline ends.
	if err := chromedp.Do(pctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("cannot open a tab: %w", err)
	}
	if err := do(ctx, pctx, chromedp.Navigate(url)); err != nil {
		p.Close()
		return nil, fmt.Errorf("cannot open %s: %w", url, err)
	}
	return p, nil
}

// Close closes the tab. It may be called more than once.
func (p *Page) Close() {
	p.cancel()
}

// run runs action on the page (pctx) within ctx, and returns its value.
func run[T any](ctx, pctx context.Context, action chromedp.Action[T]) (T, error) {
	rctx, cancel := context.WithCancel(pctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	v, err := chromedp.Run(rctx, action)
	if err != nil && ctx.Err() != nil {
		return v, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return v, err
}

// do runs steps on the page (pctx) within ctx.
func do(ctx, pctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	_, err := run(ctx, pctx, chromedp.Steps(steps...))
	return err
}

// Eval evaluates the JavaScript expression js in the page and decodes its
// value (JSON) into out (nil: ignore it). A promise is awaited.
func (p *Page) Eval(ctx context.Context, js string, out any) error {
	raw, err := run(ctx, p.ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("cannot evaluate %.60q: %w", js, err)
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("cannot decode the value of %.60q: %w", js, err)
	}
	return nil
}

// WaitFor evaluates the expression cond every few milliseconds until it
// is truthy, or fails when within passes (or ctx ends) first.
func (p *Page) WaitFor(ctx context.Context, within time.Duration, cond string) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var ok bool
		err := p.Eval(ctx, "Boolean("+cond+")", &ok)
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", cond, err)
			}
			return fmt.Errorf("waiting for %s: not true within %s", cond, within)
		case <-tick.C:
		}
	}
}

// Screenshot returns a PNG of what the page shows.
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	png, err := run(ctx, p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return nil, fmt.Errorf("cannot take a screenshot: %w", err)
	}
	return png, nil
}
