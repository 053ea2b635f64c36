// fork_init.c — fork while another thread is in the middle of the allocator's first
// initialisation: the child must be able to allocate.
//
// Usage: fork_init OFFSET (run under GoMalloc; OFFSET is the hex value of the core's
//   heapInitLock symbol in the library, which the test reads with nm). Replayed exactly:
//   main arms a hardware write watchpoint (perf_event_open) on heapInitLock and makes the
//   process's first malloc; the watchpoint stops main in a SIGTRAP handler right after it
//   took the lock. A second thread then forks; the child (with a 1 s alarm) mallocs and
//   exits 0. The handler waits up to 2 s for that fork to return — a fork protocol that
//   waits for the initialisation cannot return before main goes on — then lets main go.
//   The forking thread is a bare clone(2) thread sharing main's thread-local storage:
//   pthread_create would allocate (its TLS vector) and so initialise the heap itself.
//   While main is stopped the two never run glibc code at the same time.
// Exit: 0 the child allocated; 1 the child hung (the bug); 3 cannot replay here (no
//   watchpoint, or something initialised the heap before main); 2 set-up failure.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/// 0 idle, 1 armed, 2 stopped in the handler, 3 released, -1 no watchpoint.
static atomic_int state;
/// 0 running, 1 the fork returned and the child was reaped, -1 fork failed.
static atomic_int fork_done;
static int child_status;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_trap(int sig) {
    (void)sig;
    int armed = 1;
    if (atomic_compare_exchange_strong(&state, &armed, 2)) {
        double deadline = now() + 2;
        while (atomic_load(&fork_done) == 0 && now() < deadline) sched_yield();
        atomic_store(&state, 3);
    }
}

/// The bare thread: once main is stopped holding the lock, fork.
static int forker(void *arg) {
    (void)arg;
    while (atomic_load(&state) != 2) sched_yield();
    pid_t pid = fork();
    if (pid == 0) {
        alarm(1);
        void *p = malloc(opaque(100));
        if (p == NULL) _exit(5);
        memset(p, 1, 100);
        free(p);
        _exit(0);
    }
    if (pid > 0) waitpid(pid, &child_status, 0);
    atomic_store(&fork_done, pid > 0 ? 1 : -1);
    syscall(SYS_exit, 0);
    return 0;
}

int main(int argc, char **argv) {
    CHECKF(argc == 2, "usage: fork_init OFFSET");
    // The library's load address, from where its malloc lives (dladdr does not allocate).
    Dl_info info;
    CHECKF(dladdr((void *)&malloc, &info) != 0 && info.dli_fbase != NULL, "dladdr(malloc)");
    CHECKF(strstr(info.dli_fname, "gomalloc") != NULL, "malloc comes from %s, not GoMalloc", info.dli_fname);
    uintptr_t lock_address = (uintptr_t)info.dli_fbase + (uintptr_t)strtoull(argv[1], NULL, 16);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_trap;
    sigaction(SIGTRAP, &sa, NULL);

    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.size = sizeof attr;
    attr.sample_period = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.remove_on_exec = 1;
    attr.sigtrap = 1;
    attr.bp_type = HW_BREAKPOINT_W;
    attr.bp_addr = lock_address;
    attr.bp_len = HW_BREAKPOINT_LEN_4;
    int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    if (fd < 0) {
        printf("cannot replay: perf_event_open refused a breakpoint\n");
        return 3;
    }
    size_t stack_size = 1 << 20;
    char *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    CHECK(stack != MAP_FAILED);
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    CHECK(clone(forker, stack + stack_size, flags, NULL) > 0);

    atomic_store(&state, 1);
    // The first malloc: stops right after taking the lock (volatile: GCC may drop a
    // malloc/free pair whose block is never used).
    char *volatile p = malloc(opaque(24));
    close(fd);
    int stopped = atomic_load(&state) == 3;
    double deadline = now() + 10;
    while (stopped && atomic_load(&fork_done) == 0 && now() < deadline) sched_yield();
    free(p);
    if (!stopped) {
        printf("cannot replay: the heap was initialised before main\n");
        return 3;
    }
    CHECKF(atomic_load(&fork_done) == 1, "fork failed or never returned (%d)", atomic_load(&fork_done));
    if (WIFSIGNALED(child_status)) {
        printf("child killed by signal %d: it hung in malloc after a fork during initialisation\n",
               WTERMSIG(child_status));
        return 1;
    }
    CHECKF(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0, "child status %d", child_status);
    printf("OK fork_init\n");
    return 0;
}
