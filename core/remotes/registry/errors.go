package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
)

// hostErr is why one host could not serve a request.
type hostErr struct {
	kind   error  // an errdefs sentinel
	reason string // short, without the host: "404 Not Found", "connection refused"
	// next says the following host may still serve the request: the host
	// is unreachable, broken or lacks the object.
	next bool
	// answered says the host gave an HTTP answer; a 404 from one host is
	// the verdict when the others did not answer at all.
	answered bool
	cause    error
}

func (e *hostErr) Error() string { return e.reason }

func (e *hostErr) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// hostsError is the error of an operation after trying hosts: the subject,
// every host's reason in order, and the class.
type hostsError struct {
	subject string
	kind    error
	reasons []string
	cause   error
}

// Error names the class last, as errdefs errors do: a message that crosses
// gRPC and comes back as an errdefs class then names it once.
func (e *hostsError) Error() string {
	if len(e.reasons) == 0 {
		return e.subject + ": " + e.kind.Error()
	}
	return e.subject + ": " + strings.Join(e.reasons, "; ") + ": " + e.kind.Error()
}

func (e *hostsError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// tryHosts calls fn for each endpoint until one succeeds or fails in a way
// the next host cannot help with.
func (r *Resolver) tryHosts(ctx context.Context, subject string, eps []*endpoint, fn func(*endpoint) error) error {
	if len(eps) == 0 {
		return fmt.Errorf("%s: no host configured for this operation: %w", subject, errdefs.ErrNotFound)
	}
	var (
		reasons  []string
		notFound int
		answered int
		kinds    []error
	)
	for _, ep := range eps {
		err := fn(ep)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return &hostsError{subject: subject, kind: ctx.Err(), reasons: append(reasons, ep.base+": "+err.Error())}
		}
		he := toHostErr(err)
		reason := he.reason
		if strings.HasPrefix(reason, "tls") {
			// Which roots were trusted is the first question about a
			// certificate error.
			reason += " (trusted: the system roots"
			for _, f := range ep.Host.CAFiles {
				reason += ", " + f
			}
			reason += ")"
		}
		reasons = append(reasons, ep.base+": "+reason)
		if !he.next {
			return &hostsError{subject: subject, kind: he.kind, reasons: reasons, cause: he.cause}
		}
		kinds = append(kinds, he.kind)
		if he.answered {
			answered++
		} else {
			r.markDown(ep.base)
		}
		if errors.Is(he.kind, errdefs.ErrNotFound) {
			notFound++
		}
		r.log.DebugContext(ctx, "registry host failed, trying next", "subject", subject, "host", ep.base, "reason", he.reason)
	}
	// One class for all hosts is the verdict; a 404 stands if the other
	// hosts did not answer; anything else is a failure to reach the object.
	var kind error = errdefs.ErrUnavailable
	switch {
	case allSame(kinds):
		kind = kinds[0]
	case notFound > 0 && notFound == answered:
		kind = errdefs.ErrNotFound
	}
	return &hostsError{subject: subject, kind: kind, reasons: reasons}
}

// toHostErr classifies an error from talking to one host.
func toHostErr(err error) *hostErr {
	var he *hostErr
	if errors.As(err, &he) {
		return he
	}
	// A context error here is not the caller's (tryHosts checks that
	// first) but a transport timeout, which net/http also reports as
	// context.DeadlineExceeded: the host is slow, the next may not be.
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	reason := inner.Error()
	var (
		netErr   net.Error
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		alert    tls.AlertError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.Is(err, http.ErrSchemeMismatch):
		// The usual first step with a local registry; say the way out.
		reason = "the registry speaks plain http, not https: allow it with --plain-http (hullctl, ctr; a registry on loopback) " +
			"or with server = \"http://...\" in the registry's hosts.toml"
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		reason = "tls: " + strings.TrimPrefix(reason, "tls: ")
	case errors.As(err, &record):
		reason = "tls: server did not answer TLS (plain http?): " + reason
	case errors.As(err, &alert):
		reason = "tls: " + strings.TrimPrefix(reason, "tls: ")
	case errors.As(err, &netErr) && netErr.Timeout():
		reason = "timeout: " + reason
	}
	return &hostErr{kind: errdefs.ErrUnavailable, reason: reason, next: true, cause: err}
}

// statusErr turns an unexpected answer into a hostErr, reading the
// distribution error body for its codes, and closes the body.
func statusErr(resp *http.Response) *hostErr {
	defer resp.Body.Close()
	reason := resp.Status
	if resp.Request != nil && resp.Request.Method != http.MethodHead {
		if d := errorDetail(io.LimitReader(resp.Body, 64<<10)); d != "" {
			reason += ": " + d
		}
	}
	he := &hostErr{reason: reason, answered: true}
	switch c := resp.StatusCode; {
	case c == http.StatusNotFound:
		he.kind, he.next = errdefs.ErrNotFound, true
	case c == http.StatusUnauthorized:
		he.kind = errdefs.ErrUnauthenticated
		he.reason += " (the registry wants credentials, or refused the ones given: pass them with hullctl --user user[:password] or --registry-config config.json, or the client library's WithCredentials)"
	case c == http.StatusForbidden:
		he.kind = errdefs.ErrPermissionDenied
	case c == http.StatusBadRequest:
		he.kind = errdefs.ErrInvalidArgument
	case c == http.StatusConflict:
		he.kind = errdefs.ErrConflict
	case c == http.StatusPreconditionFailed:
		he.kind = errdefs.ErrFailedPrecondition
	case c == http.StatusRequestedRangeNotSatisfiable:
		he.kind = errdefs.ErrOutOfRange
	case c == http.StatusMethodNotAllowed:
		he.kind = errdefs.ErrNotImplemented
	case c == http.StatusRequestEntityTooLarge:
		he.kind = errdefs.ErrResourceExhausted
	case c == http.StatusTooManyRequests:
		he.kind, he.next = errdefs.ErrUnavailable, true
	case c == http.StatusNotImplemented:
		he.kind, he.next = errdefs.ErrNotImplemented, true
	case c >= 500:
		he.kind, he.next = errdefs.ErrUnavailable, true
	default:
		he.kind = errdefs.ErrUnknown
	}
	return he
}

// errorDetail reads a distribution error body ({"errors":[{code,message}]}).
// Other bodies (HTML from proxies and the like) are not echoed.
func errorDetail(r io.Reader) string {
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return ""
	}
	var parts []string
	for _, e := range body.Errors {
		switch {
		case e.Code != "" && e.Message != "":
			parts = append(parts, e.Code+": "+e.Message)
		case e.Code != "":
			parts = append(parts, e.Code)
		case e.Message != "":
			parts = append(parts, e.Message)
		}
	}
	return strings.Join(parts, ", ")
}

// failure is a hostErr for a problem found in an answer (bad digest, bad
// media type): the host answered, and whether another host may do better is
// up to the caller.
func failure(kind error, next bool, format string, args ...any) *hostErr {
	return &hostErr{kind: kind, reason: fmt.Sprintf(format, args...), next: next, answered: true}
}

// drain reads a little of a body before closing it so that the connection
// can be reused; a large body is not worth reading.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}

func allSame(kinds []error) bool {
	for _, k := range kinds[1:] {
		if k != kinds[0] {
			return false
		}
	}
	return len(kinds) > 0
}
