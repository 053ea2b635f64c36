// nginx-static: nginx under the allocator serving static files, some gzipped on the fly, to
// wrk (a real server of the suite; Debian's nginx and wrk,
// `apt-get install -y nginx-light wrk`).
//
// The server runs under the allocator and the driver without it (server.h). nginx runs as
// in production: a master process and `workers` worker processes forked from it (so the
// allocator is inherited across fork), each request served from a memory pool that nginx
// mallocs and frees per connection and per request; gzip's buffers and zlib's state come
// from those pools. The driver:
//   1. writes a document root into a fresh directory: small.txt (200 B), page.html
//      (8 KiB), medium.txt (64 KiB), large.bin (1 MiB), contents derived from the name;
//   2. correctness: GETs every file with its own HTTP client and compares every byte (a
//      mismatch exits 3: CORRUPTION);
//   3. throughput: wrk, `connections` connections, `seconds` s with keep-alive and gzip
//      accepted (the text files are compressed per request), then `seconds` s more with
//      `Connection: close` (a new connection, and so new pools, per request); both rotate
//      over the four files; any non-2xx answer or socket error fails the run;
//   4. the check again, then `idle` ms without a request, then SIGQUIT (graceful stop).
// Phase markers carry the Pss of nginx's process tree (master and workers; shared pages
// once): start, check, keepalive, loaded (after the Connection: close run), idle,
// idle-end. The summary line gives both throughputs. Exit status 2: nginx or wrk is not
// installed.
#include <sys/stat.h>

#include "server.h"

static char root[256];

static void server_marker(const char *phase) { marker_rss(phase, server_tree_pss_kib()); }

typedef struct {
    const char *name;
    size_t size;
} file_t;

static const file_t files[] = {
    {"small.txt", 200}, {"page.html", 8192}, {"medium.txt", 65536}, {"large.bin", 1 << 20}};
enum { nfiles = sizeof files / sizeof files[0] };

/// File i's contents: text lines for the text files (so gzip has work to do), bytes of a
/// seeded generator for the binary one.
static void contents(int i, unsigned char *buf) {
    rng_t r = rng_seeded(11, (uint64_t)i);
    size_t n = files[i].size;
    if (strstr(files[i].name, ".bin")) {
        for (size_t k = 0; k < n; k++) buf[k] = (unsigned char)rng_next(&r);
        return;
    }
    static const char *words[] = {"allocator", "span", "arena", "cache", "central", "heap", "page", "class"};
    size_t k = 0;
    while (k < n) {
        const char *w = words[rng_below(&r, 8)];
        for (const char *c = w; *c && k < n; c++) buf[k++] = (unsigned char)*c;
        if (k < n) buf[k++] = rng_below(&r, 12) == 0 ? '\n' : ' ';
    }
}

static void write_file(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("cannot create %s: %s", path, strerror(errno));
    if (write(fd, data, n) != (ssize_t)n) die("cannot write %s", path);
    close(fd);
}

static void write_site(int workers) {
    char path[512];
    snprintf(path, sizeof path, "%s/www", root);
    if (mkdir(path, 0755) != 0) die("mkdir %s failed", path);
    unsigned char *buf = xmalloc(1 << 20);
    for (int i = 0; i < nfiles; i++) {
        contents(i, buf);
        snprintf(path, sizeof path, "%s/www/%s", root, files[i].name);
        write_file(path, buf, files[i].size);
    }
    free(buf);
    char conf[4096];
    int n = snprintf(conf, sizeof conf,
        "%s"
        "worker_processes %d;\n"
        "daemon off;\n"
        "pid %s/nginx.pid;\n"
        "error_log %s/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log off;\n"
        "  types { text/plain txt; text/html html; application/octet-stream bin; }\n"
        "  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fastcgi;\n"
        "  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
        "  gzip on; gzip_comp_level 1; gzip_min_length 0; gzip_types text/plain;\n"
        "  keepalive_requests 1000;\n"
        "  server { listen 127.0.0.1:%d; root %s/www; location / { } }\n"
        "}\n",
        getuid() == 0 ? "user root;\n" : "", workers, root, root, root, root, root, root, root, server_port, root);
    snprintf(path, sizeof path, "%s/nginx.conf", root);
    write_file(path, conf, (size_t)n);
    // wrk's request rotation (Lua): one request per file in turn.
    char lua[1024];
    n = snprintf(lua, sizeof lua,
        "local paths = {\"/small.txt\", \"/page.html\", \"/medium.txt\", \"/large.bin\"}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  return wrk.format(\"GET\", paths[(i %% #paths) + 1])\n"
        "end\n");
    snprintf(path, sizeof path, "%s/rotate.lua", root);
    write_file(path, lua, (size_t)n);
}

/// GET every file over its own connection (no gzip) and compare the body with the file.
static void check_files(void) {
    unsigned char *want = xmalloc(1 << 20), *got = xmalloc(1 << 20);
    for (int i = 0; i < nfiles; i++) {
        contents(i, want);
        int fd = server_connect();
        char req[256], line[1024];
        int n = snprintf(req, sizeof req, "GET /%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", files[i].name);
        send_all(fd, req, (size_t)n);
        read_line(fd, line, sizeof line);
        if (strncmp(line, "HTTP/1.1 200", 12) != 0) die("nginx GET /%s: %s", files[i].name, line);
        long length = -1;
        for (;;) {
            size_t len = read_line(fd, line, sizeof line);
            if (len == 2) break;
            if (strncasecmp(line, "Content-Length:", 15) == 0) length = strtol(line + 15, NULL, 10);
        }
        if (length != (long)files[i].size) corruption("nginx GET /%s: Content-Length %ld, want %zu", files[i].name, length, files[i].size);
        read_full(fd, got, files[i].size);
        if (memcmp(got, want, files[i].size) != 0) corruption("nginx GET /%s: the body differs from the file", files[i].name);
        close(fd);
    }
    free(want);
    free(got);
}

/// Runs wrk with the extra arguments; returns requests per second, dying on any failed
/// request.
static double run_wrk(const char *extra, long connections, long seconds) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "wrk -t 2 -c %ld -d %lds -s %s/rotate.lua %s http://127.0.0.1:%d/ 2>&1", connections,
             seconds, root, extra, server_port);
    FILE *f = popen(cmd, "r");
    if (!f) die("popen failed");
    char line[512];
    double rps = 0;
    int bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Requests/sec:", 13) == 0) rps = atof(line + 13);
        if (strstr(line, "Non-2xx") || strstr(line, "Socket errors")) {
            bad = 1;
            fprintf(stderr, "wrk: %s", line);
        }
    }
    int status = pclose(f);
    if (status != 0 || rps <= 0) die("wrk %s failed (status %d)", extra, status);
    if (bad) die("wrk %s: failed requests", extra);
    return rps;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"port", 7480, "loopback port for nginx"},
        {"workers", 2, "nginx worker processes"},
        {"connections", 64, "wrk connections"},
        {"seconds", 5, "seconds of each wrk run (keep-alive, then Connection: close)"},
        {"idle", 6000, "idle time after the load (ms)"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("nginx-static", argc, argv, args, nargs);
    server_port = (int)arg_get(args, nargs, "port");
    long workers = arg_get(args, nargs, "workers"), connections = arg_get(args, nargs, "connections");
    long seconds = arg_get(args, nargs, "seconds"), idle = arg_get(args, nargs, "idle");
    if (access("/usr/sbin/nginx", X_OK) != 0 || access("/usr/bin/wrk", X_OK) != 0) {
        fprintf(stderr, "nginx-static: nginx or wrk is not installed (apt-get install -y nginx-light wrk)\n");
        return 2;
    }
    snprintf(root, sizeof root, "/tmp/gomalloc-nginx-XXXXXX");
    if (!mkdtemp(root)) die("mkdtemp failed");
    chmod(root, 0755);
    write_site((int)workers);
    char conf[300];
    snprintf(conf, sizeof conf, "%s/nginx.conf", root);
    char *server_argv[] = {"/usr/sbin/nginx", "-p", root, "-c", conf, "-e", "/dev/null", NULL};
    // -e (nginx 1.19.5+): start-up messages go nowhere; the error_log directive takes over.
    server_start(server_argv);

    double t0 = now_seconds();
    close(server_connect());
    server_marker("start");
    check_files();
    server_marker("check");
    double keepalive_rps = run_wrk("-H 'Accept-Encoding: gzip'", connections, seconds);
    server_marker("keepalive");
    double close_rps = run_wrk("-H 'Connection: close'", connections, seconds);
    server_marker("loaded");
    check_files();
    server_marker("idle");
    sleep_ms(idle);
    long idle_end = server_tree_pss_kib();
    server_marker("idle-end");
    double elapsed = now_seconds() - t0;
    printf("workload=nginx-static keepalive_rps=%.0f close_rps=%.0f seconds=%.3f idle_end_pss_kib=%ld checksum=0 maxrss_kib=0\n",
           keepalive_rps, close_rps, elapsed, idle_end);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);  // nginx has the files open; Linux allows it
    if (system(cmd) != 0) fprintf(stderr, "nginx-static: could not remove %s\n", root);
    server_stop(SIGQUIT, 0);
}
