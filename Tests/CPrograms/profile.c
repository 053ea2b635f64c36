// profile.c: known allocation sites for heap profiling (ProfileTests), compiled with
// -fno-omit-frame-pointer. Each site is its own non-inlined function, so the profile must
// attribute its bytes to it by name:
//   site_kept_small   20,000 blocks of 1000 bytes (class 1024: 20,480,000 bytes), live at exit
//   site_kept_large   40 blocks of 256 KiB (10,485,760 bytes), live at exit
//   site_freed        50,000 blocks of 2000 bytes (class 2048: 102,400,000 bytes), all freed
// Modes (argv[1]):
//   single            the three sites on the main thread
//   threads           8 threads, each running site_thread: 10,000 blocks of 512 bytes
//                     (40,960,000 bytes in all), half of them freed by another thread (the
//                     main thread, after joining), half live at exit
//   fork              site_kept_small, then fork: the child frees every block of it, runs
//                     site_child (10,000 blocks of 4096 bytes, live) and leaves through exit();
//                     the parent waits, then runs site_freed; each writes its own profile
//                     (GOMALLOC_PROFILE with %p). Prints "child <pid>".
//   dump <path>       single, then gomalloc_profile_dump(path) while everything is live,
//                     then frees site_kept_small's blocks (the exit profile shows them freed)
//   signal <path>     single, then raise(SIGUSR2): the library writes its GOMALLOC_PROFILE
//                     file, which must be <path>; renamed to <path>.usr2, then site_kept_small's
//                     blocks are freed (the exit profile, a new <path>, shows them freed)
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int gomalloc_profile_dump(const char *path);
#pragma weak gomalloc_profile_dump

#define NOINLINE __attribute__((noinline))

static void *kept_small[20000];
static void *kept_large[40];
static void *thread_blocks[8][10000];

static void touch(void *p, size_t n) {
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    memset(p, 0x5A, n < 64 ? n : 64);
}

NOINLINE void site_kept_small(void) {
    for (int i = 0; i < 20000; i++) { kept_small[i] = malloc(1000); touch(kept_small[i], 1000); }
    __asm__ volatile("" ::: "memory");  // keep the call a call (no tail call)
}

NOINLINE void site_kept_large(void) {
    for (int i = 0; i < 40; i++) { kept_large[i] = malloc(256 * 1024); touch(kept_large[i], 256 * 1024); }
    __asm__ volatile("" ::: "memory");
}

NOINLINE void site_freed(void) {
    for (int i = 0; i < 50000; i++) {
        void *p = malloc(2000);
        touch(p, 2000);
        free(p);
    }
    __asm__ volatile("" ::: "memory");
}

NOINLINE void site_child(void) {
    for (int i = 0; i < 10000; i++) { void *p = malloc(4096); touch(p, 4096); kept_small[i] = p; }
    __asm__ volatile("" ::: "memory");
}

NOINLINE void site_thread(int t) {
    for (int i = 0; i < 10000; i++) { thread_blocks[t][i] = malloc(512); touch(thread_blocks[t][i], 512); }
    __asm__ volatile("" ::: "memory");
}

static void *thread_main(void *arg) {
    site_thread((int)(long)arg);
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "single";
    if (strcmp(mode, "single") == 0 || strcmp(mode, "dump") == 0) {
        site_kept_small();
        site_kept_large();
        site_freed();
        if (strcmp(mode, "dump") == 0) {
            if (argc < 3 || !gomalloc_profile_dump) return 3;
            if (gomalloc_profile_dump(argv[2]) != 0) { fprintf(stderr, "gomalloc_profile_dump failed\n"); return 4; }
            for (int i = 0; i < 20000; i++) free(kept_small[i]);
        }
    } else if (strcmp(mode, "signal") == 0) {
        if (argc < 3) return 3;
        site_kept_small();
        site_kept_large();
        site_freed();
        raise(SIGUSR2);  // the handler writes the profile before raise returns
        char moved[4096];
        snprintf(moved, sizeof moved, "%s.usr2", argv[2]);
        if (rename(argv[2], moved) != 0) { fprintf(stderr, "no profile after SIGUSR2\n"); return 4; }
        for (int i = 0; i < 20000; i++) free(kept_small[i]);
    } else if (strcmp(mode, "threads") == 0) {
        pthread_t th[8];
        for (long t = 0; t < 8; t++) pthread_create(&th[t], NULL, thread_main, (void *)t);
        for (int t = 0; t < 8; t++) pthread_join(th[t], NULL);
        for (int t = 0; t < 8; t++)
            for (int i = 0; i < 10000; i += 2) free(thread_blocks[t][i]);
    } else if (strcmp(mode, "fork") == 0) {
        site_kept_small();
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            for (int i = 0; i < 20000; i++) free(kept_small[i]);
            site_child();
            exit(0);
        }
        int status = 0;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
        printf("child %d\n", (int)pid);
        site_freed();
    } else {
        return 5;
    }
    printf("OK profile\n");
    return 0;
}
