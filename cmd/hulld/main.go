// Command hulld is hull's daemon: it serves containerd's v1 gRPC API on a unix
// socket. See docs/operations.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/daemon"
	"github.com/hullrt/hull/internal/version"
)

// defaultConfigPath is read when it exists and no --config is given.
const defaultConfigPath = "/etc/hull/config.toml"

// flags are hulld's command-line options; the config subcommands read them
// too.
type flags struct {
	config, address, root, state, logLevel string
	debug, strictConfig                    bool
	configSet                              bool // --config was given
}

// main uses cobra rather than the CLI library hullctl uses because cobra's
// default help runs no text/template: a reachable template execution makes
// the linker keep every exported method of every type, about 3.5 MB of
// hulld's binary, which a daemon on every node keeps resident.
func main() {
	var f flags
	root := &cobra.Command{
		Use:               "hulld",
		Short:             "hull's container runtime daemon, serving containerd's API",
		Version:           version.Version + " " + version.Revision,
		Args:              noArgs,
		SilenceErrors:     true,
		SilenceUsage:      true,
		RunE:              func(c *cobra.Command, _ []string) error { return run(c, &f) },
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", defaultConfigPath, "path to the configuration file")
	pf.StringVarP(&f.address, "address", "a", "", "gRPC socket path (overrides grpc.address)")
	pf.StringVar(&f.root, "root", "", "persistent state directory (overrides root)")
	pf.StringVar(&f.state, "state", "", "runtime state directory (overrides state)")
	pf.StringVarP(&f.logLevel, "log-level", "l", "", "debug, info, warn or error (overrides debug.level)")
	pf.BoolVarP(&f.debug, "debug", "d", false, "log at debug level, every API call included")
	pf.BoolVar(&f.strictConfig, "strict-config", false, "treat configuration warnings (unknown keys) as errors")
	root.PersistentPreRun = func(c *cobra.Command, _ []string) { f.configSet = c.Flags().Changed("config") }

	cfg := &cobra.Command{Use: "config", Short: "print, check and migrate configuration", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() }}
	sub := func(use, short string, args cobra.PositionalArgs, do func(*flags, []string) error) {
		cfg.AddCommand(&cobra.Command{Use: use, Short: short, Args: args,
			RunE: func(_ *cobra.Command, a []string) error { return do(&f, a) }})
	}
	sub("default", "print the complete default configuration", noArgs, configDefault)
	sub("dump", "print the effective configuration after imports and flags", noArgs, configDump)
	sub("check [FILE]", "validate a configuration file without starting", cobra.MaximumNArgs(1), configCheck)
	sub("migrate [FILE]", "rewrite a version 1, 2 or 3 file as version 4 on stdout", cobra.MaximumNArgs(1), configMigrate)
	sub("reference", "print the Markdown configuration reference (docs/configuration.md)", noArgs, configReference)
	root.AddCommand(cfg)

	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "hulld: %v\n", err)
		os.Exit(1)
	}
}

// noArgs refuses arguments, naming the first as the unknown command it
// likely is.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q: see %s --help", args[0], c.CommandPath())
	}
	return nil
}

// loadConfig reads the configuration named by the flags (the default path is
// optional) and applies the flag overrides.
func loadConfig(f *flags, path string) (*config.Config, []config.Warning, error) {
	var (
		cfg   *config.Config
		warns []config.Warning
		err   error
	)
	if _, statErr := os.Stat(path); statErr != nil && path == defaultConfigPath && !f.configSet {
		cfg = config.Default()
	} else {
		cfg, warns, err = config.Load(path)
		if err != nil {
			return nil, nil, err
		}
	}
	warns = append(warns, cfg.Validate(daemon.PluginSections(daemon.Registry()))...)
	if v := f.address; v != "" {
		cfg.GRPC.Address = v
	}
	if v := f.root; v != "" {
		cfg.Root = v
	}
	if v := f.state; v != "" {
		cfg.State = v
	}
	if v := f.logLevel; v != "" {
		cfg.Debug.Level = v
	}
	if f.debug {
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

func run(c *cobra.Command, f *flags) error {
	cfg, warns, err := loadConfig(f, f.config)
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
	if f.strictConfig && len(warns) > 0 {
		return fmt.Errorf("--strict-config: %d configuration warning(s), the first: %s", len(warns), warns[0])
	}
	if cfg.OOMScore != 0 {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(cfg.OOMScore)), 0); err != nil {
			log.Warn("cannot set oom_score", "oom_score", cfg.OOMScore, "error", err)
		}
	}
	ctx, stop := signal.NotifyContext(c.Context(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	daemon.DumpStacksOnSignal(ctx, cfg.State, log)
	d, err := daemon.New(ctx, cfg, daemon.Registry(), log)
	if err != nil {
		return err
	}
	return d.Serve(ctx, 10*time.Second)
}

func configDefault(*flags, []string) error {
	return config.Render(os.Stdout, config.Default(), daemon.PluginSections(daemon.Registry()))
}

func configDump(f *flags, _ []string) error {
	cfg, warns, err := loadConfig(f, f.config)
	if err != nil {
		return err
	}
	for _, w := range warns {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	return config.Render(os.Stdout, cfg, daemon.PluginSections(daemon.Registry()))
}

func fileArg(f *flags, args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return f.config
}

func configCheck(f *flags, args []string) error {
	path := fileArg(f, args)
	cfg, warns, err := config.Load(path)
	if err != nil {
		return err
	}
	sections := daemon.PluginSections(daemon.Registry())
	warns = append(warns, cfg.Validate(sections)...)
	for _, w := range warns {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	// The values hulld would refuse at start, refused here first.
	if err := cfg.Check(sections); err != nil {
		n := 0
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "error:", line)
			n++
		}
		return fmt.Errorf("%s: %d invalid value(s): hulld would not start", path, n)
	}
	if len(warns) > 0 && f.strictConfig {
		return errors.New("configuration has warnings (--strict-config)")
	}
	fmt.Printf("%s: ok%s\n", path, plural(len(warns)))
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

func configMigrate(f *flags, args []string) error {
	path := fileArg(f, args)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := config.Migrate(data, path)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

func configReference(*flags, []string) error {
	return config.GenerateReference(os.Stdout, daemon.PluginSections(daemon.Registry()))
}
