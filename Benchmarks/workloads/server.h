// server.h: what the real-server workloads share (redis-flush.c, memcached-flush.c,
// nginx-static.c, postgres-pgbench.c): the server runs under the allocator, the load runs
// without it, and the server's memory is read from /proc at each phase.
//
// The shape every one of them follows: the workload forks; the *parent* execs the server on
// a loopback port, so the server keeps the pid that `gomalloc bench` measures (wall time,
// peak RSS, RSS every 100 ms) and the allocator's LD_PRELOAD; the *child* removes
// LD_PRELOAD, waits for the port to accept, drives the server (its own protocol client for
// correctness checks, the server's stock load generator for throughput), prints phase
// markers carrying the server's memory, prints the summary line and stops the server.
// If the workload fails, the child exits non-zero and kills the server, so the run fails.
#ifndef GOMALLOC_BENCH_SERVER_H
#define GOMALLOC_BENCH_SERVER_H

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "common.h"

static pid_t server_pid;
static int server_port;

/// Forks; the parent execs `argv` (an absolute path) as the server and never returns; the
/// child (the load driver) returns with LD_PRELOAD removed. With no allocator preloaded (the
/// glibc row) the server gets glibc's own libc.so.6 preloaded, so that a server linking
/// another allocator itself (Debian's redis-server links jemalloc) runs on glibc's malloc.
static inline void server_start(char *const argv[]) {
    server_pid = getpid();
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) die("fork failed");
    if (child > 0) {
        const char *pre = getenv("LD_PRELOAD");
        if (pre == NULL || *pre == 0) setenv("LD_PRELOAD", "libc.so.6", 1);
        execv(argv[0], argv);
        die("exec %s failed: %s", argv[0], strerror(errno));
    }
    unsetenv("LD_PRELOAD");
}

/// Stops the server with `sig` and exits the driver with `status` (the server's own exit
/// is what the harness waits for).
__attribute__((noreturn)) static inline void server_stop(int sig, int status) {
    fflush(stdout);
    kill(server_pid, sig);
    _exit(status);
}

/// A TCP connection to the server's loopback port, retried for up to `seconds` while the
/// server starts (TCP_NODELAY: the drivers write whole requests).
static inline int server_connect_within(double seconds) {
    double deadline = now_seconds() + seconds;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        close(fd);
        if (kill(server_pid, 0) != 0 || now_seconds() > deadline)
            die("the server (pid %d) did not accept connections on port %d", (int)server_pid, server_port);
        sleep_ms(25);
    }
}

static inline int server_connect(void) { return server_connect_within(30); }

static inline void send_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) die("write to the server failed");
        p += w;
        n -= (size_t)w;
    }
}

/// Reads exactly n bytes (dies at end of stream).
static inline void read_full(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) die("read from the server failed");
        p += r;
        n -= (size_t)r;
    }
}

/// Reads one CRLF-terminated line into buf (NUL-terminated, CRLF kept); returns its length.
static inline size_t read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) die("line from the server too long");
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0) die("read from the server failed");
        n++;
        if (n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n') break;
    }
    buf[n] = 0;
    return n;
}

/// The server process's resident set in KiB.
static inline long server_rss_kib(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)server_pid);
    return rss_kib_from(path);
}

/// The proportional set size (Pss, KiB) of the server and all its descendants: for
/// servers that fork a process per connection (PostgreSQL), memory shared between them
/// (shared buffers, the binary) counted once. Read from /proc/PID/smaps_rollup.
static inline long pss_kib(pid_t pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *p = strstr(buf, "\nPss:");
    return p ? strtol(p + 5, NULL, 10) : 0;
}

static inline pid_t parent_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *close_paren = strrchr(buf, ')');  // "pid (comm) state ppid ..."
    if (!close_paren) return 0;
    char state;
    int ppid = 0;
    if (sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) return 0;
    return (pid_t)ppid;
}

/// Sum of Pss over the server's process tree (the driver, a child of the server's pid, and
/// what the driver runs are left out).
static inline long server_tree_pss_kib(void) {
    pid_t tree[4096];
    int count = 0;
    tree[count++] = server_pid;
    DIR *d = opendir("/proc");
    if (!d) return pss_kib(server_pid);
    // Parents precede children in pid order almost always; repeat until nothing is added.
    for (int added = 1; added;) {
        added = 0;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL && count < 4096) {
            pid_t pid = (pid_t)atoi(e->d_name);
            if (pid <= 0 || pid == getpid()) continue;
            int known = 0, parent_known = 0;
            pid_t ppid = parent_of(pid);
            for (int i = 0; i < count; i++) {
                if (tree[i] == pid) known = 1;
                if (tree[i] == ppid) parent_known = 1;
            }
            if (!known && parent_known) {
                tree[count++] = pid;
                added = 1;
            }
        }
    }
    closedir(d);
    long total = 0;
    for (int i = 0; i < count; i++) total += pss_kib(tree[i]);
    return total;
}

#endif
