// memcached-flush: memcached under the allocator, loaded, flushed and left idle (a real
// server of the suite; Debian's memcached, `apt-get install -y memcached`).
//
// The server runs under the allocator and the driver without it (server.h). memcached keeps
// its items in 1 MiB slab pages it mallocs as they fill, and mallocs per connection (read
// and write buffers, response objects) and for its hash table as it grows; so this run
// measures the allocator under connection churn and large-chunk growth. The driver:
//   1. correctness: `keys` values of 10 B - 8 KiB derived from the key, SET then GET and
//      compared byte for byte (a mismatch exits 3: CORRUPTION);
//   2. throughput: `clients` threads, each with its own connection that it reopens every
//      `reconnect` requests, `ops` requests each: 90% GET, 10% SET over `keyspace` keys with
//      values derived from the key (so every GET hit is checked too);
//   3. load: SETs of 1000-byte values until about `mib` MiB are stored (memcached's limit is
//      set above that, so nothing is evicted);
//   4. flush_all, then `idle` ms without a request; a last check; then the server is stopped
//      with SIGTERM (memcached's clean exit).
// Phase markers carry the server's RSS: start, check, throughput, loaded, flushed, idle,
// idle-end. The summary line gives the throughput (ops_per_s). Exit 2: not installed.
#include "server.h"

static void server_marker(const char *phase) { marker_rss(phase, server_rss_kib()); }

/// The value stored under key number k of a family: 10 B - 8 KiB, bytes derived from k.
static size_t value_for(long family, long k, char *v) {
    uint64_t h = (uint64_t)(k * 2654435761u) ^ (uint64_t)family * 0x9E3779B97F4A7C15ull;
    size_t n = 10 + (size_t)(h % 8182);
    for (size_t i = 0; i < n; i++) v[i] = (char)('a' + (k + (long)i * 7 + family) % 26);
    return n;
}

static void set_value(int fd, const char *key, const char *v, size_t n) {
    char head[128];
    int h = snprintf(head, sizeof head, "set %s 0 0 %zu\r\n", key, n);
    static __thread char req[8400];
    memcpy(req, head, (size_t)h);
    memcpy(req + h, v, n);
    memcpy(req + h + n, "\r\n", 2);
    send_all(fd, req, (size_t)h + n + 2);
    char line[256];
    read_line(fd, line, sizeof line);
    if (strcmp(line, "STORED\r\n") != 0) die("memcached set %s: %s", key, line);
}

/// GET key into buf; returns the value's length, or -1 on a miss.
static long get_value(int fd, const char *key, char *buf, size_t cap) {
    char req[128];
    int h = snprintf(req, sizeof req, "get %s\r\n", key);
    send_all(fd, req, (size_t)h);
    char line[256];
    read_line(fd, line, sizeof line);
    if (strcmp(line, "END\r\n") == 0) return -1;
    char name[128];
    unsigned flags;
    size_t n;
    if (sscanf(line, "VALUE %127s %u %zu", name, &flags, &n) != 3 || strcmp(name, key) != 0)
        die("memcached get %s: %s", key, line);
    if (n + 7 > cap) die("memcached value for %s too long", key);
    read_full(fd, buf, n + 2);  // value and CRLF
    read_line(fd, line, sizeof line);
    if (strcmp(line, "END\r\n") != 0) die("memcached get %s: no END", key);
    return (long)n;
}

static void check_values(long family, long keys) {
    int fd = server_connect();
    static char v[8192], got[8400];
    char key[64];
    for (long k = 0; k < keys; k++) {
        snprintf(key, sizeof key, "check:%ld:%ld", family, k);
        set_value(fd, key, v, value_for(family, k, v));
    }
    for (long k = 0; k < keys; k++) {
        snprintf(key, sizeof key, "check:%ld:%ld", family, k);
        size_t n = value_for(family, k, v);
        long len = get_value(fd, key, got, sizeof got);
        if (len != (long)n || memcmp(got, v, n) != 0) corruption("memcached get %s: %ld bytes, want %zu", key, len, n);
    }
    close(fd);
}

typedef struct {
    int index;
    long ops, reconnect, keyspace;
    long hits;
} client_t;

static void *client_thread(void *arg) {
    client_t *c = arg;
    rng_t r = rng_seeded(7, (uint64_t)c->index);
    char *v = xmalloc(8192), *got = xmalloc(8400);
    char key[64];
    int fd = server_connect();
    for (long i = 0; i < c->ops; i++) {
        if (c->reconnect > 0 && i > 0 && i % c->reconnect == 0) {
            close(fd);
            fd = server_connect();
        }
        long k = (long)rng_below(&r, (uint64_t)c->keyspace);
        snprintf(key, sizeof key, "load:%ld", k);
        size_t n = value_for(1, k, v);
        if (rng_below(&r, 10) == 0) {
            set_value(fd, key, v, n);
        } else {
            long len = get_value(fd, key, got, 8400);
            if (len >= 0) {
                if (len != (long)n || memcmp(got, v, n) != 0) corruption("memcached get %s: %ld bytes, want %zu", key, len, n);
                c->hits++;
            }
        }
    }
    close(fd);
    free(v);
    free(got);
    return NULL;
}

/// Fills the cache with 1000-byte values until about `mib` MiB are stored, pipelined in
/// batches of 64 `set ... noreply` commands.
static void load(long mib) {
    int fd = server_connect();
    static char batch[64 * 1100];
    char value[1000];
    memset(value, 'x', sizeof value);
    long count = mib * 1024 * 1024 / 1000;
    for (long k = 0; k < count;) {
        size_t n = 0;
        for (int b = 0; b < 64 && k < count; b++, k++) {
            n += (size_t)snprintf(batch + n, sizeof batch - n, "set fill:%ld 0 0 1000 noreply\r\n", k);
            memcpy(batch + n, value, sizeof value);
            n += sizeof value;
            memcpy(batch + n, "\r\n", 2);
            n += 2;
        }
        send_all(fd, batch, n);
    }
    // A request with a reply: memcached answers in order, so all the sets are in.
    char line[256];
    send_all(fd, "version\r\n", 9);
    read_line(fd, line, sizeof line);
    if (strncmp(line, "VERSION", 7) != 0) die("memcached version: %s", line);
    close(fd);
}

static void flush_all(void) {
    int fd = server_connect();
    char line[256];
    send_all(fd, "flush_all\r\n", 11);
    read_line(fd, line, sizeof line);
    if (strcmp(line, "OK\r\n") != 0) die("memcached flush_all: %s", line);
    close(fd);
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"port", 7411, "loopback port for memcached"},
        {"keys", 20000, "keys written and read back for the correctness check"},
        {"clients", 4, "client threads of the throughput phase"},
        {"ops", 50000, "requests per client (90% GET, 10% SET)"},
        {"reconnect", 500, "requests per connection before a client reconnects (0: never)"},
        {"keyspace", 5000, "keys of the throughput phase"},
        {"mib", 1024, "MiB of 1000-byte values loaded before flush_all"},
        {"idle", 6000, "idle time after flush_all (ms)"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("memcached-flush", argc, argv, args, nargs);
    server_port = (int)arg_get(args, nargs, "port");
    long keys = arg_get(args, nargs, "keys"), clients = arg_get(args, nargs, "clients");
    long ops = arg_get(args, nargs, "ops"), reconnect = arg_get(args, nargs, "reconnect");
    long keyspace = arg_get(args, nargs, "keyspace");
    long mib = arg_get(args, nargs, "mib"), idle = arg_get(args, nargs, "idle");
    if (access("/usr/bin/memcached", X_OK) != 0) {
        fprintf(stderr, "memcached-flush: memcached is not installed (apt-get install -y memcached)\n");
        return 2;
    }
    char port_arg[24], limit_arg[24];
    snprintf(port_arg, sizeof port_arg, "%d", server_port);
    // Item memory limit: the load plus the check and throughput values, with room for
    // slab-class rounding, so that nothing is evicted.
    snprintf(limit_arg, sizeof limit_arg, "%ld", mib * 3 / 2 + 256);
    char *server_argv[] = {"/usr/bin/memcached", "-p", port_arg, "-l", "127.0.0.1", "-U", "0", "-m", limit_arg,
                           "-t", "4", "-c", "4096", "-u", getuid() == 0 ? "root" : "nobody", NULL};
    server_start(server_argv);

    double t0 = now_seconds();
    close(server_connect());
    server_marker("start");
    check_values(0, keys);
    server_marker("check");

    client_t *cs = calloc((size_t)clients, sizeof *cs);
    for (long i = 0; i < clients; i++) cs[i] = (client_t){.index = (int)i, .ops = ops, .reconnect = reconnect, .keyspace = keyspace};
    double tb = now_seconds();
    run_threads((int)clients, client_thread, cs, sizeof *cs);
    double ops_per_s = (double)(clients * ops) / (now_seconds() - tb);
    long hits = 0;
    for (long i = 0; i < clients; i++) hits += cs[i].hits;
    free(cs);
    server_marker("throughput");

    load(mib);
    server_marker("loaded");
    flush_all();
    sleep_ms(300);
    server_marker("flushed");
    server_marker("idle");
    sleep_ms(idle);
    long idle_end = server_rss_kib();
    server_marker("idle-end");
    check_values(2, keys / 10);  // still correct after the flush
    double elapsed = now_seconds() - t0;
    printf("workload=memcached-flush ops_per_s=%.0f hits=%ld seconds=%.3f idle_end_rss_kib=%ld checksum=0 maxrss_kib=0\n",
           ops_per_s, hits, elapsed, idle_end);
    server_stop(SIGTERM, 0);
}
