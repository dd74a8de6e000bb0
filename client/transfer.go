package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	streamingapi "github.com/containerd/containerd/api/services/streaming/v1"
	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	"github.com/containerd/containerd/api/types"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/pull"
)

// maxTransferRestarts bounds how often TransferPull asks again after the
// daemon restarted under it.
const maxTransferRestarts = 5

// TransferPull has the daemon pull ref through its Transfer service, as
// containerd 2.x's ctr pulls: the daemon fetches, stores and (with
// WithPullUnpack) unpacks the image itself, and the client only follows
// the progress, so there is one call instead of several per blob. It
// takes the options Pull takes except those that tune the client's own
// downloads (WithResolver, WithMaxConcurrentDownloads,
// WithChunkedDownloads: the daemon's transfer configuration decides
// those), which make it fail with InvalidArgument. Hosts directory, plain
// http and platform travel in the request; credentials are answered over
// a stream when the daemon asks for them.
//
// A daemon that restarts during the pull is asked again once it answers,
// up to five times: its partial downloads are held by the client's lease
// and resume where they stopped. A daemon without a Transfer service
// (containerd 1.x) gives NotImplemented: use Pull.
func (c *Client) TransferPull(ctx context.Context, ref string, opts ...RemoteOpt) (images.Image, error) {
	cfg := &remoteConfig{}
	for _, o := range opts {
		o(cfg)
	}
	if cfg.resolver != nil || cfg.maxConcurrent != 0 || cfg.chunkSize != 0 || cfg.parallelChunks != 0 || cfg.chunkThreshold != 0 {
		return images.Image{}, fmt.Errorf("pull %s through the daemon's Transfer service: a resolver, concurrency or chunk settings of the client's own are not sent (the daemon's transfer configuration sets them): %w", ref, errdefs.ErrInvalidArgument)
	}
	if c.conn == nil {
		return images.Image{}, fmt.Errorf("pull %s: a client over in-process services has no Transfer service; use Pull: %w", ref, errdefs.ErrNotImplemented)
	}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return images.Image{}, err
	}
	defer done(context.WithoutCancel(ctx))
	before, err := c.Server(ctx)
	if err != nil {
		return images.Image{}, err
	}
	for restarts := 0; ; restarts++ {
		err = c.transferOnce(ctx, ref, cfg)
		if err == nil || !errdefs.IsUnavailable(err) || restarts == maxTransferRestarts {
			break
		}
		// Unavailable is also what a daemon says of a registry it cannot
		// reach: ask again only if the daemon itself went away. Server
		// waits for it to come back (and says so, WithConnectWait).
		now, serr := c.Server(ctx)
		if serr != nil {
			return images.Image{}, errors.Join(err, serr)
		}
		if now.Pid == before.Pid && now.Pidns == before.Pidns {
			break
		}
		before = now
	}
	if err != nil {
		if strings.Contains(err.Error(), ref) {
			return images.Image{}, err
		}
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return c.ImageService().Get(ctx, ref)
}

// transferPullRequest is the Transfer request of a pull of ref, naming
// the streams of its credentials and progress ("" for none).
func transferPullRequest(ref string, cfg *remoteConfig, authStream, progressStream string) (*transferapi.TransferRequest, error) {
	resolver := &transfertypes.RegistryResolver{HostDir: cfg.registry.HostsDir, AuthStream: authStream}
	if cfg.registry.PlainHTTP {
		resolver.DefaultScheme = "http"
	}
	dst := &transfertypes.ImageStore{Name: ref}
	p := platforms.DefaultSpec()
	if cfg.platformSpec != nil {
		p = *cfg.platformSpec
	}
	platform := &types.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion}
	if !cfg.allPlatforms {
		dst.Platforms = []*types.Platform{platform}
	}
	if cfg.unpack != "" {
		dst.Unpacks = []*transfertypes.UnpackConfiguration{{Platform: platform, Snapshotter: cfg.unpack}}
	}
	src, err := typeurl.MarshalAnyToProto(&transfertypes.OCIRegistry{Reference: ref, Resolver: resolver})
	if err != nil {
		return nil, err
	}
	dstAny, err := typeurl.MarshalAnyToProto(dst)
	if err != nil {
		return nil, err
	}
	return &transferapi.TransferRequest{Source: src, Destination: dstAny, Options: &transferapi.TransferOptions{ProgressStream: progressStream}}, nil
}

// transferOnce pulls ref once through the daemon's Transfer service, with
// streams of its own: credentials when cfg has some, progress when cfg
// wants it.
func (c *Client) transferOnce(ctx context.Context, ref string, cfg *remoteConfig) error {
	ctx, cancel := context.WithCancel(ctx)
	var streams sync.WaitGroup
	defer func() {
		cancel()
		streams.Wait()
	}()
	var authID, progressID string
	var progressEnded chan struct{} // nil: no progress stream
	if cfg.registry.Credentials != nil {
		s, id, err := c.openStream(ctx, "auth")
		if err != nil {
			return err
		}
		authID = id
		streams.Go(func() { answerCredentials(ctx, s, cfg) })
	}
	if cfg.progress != nil {
		s, id, err := c.openStream(ctx, "progress")
		if err != nil {
			return err
		}
		progressID = id
		progressEnded = make(chan struct{})
		streams.Go(func() {
			defer close(progressEnded)
			followProgress(s, cfg.progress)
		})
	}
	req, err := transferPullRequest(ref, cfg, authID, progressID)
	if err != nil {
		return err
	}
	_, err = transferapi.NewTransferClient(c.conn).Transfer(ctx, req)
	if err == nil && progressEnded != nil {
		// The daemon ends the progress stream before it answers: its last
		// events are still on the way. A daemon that fails may never
		// have taken the stream, so only a success waits, and not for
		// long.
		select {
		case <-progressEnded:
		case <-time.After(progressDrain):
		}
	}
	return err
}

// progressDrain bounds the wait for a successful transfer's last progress
// events.
const progressDrain = 5 * time.Second

// openStream opens a stream of the daemon's Streaming service under a new
// name starting with kind, as a transfer's request names it.
func (c *Client) openStream(ctx context.Context, kind string) (streamingapi.Streaming_StreamClient, string, error) {
	var b [8]byte
	rand.Read(b[:])
	id := kind + "-" + hex.EncodeToString(b[:])
	s, err := streamingapi.NewStreamingClient(c.conn).Stream(ctx)
	if err != nil {
		return nil, "", err
	}
	init, err := typeurl.MarshalAnyToProto(&streamingapi.StreamInit{ID: id})
	if err != nil {
		return nil, "", err
	}
	if err := s.Send(init); err != nil {
		return nil, "", fmt.Errorf("open %s stream: %w", kind, err)
	}
	// The daemon acknowledges once a transfer can find the stream.
	if _, err := s.Recv(); err != nil {
		return nil, "", fmt.Errorf("open %s stream: %w", kind, err)
	}
	return s, id, nil
}

// followProgress hands the daemon's progress events on to fn as the blob
// states Pull reports, until the daemon ends the stream.
func followProgress(s streamingapi.Streaming_StreamClient, fn func(pull.Progress)) {
	for {
		a, err := s.Recv()
		if err != nil {
			return
		}
		var m transfertypes.Progress
		if typeurl.UnmarshalTo(a, &m) != nil || m.GetDesc() == nil {
			continue
		}
		p, ok := blobProgress(&m)
		if ok {
			fn(p)
		}
	}
}

// blobProgress is the Pull progress of a Transfer progress event about a
// blob; other events (resolving, unpacking, saved) have none.
func blobProgress(m *transfertypes.Progress) (pull.Progress, bool) {
	d := m.GetDesc()
	dgst, err := digest.Parse(d.GetDigest())
	if err != nil {
		return pull.Progress{}, false
	}
	p := pull.Progress{
		Desc:   ocispec.Descriptor{MediaType: d.GetMediaType(), Digest: dgst, Size: d.GetSize(), Annotations: d.GetAnnotations()},
		Offset: m.GetProgress(),
	}
	switch m.GetEvent() {
	case "waiting":
		p.Status = pull.StatusWaiting
	case "downloading":
		p.Status = pull.StatusDownloading
	case "complete", "extracted":
		// The daemon sends the latest event of each blob: a layer
		// unpacked since it was stored says "extracted".
		p.Status, p.Offset = pull.StatusDone, d.GetSize()
	case "already exists":
		p.Status = pull.StatusExists
	default:
		return pull.Progress{}, false
	}
	return p, true
}

// answerCredentials answers the daemon's credential requests from cfg's
// store until the stream or ctx ends.
func answerCredentials(ctx context.Context, s streamingapi.Streaming_StreamClient, cfg *remoteConfig) {
	for {
		a, err := s.Recv()
		if err != nil {
			return
		}
		var q transfertypes.AuthRequest
		resp := &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_NONE}
		if typeurl.UnmarshalTo(a, &q) == nil {
			if cr, err := cfg.registry.Credentials.Get(ctx, q.GetHost()); err == nil {
				switch {
				case cr.IdentityToken != "":
					resp = &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_REFRESH, Secret: cr.IdentityToken}
				case cr.Username != "" || cr.Secret != "":
					resp = &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_CREDENTIALS, Username: cr.Username, Secret: cr.Secret}
				}
			}
		}
		out, err := typeurl.MarshalAnyToProto(resp)
		if err != nil {
			return
		}
		if err := s.Send(out); err != nil {
			return
		}
	}
}
