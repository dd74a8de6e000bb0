package bootstrap

import (
	"fmt"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// maxStdin bounds what start reads on stdin, as containerd's shims do.
const maxStdin = 10 << 20

// StartInput is what the daemon gave start on stdin, in either form.
//
// containerd 2.3 and later (and hulld) write a BootstrapParams; earlier
// daemons (containerd 1.6 to 2.2) write the runtime options Any alone, or
// nothing. The two cannot be told apart by their bytes: an options Any
// decodes as parameters whose instance id is its type URL. So, as
// containerd's shims do, the input is parameters only when their instance
// id and namespace are the ones on the command line.
type StartInput struct {
	// Params are the bootstrap parameters, nil when the daemon sent the
	// options alone (then it wants the answer of a pre-2.3 shim).
	Params *bootapi.BootstrapParams
	// Options are the runtime options, an encoded Any, or nil.
	Options []byte
}

// ParseStartInput reads start's stdin, data, for the shim of args a.
func ParseStartInput(data []byte, a Args) (StartInput, error) {
	var p bootapi.BootstrapParams
	if len(data) > 0 && proto.Unmarshal(data, &p) == nil && p.InstanceID == a.ID && p.Namespace == a.Namespace {
		in := StartInput{Params: &p}
		for _, ext := range p.Extensions {
			if v := ext.GetValue(); v != nil && v.MessageIs(&options.Options{}) {
				b, err := proto.Marshal(v)
				if err != nil {
					return in, err
				}
				in.Options = b
				break
			}
		}
		return in, nil
	}
	if len(data) == 0 {
		return StartInput{}, nil
	}
	// As a pre-2.3 runc shim, refuse options of another type: they are
	// not runc's, or they are parameters for another task.
	var opts anypb.Any
	if err := proto.Unmarshal(data, &opts); err != nil || !opts.MessageIs(&options.Options{}) {
		return StartInput{}, fmt.Errorf("start's stdin (%d bytes, type URL %q) is neither bootstrap parameters for task %q in namespace %q nor runc options: %w",
			len(data), opts.GetTypeUrl(), a.ID, a.Namespace, errdefs.ErrInvalidArgument)
	}
	return StartInput{Options: data}, nil
}

// launchArgs applies the parameters to the command line's values: the
// daemon's addresses and binary, and the log level (debug or more
// verbose turns on -debug).
func (in StartInput) launchArgs(a Args) (address, ttrpcAddress, publish string, debug bool, socketDir string) {
	address, publish, debug = a.Address, a.PublishBinary, a.Debug
	p := in.Params
	if p == nil {
		return address, "", publish, debug, ""
	}
	if p.ContainerdGrpcAddress != "" {
		address = p.ContainerdGrpcAddress
	}
	if p.ContainerdBinary != "" {
		publish = p.ContainerdBinary
	}
	debug = debug || p.LogLevel <= bootapi.LogLevel_LOG_LEVEL_DEBUG
	return address, p.ContainerdTtrpcAddress, publish, debug, p.GetSocketDir()
}

// Answer is what start prints for the socket address addr: to a daemon
// that sent parameters, a binary BootstrapResult saying task API v3, as
// containerd 2.3+'s shims answer; otherwise the bare address, or JSON
// saying v3 when MAX_SHIM_VERSION allows it (see BootstrapOutput).
func (in StartInput) Answer(addr, maxVersion string) ([]byte, error) {
	if in.Params == nil {
		return []byte(BootstrapOutput(addr, maxVersion)), nil
	}
	return proto.Marshal(&bootapi.BootstrapResult{Version: 3, Address: addr, Protocol: "ttrpc"})
}
