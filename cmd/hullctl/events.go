package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	// The containerd event types register with protobuf's global registry,
	// where typeurl finds them to decode envelopes.
	_ "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hullrt/hull/core/events"
)

func eventsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "events",
		Aliases:   []string{"event"},
		Usage:     "print events matching any of the filters until interrupted",
		ArgsUsage: "[FILTER...]",
		Description: `Each event is a line "TIME NAMESPACE TOPIC EVENT", as ctr prints them, EVENT
being the event as JSON, or its type URL and base64 value for a type hullctl
does not know. With --format json each line is a JSON object instead.`,
		Action: func(c *cli.Context) error {
			cl, err := e.connect()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(e.ctx(c))
			defer cancel()
			ch, errs := cl.EventService().Subscribe(ctx, c.Args().Slice()...)
			for env := range ch {
				if err := e.printEvent(env); err != nil {
					return err
				}
			}
			err = <-errs
			if c.Context.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
				return nil // interrupted: the normal end
			}
			return err
		},
	}
}

// decodeEvent renders an event's payload as JSON; ok is false for a type
// not registered, which is then shown by its type URL and raw bytes.
func decodeEvent(a typeurl.Any) (json.RawMessage, bool) {
	if a == nil {
		return json.RawMessage("null"), true
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, false
	}
	var b []byte
	if m, ok := v.(proto.Message); ok {
		b, err = protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return nil, false
	}
	// protojson's spacing is deliberately unstable; compact it. Proto
	// names (container_id) are the keys ctr prints.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

// printEvent writes one event line in the chosen format.
func (e *env) printEvent(env *events.Envelope) error {
	raw, ok := decodeEvent(env.Event)
	if e.format == "json" {
		out := map[string]any{
			"timestamp": timeString(env.Timestamp), "namespace": env.Namespace, "topic": env.Topic,
		}
		if env.Event != nil {
			out["type"] = env.Event.GetTypeUrl()
		}
		if ok {
			out["event"] = raw
		} else {
			out["value"] = base64.StdEncoding.EncodeToString(env.Event.GetValue())
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(e.stdout, string(b))
		return err
	}
	payload := string(raw)
	if !ok {
		payload = env.Event.GetTypeUrl() + " " + base64.StdEncoding.EncodeToString(env.Event.GetValue())
	}
	_, err := fmt.Fprintln(e.stdout, env.Timestamp, env.Namespace, env.Topic, payload)
	return err
}
