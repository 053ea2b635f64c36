// run-measured: the harness's measuring shim (not a workload). `gomalloc bench` starts it,
// it forks, the child sets LD_PRELOAD (if asked) and execs the workload, and the shim
// reaps that child with wait4 and writes the child's wall time, peak RSS and CPU time.
//
// Why not measure from gomalloc itself: Linux's ru_maxrss of a process includes the
// high-water RSS of the address space it had before execve (exec_mmap records the old mm's
// peak into the process's maxrss). A child forked or posix_spawn'ed (vfork) by a 20+ MiB
// Swift process therefore reports at least 20 MiB, whatever the workload does. This shim
// is built static and is tiny, so the process it forks starts from a few hundred KiB and
// the peak RSS that wait4 reports is the workload's own. The workload is still spawned
// directly (fork + execve), never through a shell.
//
// Usage: run-measured RESULT-FILE PRELOAD -- PROGRAM [ARGS...]
//   PRELOAD: a library for LD_PRELOAD, or "-" for none (LD_PRELOAD is then removed).
//   RESULT-FILE receives one line: wall_seconds maxrss_kib user_seconds system_seconds
//   exit_code term_signal. The shim exits with the child's status (128+signal if killed).
// If the shim is killed (the harness's timeout), the child is killed too (PDEATHSIG).
#define _GNU_SOURCE 1
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: run-measured RESULT-FILE PRELOAD|- -- PROGRAM [ARGS...]\n");
        return 125;
    }
    const char *result = argv[1], *preload = argv[2];
    pid_t parent = getpid();
    double start = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("run-measured: fork");
        return 125;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(125);
        if (strcmp(preload, "-") == 0)
            unsetenv("LD_PRELOAD");
        else
            setenv("LD_PRELOAD", preload, 1);
        execv(argv[4], argv + 4);
        fprintf(stderr, "run-measured: cannot execute %s: %s\n", argv[4], strerror(errno));
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("run-measured: wait4");
            return 125;
        }
    }
    double wall = now() - start;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    FILE *f = fopen(result, "w");
    if (f == NULL) {
        perror("run-measured: result file");
        return 125;
    }
    fprintf(f, "%.9f %ld %.6f %.6f %d %d\n", wall, ru.ru_maxrss,
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6, code, sig);
    fclose(f);
    return sig ? 128 + sig : code;
}
