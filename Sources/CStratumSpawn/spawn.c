#define _GNU_SOURCE
#include "stratum_spawn.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Between fork and exec the child of a multithreaded process may only make async-signal-safe
 * calls: everything below is a plain system call. A failure is written to the close-on-exec
 * pipe as (step, errno); a successful exec closes the pipe with nothing written. */

static void child_fail(int report, int step) {
    int payload[2] = {step, errno};
    ssize_t ignored = write(report, payload, sizeof payload);
    (void)ignored;
    _exit(127);
}

static void child(const char *path, char *const argv[], char *const envp[], const char *log_path, const char *cwd,
                  const char *cgroup_procs, int report) {
    setsid();
    if (cgroup_procs != NULL) {
        /* Writing 0 moves the writing process itself. */
        int fd = open(cgroup_procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) child_fail(report, STRATUM_SPAWN_CGROUP);
        close(fd);
    }
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0) child_fail(report, STRATUM_SPAWN_STDIO);
    if (in > 2) close(in);
    int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) child_fail(report, STRATUM_SPAWN_STDIO);
    if (out > 2) close(out);
    if (chdir(cwd) != 0) child_fail(report, STRATUM_SPAWN_CHDIR);

    struct sigaction defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.sa_handler = SIG_DFL;
    for (int signal = 1; signal < NSIG; signal++) {
        if (signal != SIGKILL && signal != SIGSTOP) sigaction(signal, &defaults, NULL);
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    /* The CLI's own descriptors (state database, sockets) must not leak into workloads. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 65536; fd++) {
            if (fd != report) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    execve(path, argv, envp);
    child_fail(report, STRATUM_SPAWN_EXEC);
}

int stratum_spawn_node(
    const char *path, char *const argv[], char *const envp[], const char *log_path, const char *cwd,
    const char *cgroup_procs, pid_t *pid, int *failed_step) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        *failed_step = STRATUM_SPAWN_FORK;
        return errno;
    }
    pid_t forked = fork();
    if (forked < 0) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        *failed_step = STRATUM_SPAWN_FORK;
        return error;
    }
    if (forked == 0) child(path, argv, envp, log_path, cwd, cgroup_procs, report[1]);

    close(report[1]);
    int payload[2] = {0, 0};
    ssize_t got;
    do {
        got = read(report[0], payload, sizeof payload);
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof payload) {
        int status;
        while (waitpid(forked, &status, 0) < 0 && errno == EINTR) {}
        *failed_step = payload[0];
        return payload[1] != 0 ? payload[1] : EIO;
    }
    *pid = forked;
    return 0;
}
