#ifndef STRATUM_SPAWN_H
#define STRATUM_SPAWN_H
#include <sys/types.h>

/// Starts `argv` (searched on PATH from `envp`) detached in a new session: stdin from
/// /dev/null, stdout and stderr appended to `log_path`, working directory `cwd`, default
/// signal dispositions, an empty signal mask and no inherited descriptors beyond 0-2.
/// Returns 0 and stores the pid, or an errno value.
int stratum_spawn_detached(char *const argv[], char *const envp[], const char *log_path, const char *cwd, pid_t *pid);

#endif
