// Package recorded holds what callclock records of a daemon's answers and
// replayfloor gives again: the answers, and the codec that passes gRPC
// messages through as their bytes.
package recorded

// Answer is what a daemon answered to one call, a line of JSON in a
// record.
type Answer struct {
	Method string `json:"method"`
	// Code and Message are the call's status.
	Code    uint32 `json:"code"`
	Message string `json:"message,omitempty"`
	// Responses are the messages the daemon sent, as their bytes.
	Responses [][]byte `json:"responses"`
}

// Codec passes messages (*[]byte) through as the bytes they are, under
// the name of the proto codec, so that a proxy or a replay need not know
// the messages' types.
type Codec struct{}

// Marshal returns the message's bytes.
func (Codec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }

// Unmarshal keeps a copy of data, which gRPC may reuse.
func (Codec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}

// Name is the proto codec's, which clients and daemons ask for.
func (Codec) Name() string { return "proto" }
