package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
)

var clampLogOnce sync.Once

// OwnOOMScoreAdj is the shim's own oom_score_adj: without CAP_SYS_RESOURCE
// no child of the shim may go lower, so it is the floor of what a spec may
// ask for.
func OwnOOMScoreAdj() int {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return v
}

// ClampOOMScoreAdj raises process.oomScoreAdj in the bundle's config.json
// to min when it is lower. runc would fail to set it (the host withholds
// CAP_SYS_RESOURCE) and the container would not start; a slightly less
// protected container that runs is the better outcome. The change is
// logged once per shim. Other fields are kept as they are (numbers
// included, through json.Number). It returns the spec as it now is, so
// that the caller need not read it again.
func ClampOOMScoreAdj(configPath string, min int, log *slog.Logger) ([]byte, error) {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	out, old, changed, err := ClampSpecOOMScoreAdj(data, min)
	if err != nil {
		return nil, err
	}
	if !changed {
		return data, nil
	}
	if err := os.WriteFile(configPath, out, 0o644); err != nil {
		return nil, fmt.Errorf("rewrite spec %s: %w", configPath, err)
	}
	clampLogOnce.Do(func() {
		log.Warn("process.oomScoreAdj is lower than this shim may set; raised to the shim's own",
			"spec", old, "used", min, "config", configPath)
	})
	return out, nil
}

// ClampSpecOOMScoreAdj returns spec (a runtime-spec config.json) with
// process.oomScoreAdj raised to min if it was lower, the old value, and
// whether it changed.
func ClampSpecOOMScoreAdj(spec []byte, min int) (out []byte, old int, changed bool, err error) {
	// Only the one field first: the whole spec as a map costs about
	// 30 KB of heap per container, which a shim keeps (its heap never
	// grows enough to be collected), and nearly every spec needs no
	// change.
	var probe struct {
		Process *struct {
			OOMScoreAdj *json.Number `json:"oomScoreAdj"`
		} `json:"process"`
	}
	if err := json.Unmarshal(spec, &probe); err != nil {
		return nil, 0, false, fmt.Errorf("parse spec: %w", err)
	}
	if probe.Process == nil || probe.Process.OOMScoreAdj == nil {
		return spec, 0, false, nil
	}
	if v, err := probe.Process.OOMScoreAdj.Int64(); err == nil && v >= int64(min) {
		return spec, int(v), false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, 0, false, fmt.Errorf("parse spec: %w", err)
	}
	proc, ok := doc["process"].(map[string]any)
	if !ok {
		return spec, 0, false, nil
	}
	n, ok := proc["oomScoreAdj"].(json.Number)
	if !ok {
		return spec, 0, false, nil
	}
	v, err := n.Int64()
	if err != nil {
		return nil, 0, false, fmt.Errorf("process.oomScoreAdj %q: %w", n, err)
	}
	if v >= int64(min) {
		return spec, int(v), false, nil
	}
	proc["oomScoreAdj"] = min
	out, err = json.Marshal(doc)
	if err != nil {
		return nil, 0, false, err
	}
	return out, int(v), true, nil
}
