// Command hulld is hull's daemon: it serves containerd's v1 gRPC API on a unix
// socket. See docs/operations.md.
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
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/daemon"
	"github.com/hullrt/hull/internal/version"
)

// defaultConfigPath is read when it exists and no --config is given.
const defaultConfigPath = "/etc/hull/config.toml"

// The command line is parsed with the standard flag package rather than a
// CLI framework: hulld has seven flags and one command group, and a
// framework linked about 250 KB into the daemon, which the kernel maps
// and the daemon carries resident for its whole life.

// options are the command line's flags.
type options struct {
	config, address, root, state, logLevel string
	debug, strictConfig, version           bool
	set                                    map[string]bool // flags given, by primary name
}

// newFlagSet declares the flags (each alias bound to the same value) on a
// set that reports errors instead of exiting.
func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hulld", flag.ContinueOnError)
	fs.SetOutput(out)
	str := func(p *string, value, usage string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, value, usage)
		}
	}
	boolean := func(p *bool, usage string, names ...string) {
		for _, n := range names {
			fs.BoolVar(p, n, false, usage)
		}
	}
	str(&o.config, defaultConfigPath, "path to the configuration file", "config", "c")
	str(&o.address, "", "gRPC socket path (overrides grpc.address)", "address", "a")
	str(&o.root, "", "persistent state directory (overrides root)", "root")
	str(&o.state, "", "runtime state directory (overrides state)", "state")
	str(&o.logLevel, "", "debug, info, warn or error (overrides debug.level)", "log-level", "l")
	boolean(&o.debug, "log at debug level, every API call included", "debug", "d")
	boolean(&o.strictConfig, "treat configuration warnings (unknown keys) as errors", "strict-config")
	boolean(&o.version, "print the version", "version", "v")
	fs.Usage = func() {
		fmt.Fprintf(out, `hulld: hull's container runtime daemon, serving containerd's API

Usage:
  hulld [flags]                   run the daemon
  hulld [flags] config default    print the complete default configuration
  hulld [flags] config dump       print the effective configuration after imports and flags
  hulld [flags] config check [FILE]    validate a configuration file without starting
  hulld [flags] config migrate [FILE]  rewrite a version 1 or 2 file as version 3 on stdout
  hulld [flags] config reference  print the Markdown configuration reference (docs/configuration.md)

Flags (also accepted after the command):
`)
		fs.PrintDefaults()
	}
	return fs
}

// aliases maps each flag's short name to its primary one.
var aliases = map[string]string{"c": "config", "a": "address", "l": "log-level", "d": "debug", "v": "version"}

// parse reads flags from args, which may also follow the command words,
// and returns the command words.
func parse(fs *flag.FlagSet, o *options, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		words = append(words, args[0])
		args = args[1:]
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		name := f.Name
		if p, ok := aliases[name]; ok {
			name = p
		}
		o.set[name] = true
	})
	return words, nil
}

func main() {
	os.Exit(hulld(os.Args[1:], os.Stdout, os.Stderr))
}

// hulld runs the command line args and returns the exit status.
func hulld(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet(&o, stderr)
	words, err := parse(fs, &o, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // the flag package said why
	}
	if o.version {
		fmt.Fprintf(stdout, "hulld version %s %s\n", version.Version, version.Revision)
		return 0
	}
	if err := command(&o, words, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "hulld: %v\n", err)
		return 1
	}
	return 0
}

// command runs what the command words name.
func command(o *options, words []string, stdout, stderr io.Writer) error {
	if len(words) == 0 {
		return run(o)
	}
	if words[0] != "config" {
		return fmt.Errorf("unknown command %q: see hulld --help", words[0])
	}
	if len(words) < 2 {
		return errors.New("config needs a command: default, dump, check, migrate or reference (see hulld --help)")
	}
	sub, rest := words[1], words[2:]
	maxArgs := 0
	if sub == "check" || sub == "migrate" {
		maxArgs = 1
	}
	if len(rest) > maxArgs {
		return fmt.Errorf("config %s: unexpected arguments %s", sub, strings.Join(rest, " "))
	}
	file := o.config
	if len(rest) > 0 {
		file = rest[0]
	}
	switch sub {
	case "default":
		return config.Render(stdout, config.Default(), daemon.PluginSections(daemon.Registry()))
	case "dump":
		return configDump(o, stdout, stderr)
	case "check":
		return configCheck(o, file, stdout, stderr)
	case "migrate":
		return configMigrate(file, stdout)
	case "reference":
		return config.GenerateReference(stdout, daemon.PluginSections(daemon.Registry()))
	}
	return fmt.Errorf("unknown config command %q: use default, dump, check, migrate or reference", sub)
}

// loadConfig reads the configuration named by the flags (the default path is
// optional) and applies the flag overrides.
func loadConfig(o *options) (*config.Config, []config.Warning, error) {
	var (
		cfg   *config.Config
		warns []config.Warning
		err   error
	)
	if _, statErr := os.Stat(o.config); statErr != nil && o.config == defaultConfigPath && !o.set["config"] {
		cfg = config.Default()
	} else {
		cfg, warns, err = config.Load(o.config)
		if err != nil {
			return nil, nil, err
		}
	}
	warns = append(warns, cfg.Validate(daemon.PluginSections(daemon.Registry()))...)
	if o.address != "" {
		cfg.GRPC.Address = o.address
	}
	if o.root != "" {
		cfg.Root = o.root
	}
	if o.state != "" {
		cfg.State = o.state
	}
	if o.logLevel != "" {
		cfg.Debug.Level = o.logLevel
	}
	if o.debug {
		cfg.Debug.Level = "debug"
	}
	return cfg, warns, nil
}

func newLogger(cfg *config.Config) (*slog.Logger, error) {
	// containerd's logrus levels map onto slog's nearest ones.
	var level slog.Level
	switch cfg.Debug.Level {
	case "trace", "debug":
		level = slog.LevelDebug
	case "info", "":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error", "fatal", "panic":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("log level %q: use trace, debug, info, warn, error, fatal or panic", cfg.Debug.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.Debug.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: use text or json", cfg.Debug.Format)
}

func run(o *options) error {
	cfg, warns, err := loadConfig(o)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	for _, w := range warns {
		log.Warn("config: " + w.String())
	}
	if o.strictConfig && len(warns) > 0 {
		return fmt.Errorf("--strict-config: %d configuration warning(s), the first: %s", len(warns), warns[0])
	}
	if cfg.OOMScore != 0 {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(cfg.OOMScore)), 0); err != nil {
			log.Warn("cannot set oom_score", "oom_score", cfg.OOMScore, "error", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	daemon.DumpStacksOnSignal(ctx, cfg.State, log)
	d, err := daemon.New(ctx, cfg, daemon.Registry(), log)
	if err != nil {
		return err
	}
	return d.Serve(ctx, 10*time.Second)
}

func configDump(o *options, stdout, stderr io.Writer) error {
	cfg, warns, err := loadConfig(o)
	if err != nil {
		return err
	}
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return config.Render(stdout, cfg, daemon.PluginSections(daemon.Registry()))
}

func configCheck(o *options, path string, stdout, stderr io.Writer) error {
	cfg, warns, err := config.Load(path)
	if err != nil {
		return err
	}
	warns = append(warns, cfg.Validate(daemon.PluginSections(daemon.Registry()))...)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if len(warns) > 0 && o.strictConfig {
		return errors.New("configuration has warnings (--strict-config)")
	}
	fmt.Fprintf(stdout, "%s: ok%s\n", path, plural(len(warns)))
	return nil
}

func plural(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " (1 warning)"
	}
	return fmt.Sprintf(" (%d warnings)", n)
}

func configMigrate(path string, stdout io.Writer) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := config.Migrate(data, path)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
