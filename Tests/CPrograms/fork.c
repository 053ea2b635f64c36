// fork.c — fork() while 4 threads allocate, then allocate in the child.
//
// The allocator's locks may be held by the allocating threads at the instant of fork; the
// child has only the forking thread, so unless the allocator takes its locks around fork
// (pthread_atfork) the child deadlocks on its first malloc, or finds half-updated lists.
// Each child allocates in every size regime, starts threads of its own, frees everything
// and exits 0; the parent checks every child and that its own threads kept working.
// Every child and the parent run under alarm(): a deadlock ends as SIGALRM, not a hang.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum { THREADS = 4, FORKS = 40, SLOTS = 256 };

static atomic_int stop;
static atomic_long rounds[THREADS];

static void churn(uint64_t *rng, void **slots, size_t nslots, long iterations) {
    for (long it = 0; it < iterations; it++) {
        uint64_t r = rng_next(rng);
        size_t i = r % nslots;
        if (slots[i] != NULL) {
            CHECK(verify_pattern(slots[i], 16, (uintptr_t)slots[i]));
            free(slots[i]);
            slots[i] = NULL;
        } else {
            size_t size;
            switch ((r >> 20) % 16) {
            case 0: size = 40000 + (r >> 32) % 200000; break;        // large
            case 1: size = 2000 + (r >> 32) % 30000; break;           // medium
            case 2: { void *p = NULL; CHECK(posix_memalign(&p, 4096, 100) == 0); slots[i] = p; fill_pattern(p, 16, (uintptr_t)p); continue; }
            case 3: slots[i] = calloc(4, 16 + (r >> 32) % 200); fill_pattern(slots[i], 16, (uintptr_t)slots[i]); continue;
            default: size = 16 + (r >> 32) % 500; break;              // small
            }
            slots[i] = malloc(size);
            CHECK(slots[i] != NULL);
            fill_pattern(slots[i], 16, (uintptr_t)slots[i]);
        }
    }
}

static void free_all(void **slots, size_t nslots) {
    for (size_t i = 0; i < nslots; i++) {
        free(slots[i]);
        slots[i] = NULL;
    }
}

static void *allocator_thread(void *arg) {
    long id = (long)arg;
    uint64_t rng = 1000 + (uint64_t)id;
    void *slots[SLOTS] = {0};
    while (!atomic_load(&stop)) {
        churn(&rng, slots, SLOTS, 200);
        atomic_fetch_add(&rounds[id], 1);
    }
    free_all(slots, SLOTS);
    return NULL;
}

static void *child_thread(void *arg) {
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    void *slots[64] = {0};
    churn(&rng, slots, 64, 5000);
    free_all(slots, 64);
    return NULL;
}

static void child(int n) {
    alarm(20);
    uint64_t rng = 77 + (uint64_t)n;
    void *slots[128] = {0};
    churn(&rng, slots, 128, 3000);
    // Big blocks and realloc, then threads of the child's own.
    char *big = malloc(8 << 20);
    CHECK(big != NULL);
    memset(big, 1, 8 << 20);
    big = realloc(big, 24 << 20);
    CHECK(big != NULL && big[(8 << 20) - 1] == 1);
    free(big);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, child_thread, (void *)(uintptr_t)(n * 10 + i + 1)) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    free_all(slots, 128);
    _exit(0);
}

int main(void) {
    alarm(120);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, allocator_thread, (void *)i) == 0);
    // Let the threads get going before the first fork.
    for (int i = 0; i < THREADS; i++)
        while (atomic_load(&rounds[i]) < 2) sched_yield();

    for (int n = 0; n < FORKS; n++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) child(n);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: %s %d", n,
               WIFSIGNALED(status) ? "killed by signal" : "exit status",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        // The parent's allocation keeps working between forks.
        void *p = malloc(1000 + (size_t)n);
        CHECK(p != NULL);
        free(p);
    }

    long before[THREADS];
    for (int i = 0; i < THREADS; i++) before[i] = atomic_load(&rounds[i]);
    for (int i = 0; i < THREADS; i++)
        while (atomic_load(&rounds[i]) < before[i] + 2) sched_yield();
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("OK fork\n");
    return 0;
}
