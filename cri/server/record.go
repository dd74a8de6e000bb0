package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// What the CRI keeps of its pods and containers outlives hulld in two
// places: what never changes is an extension of the container record
// (written once, with the record, so a pod or container exists in full or
// not at all), and what changes (a container's start, exit, reason) is a
// small status file beside it, replaced atomically on each change.

// Extension names and label keys the CRI puts on its container records.
const (
	sandboxExtension   = "io.cri-containerd.sandbox.metadata"
	containerExtension = "io.cri-containerd.container.metadata"
	kindLabel          = "io.cri-containerd.kind"
	kindSandbox        = "sandbox"
	kindContainer      = "container"
	sandboxIDLabel     = "io.kubernetes.pod.sandbox-id"
	recordTypeSandbox  = "hull.io/cri/sandbox/v1"
	recordTypeCtr      = "hull.io/cri/container/v1"
)

// sandboxRecord is what a pod is made of, for a restart to rebuild it.
type sandboxRecord struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`
	Config         json.RawMessage `json:"config"` // runtime.PodSandboxConfig, protojson
	RuntimeHandler string          `json:"runtimeHandler"`
	RuntimeType    string          `json:"runtimeType"`
	NetNSPath      string          `json:"netnsPath,omitempty"`
	IPs            []string        `json:"ips,omitempty"`
	CNIResult      json.RawMessage `json:"cniResult,omitempty"`
	CreatedAt      int64           `json:"createdAt"`
	Image          string          `json:"image"`
	CgroupParent   string          `json:"cgroupParent,omitempty"`
}

// containerRecord is what a container is made of.
type containerRecord struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	SandboxID string          `json:"sandboxId"`
	Config    json.RawMessage `json:"config"`    // runtime.ContainerConfig, protojson
	ImageRef  string          `json:"imageRef"`  // the image id
	ImageName string          `json:"imageName"` // what the kubelet asked for
	LogPath   string          `json:"logPath,omitempty"`
	CreatedAt int64           `json:"createdAt"`
	// StopSignal is the image's, what StopContainer sends first.
	StopSignal string `json:"stopSignal,omitempty"`
	// ImageMounts are the image volumes with the image id each resolved
	// to, which the status reports.
	ImageMounts []imageMountRef `json:"imageMounts,omitempty"`
}

// imageMountRef is an image volume of a container.
type imageMountRef struct {
	ContainerPath string `json:"containerPath"`
	Image         string `json:"image"`
	ImageRef      string `json:"imageRef"`
}

// containerStatus is what changes in a container's life.
type containerStatus struct {
	Pid        uint32 `json:"pid,omitempty"`
	StartedAt  int64  `json:"startedAt,omitempty"`
	FinishedAt int64  `json:"finishedAt,omitempty"`
	ExitCode   int32  `json:"exitCode,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	// Starting is set while StartContainer runs, so a restart in between
	// knows the start did not finish.
	Starting bool `json:"starting,omitempty"`
	// Removing is set once removal began: such a container is never
	// started again.
	Removing bool `json:"removing,omitempty"`
}

func marshalConfig(m proto.Message) (json.RawMessage, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %v: %w", m, err, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

func unmarshalConfig(b json.RawMessage, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
}

// extension encodes v (JSON) as a record extension of type typ.
func extension(typ string, v any) (typeurl.Any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: typ, Value: b}, nil
}

func decodeExtension(exts map[string]typeurl.Any, name, typ string, v any) error {
	a, ok := exts[name]
	if !ok || a == nil {
		return fmt.Errorf("extension %s is missing: %w", name, errdefs.ErrNotFound)
	}
	if a.GetTypeUrl() != typ {
		return fmt.Errorf("extension %s has type %q, want %q: %w", name, a.GetTypeUrl(), typ, errdefs.ErrInvalidArgument)
	}
	return json.Unmarshal(a.GetValue(), v)
}

// writeStatus replaces path with st, atomically.
func writeStatus(path string, st containerStatus) error { return writeJSONAtomic(path, st) }

// writeJSONAtomic replaces path with v as JSON: written beside it and
// renamed over it, so a reader after a crash finds the old or the new.
func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readStatus(path string) (containerStatus, error) {
	var st containerStatus
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// statusPath is where a container's status file lives.
func statusPath(dir string) string { return filepath.Join(dir, "status") }

// sandboxName is the kubelet's unique pod name: name, namespace, uid and
// attempt, as containerd makes it.
func sandboxName(m *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

// containerName is the unique name of a container within its pod.
func containerName(c *runtime.ContainerMetadata, s *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), s.GetName(), s.GetNamespace(), s.GetUid(), c.GetAttempt())
}
