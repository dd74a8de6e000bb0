// Package events defines the event envelope and the roles of an event bus:
// publishers stamp events with their namespace and a time, forwarders relay
// envelopes stamped elsewhere (by a shim, say), and subscribers receive the
// envelopes that match their filters.
//
// Topics and event types are containerd's ("/namespaces/create" carrying a
// containerd.events.NamespaceCreate, and so on), so that containerd clients
// decode hull's events unchanged.
package events

import (
	"context"
	"time"

	"github.com/containerd/typeurl/v2"
)

// Envelope is an event with where and when it happened.
type Envelope struct {
	Timestamp time.Time
	Namespace string
	Topic     string
	Event     typeurl.Any
}

// Field returns the value of a filter field path of the envelope, for the
// filter syntax of package filters: "namespace", "topic", and "event.<field>"
// (the latter not supported: envelopes are matched on their header only).
func (e *Envelope) Field(fieldpath []string) (string, bool) {
	if len(fieldpath) == 0 {
		return "", false
	}
	switch fieldpath[0] {
	case "namespace":
		return e.Namespace, len(e.Namespace) > 0
	case "topic":
		return e.Topic, len(e.Topic) > 0
	}
	return "", false
}

// Publisher publishes an event in the namespace carried by ctx.
type Publisher interface {
	Publish(ctx context.Context, topic string, event any) error
}

// Forwarder relays an envelope stamped elsewhere.
type Forwarder interface {
	Forward(ctx context.Context, envelope *Envelope) error
}

// Subscriber delivers envelopes matching any of filters (containerd's filter
// syntax over "topic" and "namespace"; none matches all) until ctx is done.
// The error channel receives at most one error and is then closed.
type Subscriber interface {
	Subscribe(ctx context.Context, filters ...string) (ch <-chan *Envelope, errs <-chan error)
}
