// idle-return: memory given back while a program sits idle (no public benchmark; the
// complaint about glibc in long-running servers). One thread allocates `mib` MiB in 4 KiB
// blocks, writing each, frees all but one block in `keep` (scattered survivors pin pages),
// then sits `idle` ms without any heap call; then calls malloc_trim(0) and sits 200 ms more.
// Phase markers (RSS at each): start, grow, free, idle, idle-end (after the idle time, no
// trim), trimmed (after malloc_trim). Under a preloaded allocator without its own
// malloc_trim the call reaches glibc's, which has nothing of theirs to trim.
// Summary: workload=idle-return ... start_rss_kib idle_end_rss_kib trimmed_rss_kib.
#include <malloc.h>

#include "common.h"

int main(int argc, char **argv) {
    arg_t args[] = {
        {"mib", 1024, "heap grown to (MiB of 4 KiB blocks)"},
        {"keep", 256, "one block in this many survives the frees"},
        {"idle", 6000, "idle time after the frees (ms), no heap calls"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("idle-return", argc, argv, args, nargs);
    long mib = arg_get(args, nargs, "mib"), keep = arg_get(args, nargs, "keep"), idle_ms = arg_get(args, nargs, "idle");
    if (mib < 1 || keep < 1 || idle_ms < 0) die("bad arguments");
    size_t n = (size_t)mib * 256;
    unsigned char **blocks = (unsigned char **)xmalloc(n * sizeof *blocks);
    double t0 = now_seconds();
    long start = marker("start");
    marker("grow");
    for (size_t i = 0; i < n; i++) {
        blocks[i] = (unsigned char *)xmalloc(4096);
        fill(blocks[i], 4096, i);
    }
    marker("free");
    for (size_t i = 0; i < n; i++) {
        if (i % (size_t)keep == 0) continue;
        verify(blocks[i], 4096, i, "idle-return block");
        free(blocks[i]);
    }
    marker("idle");
    sleep_ms(idle_ms);
    long idle_end = marker("idle-end");
    malloc_trim(0);
    sleep_ms(200);
    long trimmed = marker("trimmed");
    uint64_t checksum = 0;
    for (size_t i = 0; i < n; i += (size_t)keep) {
        verify(blocks[i], 4096, i, "idle-return survivor");
        checksum = mix(checksum, blocks[i][7]);
        free(blocks[i]);
    }
    free(blocks);
    double elapsed = now_seconds() - t0;
    printf("workload=idle-return mib=%ld seconds=%.3f start_rss_kib=%ld idle_end_rss_kib=%ld trimmed_rss_kib=%ld "
           "checksum=%016llx maxrss_kib=%ld\n",
           mib, elapsed, start, idle_end, trimmed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
