// redis-flush: Redis under the allocator, loaded, flushed and left idle (the real-server run
// of the suite; Debian's redis-server, `apt-get install -y redis-server`).
//
// The server runs under the allocator and the driver without it (server.h):
//   1. correctness: `keys` SETs of values 10 B - 8 KiB derived from the key, each read back
//      with GET and compared (a mismatch exits 3: CORRUPTION);
//   2. throughput: redis-benchmark SET and GET (`requests`, 20 clients, 256-byte values);
//   3. load: redis-benchmark SETs until about `mib` MiB of 1000-byte values are stored;
//   4. FLUSHALL, then `idle` ms without a request; then SHUTDOWN NOSAVE.
// Phase markers carry the server's RSS: start, check, throughput, load, loaded, flushed,
// idle, idle-end. (Debian's redis links jemalloc and calls its purge after FLUSHALL; with
// another allocator preloaded, malloc and free are that allocator's. Without one — the
// glibc row — this program preloads glibc's libc.so.6, so that the row is glibc's malloc.)
// The summary line gives the throughputs. Exit status 2: redis-server is not installed.
#include "server.h"

static void server_marker(const char *phase) { marker_rss(phase, server_rss_kib()); }

/// One RESP reply into buf (simple string, error, integer or bulk string); returns its
/// payload length (bulk) or 0, -1 for a nil bulk.
static long read_reply(int fd, char *buf, size_t cap) {
    read_line(fd, buf, cap);
    if (buf[0] == '-') die("redis error: %s", buf);
    if (buf[0] != '$') return 0;
    long len = strtol(buf + 1, NULL, 10);
    if (len < 0) return -1;
    if ((size_t)len + 2 > cap) die("redis value too long");
    read_full(fd, buf, (size_t)len + 2);
    return len;
}

/// Send one command as a RESP array in a single write (small writes would meet Nagle's delay).
static void command(int fd, int argc, const char **argv, const size_t *lens) {
    static char buf[16384];
    size_t n = (size_t)snprintf(buf, sizeof buf, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        if (n + lens[i] + 32 > sizeof buf) die("redis command too long");
        n += (size_t)snprintf(buf + n, sizeof buf - n, "$%zu\r\n", lens[i]);
        memcpy(buf + n, argv[i], lens[i]);
        n += lens[i];
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    send_all(fd, buf, n);
}

static size_t value_for(long k, char *v) {
    size_t n = 10 + (size_t)((k * 2654435761u) % 8182);
    for (size_t i = 0; i < n; i++) v[i] = (char)('a' + (k + (long)i * 7) % 26);
    return n;
}

static void check_values(long keys) {
    int fd = server_connect();
    static char v[8192], reply[16384];
    char key[32];
    for (long k = 0; k < keys; k++) {
        size_t n = value_for(k, v);
        size_t kl = (size_t)snprintf(key, sizeof key, "check:%ld", k);
        const char *a[] = {"SET", key, v};
        size_t l[] = {3, kl, n};
        command(fd, 3, a, l);
        read_reply(fd, reply, sizeof reply);
    }
    for (long k = 0; k < keys; k++) {
        size_t n = value_for(k, v);
        size_t kl = (size_t)snprintf(key, sizeof key, "check:%ld", k);
        const char *a[] = {"GET", key};
        size_t l[] = {3, kl};
        command(fd, 2, a, l);
        long got = read_reply(fd, reply, sizeof reply);
        if (got != (long)n || memcmp(reply, v, n) != 0) corruption("redis GET %s: %ld bytes, want %zu", key, got, n);
    }
    close(fd);
}

/// A command of one or two words; SHUTDOWN gets no reply.
static void simple(const char *cmd, const char *arg) {
    int fd = server_connect();
    const char *a[] = {cmd, arg};
    size_t l[] = {strlen(cmd), arg ? strlen(arg) : 0};
    command(fd, arg ? 2 : 1, a, l);
    static char reply[256];
    if (strcmp(cmd, "SHUTDOWN") != 0) read_reply(fd, reply, sizeof reply);
    close(fd);
}

/// Run redis-benchmark quietly; returns the requests per second of its `TEST: N requests
/// per second` line (the first, or the one for `test`).
static double bench(const char *args, const char *test) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-benchmark -p %d -q %s 2>/dev/null | tr '\\r' '\\n' | grep -E '^%s: [0-9.]+ requests'", server_port, args, test);
    FILE *f = popen(cmd, "r");
    if (!f) die("popen failed");
    char line[512];
    double rps = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strchr(line, ':');
        if (p && rps == 0) rps = atof(p + 1);
    }
    pclose(f);
    if (rps <= 0) die("redis-benchmark %s gave no %s figure", args, test);
    return rps;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"port", 7379, "loopback port for redis-server"},
        {"keys", 20000, "keys written and read back for the correctness check"},
        {"requests", 100000, "redis-benchmark requests per test (SET, GET)"},
        {"mib", 1024, "MiB of 1000-byte values loaded before FLUSHALL"},
        {"idle", 6000, "idle time after FLUSHALL (ms)"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("redis-flush", argc, argv, args, nargs);
    server_port = (int)arg_get(args, nargs, "port");
    long keys = arg_get(args, nargs, "keys"), requests = arg_get(args, nargs, "requests");
    long mib = arg_get(args, nargs, "mib"), idle = arg_get(args, nargs, "idle");
    if (access("/usr/bin/redis-server", X_OK) != 0 || access("/usr/bin/redis-benchmark", X_OK) != 0) {
        fprintf(stderr, "redis-flush: redis-server or redis-benchmark is not installed (apt-get install -y redis-server)\n");
        return 2;
    }
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", server_port);
    char *server_argv[] = {"/usr/bin/redis-server", "--port", port_arg, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--daemonize", "no", "--logfile", "/dev/null", NULL};
    server_start(server_argv);
    double t0 = now_seconds();
    close(server_connect());
    server_marker("start");
    check_values(keys);
    server_marker("check");
    char a[256];
    snprintf(a, sizeof a, "-n %ld -c 20 -t set -d 256 -r 50000", requests);
    double set_rps = bench(a, "SET");
    snprintf(a, sizeof a, "-n %ld -c 20 -t get -d 256 -r 50000", requests);
    double get_rps = bench(a, "GET");
    server_marker("throughput");
    snprintf(a, sizeof a, "-n %ld -c 20 -t set -d 1000 -r 100000000", mib * 1000);
    (void)bench(a, "SET");
    server_marker("loaded");
    simple("FLUSHALL", NULL);
    sleep_ms(300);
    server_marker("flushed");
    server_marker("idle");
    sleep_ms(idle);
    long idle_end = server_rss_kib();
    server_marker("idle-end");
    check_values(keys / 10);  // still correct after the flush
    double elapsed = now_seconds() - t0;
    printf("workload=redis-flush set_rps=%.0f get_rps=%.0f seconds=%.3f idle_end_rss_kib=%ld checksum=0 maxrss_kib=0\n",
           set_rps, get_rps, elapsed, idle_end);
    fflush(stdout);
    simple("SHUTDOWN", "NOSAVE");
    _exit(0);
}
