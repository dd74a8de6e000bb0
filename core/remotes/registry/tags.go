package registry

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	maxTagsPage  = 16 << 20
	maxTagsPages = 10000
)

// Tags lists the tags of repoRef's repository (a tag or digest in repoRef
// is ignored), following Link pagination, from the first resolve host that
// answers.
func (r *Resolver) Tags(ctx context.Context, repoRef string) ([]string, error) {
	rf, err := parseRef(repoRef)
	if err != nil {
		return nil, err
	}
	eps, err := r.endpoints(rf, canResolve)
	if err != nil {
		return nil, err
	}
	var tags []string
	err = r.tryHosts(ctx, rf.name(), eps, func(ep *endpoint) error {
		t, err := r.tagsOn(ctx, ep, rf)
		if err == nil {
			tags = t
		}
		return err
	})
	return tags, err
}

func (r *Resolver) tagsOn(ctx context.Context, ep *endpoint, rf reference) ([]string, error) {
	tags := []string{}
	next := ep.url(rf, nil, "tags", "list")
	seen := map[string]bool{}
	for page := 0; next != ""; page++ {
		if page >= maxTagsPages || seen[next] {
			return nil, failure(errdefs.ErrUnknown, false, "tag list pagination does not end")
		}
		seen[next] = true
		resp, err := r.do(ctx, &request{ep: ep, method: http.MethodGet, url: next,
			header: http.Header{"Accept": {"application/json"}},
			scopes: []string{scope(rf.repo, "pull")}})
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, statusErr(resp)
		}
		var body struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, maxTagsPage)).Decode(&body)
		drain(resp.Body)
		if err != nil {
			return nil, failure(errdefs.ErrUnknown, true, "bad tag list: %v", err)
		}
		tags = append(tags, body.Tags...)
		next = ""
		if l := nextLink(resp.Header.Values("Link")); l != "" {
			u, err := resp.Request.URL.Parse(l)
			if err != nil {
				return nil, failure(errdefs.ErrUnknown, false, "bad Link header: %v", err)
			}
			next = u.String()
		}
	}
	return tags, nil
}

// nextLink returns the target of the rel="next" link in Link headers.
func nextLink(headers []string) string {
	for _, h := range headers {
		for part := range strings.SplitSeq(h, ",") {
			part = strings.TrimSpace(part)
			if !strings.HasPrefix(part, "<") {
				continue
			}
			end := strings.IndexByte(part, '>')
			if end < 0 {
				continue
			}
			target := part[1:end]
			for param := range strings.SplitSeq(part[end+1:], ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				for rel := range strings.FieldsSeq(strings.Trim(strings.TrimSpace(v), `"`)) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
		}
	}
	return ""
}
