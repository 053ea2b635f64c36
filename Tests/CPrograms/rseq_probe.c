// rseq_probe.c — what this process could bind Ps to CPUs with, asked independently of the
// allocator: glibc's rseq registration (__rseq_size, 0 when glibc did not register, as under
// valgrind), whether the kernel offers membarrier's rseq flavour, and the CPU ids configured.
// StressTests compares it with the allocator's own statistics (CPUPs). Then it runs a few
// threads through malloc and free, so the binding is used. Prints `OK rseq_probe`.
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

static void *work(void *arg) {
    uint64_t rng = (uint64_t)(uintptr_t)arg * 7919 + 1;
    void *keep[32] = {0};
    for (int i = 0; i < 20000; i++) {
        uint64_t r = rng_next(&rng);
        void **slot = &keep[r % 32];
        free(*slot);
        *slot = malloc(1 + (r >> 8) % 2000);
        CHECK(*slot != NULL);
    }
    for (int i = 0; i < 32; i++) free(keep[i]);
    return NULL;
}

int main(void) {
    long query = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    int rseq_barrier = query > 0 && (query & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) != 0;
    printf("rseq_size=%u membarrier_rseq=%d cpus_configured=%ld\n", __rseq_size, rseq_barrier,
           sysconf(_SC_NPROCESSORS_CONF));
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, work, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("OK rseq_probe\n");
    return 0;
}
