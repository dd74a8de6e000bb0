package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/reference"
	"github.com/hullrt/hull/core/remotes/credentials"
	"github.com/hullrt/hull/core/remotes/registry"
)

// remoteFlags are the flags of every command that talks to a registry.
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "hosts-dir", Usage: "registry host configuration directory (hosts.toml); default: hulld's config_path for a pull through hulld, else /etc/hull/certs.d"},
		&cli.BoolFlag{Name: "plain-http", Usage: "allow plain http to loopback registries"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "registry credentials, user[:password]"},
		&cli.StringFlag{Name: "registry-config", Usage: "a Docker config.json to take registry credentials from"},
	}
}

// concurrencyFlag bounds parallel blob transfers of a pull or push that
// hullctl makes itself.
func concurrencyFlag() cli.Flag {
	return &cli.IntFlag{Name: "max-concurrent-downloads", Usage: "parallel transfers of blobs above 1 MiB (a pull fetches smaller ones up to 8 at a time beside them), when hullctl transfers the blobs itself (a pull: it then does)", Value: 3}
}

// chunkFlags tune a pull's ranged downloads; a pull given one runs in
// hullctl.
func chunkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.Int64Flag{Name: "chunk-size", Usage: "download blobs of at least --chunk-threshold bytes as ranges of this many bytes (0: 8 MiB; the pull then runs in hullctl)"},
		&cli.IntFlag{Name: "parallel-chunks", Usage: "ranges of one blob fetched at a time (0: 4; 1: no ranged downloads; the pull then runs in hullctl)"},
		&cli.Int64Flag{Name: "chunk-threshold", Usage: "size from which a blob is fetched in ranges (0: 64 MiB; the pull then runs in hullctl)"},
	}
}

// pullFlags are the registry flags of run, which pulls a missing image:
// those of remoteFlags that do not clash with a container's (--user is
// the container's user there).
func pullFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "hosts-dir", Usage: "registry host configuration directory (hosts.toml); default: hulld's config_path for a pull through hulld, else /etc/hull/certs.d"},
		&cli.BoolFlag{Name: "plain-http", Usage: "allow plain http to loopback registries"},
		&cli.StringFlag{Name: "registry-config", Usage: "a Docker config.json to take registry credentials from"},
	}
}

// remoteOpts turns the remote flags into client options.
func (e *env) remoteOpts(c *cli.Context) ([]client.RemoteOpt, error) {
	return e.registryOpts(c, "user")
}

// registryOpts turns the remote flags c has into client options;
// userFlag names the flag of registry credentials, "" for none.
func (e *env) registryOpts(c *cli.Context, userFlag string) ([]client.RemoteOpt, error) {
	// Unset, the pull's side chooses: hullctl's own pull reads the same
	// default directory, a pull through Transfer hulld's config_path.
	var opts []client.RemoteOpt
	if c.IsSet("hosts-dir") {
		opts = append(opts, client.WithHostsDir(c.String("hosts-dir")))
	}
	if c.IsSet("max-concurrent-downloads") {
		opts = append(opts, client.WithMaxConcurrentDownloads(c.Int("max-concurrent-downloads")))
	}
	if c.IsSet("chunk-size") || c.IsSet("parallel-chunks") || c.IsSet("chunk-threshold") {
		opts = append(opts, client.WithChunkedDownloads(c.Int64("chunk-size"), c.Int("parallel-chunks"), c.Int64("chunk-threshold")))
	}
	if c.Bool("plain-http") {
		opts = append(opts, client.WithPlainHTTP())
	}
	var stores []credentials.Store
	if u := c.String(userFlag); userFlag != "" && u != "" {
		user, pass, _ := strings.Cut(u, ":")
		stores = append(stores, credentials.Static("", user, pass))
	}
	if p := c.String("registry-config"); p != "" {
		s, err := credentials.FromDockerConfig(p)
		if err != nil {
			return nil, err
		}
		stores = append(stores, s)
	}
	if len(stores) > 0 {
		opts = append(opts, client.WithCredentials(credentials.Chain(stores...)))
	}
	platOpts, err := platformOpts(c, client.WithAllPlatforms, client.WithPlatform)
	if err != nil {
		return nil, err
	}
	return append(opts, platOpts...), nil
}

// refArg checks the argument count of a command whose first argument is an
// image reference, and returns that reference expanded.
func (e *env) refArg(c *cli.Context, min int, usage string) (string, error) {
	if err := needArgs(c, min, usage); err != nil {
		return "", err
	}
	return e.fullRef(c.Args().First())
}

// remoteClient dials hulld and reads the remote flags, as every command
// that talks to a registry does once its arguments are read.
func (e *env) remoteClient(c *cli.Context) (*client.Client, []client.RemoteOpt, error) {
	cl, err := e.connect()
	if err != nil {
		return nil, nil, err
	}
	opts, err := e.remoteOpts(c)
	return cl, opts, err
}

// fullRef expands a short reference and says which one it used.
func (e *env) fullRef(s string) (string, error) {
	ref, changed, err := reference.ParseNormalized(s)
	if err != nil {
		return "", err
	}
	if changed {
		fmt.Fprintf(e.stderr, "using %s\n", ref.String())
	}
	return ref.String(), nil
}

// downloadFlags are the flags that tune how hullctl itself downloads: a
// pull given one runs in hullctl, since hulld's transfer configuration
// sets them for a pull through hulld.
func downloadFlags() []cli.Flag { return append([]cli.Flag{concurrencyFlag()}, chunkFlags()...) }

func imagesPull(e *env) *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "fetch an image from a registry",
		ArgsUsage: "REF",
		Flags: append(append(append(remoteFlags(), platformFlags()...), downloadFlags()...),
			&cli.BoolFlag{Name: "skip-unpack", Usage: "fetch only; do not unpack into a snapshotter"},
			snapshotterFlag(),
			&cli.BoolFlag{Name: "plain", Usage: "print progress as plain lines, not a live table"},
			&cli.BoolFlag{Name: "local", Usage: "pull in hullctl itself, as ctr --local does, rather than through hulld's Transfer service (also when a download flag is given, or the daemon has no Transfer service)"},
		),
		Action: func(c *cli.Context) error {
			ref, err := e.refArg(c, 1, "REF")
			if err != nil {
				return err
			}
			cl, opts, err := e.remoteClient(c)
			if err != nil {
				return err
			}
			if !c.Bool("skip-unpack") {
				sn, err := e.snapshotter(c, cl)
				if err != nil {
					return err
				}
				opts = append(opts, client.WithPullUnpack(sn, nil))
			}
			board := newProgressBoard(e.stdout, c.Bool("plain"), ref+": resolving")
			img, err := e.pull(c, cl, ref, append(opts, client.WithProgress(board.Update)))
			board.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: pulled %s\n", img.Name, img.Target.Digest)
			return nil
		},
	}
}

// pull pulls ref: through hulld's Transfer service, where hulld fetches,
// stores and unpacks and hullctl follows the progress (one call, where
// hullctl's own pull makes several per blob), unless --local, one of
// downloadFlags or a daemon without a Transfer service (containerd 1.x)
// has hullctl pull itself. Either way a pull interrupted by a hulld restart resumes.
func (e *env) pull(c *cli.Context, cl *client.Client, ref string, opts []client.RemoteOpt) (images.Image, error) {
	local := c.Bool("local")
	for _, f := range downloadFlags() {
		local = local || c.IsSet(f.Names()[0])
	}
	if !local {
		ps, err := cl.Plugins(e.ctx(c), "type=="+transferPluginType+",id==transfer")
		if err != nil {
			return images.Image{}, err
		}
		local = len(ps) == 0 || ps[0].InitErr != ""
	}
	if local {
		return cl.Pull(e.ctx(c), ref, opts...)
	}
	return cl.TransferPull(e.ctx(c), ref, opts...)
}

// transferPluginType is the type of the gRPC plugin serving Transfer, in
// hulld and containerd alike.
const transferPluginType = "io.containerd.grpc.v1"

func imagesPush(e *env) *cli.Command {
	return &cli.Command{
		Name:  "push",
		Usage: "upload an image to a registry",
		Description: "Of a multi-platform image (an index) push uploads this host's platform's manifest alone, as REF,\n" +
			"or the one --platform names; --all-platforms pushes the index with every manifest it lists,\n" +
			"which must all be in the store (pull them with --all-platforms).",
		ArgsUsage: "REF [LOCAL]",
		Flags: append(append(remoteFlags(), platformFlags()...), concurrencyFlag(),
			&cli.BoolFlag{Name: "plain", Usage: "print progress as plain lines, not a live table"},
		),
		Action: func(c *cli.Context) error {
			ref, err := e.refArg(c, 1, "REF [LOCAL]")
			if err != nil {
				return err
			}
			local := ref
			if c.Args().Len() > 1 {
				if local, err = e.fullRef(c.Args().Get(1)); err != nil {
					return err
				}
			}
			cl, opts, err := e.remoteClient(c)
			if err != nil {
				return err
			}
			board := newProgressBoard(e.stdout, c.Bool("plain"), ref+": pushing "+local)
			err = cl.Push(e.ctx(c), ref, local, append(opts, client.WithProgress(board.Update))...)
			board.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: pushed\n", ref)
			return nil
		},
	}
}

func hostsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "hosts",
		Usage: "registry host configuration",
		Subcommands: []*cli.Command{{
			Name:      "check",
			Usage:     "show the hosts a reference would use and try a resolve through each",
			ArgsUsage: "REF",
			Flags:     remoteFlags(),
			Action: func(c *cli.Context) error {
				ref, err := e.refArg(c, 1, "REF")
				if err != nil {
					return err
				}
				cl, opts, err := e.remoteClient(c)
				if err != nil {
					return err
				}
				r, ok := cl.Resolver(opts...).(*registry.Resolver)
				if !ok {
					return fmt.Errorf("hosts check needs hull's registry resolver")
				}
				reports := r.Check(e.ctx(c), ref)
				printHostReports(e, ref, reports)
				for _, rep := range reports {
					if rep.Resolved() {
						return nil
					}
				}
				return fmt.Errorf("%s: no host could resolve it", ref)
			},
		}},
	}
}

// printHostReports prints what hosts check found, host by host.
func printHostReports(e *env, ref string, reports []registry.HostReport) {
	fmt.Fprintf(e.stdout, "%s: %d host(s), tried in this order\n", ref, len(reports))
	for i, r := range reports {
		role := "server"
		if r.Mirror {
			role = "mirror"
		}
		fmt.Fprintf(e.stdout, "\n%d. %s (%s)\n", i+1, r.URL, role)
		fmt.Fprintf(e.stdout, "   capabilities: %s\n", strings.Join(r.Capabilities, ", "))
		if r.ConfigFile != "" {
			fmt.Fprintf(e.stdout, "   from:         %s\n", r.ConfigFile)
		}
		if len(r.CAFiles) > 0 {
			fmt.Fprintf(e.stdout, "   CA files:     %s (and the system roots)\n", strings.Join(r.CAFiles, ", "))
		}
		for _, cc := range r.ClientCertFiles {
			fmt.Fprintf(e.stdout, "   client cert:  %s, key %s\n", cc[0], cc[1])
		}
		if r.SkipVerify {
			fmt.Fprintf(e.stdout, "   TLS:          certificates NOT verified (skip_verify)\n")
		}
		for k, vs := range r.Headers {
			fmt.Fprintf(e.stdout, "   header:       %s: %s\n", k, strings.Join(vs, ", "))
		}
		for _, ch := range r.Challenges {
			fmt.Fprintf(e.stdout, "   auth:         %s realm=%q service=%q\n", ch.Scheme, ch.Realm, ch.Service)
		}
		for _, s := range r.Steps {
			mark := "ok  "
			switch {
			case s.Skipped:
				mark = "skip"
			case !s.OK:
				mark = "FAIL"
			}
			fmt.Fprintf(e.stdout, "   [%s] %-8s %s (%s)\n", mark, s.Name, s.Detail, s.Duration.Round(100_000))
		}
	}
}
