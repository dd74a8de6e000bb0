// Package cri is hulld's Kubernetes Container Runtime Interface (CRI v1):
// the runtime and image services a kubelet drives, built over the client
// library on hulld's in-process services. Its subpackages hold the pieces:
// pod networking (netns, cni), OCI specs from CRI configs (spec), container
// output and logs (logs), streaming (streaming), images (images) and the
// services themselves (server).
package cri

// The modules the CRI packages build on, pinned here until each has its
// importer.
import (
	_ "github.com/containerd/go-cni"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
	_ "k8s.io/cri-streaming/pkg/streaming"
	_ "k8s.io/cri-streaming/pkg/streaming/portforward"
	_ "k8s.io/cri-streaming/pkg/streaming/remotecommand"
)
