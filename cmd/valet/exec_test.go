package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
)

// execCLI returns a command running this test binary as valet (see
// TestMain) on db, with a clean VALET_* environment.
func execCLI(ctx context.Context, exe, db string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	env := []string{cliEnv + "=1", "VALET_DB=" + db}
	for _, kv := range os.Environ() {
		if len(kv) < 6 || kv[:6] != "VALET_" {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	return cmd
}

// stderrOf returns what a failed command wrote to stderr.
func stderrOf(err error) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(exit.Stderr)
	}
	return ""
}
