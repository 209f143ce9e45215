#define _GNU_SOURCE
#include "stratum_spawn.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
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
                  const char *cgroup_procs, const char *netns_path, int report) {
    setsid();
    if (netns_path != NULL) {
        int ns = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) child_fail(report, STRATUM_SPAWN_NETNS);
        close(ns);
    }
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
    const char *cgroup_procs, const char *netns_path, pid_t *pid, int *failed_step) {
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
    if (forked == 0) child(path, argv, envp, log_path, cwd, cgroup_procs, netns_path, report[1]);

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

int stratum_run_in_new_netns(const char *path, char *const argv[], int *error) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        *error = errno;
        return -1;
    }
    pid_t forked = fork();
    if (forked < 0) {
        *error = errno;
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (forked == 0) {
        close(report[0]);
        if (unshare(CLONE_NEWNET) != 0) {
            int failure = errno;
            ssize_t ignored = write(report[1], &failure, sizeof failure);
            (void)ignored;
            _exit(127);
        }
        int quiet = open("/dev/null", O_WRONLY);
        if (quiet >= 0) {
            dup2(quiet, 1);
            dup2(quiet, 2);
            if (quiet > 2) close(quiet);
        }
        execv(path, argv);
        _exit(127);
    }
    close(report[1]);
    int failure = 0;
    ssize_t got;
    do {
        got = read(report[0], &failure, sizeof failure);
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    int status = 0;
    while (waitpid(forked, &status, 0) < 0) {
        if (errno != EINTR) {
            *error = errno;
            return -1;
        }
    }
    if (got == (ssize_t)sizeof failure) {
        *error = failure;
        return -1;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
