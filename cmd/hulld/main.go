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

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/daemon"
	"github.com/hullrt/hull/internal/version"
)

// defaultConfigPath is read when it exists and no --config is given.
const defaultConfigPath = "/etc/hull/config.toml"

func main() {
	app := &cli.App{
		Name:    "hulld",
		Usage:   "hull's container runtime daemon, serving containerd's API",
		Version: version.Version + " " + version.Revision,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "path to the configuration file", Value: defaultConfigPath},
			&cli.StringFlag{Name: "address", Aliases: []string{"a"}, Usage: "gRPC socket path (overrides grpc.address)"},
			&cli.StringFlag{Name: "root", Usage: "persistent state directory (overrides root)"},
			&cli.StringFlag{Name: "state", Usage: "runtime state directory (overrides state)"},
			&cli.StringFlag{Name: "log-level", Aliases: []string{"l"}, Usage: "debug, info, warn or error (overrides debug.level)"},
			&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "log at debug level, every API call included"},
			&cli.BoolFlag{Name: "strict-config", Usage: "treat configuration warnings (unknown keys) as errors"},
		},
		Action: run,
		Commands: []*cli.Command{{
			Name:  "config",
			Usage: "print, check and migrate configuration",
			Subcommands: []*cli.Command{
				{Name: "default", Usage: "print the complete default configuration", Action: configDefault},
				{Name: "dump", Usage: "print the effective configuration after imports and flags", Action: configDump},
				{Name: "check", Usage: "validate a configuration file without starting", ArgsUsage: "[FILE]", Action: configCheck},
				{Name: "migrate", Usage: "rewrite a version 1, 2 or 3 file as version 4 on stdout", ArgsUsage: "[FILE]", Action: configMigrate},
				{Name: "reference", Usage: "print the Markdown configuration reference (docs/configuration.md)", Action: configReference},
			},
		}},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "hulld: %v\n", err)
		os.Exit(1)
	}
}

// loadConfig reads the configuration named by the flags (the default path is
// optional) and applies the flag overrides.
func loadConfig(c *cli.Context, path string) (*config.Config, []config.Warning, error) {
	var (
		cfg   *config.Config
		warns []config.Warning
		err   error
	)
	if _, statErr := os.Stat(path); statErr != nil && path == defaultConfigPath && !c.IsSet("config") {
		cfg = config.Default()
	} else {
		cfg, warns, err = config.Load(path)
		if err != nil {
			return nil, nil, err
		}
	}
	warns = append(warns, cfg.Validate(daemon.PluginSections(daemon.Registry()))...)
	if v := c.String("address"); v != "" {
		cfg.GRPC.Address = v
	}
	if v := c.String("root"); v != "" {
		cfg.Root = v
	}
	if v := c.String("state"); v != "" {
		cfg.State = v
	}
	if v := c.String("log-level"); v != "" {
		cfg.Debug.Level = v
	}
	if c.Bool("debug") {
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

func run(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return fmt.Errorf("unknown command %q: see hulld --help", c.Args().First())
	}
	cfg, warns, err := loadConfig(c, c.String("config"))
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
	if c.Bool("strict-config") && len(warns) > 0 {
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

func configDefault(c *cli.Context) error {
	return config.Render(os.Stdout, config.Default(), daemon.PluginSections(daemon.Registry()))
}

func configDump(c *cli.Context) error {
	cfg, warns, err := loadConfig(c, c.String("config"))
	if err != nil {
		return err
	}
	for _, w := range warns {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	return config.Render(os.Stdout, cfg, daemon.PluginSections(daemon.Registry()))
}

func fileArg(c *cli.Context) string {
	if c.Args().Len() > 0 {
		return c.Args().First()
	}
	return c.String("config")
}

func configCheck(c *cli.Context) error {
	path := fileArg(c)
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
	if len(warns) > 0 && c.Bool("strict-config") {
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

func configMigrate(c *cli.Context) error {
	path := fileArg(c)
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

func configReference(c *cli.Context) error {
	return config.GenerateReference(os.Stdout, daemon.PluginSections(daemon.Registry()))
}
