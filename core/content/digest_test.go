package content

import (
	_ "crypto/sha512"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestValidateDigest(t *testing.T) {
	for _, ok := range []digest.Digest{digest.FromString("x"), digest.SHA512.FromString("x")} {
		if err := ValidateDigest(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []digest.Digest{"", "sha256:abc", digest.Digest("sha256:A" + digest.FromString("x").Encoded()[1:]), "md5:00", digest.Digest("sha256:" + digest.FromString("x").Encoded() + "0")} {
		if err := ValidateDigest(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
