package introspection

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	api "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/plugin"
)

// Local is the introspection service in process: containerd's
// IntrospectionClient over hulld's plugin set. Errors are errdefs classes.
type Local struct {
	plugins *plugin.Set
	uuid    string
}

var _ api.IntrospectionClient = (*Local)(nil)

// NewLocal returns the introspection service over plugins; uuid identifies
// the daemon's state.
func NewLocal(plugins *plugin.Set, uuid string) *Local {
	return &Local{plugins: plugins, uuid: uuid}
}

func pluginToProto(p *plugin.Plugin) *api.Plugin {
	out := &api.Plugin{
		Type: string(p.Registration.Type), ID: p.Registration.ID,
		Exports: p.Meta.Exports, Capabilities: p.Meta.Capabilities,
	}
	for _, r := range p.Registration.Requires {
		out.Requires = append(out.Requires, string(r))
	}
	if p.Err != nil {
		out.InitErr = status.New(codes.Unknown, p.Err.Error()).Proto()
	}
	return out
}

// Plugins lists the plugins matching req's filters.
func (s *Local) Plugins(ctx context.Context, req *api.PluginsRequest, _ ...grpc.CallOption) (*api.PluginsResponse, error) {
	filter, err := filters.ParseAll(req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.PluginsResponse{}
	for _, p := range s.plugins.All() {
		pp := pluginToProto(p)
		if filter.Match(filters.AdapterFunc(func(fp []string) (string, bool) {
			switch fp[0] {
			case "type":
				return pp.Type, true
			case "id":
				return pp.ID, true
			case "capabilities":
				return strings.Join(pp.Capabilities, ","), len(pp.Capabilities) > 0
			case "exports":
				return labelValue(pp.Exports, fp)
			}
			return "", false
		})) {
			resp.Plugins = append(resp.Plugins, pp)
		}
	}
	return resp, nil
}

func labelValue(m map[string]string, fp []string) (string, bool) {
	if len(fp) < 2 {
		return "", len(m) > 0
	}
	v, ok := m[strings.Join(fp[1:], ".")]
	return v, ok
}

// Server identifies the daemon process.
func (s *Local) Server(ctx context.Context, _ *emptypb.Empty, _ ...grpc.CallOption) (*api.ServerResponse, error) {
	resp := &api.ServerResponse{UUID: s.uuid, Pid: uint64(os.Getpid())}
	if fi, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		// "pid:[4026531836]": the inode number identifies the namespace.
		var ino uint64
		if i := strings.IndexByte(fi, '['); i >= 0 {
			for _, c := range fi[i+1:] {
				if c < '0' || c > '9' {
					break
				}
				ino = ino*10 + uint64(c-'0')
			}
		}
		resp.Pidns = ino
	}
	return resp, nil
}

// loadUUID returns the server UUID kept in dir, creating it on first start so
// that it survives restarts.
func loadUUID(dir string, newID func() string) (string, error) {
	path := filepath.Join(dir, "uuid")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	id := newID()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id), 0o644); err != nil {
		return "", err
	}
	return id, os.Rename(tmp, path)
}

// PluginInfo describes plugin req.Type.req.ID, failed ones included, as
// containerd 2.x does. With options it also asks the plugin for more: the
// options are unpacked from their Any and handed to the instance's
// InfoProvider, whose answer becomes Extra. The runtime plugin
// (io.containerd.runtime.v2.task) answers a RuntimeRequest by running the
// shim's -info. A plugin that is not there is NotFound; one that did not
// load has no instance to ask (FailedPrecondition); one that cannot answer
// options is NotImplemented.
func (s *Local) PluginInfo(ctx context.Context, req *api.PluginInfoRequest, _ ...grpc.CallOption) (*api.PluginInfoResponse, error) {
	var p *plugin.Plugin
	for _, c := range s.plugins.All() {
		if string(c.Registration.Type) == req.GetType() && c.Registration.ID == req.GetID() {
			p = c
			break
		}
	}
	if p == nil {
		return nil, fmt.Errorf("plugin %s.%s: %w", req.GetType(), req.GetID(), errdefs.ErrNotFound)
	}
	resp := &api.PluginInfoResponse{Plugin: pluginToProto(p)}
	if req.GetOptions() == nil {
		return resp, nil
	}
	uri := p.Registration.URI()
	if p.Err != nil {
		return nil, fmt.Errorf("plugin %s did not load (%v), so it has no extra information: %w", uri, p.Err, errdefs.ErrFailedPrecondition)
	}
	options, err := typeurl.UnmarshalAny(req.GetOptions())
	if err != nil {
		return nil, fmt.Errorf("plugin info options of type %q: %v: %w", req.GetOptions().GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	provider, ok := p.Instance.(InfoProvider)
	if !ok && p.Registration.Type == plugin.RuntimePluginV2 {
		r, _ := p.Instance.(binaryResolver)
		provider, ok = shimInfo{resolver: r}, true
	}
	if !ok {
		return nil, fmt.Errorf("plugin %s does not provide extra information: %w", uri, errdefs.ErrNotImplemented)
	}
	info, err := provider.PluginInfo(ctx, options)
	if err != nil {
		return nil, err
	}
	extra, err := typeurl.MarshalAnyToProto(info)
	if err != nil {
		return nil, fmt.Errorf("plugin %s answered a %T, which cannot be sent: %v: %w", uri, info, err, errdefs.ErrNotImplemented)
	}
	resp.Extra = extra
	return resp, nil
}

// service is containerd.services.introspection.v1.Introspection over the
// introspection service plugin.
type service struct {
	api.UnimplementedIntrospectionServer
	local api.IntrospectionClient
}

func (s *service) RegisterGRPC(g *grpc.Server) { api.RegisterIntrospectionServer(g, s) }

func (s *service) Plugins(ctx context.Context, req *api.PluginsRequest) (*api.PluginsResponse, error) {
	resp, err := s.local.Plugins(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Server(ctx context.Context, req *emptypb.Empty) (*api.ServerResponse, error) {
	resp, err := s.local.Server(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) PluginInfo(ctx context.Context, req *api.PluginInfoRequest) (*api.PluginInfoResponse, error) {
	resp, err := s.local.PluginInfo(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}
