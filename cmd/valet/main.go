// Command valet runs the helpdesk: serve, migrate, demo and admin.
//
// This is the only package that wires concrete types together (the SQL
// store, the HTTP server, the seeder) and the only one that reads the
// environment. Main separates parsing (ParseFlags) from running (Run) so
// tests build a Config directly and run commands in-process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/valethq/valet"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a graceful shutdown, restore the
		// default handling so a second Ctrl-C ends the process at once.
		<-ctx.Done()
		stop()
	}()
	m := NewMain()
	m.OwnsProcess = true
	code := m.Execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// Main is one invocation of valet: a command and its configuration.
type Main struct {
	// Config is built by ParseFlags, or directly by tests.
	Config Config
	// Command is the command to run: serve, migrate, demo, or an admin
	// command such as "admin account create".
	Command string
	// Admin holds the admin commands' inputs.
	Admin AdminInput
	// DemoReset makes demo delete its database file first.
	DemoReset bool
	// OwnsProcess is set by main: serve may then route the process-wide
	// slog default (which the protocol library logs through) into its
	// logger. Tests leave it false, so parallel Mains do not share a default.
	OwnsProcess bool

	Stdout, Stderr io.Writer
	// Getenv and ReadFile are the environment and file system ParseFlags
	// reads configuration from; tests replace them.
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
	// OnListen, when set, is called with the base URL once serve or demo
	// accepts connections (tests listen on port 0 and need the real one).
	OnListen func(url string)
}

// AdminInput is what the admin commands act on.
type AdminInput struct {
	Account     string   // account name
	DisplayName string   // account create
	Email       string   // the user's email (owner, member or key owner)
	Name        string   // the user's name (account create, user add)
	Password    string   // a new user's password
	Role        string   // user add
	KeyName     string   // apikey create
	Scopes      string   // apikey create, space-separated
	App         AppInput // admin app, grant and audit commands (oauth_admin.go)
}

// NewMain returns a Main on the process's standard streams and environment.
func NewMain() *Main {
	return &Main{Config: DefaultConfig(), Stdout: os.Stdout, Stderr: os.Stderr,
		Getenv: os.Getenv, ReadFile: os.ReadFile}
}

// command is one entry of the command table.
type command struct {
	name     string // words after "valet"
	args     string // synopsis of the flags
	summary  string
	register func(m *Main, fs *flag.FlagSet)
	check    func(m *Main) error // required flags, after env and flags
	run      func(m *Main, ctx context.Context) error
}

var commands []command

func init() {
	// Filled in init because the run functions refer back to the table
	// (help prints it).
	commands = []command{
		{name: "serve", args: "[--addr A] [--db DB] [--issuer URL] [--json] [rate-limit flags]",
			summary: "serve the helpdesk: web inbox, REST API, /healthz, /readyz, /metrics",
			register: func(m *Main, fs *flag.FlagSet) {
				m.Config.dbFlag(fs)
				m.Config.serveFlags(fs)
			},
			run: (*Main).runServe},
		{name: "migrate", args: "[--db DB] [--json]",
			summary:  "apply database migrations and exit",
			register: func(m *Main, fs *flag.FlagSet) { m.Config.dbFlag(fs) },
			run:      (*Main).runMigrate},
		{name: "demo", args: "[--addr A] [--db FILE] [--reset] [--json] [--hub-addr A | --no-hub]",
			summary: "serve a seeded demo helpdesk (account acme) on a local SQLite file, and the integration hub beside it",
			register: func(m *Main, fs *flag.FlagSet) {
				m.Config.dbFlag(fs)
				m.Config.serveFlags(fs)
				fs.BoolVar(&m.DemoReset, "reset", false, "delete the demo database (and the demo hub's) first and seed a new one")
				fs.BoolVar(&m.Config.Hub.Off, "no-hub", false, "do not start the integration hub beside the helpdesk")
				fs.StringVar(&m.Config.Hub.Addr, "hub-addr", m.Config.Hub.Addr, "address the demo's integration hub listens on")
			},
			run: (*Main).runDemo},
		{name: "hub", args: "--helpdesk URL --client-id ID --client-secret S [--addr A] [--db DB] [--public-url URL]",
			summary:  "serve the integration hub: sign in with valet, connect helpdesks, keep their tokens alive (needs VALET_HUB_KEY)",
			register: func(m *Main, fs *flag.FlagSet) { m.Config.hubFlags(fs) },
			check:    func(m *Main) error { return m.Config.Hub.validate(true) },
			run:      (*Main).runHub},
		{name: "hub rotate-key", args: "[--db DB] [--old-key K]",
			summary: "re-encrypt every hub connection under VALET_HUB_KEY (old keys from VALET_HUB_OLD_KEYS or --old-key)",
			register: func(m *Main, fs *flag.FlagSet) {
				hubDBFlag(&m.Config, fs)
				fs.StringVar(&m.Config.Hub.OldKey, "old-key", "", "the previous key (better: VALET_HUB_OLD_KEYS_FILE)")
			},
			check: func(m *Main) error { return m.Config.Hub.validate(false) },
			run:   (*Main).runHubRotateKey},
		{name: "admin account create", args: "--name NAME --owner-email E --owner-password P [--owner-name N] [--display-name D]",
			summary: "create an account and its owner (the user is created if new)",
			register: func(m *Main, fs *flag.FlagSet) {
				m.Config.dbFlag(fs)
				fs.StringVar(&m.Admin.Account, "name", "", "account name: 2-40 lowercase letters, digits, dashes")
				fs.StringVar(&m.Admin.DisplayName, "display-name", "", "account display name (default: the name)")
				fs.StringVar(&m.Admin.Email, "owner-email", "", "owner's email")
				fs.StringVar(&m.Admin.Name, "owner-name", "", "owner's name (default: from the email)")
				fs.StringVar(&m.Admin.Password, "owner-password", m.Config.Password, "owner's password, if the user is new (env VALET_PASSWORD)")
			},
			check: func(m *Main) error {
				return required(map[string]string{"name": m.Admin.Account, "owner-email": m.Admin.Email})
			},
			run: (*Main).runAccountCreate},
		{name: "admin user add", args: "--account NAME --email E [--name N --password P] [--role agent|admin|owner]",
			summary: "add a user to an account (the user is created if new)",
			register: func(m *Main, fs *flag.FlagSet) {
				m.Config.dbFlag(fs)
				fs.StringVar(&m.Admin.Account, "account", "", "account name")
				fs.StringVar(&m.Admin.Email, "email", "", "user's email")
				fs.StringVar(&m.Admin.Name, "name", "", "user's name, if the user is new")
				fs.StringVar(&m.Admin.Password, "password", m.Config.Password, "user's password, if the user is new (env VALET_PASSWORD)")
				fs.StringVar(&m.Admin.Role, "role", "agent", "role in the account: agent, admin or owner")
			},
			check: func(m *Main) error {
				if !valet.Role(m.Admin.Role).Valid() {
					return usageErrorf("--role %q: want agent, admin or owner", m.Admin.Role)
				}
				return required(map[string]string{"account": m.Admin.Account, "email": m.Admin.Email})
			},
			run: (*Main).runUserAdd},
		{name: "admin apikey create", args: "--account NAME --user EMAIL [--name N] [--scopes \"tickets:read ...\"]",
			summary: "create an API key for a member; prints its secret once",
			register: func(m *Main, fs *flag.FlagSet) {
				m.Config.dbFlag(fs)
				fs.StringVar(&m.Admin.Account, "account", "", "account name")
				fs.StringVar(&m.Admin.Email, "user", "", "email of the member who owns the key")
				fs.StringVar(&m.Admin.KeyName, "name", "", "a name to tell keys apart")
				fs.StringVar(&m.Admin.Scopes, "scopes", "", "space-separated scopes (default: every API scope)")
			},
			check: func(m *Main) error {
				return required(map[string]string{"account": m.Admin.Account, "user": m.Admin.Email})
			},
			run: (*Main).runAPIKeyCreate},
	}
}

func lookupCommand(name string) (*command, bool) {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return nil, false
	}
	return &commands[i], true
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct {
	msg     string
	command string // whose usage to point at; "" for the top level
}

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// helpRequest asks Execute to print usage and exit 0.
type helpRequest struct{ command string }

func (helpRequest) Error() string { return "help requested" }

func required(flags map[string]string) error {
	var missing []string
	for name, v := range flags {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return usageErrorf("missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// ParseFlags selects the command in args and builds m.Config: defaults,
// then the VALET_* environment, then flags, then Validate.
func (m *Main) ParseFlags(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return &usageError{msg: "no command given"}
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return helpRequest{command: strings.Join(args[1:], " ")}
	}
	name, rest := args[0], args[1:]
	if name == "admin" {
		// admin commands are three words: admin NOUN VERB.
		if len(args) < 3 || strings.HasPrefix(args[1], "-") || strings.HasPrefix(args[2], "-") {
			return &usageError{msg: "admin needs a command: account create, user add or apikey create", command: "admin"}
		}
		name, rest = strings.Join(args[:3], " "), args[3:]
	} else if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		// Two-word commands: hub rotate-key.
		if _, ok := lookupCommand(name + " " + args[1]); ok {
			name, rest = name+" "+args[1], args[2:]
		}
	}
	cmd, ok := lookupCommand(name)
	if !ok {
		return &usageError{msg: fmt.Sprintf("unknown command %q", name)}
	}
	m.Command = cmd.name

	m.Config = DefaultConfig()
	if cmd.name == "demo" {
		// The demo never touches the database VALET_DB names: it seeds data.
		getenv := m.Getenv
		m.Getenv = func(k string) string {
			if k == "VALET_DB" || k == "VALET_DB_FILE" {
				return ""
			}
			return getenv(k)
		}
		defer func() { m.Getenv = getenv }()
		m.Config.DB = "valet-demo.db"
	}
	if err := m.Config.LoadEnv(m.Getenv, m.ReadFile); err != nil {
		return &usageError{msg: "environment: " + err.Error(), command: cmd.name}
	}

	fs := flag.NewFlagSet("valet "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Execute prints errors and usage its own way
	m.Config.outputFlags(fs)
	cmd.register(m, fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequest{command: cmd.name}
		}
		return &usageError{msg: err.Error(), command: cmd.name}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), command: cmd.name}
	}
	if cmd.check != nil {
		if err := cmd.check(m); err != nil {
			return &usageError{msg: err.Error(), command: cmd.name}
		}
	}
	if err := m.Config.Validate(); err != nil {
		return &usageError{msg: err.Error(), command: cmd.name}
	}
	return nil
}

// Run runs the parsed command. serve and demo block until ctx is done and
// then shut down gracefully.
func (m *Main) Run(ctx context.Context) error {
	cmd, ok := lookupCommand(m.Command)
	if !ok {
		return &usageError{msg: fmt.Sprintf("unknown command %q", m.Command)}
	}
	return cmd.run(m, ctx)
}

// Execute parses args, runs the command and reports the outcome: the exit
// status is 0, 1 for a failure or 2 for a usage error. Errors are written
// to stderr, as JSON with --json and for admin commands.
func (m *Main) Execute(ctx context.Context, args []string) int {
	err := m.ParseFlags(ctx, args)
	if err == nil {
		err = m.Run(ctx)
	}
	var help helpRequest
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		return m.printHelp(help.command)
	}
	jsonOut := m.jsonOutput() || slices.Contains(args, "--json") || slices.Contains(args, "-json")
	m.printError(err, jsonOut)
	var ue *usageError
	if errors.As(err, &ue) {
		if !jsonOut {
			if len(args) == 0 {
				printUsage(m.Stderr)
			} else {
				fmt.Fprintf(m.Stderr, "Run 'valet help %s' for usage.\n", strings.TrimSpace(ue.command))
			}
		}
		return 2
	}
	return 1
}

// jsonOutput tells whether results and errors are printed as JSON: with
// --json, and always for admin commands, whose output scripts parse.
func (m *Main) jsonOutput() bool {
	return m.Config.JSON || strings.HasPrefix(m.Command, "admin ")
}

// cliError is the JSON error object, the API's error shape.
type cliError struct {
	Error struct {
		Code string              `json:"code"`
		Msg  string              `json:"msg"`
		Data map[string][]string `json:"data,omitempty"`
	} `json:"error"`
}

func (m *Main) printError(err error, jsonOut bool) {
	var e cliError
	e.Error.Code, e.Error.Msg, e.Error.Data = describe(err)
	if jsonOut {
		writeJSON(m.Stderr, e)
		return
	}
	fmt.Fprintf(m.Stderr, "valet: %s\n", e.Error.Msg)
	fields := make([]string, 0, len(e.Error.Data))
	for f := range e.Error.Data {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	for _, f := range fields {
		fmt.Fprintf(m.Stderr, "  %s: %s\n", f, strings.Join(e.Error.Data[f], "; "))
	}
}

// describe returns what to tell the operator about err. Unlike the API, the
// CLI shows internal errors in full: the operator is the one who needs them.
func describe(err error) (code, msg string, fields map[string][]string) {
	var ue *usageError
	if errors.As(err, &ue) {
		return "usage", ue.msg, nil
	}
	var ve *valet.Error
	if errors.As(err, &ve) && ve.Message != "" && ve.Code != valet.EINTERNAL {
		return ve.Code, ve.Message, ve.Fields
	}
	return valet.ErrorCode(err), err.Error(), valet.ErrorFields(err)
}

// newLogger builds the slog logger the configuration asks for.
func newLogger(c *Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" || c.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
