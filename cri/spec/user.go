package spec

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// checkID validates a CRI uid or gid: ids above 2^31-1 or negative ones
// wrap to root in some tools, so they are refused.
func checkID(what string, v int64) error {
	if v < 0 || v > math.MaxInt32 {
		return fmt.Errorf("%s %d is outside 0..%d: %w", what, v, math.MaxInt32, errdefs.ErrInvalidArgument)
	}
	return nil
}

// userFor returns the user string for oci.WithUser ("uid", "name",
// "uid:gid", "name:gid") from the CRI fields, falling back to the image's
// USER and then root, and the user part alone, whose groups
// /etc/group lists.
func userFor(runAsUser *runtime.Int64Value, runAsUsername string, runAsGroup *runtime.Int64Value, imageUser string) (user, who string, err error) {
	if runAsUser != nil && runAsUsername != "" {
		return "", "", fmt.Errorf("both run_as_user %d and run_as_username %q are set: %w", runAsUser.GetValue(), runAsUsername, errdefs.ErrInvalidArgument)
	}
	switch {
	case runAsUsername != "":
		if strings.ContainsAny(runAsUsername, ":\n\x00") {
			return "", "", fmt.Errorf("run_as_username %q is not a user name: %w", runAsUsername, errdefs.ErrInvalidArgument)
		}
		who = runAsUsername
	case runAsUser != nil:
		if err := checkID("run_as_user", runAsUser.GetValue()); err != nil {
			return "", "", err
		}
		who = strconv.FormatInt(runAsUser.GetValue(), 10)
	default:
		if runAsGroup != nil {
			return "", "", fmt.Errorf("run_as_group %d without run_as_user or run_as_username: %w", runAsGroup.GetValue(), errdefs.ErrInvalidArgument)
		}
		if imageUser == "" {
			return "0", "0", nil
		}
		who, _, _ = strings.Cut(imageUser, ":")
		return imageUser, who, nil
	}
	user = who
	if runAsGroup != nil {
		if err := checkID("run_as_group", runAsGroup.GetValue()); err != nil {
			return "", "", err
		}
		user += ":" + strconv.FormatInt(runAsGroup.GetValue(), 10)
	}
	return user, who, nil
}

// withGroups sets the process's supplementary groups: with merge (the
// CRI's SupplementalGroupsPolicy Merge) the groups /etc/group in the image
// gives user who, plus extra; without (Strict) extra alone. They are
// sorted and without repeats.
func withGroups(who string, merge bool, extra []int64) (oci.SpecOpts, error) {
	var gids []uint32
	for _, g := range extra {
		if err := checkID("supplemental group", g); err != nil {
			return nil, err
		}
		gids = append(gids, uint32(g))
	}
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		var groups []uint32
		if merge {
			if err := oci.WithAdditionalGIDs(who)(ctx, client, c, s); err != nil {
				return err
			}
			groups = s.Process.User.AdditionalGids
		}
		groups = append(slices.Clone(groups), gids...)
		slices.Sort(groups)
		s.Process.User.AdditionalGids = slices.Compact(groups)
		return nil
	}, nil
}

// mergeGroups reads the supplemental groups policy.
func mergeGroups(p runtime.SupplementalGroupsPolicy) (bool, error) {
	switch p {
	case runtime.SupplementalGroupsPolicy_Merge:
		return true, nil
	case runtime.SupplementalGroupsPolicy_Strict:
		return false, nil
	}
	return false, fmt.Errorf("supplemental groups policy %d is unknown: %w", int32(p), errdefs.ErrInvalidArgument)
}
