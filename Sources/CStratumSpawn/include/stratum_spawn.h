#ifndef STRATUM_SPAWN_H
#define STRATUM_SPAWN_H
#include <sys/types.h>

/// The setup step of `stratum_spawn_node` that failed.
enum stratum_spawn_step {
    STRATUM_SPAWN_FORK = 1,
    STRATUM_SPAWN_CGROUP = 2,
    STRATUM_SPAWN_STDIO = 3,
    STRATUM_SPAWN_CHDIR = 4,
    STRATUM_SPAWN_EXEC = 5,
    STRATUM_SPAWN_NETNS = 6,
};

/// Starts `path` (an absolute path, not searched on PATH) with `argv` and `envp` as the leader
/// of a new session and process group. Before the exec the child joins the cgroup whose
/// `cgroup.procs` file is `cgroup_procs` (when not NULL), so everything the workload starts is
/// inside it from the first instruction; reads stdin from /dev/null; appends stdout and stderr
/// to `log_path`; changes to `cwd`; resets every signal to its default disposition with an
/// empty mask; and keeps no descriptor beyond 0-2. When `netns_path` is not NULL (a network
/// namespace's file, `/run/netns/<name>`), the child enters that network namespace first, so
/// the workload and everything it starts live there.
///
/// Returns 0 and stores the pid, or an errno value and stores the step that failed in
/// `failed_step` (a child that failed after the fork has been reaped).
int stratum_spawn_node(
    const char *path, char *const argv[], char *const envp[], const char *log_path, const char *cwd,
    const char *cgroup_procs, const char *netns_path, pid_t *pid, int *failed_step);

/// Runs `path` with `argv` (stdout and stderr to /dev/null) in a network namespace of its own
/// that vanishes with it, and waits for it: how Stratum learns whether this process may make
/// network namespaces, and which traffic-control features the kernel has, without leaving
/// anything behind. Returns the exit status (0-255), 128 + the signal that killed it, or -1
/// with `*error` set when the namespace could not be made (or the fork failed).
int stratum_run_in_new_netns(const char *path, char *const argv[], int *error);

#endif
