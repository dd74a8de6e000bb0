package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker's manifests, which registries still serve.
const (
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// manifestAccept is the Accept header of manifest requests: every current
// manifest type, then anything, so that a registry with an unusual type
// still answers rather than 404s.
const manifestAccept = ocispec.MediaTypeImageIndex + ", " + ocispec.MediaTypeImageManifest + ", " +
	mediaTypeDockerManifestList + ", " + mediaTypeDockerManifest + ", */*"

func isManifestType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
		mediaTypeDockerManifestList, mediaTypeDockerManifest,
		mediaTypeDockerSchema1, mediaTypeDockerSchema1JWS:
		return true
	}
	return false
}

func isSchema1(mt string) bool {
	return mt == mediaTypeDockerSchema1 || mt == mediaTypeDockerSchema1JWS
}

func schema1Err() *hostErr {
	return failure(errdefs.ErrNotImplemented, false, "schema 1 manifests are not supported; push the image again with a current client")
}

// contentType returns the media type of a Content-Type header value,
// without parameters.
func contentType(v string) string {
	if v == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return strings.TrimSpace(strings.SplitN(v, ";", 2)[0])
	}
	return mt
}

// Resolve returns ref and the descriptor of what it points at. Tags are
// resolved on hosts with the resolve capability; digests also on hosts that
// can only pull. It asks for the headers alone (HEAD), which registries do
// not count as a pull, and reads the manifest only when they say too
// little.
func (r *Resolver) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	desc, _, err := r.resolve(ctx, ref, false)
	return ref, desc, err
}

// ResolveManifest is Resolve that also returns the manifest (or index)
// itself, verified against the descriptor, in one request (GET): for a
// pull that will read it anyway, which then saves a round trip to the
// registry before anything else can be fetched.
func (r *Resolver) ResolveManifest(ctx context.Context, ref string) (string, ocispec.Descriptor, []byte, error) {
	desc, body, err := r.resolve(ctx, ref, true)
	return ref, desc, body, err
}

func (r *Resolver) resolve(ctx context.Context, ref string, get bool) (ocispec.Descriptor, []byte, error) {
	rf, err := parseRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if rf.tag == "" && rf.dgst == "" {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: reference has neither tag nor digest: %w", ref, errdefs.ErrInvalidArgument)
	}
	want := canResolve
	if rf.dgst != "" {
		want = pullOrResolve
	}
	eps, err := r.endpoints(rf, want)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	var (
		desc ocispec.Descriptor
		body []byte
	)
	err = r.tryHosts(ctx, ref, eps, func(ep *endpoint) error {
		d, b, err := r.resolveOn(ctx, ep, rf, get)
		if err == nil {
			desc, body = d, b
		}
		return err
	})
	if err != nil {
		return ocispec.Descriptor{}, nil, notFoundRef(ref, rf, err)
	}
	return desc, body, nil
}

// resolveOn resolves rf on ep: by its headers (HEAD) unless get, and by the
// manifest itself (GET) when get or when the headers say too little, in
// which case the manifest is returned too.
func (r *Resolver) resolveOn(ctx context.Context, ep *endpoint, rf reference, get bool) (ocispec.Descriptor, []byte, error) {
	obj := rf.tag
	if rf.dgst != "" {
		obj = rf.dgst.String()
	}
	rq := &request{
		ep:     ep,
		method: http.MethodHead,
		url:    ep.url(rf, nil, "manifests", obj),
		header: http.Header{"Accept": {manifestAccept}},
		scopes: []string{scope(rf.repo, "pull")},
	}
	if !get {
		resp, err := r.do(ctx, rq)
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
			resp.Body.Close()
			mt := contentType(resp.Header.Get("Content-Type"))
			if isSchema1(mt) {
				return ocispec.Descriptor{}, nil, schema1Err()
			}
			d, derr := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
			if derr == nil && isManifestType(mt) && resp.ContentLength > 0 && (rf.dgst == "" || d == rf.dgst) {
				return ocispec.Descriptor{MediaType: mt, Digest: d, Size: resp.ContentLength}, nil, nil
			}
			// Not enough in the headers: read the manifest itself.
		case http.StatusMethodNotAllowed, http.StatusNotFound:
			// A HEAD answer has no body, and with it goes the
			// registry's reason ("manifest unknown", "name
			// unknown"): the GET below says why, and costs a request
			// only when the pull fails.
			drain(resp.Body)
		default:
			return ocispec.Descriptor{}, nil, statusErr(resp)
		}
	}

	rq.method = http.MethodGet
	resp, err := r.do(ctx, rq)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return ocispec.Descriptor{}, nil, statusErr(resp)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if len(body) > maxManifestSize {
		return ocispec.Descriptor{}, nil, failure(errdefs.ErrResourceExhausted, false, "manifest is larger than %d bytes", maxManifestSize)
	}
	mt, err := manifestType(contentType(resp.Header.Get("Content-Type")), body)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	alg := digest.Canonical
	if rf.dgst != "" {
		alg = rf.dgst.Algorithm()
	}
	d := alg.FromBytes(body)
	if rf.dgst != "" && d != rf.dgst {
		return ocispec.Descriptor{}, nil, failure(errdefs.ErrDataLoss, true, "served manifest has digest %s", d)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(body))}, body, nil
}

// manifestType decides a manifest's media type from its Content-Type or,
// when that is missing or generic, from the manifest itself.
func manifestType(ct string, body []byte) (string, error) {
	if isSchema1(ct) {
		return "", schema1Err()
	}
	if isManifestType(ct) {
		return ct, nil
	}
	var m struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     json.RawMessage   `json:"manifests"`
		Layers        json.RawMessage   `json:"layers"`
		Config        json.RawMessage   `json:"config"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&m); err != nil {
		return "", failure(errdefs.ErrInvalidArgument, false, "manifest is not JSON (Content-Type %q)", ct)
	}
	switch {
	case m.SchemaVersion == 1 || m.FSLayers != nil || isSchema1(m.MediaType):
		return "", schema1Err()
	case m.MediaType != "":
		return m.MediaType, nil
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case m.Config != nil || m.Layers != nil:
		return ocispec.MediaTypeImageManifest, nil
	case ct != "" && ct != "application/json" && ct != "text/plain" && ct != "application/octet-stream":
		// An artifact type this client does not know; pass it on.
		return ct, nil
	}
	return "", failure(errdefs.ErrNotImplemented, false, "unknown manifest media type (Content-Type %q)", ct)
}

// notFoundRef tells a resolve that every host answered "not found" in the
// terms of the reference (its repository and tag or digest), which is what
// the user typed and what is wrong; the hosts' own words follow, without
// the API paths and status lines that said it in HTTP's terms. Other
// errors are returned as they are.
func notFoundRef(ref string, rf reference, err error) error {
	var he *hostsError
	if !errors.As(err, &he) || !errors.Is(he.kind, errdefs.ErrNotFound) {
		return err
	}
	what := fmt.Sprintf("tag %q", rf.tag)
	if rf.dgst != "" {
		what = "manifest " + rf.dgst.String()
	}
	said := make([]string, 0, len(he.reasons))
	for _, reason := range he.reasons {
		reason = strings.Replace(reason, "/v2: ", ": ", 1)
		reason = strings.Replace(reason, ": 404 Not Found: ", ": ", 1)
		said = append(said, strings.TrimSuffix(reason, ": 404 Not Found"))
	}
	return &hostsError{
		subject: ref,
		kind:    errdefs.ErrNotFound,
		reasons: []string{fmt.Sprintf("repository %q has no %s, or there is no such repository (%s)", rf.repo, what, strings.Join(said, "; "))},
		cause:   he.cause,
	}
}
