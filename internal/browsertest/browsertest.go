// Package browsertest starts headless Chromium for the browser tests of the
// inbox, the consent pages and the hub, and says where their screenshots
// go. It depends on nothing of valet's, so any package's tests may use it.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds a browser test's whole session.
const Timeout = 2 * time.Minute

// Start starts a headless Chromium with a window of width x height and
// returns its context, stopped when the test ends. Without Chromium the
// test is skipped, or fails when VALET_REQUIRE_BROWSER=1 (as in CI).
func Start(tb testing.TB, width, height int) context.Context {
	tb.Helper()
	chrome := find()
	if chrome == "" {
		if os.Getenv("VALET_REQUIRE_BROWSER") == "1" {
			tb.Fatal("VALET_REQUIRE_BROWSER=1 but no chromium is installed (apt-get install -y chromium)")
		}
		tb.Skip("chromium is not installed; set VALET_REQUIRE_BROWSER=1 to make this a failure")
	}
	root, stop := context.WithTimeout(context.Background(), Timeout)
	tb.Cleanup(stop)
	alloc, cancelAlloc := chromedp.NewExecAllocator(root,
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		// Nothing but the pages under test on the network, and no
		// shared-memory limits of a container.
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(tb.TempDir()), chromedp.WindowSize(width, height),
	)
	tb.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	tb.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func find() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// ArtifactsDir is where screenshots go: $VALET_TEST_ARTIFACTS, or
// artifacts/ at the root of the module.
func ArtifactsDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("VALET_TEST_ARTIFACTS")
	if dir == "" {
		root, err := os.Getwd()
		if err != nil {
			tb.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				tb.Fatal("no go.mod above the test's directory")
			}
			root = parent
		}
		dir = filepath.Join(root, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Console collects a browser's console errors: exceptions, errors and
// Content Security Policy violations. The pages forbid inline styles and
// scripts, so a page that broke that rule shows up here.
type Console struct {
	mu   sync.Mutex
	errs []string
}

// WatchConsole collects the console errors of ctx's browser from now on.
func WatchConsole(ctx context.Context) *Console {
	c := &Console{}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" || strings.Contains(m.Text, "Content Security Policy") {
				c.mu.Lock()
				c.errs = append(c.errs, fmt.Sprintf("%s: %s (%s)", m.Type, m.Text, m.URL))
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// Errors returns the errors seen so far, after a moment for the last
// messages to arrive.
func (c *Console) Errors() []string {
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}
