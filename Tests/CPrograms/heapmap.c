// heapmap.c: a known heap for GOMALLOC_HEAPMAP (HeapMapTests): 3000 blocks of 100 bytes
// (size class 112), 20 blocks of 1 MiB (large spans of 128 pages), a third of the small
// blocks and 5 of the large ones freed, the rest live at exit. With the argument `fork`, it
// first forks a child that allocates and leaves through exit() (so its exit handlers run),
// waits for it and prints the parent's pid: only the parent may write the dump.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            free(malloc(1000));
            exit(0);
        }
        int status = 0;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
        printf("parent %d\n", (int)getpid());
    }
    static void *small[3000];
    static void *large[20];
    for (int i = 0; i < 3000; i++) {
        small[i] = malloc(100);
        if (!small[i]) return 1;
        memset(small[i], 0xA5, 100);
    }
    for (int i = 0; i < 20; i++) {
        large[i] = malloc(1 << 20);
        if (!large[i]) return 1;
        memset(large[i], 0x5A, 4096);
    }
    for (int i = 0; i < 3000; i += 3) free(small[i]);
    for (int i = 0; i < 5; i++) free(large[i * 4]);
    // 15 large blocks and 2000 small ones stay live at exit, with 20 more large ones.
    for (int i = 0; i < 20; i += 4) {
        large[i] = malloc(1 << 20);
        if (!large[i]) return 1;
    }
    printf("OK heapmap\n");
    return 0;
}
