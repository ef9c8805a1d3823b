package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// printUsage writes the top-level usage: every command and the environment.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `valet is a self-hostable helpdesk with an OAuth 2.0 app ecosystem.

Usage:
  valet COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-22s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help [COMMAND]         show this text, or a command's flags

Every command accepts --db (a SQLite file, default valet.db, or a
postgres:// DSN), --json (print results and errors as JSON; admin commands
always do), --log-format and --log-level.

Environment (flags win over it; secrets may be given as NAME_FILE, a file
holding the value):
`)
	for _, v := range envVars {
		secret := ""
		if v.secret {
			secret = " (or " + v.name + "_FILE)"
		}
		fmt.Fprintf(w, "  %-26s --%s: %s%s\n", v.name, v.flag, v.help, secret)
	}
	fmt.Fprint(w, `
Exit status: 0 on success, 1 on failure, 2 for a usage error.

Start here:  valet demo
`)
}

// printHelp writes the usage of one command, or the top level, to stdout.
func (m *Main) printHelp(name string) int {
	if name == "" || name == "admin" {
		printUsage(m.Stdout)
		return 0
	}
	cmd, ok := lookupCommand(name)
	if !ok {
		fmt.Fprintf(m.Stderr, "valet: unknown command %q\n", name)
		printUsage(m.Stderr)
		return 2
	}
	fmt.Fprintf(m.Stdout, "Usage: valet %s %s\n\n%s.\n\nFlags:\n", cmd.name, cmd.args, capitalize(cmd.summary))
	// Built on a fresh Main so that defaults shown are the built-in ones,
	// never a secret read from the environment.
	fresh := &Main{Config: DefaultConfig()}
	if cmd.name == "demo" {
		fresh.Config.DB = "valet-demo.db"
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fresh.Config.outputFlags(fs)
	cmd.register(fresh, fs)
	fs.SetOutput(m.Stdout)
	fs.PrintDefaults()
	return 0
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
