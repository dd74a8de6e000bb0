package oci_test

import (
	"context"
	"fmt"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/namespaces"
)

// A spec for a shell with a terminal, 256 MiB of memory and the default
// seccomp profile. Options that need no root filesystem work without a
// client; WithUser and WithImageConfig would need one.
func ExampleGenerateSpec() {
	ctx := namespaces.WithNamespace(context.Background(), "default")
	c := &containers.Container{ID: "shell"}
	s, err := oci.GenerateSpec(ctx, nil, c,
		oci.WithProcessArgs("/bin/sh"),
		oci.WithTTY,
		oci.WithMemoryLimit(256<<20),
		oci.WithSeccompDefault,
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := oci.Validate(s); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Process.Args, s.Process.Terminal, s.Process.Env)
	fmt.Println(s.Linux.CgroupsPath, *s.Linux.Resources.Memory.Limit, s.Linux.Seccomp.DefaultAction)
	// Output:
	// [/bin/sh] true [PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=xterm]
	// /default/shell 268435456 SCMP_ACT_ERRNO
}
