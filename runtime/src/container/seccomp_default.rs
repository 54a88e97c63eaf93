//! crust's `RuntimeDefault` seccomp profile: an allowlist in the spirit of Docker's and
//! containerd's default. Anything not listed fails with EPERM, so a syscall added to the kernel
//! after this list was written is refused until someone decides it is safe. Syscalls that only
//! make sense with a capability are allowed only when the container has that capability, and
//! `clone`/`unshare` may not create namespaces (user namespaces need no capability, so the
//! kernel alone would not stop them).
//!
//! Names the local libseccomp does not know are skipped by libcontainer, so one list serves
//! every architecture.

use serde_json::{Value, json};

/// Always allowed.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2",
    "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64",
    "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
    "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
    "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
    "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday",
    "getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr",
    "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "modify_ldt", "mprotect", "mq_getsetattr", "mq_notify",
    "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pselect6_time64", "ptrace", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg",
    "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl",
    "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
    "sigreturn", "socket", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
    "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat",
    "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid",
    "waitpid", "write", "writev",
];

/// Allowed only when the container holds the capability.
#[rustfmt::skip]
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
            "perf_event_open", "pivot_root", "quotactl", "quotactl_fd", "setdomainname",
            "sethostname", "setns", "swapoff", "swapon", "umount", "umount2", "unshare",
        ],
    ),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "finit_module", "init_module"]),
    ("CAP_SYS_BOOT", &["kexec_file_load", "kexec_load", "reboot"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    (
        "CAP_SYS_TIME",
        &["adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "userfaultfd"],
    ),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "move_pages", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Every CLONE_NEW* flag: `clone` and `unshare` may not use them without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// The only `unshare` flag that creates a namespace without a capability.
const CLONE_NEWUSER: u64 = 0x1000_0000;
/// Personalities Docker allows (Linux, 32-bit, and the query value).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The architectures the profile filters: the native one and the compat ABIs a process may
/// call the kernel through. x32 only when this kernel has it: every architecture costs the
/// container's init a copy of the rule set to compile (libseccomp 2.5: 1.3 ms for x86-64 alone,
/// 5.2 with x86, 8.5 with x32 too, on every CreateContainer), and without the ABI an x32 call
/// can only fail (the filter now kills it as a foreign architecture instead of passing it on
/// to the kernel's ENOSYS).
fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else if x32_abi_available() {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    }
}

/// Whether this kernel takes x32 system calls (built with CONFIG_X86_X32_ABI and not turned
/// off at boot): asks once, with x32's getpid.
fn x32_abi_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return false;
        }
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments and touches no memory; a kernel without the x32
        // ABI answers ENOSYS.
        let rc = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
        rc > 0
    })
}

/// `(arg & mask) == datum`, written the way runc reads it (value = mask, valueTwo = datum);
/// [`super::security::libcontainer_seccomp`] turns it round for libcontainer.
fn masked_eq(index: u32, mask: u64, datum: u64) -> Value {
    json!({"index": index, "value": mask, "valueTwo": datum, "op": "SCMP_CMP_MASKED_EQ"})
}

/// The profile for a container holding `capabilities` (names with the `CAP_` prefix), in the
/// OCI `linux.seccomp` form with runc's operand order.
pub fn profile(capabilities: &[String]) -> Value {
    let has = |c: &str| capabilities.iter().any(|x| x == c);
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    for (cap, names) in BY_CAPABILITY {
        if has(cap) {
            allowed.extend_from_slice(names);
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    for p in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        }));
    }
    if !has("CAP_SYS_ADMIN") {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [masked_eq(0, CLONE_NAMESPACE_FLAGS, 0)],
        }));
        syscalls.push(json!({
            "names": ["unshare"],
            "action": "SCMP_ACT_ALLOW",
            "args": [masked_eq(0, CLONE_NEWUSER, 0)],
        }));
        // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back
        // to clone, where the flags are checked.
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS,
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_names(p: &Value) -> Vec<String> {
        p["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn dangerous_syscalls_need_their_capability() {
        let p = profile(&["CAP_CHOWN".into()]);
        let names = allowed_names(&p);
        for blocked in [
            "keyctl",
            "add_key",
            "mount",
            "sethostname",
            "unshare",
            "bpf",
            "reboot",
        ] {
            assert!(!names.iter().any(|n| n == blocked), "{blocked} allowed");
        }
        assert!(names.iter().any(|n| n == "read"));
        let p = profile(&["CAP_SYS_ADMIN".into()]);
        let names = allowed_names(&p);
        assert!(names.iter().any(|n| n == "sethostname"));
        assert!(names.iter().any(|n| n == "unshare"));
        assert!(
            !names.iter().any(|n| n == "keyctl"),
            "keyctl is never allowed"
        );
    }

    #[test]
    fn x32_is_filtered_only_where_the_kernel_has_it() {
        let arches = profile(&[])["architectures"].clone();
        let listed = |a: &str| arches.as_array().unwrap().iter().any(|v| v == a);
        if cfg!(target_arch = "x86_64") {
            assert!(listed("SCMP_ARCH_X86_64") && listed("SCMP_ARCH_X86"));
            // SAFETY: as in x32_abi_available.
            let x32 = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
            assert_eq!(
                listed("SCMP_ARCH_X32"),
                x32 == i64::from(std::process::id())
            );
        }
    }

    #[test]
    fn clone_may_not_create_namespaces_without_sys_admin() {
        let p = profile(&[]);
        let clone = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"][0] == "clone")
            .unwrap();
        assert_eq!(clone["args"][0]["value"], json!(CLONE_NAMESPACE_FLAGS));
        assert_eq!(clone["args"][0]["valueTwo"], json!(0));
    }
}
