package oci

import (
	"context"
	"runtime"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/containers"
)

// The default seccomp profile is an allow list: a syscall not named here
// fails with EPERM. The lists are grouped by what the calls are for, so
// that a missing one is easy to place. Names the running kernel or
// libseccomp does not know are skipped by runc, so one list serves every
// architecture; the 32-bit variants (…32, …64, _time64) are for the x86 and
// arm compat modes.
//
// Left out on purpose, unless the container holds the capability that
// makes them meaningful: mounting and namespace changes (an unprivileged
// container must not build its own mount tree or user namespace, the usual
// first step of kernel exploits), kernel modules, clock setting, kexec,
// reboot, tracing other processes, BPF and perf, keyrings (not namespaced),
// io_uring (a large, often exploited attack surface), userfaultfd.
var (
	// Creating, running, waiting for and signalling processes and threads.
	seccompProcess = []string{
		"arch_prctl", "capget", "capset", "execve", "execveat", "exit", "exit_group",
		"fork", "vfork", "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
		"get_robust_list", "set_robust_list", "get_thread_area", "set_thread_area", "set_tid_address",
		"getpid", "getppid", "gettid", "getpgid", "getpgrp", "getsid", "setpgid", "setsid",
		"prctl", "rseq", "membarrier", "restart_syscall", "pause",
		"sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
		"sched_getscheduler", "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
		"sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_yield", "sched_getattr", "sched_setattr",
		"getpriority", "setpriority", "ioprio_get", "ioprio_set",
		"wait4", "waitid", "waitpid", "kill", "tkill", "tgkill",
		"rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
		"rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
		"sigaction", "sigaltstack", "signal", "signalfd", "signalfd4", "sigpending", "sigprocmask", "sigreturn", "sigsuspend",
		"pidfd_open", "pidfd_send_signal", "pidfd_getfd", "process_mrelease",
		"seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	}
	// Changing and reading the process's credentials; the capability
	// checks in the kernel decide what may be changed.
	seccompCredentials = []string{
		"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
		"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
		"getuid32", "geteuid32", "getgid32", "getegid32", "getresuid32", "getresgid32", "getgroups32",
		"setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32", "setresgid32", "setgroups32",
		"setfsuid32", "setfsgid32",
	}
	// Memory management, including shared memory via memfd.
	seccompMemory = []string{
		"brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "process_madvise",
		"mlock", "mlock2", "munlock", "mlockall", "munlockall", "mincore", "msync",
		"memfd_create", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages", "map_shadow_stack",
	}
	// Files, directories and descriptors.
	seccompFiles = []string{
		"open", "openat", "openat2", "close", "close_range", "creat",
		"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
		"lseek", "_llseek", "stat", "fstat", "lstat", "newfstatat", "fstatat64", "stat64", "fstat64", "lstat64",
		"statx", "statfs", "fstatfs", "statfs64", "fstatfs64", "access", "faccessat", "faccessat2",
		"chdir", "fchdir", "getcwd", "chroot", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2",
		"link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "readlink", "readlinkat",
		"chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
		"chown32", "fchown32", "lchown32", "truncate", "ftruncate", "truncate64", "ftruncate64", "fallocate",
		"fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "sync_file_range2", "arm_sync_file_range",
		"dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "ioctl", "getdents", "getdents64", "umask",
		"utime", "utimes", "utimensat", "utimensat_time64", "futimesat", "mknod", "mknodat",
		"pipe", "pipe2", "splice", "tee", "vmsplice", "sendfile", "sendfile64", "copy_file_range",
		"fadvise64", "fadvise64_64", "arm_fadvise64_64", "readahead",
		"getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
		"listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
		"getxattrat", "setxattrat", "listxattrat", "removexattrat", "file_getattr", "file_setattr",
		"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "cachestat",
	}
	// Waiting for events: select, poll, epoll, eventfd and async I/O.
	seccompEvents = []string{
		"select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
		"epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old",
		"epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
		"io_setup", "io_destroy", "io_getevents", "io_submit", "io_cancel", "io_pgetevents", "io_pgetevents_time64",
	}
	// Clocks, timers and sleeping; setting clocks needs CAP_SYS_TIME.
	seccompTime = []string{
		"clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
		"clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "gettimeofday", "time", "times",
		"timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
		"timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
		"timerfd_settime", "timerfd_settime64", "alarm", "getitimer", "setitimer",
	}
	// Sockets, in the container's own network namespace.
	seccompNetwork = []string{
		"socket", "socketpair", "bind", "connect", "listen", "accept", "accept4",
		"getsockname", "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom",
		"sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "recvmmsg_time64", "shutdown", "send", "recv", "socketcall",
	}
	// System V IPC and POSIX message queues, isolated by the ipc namespace.
	seccompIPC = []string{
		"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semtimedop_time64", "semctl",
		"msgget", "msgsnd", "msgrcv", "msgctl", "ipc",
		"mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
		"mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
	}
	// Information about the system and limits; hostnames are per uts
	// namespace.
	seccompSystem = []string{
		"uname", "olduname", "oldolduname", "sysinfo", "getrlimit", "setrlimit", "prlimit64", "ugetrlimit",
		"getrusage", "getrandom", "getcpu", "sethostname", "setdomainname",
	}
	// Architecture helpers glibc and Go runtimes use on arm.
	seccompARM = []string{"cacheflush", "set_tls", "breakpoint", "arm_sync_file_range"}
)

// seccompCapabilityCalls are allowed only to a container holding the
// capability, since without it the kernel would refuse them anyway and
// the filter removes their code paths from reach.
var seccompCapabilityCalls = []struct {
	caps  []string // any of
	calls []string
}{
	{[]string{"CAP_SYS_ADMIN"}, []string{
		"mount", "umount", "umount2", "unshare", "setns", "pivot_root",
		"open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
		"fanotify_init", "fanotify_mark", "quotactl", "quotactl_fd", "name_to_handle_at", "lookup_dcookie",
		"vm86", "vm86old",
	}},
	{[]string{"CAP_SYS_ADMIN", "CAP_BPF"}, []string{"bpf"}},
	{[]string{"CAP_SYS_ADMIN", "CAP_PERFMON"}, []string{"perf_event_open"}},
	{[]string{"CAP_SYS_PTRACE"}, []string{"ptrace", "process_vm_readv", "process_vm_writev", "kcmp"}},
	{[]string{"CAP_SYS_MODULE"}, []string{"init_module", "finit_module", "delete_module"}},
	{[]string{"CAP_SYS_BOOT"}, []string{"reboot"}},
	{[]string{"CAP_SYS_TIME"}, []string{"settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime", "clock_adjtime64"}},
	{[]string{"CAP_SYS_NICE"}, []string{"mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "move_pages", "migrate_pages"}},
	{[]string{"CAP_SYS_PACCT"}, []string{"acct"}},
	{[]string{"CAP_SYS_RAWIO"}, []string{"iopl", "ioperm"}},
	{[]string{"CAP_SYSLOG"}, []string{"syslog"}},
	{[]string{"CAP_DAC_READ_SEARCH"}, []string{"open_by_handle_at"}},
}

// cloneNamespaceFlags are the clone(2) flags that create namespaces.
const cloneNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// seccompArchitectures returns the architectures the filter covers: the
// native one and its compat modes, since a process can switch to a compat
// syscall ABI (int 0x80 on x86_64) and would otherwise bypass the filter.
func seccompArchitectures(goarch string) []specs.Arch {
	switch goarch {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "386":
		return []specs.Arch{specs.ArchX86}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	case "arm":
		return []specs.Arch{specs.ArchARM}
	}
	return nil
}

// DefaultSeccompProfile returns hull's default seccomp profile for a
// process with the given capabilities (see WithSeccompDefault).
func DefaultSeccompProfile(caps *specs.LinuxCapabilities) *specs.LinuxSeccomp {
	has := func(c string) bool {
		return caps != nil && slices.Contains(caps.Bounding, c)
	}
	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	var allowed []string
	for _, group := range [][]string{seccompProcess, seccompCredentials, seccompMemory, seccompFiles,
		seccompEvents, seccompTime, seccompNetwork, seccompIPC, seccompSystem, seccompARM} {
		allowed = append(allowed, group...)
	}
	for _, cc := range seccompCapabilityCalls {
		if slices.ContainsFunc(cc.caps, has) {
			allowed = append(allowed, cc.calls...)
		}
	}
	p := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   seccompArchitectures(runtime.GOARCH),
		Syscalls:        []specs.LinuxSyscall{{Names: allowed, Action: specs.ActAllow}},
	}
	// personality(2): only the harmless personas (Linux, 32-bit
	// compatibility, and the query value), as others can e.g. turn off
	// address space randomisation.
	for _, persona := range []uint64{0x0, 0x0008, 0x20000, 0x20008, 0xffffffff} {
		p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
			Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: persona, Op: specs.OpEqualTo}},
		})
	}
	if has("CAP_SYS_ADMIN") {
		p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{Names: []string{"clone", "clone3"}, Action: specs.ActAllow})
	} else {
		// Threads and processes, but no new namespaces: clone is
		// allowed when none of the namespace flags is set.
		p.Syscalls = append(p.Syscalls,
			specs.LinuxSyscall{
				Names: []string{"clone"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: cloneNamespaceFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}},
			},
			// clone3 passes its flags in memory, where seccomp
			// cannot look; ENOSYS makes libc fall back to clone.
			specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		)
	}
	return p
}

// WithSeccompDefault applies hull's default seccomp profile: every syscall
// outside an allow list fails with EPERM, and calls that need a capability
// (mount and unshare need CAP_SYS_ADMIN, ptrace CAP_SYS_PTRACE, ...) are
// allowed only if the process's bounding set holds it. Apply it after the
// options that change capabilities (WithPrivileged removes any seccomp
// profile).
func WithSeccompDefault(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	ensureLinux(s)
	var caps *specs.LinuxCapabilities
	if s.Process != nil {
		caps = s.Process.Capabilities
	}
	s.Linux.Seccomp = DefaultSeccompProfile(caps)
	return nil
}

// WithSeccompUnconfined removes any seccomp profile, so the process may make
// every syscall its capabilities allow.
func WithSeccompUnconfined(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	if s.Linux != nil {
		s.Linux.Seccomp = nil
	}
	return nil
}
