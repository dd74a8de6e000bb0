package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/internal/hulltest"
)

// TestCRINetwork checks pods against broken pod networks: a hulld without
// any network config is not network-ready and refuses pods saying why,
// and a network whose second plugin fails its ADD fails the pod without
// leaving an IP, a network namespace or a veth behind.
func TestCRINetwork(t *testing.T) {
	if criInOwnNamespaces(t) {
		return
	}
	e := newCRIEnv(t)

	t.Run("no network config", func(t *testing.T) {
		n := newCRINet(t)
		d := e.startCRI(t, criDaemonOptions{net: n, confDir: t.TempDir()})
		ctx := criCtx(t)
		st, err := d.rt.Status(ctx, &runtime.StatusRequest{})
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		var cond *runtime.RuntimeCondition
		for _, c := range st.GetStatus().GetConditions() {
			if c.Type == runtime.NetworkReady {
				cond = c
			}
		}
		if cond == nil {
			t.Fatalf("Status: no NetworkReady condition in %v", st.GetStatus().GetConditions())
		}
		if cond.Status || cond.Reason == "" || cond.Message == "" {
			t.Errorf("NetworkReady = %v, reason %q, message %q; want false with a reason and a message", cond.Status, cond.Reason, cond.Message)
		}
		t.Logf("NetworkReady: %v %q %q", cond.Status, cond.Reason, cond.Message)
		_, err = d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: d.podConfig("nonet", "")})
		// The refusal says what Status says is wrong: its message's
		// detail, after the "Network plugin returns error: " lead.
		detail := cond.Message
		if i := strings.Index(detail, ": "); i >= 0 {
			detail = detail[i+2:]
		}
		wantCode(t, "RunPodSandbox without a network", err, codes.FailedPrecondition, detail)
		pods, err := d.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) > 0 {
			t.Errorf("the refused pod is listed: %v", pods.Items)
		}
		if left := dirNames(d.netnsDir(t)); len(left) > 0 {
			t.Errorf("the refused pod left network namespace files %v", left)
		}
	})

	t.Run("failing plugin", func(t *testing.T) {
		n := newCRINet(t, `{"type": "critest-fail"}`)
		script := `#!/bin/sh
case "$CNI_COMMAND" in
ADD)
	echo '{"cniVersion": "1.0.0", "code": 11, "msg": "critest-fail refuses ADD"}'
	exit 1 ;;
VERSION)
	echo '{"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}' ;;
esac
exit 0
`
		if err := os.WriteFile(filepath.Join(n.binDir, "critest-fail"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		d := e.startCRI(t, criDaemonOptions{net: n})
		ctx := criCtx(t)
		resp, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: d.podConfig("failnet", "")})
		if err == nil {
			t.Fatalf("RunPodSandbox succeeded (pod %s) though a plugin of the network fails its ADD", resp.PodSandboxId)
		}
		t.Logf("RunPodSandbox: %v", err)
		if !strings.Contains(err.Error(), "critest-fail refuses ADD") {
			t.Errorf("RunPodSandbox: %v does not give the plugin's message", err)
		}
		if ips := n.allocated(t); len(ips) > 0 {
			t.Errorf("the failed pod left host-local's IPs %v", ips)
		}
		if left := dirNames(d.netnsDir(t)); len(left) > 0 {
			t.Errorf("the failed pod left network namespace files %v", left)
		}
		hulltest.Eventually(t, 10*time.Second, "the failed pod's veth to go", func() error {
			if v := vethLinks(t); len(v) > 0 {
				return fmt.Errorf("veths %v", v)
			}
			return nil
		})
	})
}
