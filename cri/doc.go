// Package cri is hulld's Kubernetes Container Runtime Interface (CRI v1):
// the runtime and image services a kubelet drives, built over the client
// library on hulld's in-process services. Its subpackages hold the pieces:
// configuration (config), pod networking (netns, cni), OCI specs from CRI
// configs (spec), container output and CRI logs (containerio, logs),
// streaming (streaming), images (images) and the runtime service itself
// (server); plugins/cri wires them into hulld.
package cri
