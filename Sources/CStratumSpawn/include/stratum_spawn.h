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
};

/// Starts `path` (an absolute path, not searched on PATH) with `argv` and `envp` as the leader
/// of a new session and process group. Before the exec the child joins the cgroup whose
/// `cgroup.procs` file is `cgroup_procs` (when not NULL), so everything the workload starts is
/// inside it from the first instruction; reads stdin from /dev/null; appends stdout and stderr
/// to `log_path`; changes to `cwd`; resets every signal to its default disposition with an
/// empty mask; and keeps no descriptor beyond 0-2.
///
/// Returns 0 and stores the pid, or an errno value and stores the step that failed in
/// `failed_step` (a child that failed after the fork has been reaped).
int stratum_spawn_node(
    const char *path, char *const argv[], char *const envp[], const char *log_path, const char *cwd,
    const char *cgroup_procs, pid_t *pid, int *failed_step);

#endif
