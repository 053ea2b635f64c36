// postgres-pgbench: PostgreSQL under the allocator, driven by pgbench (the real-server run
// of the suite with a process per connection; Debian's postgresql, `apt-get install -y
// postgresql`).
//
// The server runs under the allocator and the driver without it (server.h). A fresh cluster
// is made with initdb (without the allocator) in a temporary directory under /tmp; the
// postmaster and every backend it forks run on the allocator under test (LD_PRELOAD is
// inherited across fork). Then:
//   1. init: `pgbench -i -s scale` (COPY of scale * 100000 accounts, primary keys, VACUUM);
//   2. load: `pgbench -c clients -t txns` (TPC-B-like; a fixed number of transactions per
//      client, so every allocator does the same work); its tps is the throughput figure;
//   3. check: the TPC-B invariant (the sums of the account, branch and teller balances
//      and of the history deltas are equal), the history holds clients * txns rows, and
//      amcheck's bt_index_check with heapallindexed passes on every pgbench index (any
//      failure exits 3: CORRUPTION);
//   4. sort: in one psql session kept open, a sort and a hash aggregate over the md5 strings
//      of every account (work_mem 32 MB; their counts are checked);
//   5. `idle` ms without a query, that session's backend still connected (so idle-end shows
//      what the allocator of a backend that ran big queries keeps); the session closes, the
//      invariant is checked once more, the summary is printed; fast shutdown (SIGINT).
// Phase markers carry the Pss summed over the postmaster and all its children (shared
// buffers are shared; Pss counts them once), taken once the finished clients' backends
// have exited: start, init, load, check, loaded (after the sort), idle, idle-end.
// PostgreSQL refuses to run as root: run as root, this program becomes user postgres first,
// after copying the preloaded libraries into the cluster's directory (a build under /root is
// not readable by that user). The cluster's directory
// (/tmp/gomalloc-pg-XXXXXX) is removed at the end. If the driver fails, it prints the tails
// of the server's and the clients' logs and kills the server (SIGKILL), so the run fails.
// Exit status 2: PostgreSQL is not installed (or there is no postgres user to run it as).
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>

#include "server.h"

static char bin_dir[512];         // .../postgresql/VERSION/bin
static char top_dir[64];          // the temporary directory: data/, logs, the socket
static char data_dir[128];
static volatile sig_atomic_t finished;  // the driver got through; no cleanup at exit
static int driver;                       // this process is the driver (after server_start)

static int session_open_now;  // the long-lived psql session (one backend) is open

/// How many children of the server are client backends ("postgres: USER DB ...").
static int client_backends(void) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || pid == getpid() || parent_of(pid) != server_pid) continue;
        char path[64], title[64];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, title, sizeof title - 1);
        close(fd);
        title[n > 0 ? n : 0] = 0;
        count += strncmp(title, "postgres: postgres postgres ", 28) == 0;
    }
    closedir(d);
    return count;
}

/// A phase marker with the server tree's Pss, once the backends of the finished clients
/// have exited (up to 2 s), so that the figure does not depend on how fast they go.
static void server_marker(const char *phase) {
    double deadline = now_seconds() + 2;
    while (client_backends() > session_open_now && now_seconds() < deadline) sleep_ms(5);
    marker_rss(phase, server_tree_pss_kib());
}

/// The newest PostgreSQL bin directory (/usr/lib/postgresql/*/bin with postgres in it).
static int find_postgres(void) {
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) != 0) return 0;
    double best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *v = g.gl_pathv[i] + strlen("/usr/lib/postgresql/");
        double version = atof(v);
        if (access(g.gl_pathv[i], X_OK) == 0 && version > best) {
            best = version;
            snprintf(bin_dir, sizeof bin_dir, "%.*s", (int)(strrchr(g.gl_pathv[i], '/') - g.gl_pathv[i]),
                     g.gl_pathv[i]);
        }
    }
    globfree(&g);
    if (best < 0) return 0;
    const char *tools[] = {"initdb", "pgbench", "psql"};
    for (int i = 0; i < 3; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", bin_dir, tools[i]);
        if (access(p, X_OK) != 0) return 0;
    }
    return 1;
}

static void copy_preload_for(const struct passwd *pw);

/// PostgreSQL will not run as root: become user postgres for the whole workload.
static void drop_root(void) {
    if (getuid() != 0 && geteuid() != 0) return;
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL) {
        fprintf(stderr, "postgres-pgbench: running as root and there is no user postgres to run PostgreSQL as "
                        "(apt-get install -y postgresql creates it)\n");
        exit(2);
    }
    if (chown(top_dir, pw->pw_uid, pw->pw_gid) != 0) die("postgres-pgbench: cannot chown %s", top_dir);
    copy_preload_for(pw);
    pid_t parent = getppid();
    if (setgroups(1, &pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 || getuid() == 0)
        die("postgres-pgbench: cannot become user postgres: %s", strerror(errno));
    setenv("HOME", pw->pw_dir, 1);
    setenv("USER", "postgres", 1);
    setenv("LOGNAME", "postgres", 1);
    // The change of credentials cleared the parent-death signal that the harness's shim set;
    // set it again (the postmaster keeps it across exec: an immediate shutdown if the shim dies).
    if (parent != 1) {
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        if (getppid() != parent) exit(2);
    }
}

/// Every absolute path in LD_PRELOAD must be readable by the user the server runs as (a
/// library under /root would silently not be preloaded).
static void check_preload_readable(void) {
    const char *pre = getenv("LD_PRELOAD");
    if (pre == NULL) return;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", pre);
    for (char *save = NULL, *lib = strtok_r(copy, " :", &save); lib; lib = strtok_r(NULL, " :", &save))
        if (lib[0] == '/' && access(lib, R_OK) != 0)
            die("postgres-pgbench: the preloaded library %s is not readable by uid %d (the server's user)", lib,
                (int)getuid());
}

/// Run as root, before becoming user postgres: copy every absolute LD_PRELOAD library into
/// the cluster's directory (owned by postgres) and point LD_PRELOAD at the copies, so that a
/// library built under a directory only root may read (/root/...) is still the one preloaded.
static void copy_preload_for(const struct passwd *pw) {
    const char *pre = getenv("LD_PRELOAD");
    if (pre == NULL || *pre == 0) return;
    char copy[4096], out[4096] = "", dir[128];
    snprintf(copy, sizeof copy, "%s", pre);
    snprintf(dir, sizeof dir, "%s/lib", top_dir);
    if (mkdir(dir, 0755) != 0 || chown(dir, pw->pw_uid, pw->pw_gid) != 0) die("postgres-pgbench: cannot make %s", dir);
    int n = 0;
    for (char *save = NULL, *lib = strtok_r(copy, " :", &save); lib; lib = strtok_r(NULL, " :", &save), n++) {
        char target[700];
        if (lib[0] == '/') {
            const char *base = strrchr(lib, '/') + 1;
            snprintf(target, sizeof target, "%s/%d-%s", dir, n, base);
            int in = open(lib, O_RDONLY), o = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (in < 0 || o < 0) die("postgres-pgbench: cannot copy %s to %s", lib, target);
            char buf[65536];
            ssize_t r;
            while ((r = read(in, buf, sizeof buf)) > 0)
                if (write(o, buf, (size_t)r) != r) die("postgres-pgbench: cannot write %s", target);
            close(in);
            close(o);
            if (chown(target, pw->pw_uid, pw->pw_gid) != 0) die("postgres-pgbench: cannot chown %s", target);
        } else {
            snprintf(target, sizeof target, "%s", lib);  // a bare name: the loader's search path
        }
        if (strlen(out) + strlen(target) + 2 > sizeof out) die("postgres-pgbench: LD_PRELOAD too long");
        if (out[0]) strcat(out, ":");
        strcat(out, target);
    }
    setenv("LD_PRELOAD", out, 1);
}

/// Prints the last lines of a log file to stderr.
static void print_tail(const char *name, int lines) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test -s %s/%s && { echo '--- %s (tail) ---'; tail -n %d %s/%s; } >&2", top_dir, name,
             name, lines, top_dir, name);
    if (system(cmd) < 0) return;
}

static void remove_top_dir(void) {
    if (top_dir[0] == 0) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", top_dir);
    if (system(cmd) != 0) fprintf(stderr, "postgres-pgbench: could not remove %s\n", top_dir);
}

/// Waits up to `seconds` for the server (this driver's parent) to exit.
static int wait_server_gone(double seconds) {
    double deadline = now_seconds() + seconds;
    while (getppid() == server_pid) {
        if (now_seconds() > deadline) return 0;
        sleep_ms(20);
    }
    return 1;
}

/// The SysV interlock segment of a server that was killed (postmaster.pid's 7th line).
static void remove_shm_segment(void) {
    char path[160], line[256];
    snprintf(path, sizeof path, "%s/postmaster.pid", data_dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    for (int i = 0; i < 7 && fgets(line, sizeof line, f); i++) {
        long key, id;
        if (i == 6 && sscanf(line, "%ld %ld", &key, &id) == 2 && id >= 0) shmctl((int)id, IPC_RMID, NULL);
    }
    fclose(f);
}

/// At exit of a failed driver (die, corruption): show the logs, kill the server and its
/// backends (SIGKILL: the run must fail, and a postmaster that reaps a driver that exited
/// non-zero would take it for a crashed backend and restart), remove the directory.
static void driver_failed(void) {
    if (!driver || finished) return;
    prctl(PR_SET_PDEATHSIG, 0);
    print_tail("server.log", 20);
    print_tail("client.log", 20);
    fflush(stderr);
    DIR *d = opendir("/proc");
    pid_t kids[1024];
    int n = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n < 1024) {
            pid_t pid = (pid_t)atoi(e->d_name);
            if (pid > 0 && pid != getpid() && parent_of(pid) == server_pid) kids[n++] = pid;
        }
        closedir(d);
    }
    kill(server_pid, SIGKILL);
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    wait_server_gone(10);
    sleep_ms(200);
    remove_shm_segment();
    remove_top_dir();
}

/// The server died under the driver (the harness killed it): remove the directory and go.
static void on_parent_death(int sig) {
    (void)sig;
    char *argv[] = {"rm", "-rf", top_dir, NULL};
    execv("/bin/rm", argv);
    _exit(1);
}

/// Runs a client program (no allocator preloaded: the driver has none) through the shell,
/// its output appended to client.log; dies if it fails.
static void run_client(const char *what, const char *cmd) {
    char full[1200];
    snprintf(full, sizeof full, "%s >>%s/client.log 2>&1", cmd, top_dir);
    int rc = system(full);
    if (rc != 0) die("postgres-pgbench: %s failed (status %d): %s", what, rc, cmd);
}

/// Runs SQL with psql (unaligned, tuples only, stopping at the first error) and returns its
/// output (trailing newline removed) in a static buffer.
static const char *sql(const char *query) {
    static char out[4096];
    char file[160], cmd[1024];
    snprintf(file, sizeof file, "%s/query.sql", top_dir);
    FILE *q = fopen(file, "w");
    if (!q) die("postgres-pgbench: cannot write %s", file);
    fprintf(q, "%s\n", query);
    fclose(q);
    snprintf(cmd, sizeof cmd,
             "%s/psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U postgres -d postgres -f %s 2>>%s/client.log",
             bin_dir, server_port, file, top_dir);
    FILE *f = popen(cmd, "r");
    if (!f) die("popen failed");
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    int rc = pclose(f);
    if (rc != 0) die("postgres-pgbench: psql failed (status %d) on: %s", rc, query);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = 0;
    return out;
}

// ---- a long-lived session: one psql (so one backend) kept open across the sort and idle
// phases, so that idle-end includes a backend that has run the big sort and hash aggregate
// and then sits idle (what its allocator kept of that memory).

static pid_t session_pid;
static FILE *session_in;
static char session_path[160];
static long session_read, session_queries;

static void session_open(void) {
    int fds[2];
    if (pipe(fds) != 0) die("pipe failed");
    snprintf(session_path, sizeof session_path, "%s/session.out", top_dir);
    char port[16], client_log[160];
    snprintf(port, sizeof port, "%d", server_port);
    snprintf(client_log, sizeof client_log, "%s/client.log", top_dir);
    char psql[600];
    snprintf(psql, sizeof psql, "%s/psql", bin_dir);
    int created = open(session_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (created < 0) die("postgres-pgbench: cannot create %s", session_path);
    close(created);
    fflush(stdout);
    session_pid = fork();
    if (session_pid < 0) die("fork failed");
    if (session_pid == 0) {
        int out = open(session_path, O_WRONLY);
        int err = open(client_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (out < 0 || err < 0) _exit(126);
        dup2(fds[0], 0);
        dup2(out, 1);
        dup2(err, 2);
        close(fds[0]);
        close(fds[1]);
        char *argv[] = {psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", port,
                        "-U", "postgres", "-d", "postgres", NULL};
        execv(psql, argv);
        _exit(127);
    }
    close(fds[0]);
    session_in = fdopen(fds[1], "w");
    if (!session_in) die("fdopen failed");
    session_open_now = 1;
    session_read = 0;
}

/// Runs SQL in the session; returns its output (static buffer, trailing newline removed).
static const char *session_sql(const char *query) {
    static char out[4096];
    char done[32];
    int dn = snprintf(done, sizeof done, "@@done %ld\n", ++session_queries);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    fprintf(session_in, "%s;\n\\echo @@done %ld\n", query, session_queries);
    int ok = fflush(session_in) == 0;
    signal(SIGPIPE, old);
    for (;;) {
        int status;
        if (!ok || waitpid(session_pid, &status, WNOHANG) != 0) {
            session_open_now = 0;
            die("postgres-pgbench: the psql session failed on: %s", query);
        }
        int fd = open(session_path, O_RDONLY);
        if (fd < 0) die("postgres-pgbench: cannot read %s", session_path);
        ssize_t n = pread(fd, out, sizeof out - 1, session_read);
        close(fd);
        out[n > 0 ? n : 0] = 0;
        char *end = strstr(out, done);
        if (end) {
            session_read += (long)(end - out) + dn;
            *end = 0;
            size_t len = strlen(out);
            while (len > 0 && out[len - 1] == '\n') out[--len] = 0;
            return out;
        }
        if (n >= (ssize_t)sizeof out - 1) die("postgres-pgbench: psql session output too long");
        sleep_ms(2);
    }
}

static void session_close(void) {
    fputs("\\q\n", session_in);
    fclose(session_in);
    int status = 0;
    while (waitpid(session_pid, &status, 0) < 0 && errno == EINTR) {}
    session_open_now = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("postgres-pgbench: the psql session exited with %d", status);
}

/// Parses "a|b|c..." into up to `max` integers; returns how many.
static int parse_row(const char *row, long long *v, int max) {
    int n = 0;
    const char *p = row;
    while (n < max && *p) {
        char *end;
        v[n++] = strtoll(p, &end, 10);
        if (end == p) return -1;
        p = *end == '|' ? end + 1 : end;
        if (*end != '|' && *end != 0) return -1;
    }
    return n;
}

/// The TPC-B invariant and the row counts.
static void check_balances(long scale, long long history_rows, const char *when) {
    const char *row = sql(
        "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts),"
        " (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches),"
        " (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),"
        " (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
        " (SELECT count(*) FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts),"
        " (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers)");
    long long v[8];
    if (parse_row(row, v, 8) != 8) die("postgres-pgbench: unexpected balance row %s", row);
    if (v[0] != v[1] || v[1] != v[2] || v[2] != v[3])
        corruption("postgres-pgbench (%s): sums of balances differ: accounts %lld, branches %lld, tellers %lld, "
                   "history %lld", when, v[0], v[1], v[2], v[3]);
    if (v[4] != history_rows)
        corruption("postgres-pgbench (%s): pgbench_history has %lld rows, want %lld", when, v[4], history_rows);
    if (v[5] != scale * 100000 || v[6] != scale || v[7] != scale * 10)
        corruption("postgres-pgbench (%s): %lld accounts, %lld branches, %lld tellers for scale %ld", when, v[5], v[6],
                   v[7], scale);
}

/// amcheck on every B-tree index of the pgbench tables, heap entries included.
static void check_indexes(void) {
    const char *n = sql(
        "CREATE EXTENSION IF NOT EXISTS amcheck;"
        " SELECT count(*) FROM (SELECT bt_index_check(c.oid, true) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
        " WHERE a.amname = 'btree' AND c.relname LIKE 'pgbench%') s");
    if (atol(n) < 3) corruption("postgres-pgbench: amcheck checked %s pgbench indexes, want at least 3", n);
}

/// A sort and a hash aggregate, both over every account's md5 string.
static void sort_and_aggregate(long scale) {
    long long rows = scale * 100000LL, v[3];
    const char *row = session_sql(
        "SELECT count(*), sum(length(m)), count(DISTINCT left(m, 3)) FROM"
        " (SELECT aid, md5(aid::text) m FROM pgbench_accounts ORDER BY m) s");
    if (parse_row(row, v, 3) != 3 || v[0] != rows || v[1] != 32 * rows)
        corruption("postgres-pgbench: sort of %lld md5 strings gave %s", rows, row);
    row = session_sql(
        "SET enable_sort = off;"
        " SELECT count(*), sum(c) FROM (SELECT md5(aid::text) m, count(*) c FROM pgbench_accounts GROUP BY 1) s");
    if (parse_row(row, v, 2) != 2 || v[0] != rows || v[1] != rows)
        corruption("postgres-pgbench: hash aggregate over %lld md5 strings gave %s", rows, row);
}

/// pgbench's TPC-B-like run; returns its tps (without initial connection time).
static double pgbench_run(long clients, long txns) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/pgbench -h 127.0.0.1 -p %d -U postgres -c %ld -j %d -t %ld postgres 2>>%s/client.log",
             bin_dir, server_port, clients, clients < 2 ? 1 : 2, txns, top_dir);
    FILE *f = popen(cmd, "r");
    if (!f) die("popen failed");
    char line[512];
    double tps = -1;
    long long processed = -1, failed = 0;
    FILE *log = NULL;
    char path[160];
    snprintf(path, sizeof path, "%s/client.log", top_dir);
    log = fopen(path, "a");
    while (fgets(line, sizeof line, f)) {
        if (log) fputs(line, log);
        const char *p;
        if ((p = strstr(line, "tps = ")) && strstr(line, "without initial connection time")) tps = atof(p + 6);
        const char *done = "number of transactions actually processed: ", *bad = "number of failed transactions: ";
        if ((p = strstr(line, done))) processed = atoll(p + strlen(done));
        if ((p = strstr(line, bad))) failed = atoll(p + strlen(bad));
    }
    if (log) fclose(log);
    int rc = pclose(f);
    if (rc != 0) die("postgres-pgbench: pgbench exited with status %d", rc);
    if (failed != 0) die("postgres-pgbench: pgbench reported %lld failed transactions", failed);
    if (processed != clients * txns)
        die("postgres-pgbench: pgbench processed %lld transactions, want %ld", processed, clients * txns);
    if (tps <= 0) die("postgres-pgbench: pgbench gave no tps figure");
    return tps;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"port", 7432, "loopback port for postgres"},
        {"scale", 10, "pgbench -i scale factor (100000 accounts each)"},
        {"clients", 8, "pgbench clients (one backend each)"},
        {"txns", 2000, "pgbench transactions per client"},
        {"idle", 6000, "idle time at the end (ms)"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("postgres-pgbench", argc, argv, args, nargs);
    server_port = (int)arg_get(args, nargs, "port");
    long scale = arg_get(args, nargs, "scale"), clients = arg_get(args, nargs, "clients");
    long txns = arg_get(args, nargs, "txns"), idle = arg_get(args, nargs, "idle");
    if (scale < 1 || clients < 1 || txns < 1 || idle < 0) die("postgres-pgbench: scale, clients, txns must be >= 1");
    if (!find_postgres()) {
        fprintf(stderr, "postgres-pgbench: PostgreSQL (postgres, initdb, pgbench, psql under /usr/lib/postgresql/*/bin) "
                        "is not installed (apt-get install -y postgresql)\n");
        return 2;
    }
    // The cluster's directory (made before dropping root, so that the preloaded libraries
    // can be copied into it).
    snprintf(top_dir, sizeof top_dir, "/tmp/gomalloc-pg-XXXXXX");
    if (mkdtemp(top_dir) == NULL) die("postgres-pgbench: mkdtemp failed: %s", strerror(errno));
    drop_root();
    if (chdir("/tmp") != 0) die("postgres-pgbench: cannot enter /tmp");
    check_preload_readable();

    // A fresh cluster, made without the allocator.
    snprintf(data_dir, sizeof data_dir, "%s/data", top_dir);
    char *preload = getenv("LD_PRELOAD") ? strdup(getenv("LD_PRELOAD")) : NULL;
    unsetenv("LD_PRELOAD");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s/initdb -D %s -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >%s/initdb.log 2>&1",
             bin_dir, data_dir, top_dir);
    if (system(cmd) != 0) {
        print_tail("initdb.log", 20);
        remove_top_dir();
        die("postgres-pgbench: initdb failed");
    }
    if (preload) setenv("LD_PRELOAD", preload, 1);

    // The server's stderr goes to server.log; the driver gets the original stderr back.
    char log_path[128], port_arg[16];
    snprintf(log_path, sizeof log_path, "%s/server.log", top_dir);
    snprintf(port_arg, sizeof port_arg, "%d", server_port);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 10);
    if (log_fd < 0 || saved_stderr < 0) die("postgres-pgbench: cannot open %s", log_path);
    char postgres_path[600];
    snprintf(postgres_path, sizeof postgres_path, "%s/postgres", bin_dir);
    char *server_argv[] = {postgres_path, "-D", data_dir, "-p", port_arg, "-k", top_dir,
                           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                           "-c", "full_page_writes=off", "-c", "shared_buffers=128MB", "-c", "max_connections=50",
                           "-c", "work_mem=32MB", "-c", "log_min_messages=warning", "-c", "logging_collector=off",
                           NULL};
    fflush(stderr);
    dup2(log_fd, 2);
    close(log_fd);
    server_start(server_argv);
    dup2(saved_stderr, 2);
    close(saved_stderr);

    // The driver (a child of the server).
    driver = 1;
    atexit(driver_failed);
    signal(SIGTERM, on_parent_death);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != server_pid) on_parent_death(0);
    double t0 = now_seconds();
    close(server_connect_within(60));
    double ready_deadline = now_seconds() + 60;
    snprintf(cmd, sizeof cmd, "%s/psql -X -q -A -t -h 127.0.0.1 -p %d -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1",
             bin_dir, server_port);
    while (system(cmd) != 0) {  // accepting, but maybe still starting up
        if (now_seconds() > ready_deadline || getppid() != server_pid) die("postgres-pgbench: the server did not start");
        sleep_ms(50);
    }
    server_marker("start");

    double ti = now_seconds();
    snprintf(cmd, sizeof cmd, "%s/pgbench -i -q -s %ld -h 127.0.0.1 -p %d -U postgres postgres", bin_dir, scale,
             server_port);
    run_client("pgbench -i", cmd);
    double init_seconds = now_seconds() - ti;
    server_marker("init");

    double tps = pgbench_run(clients, txns);
    server_marker("load");

    check_balances(scale, (long long)clients * txns, "after pgbench");
    check_indexes();
    server_marker("check");

    session_open();
    sort_and_aggregate(scale);
    server_marker("loaded");  // after the load, the checks and the big queries

    server_marker("idle");  // the session's backend stays, idle
    sleep_ms(idle);
    long idle_end = server_tree_pss_kib();
    marker_rss("idle-end", idle_end);
    session_close();
    check_balances(scale, (long long)clients * txns, "after idle");  // still correct after the idle phase

    double elapsed = now_seconds() - t0;
    printf("workload=postgres-pgbench tps=%.0f init_seconds=%.3f seconds=%.3f idle_end_pss_kib=%ld checksum=0 "
           "maxrss_kib=0\n", tps, init_seconds, elapsed, idle_end);
    fflush(stdout);

    // Fast shutdown; the harness waits for the server's pid. Then remove the cluster.
    finished = 1;
    prctl(PR_SET_PDEATHSIG, 0);
    signal(SIGTERM, SIG_DFL);
    kill(server_pid, SIGINT);
    if (!wait_server_gone(120)) {
        fprintf(stderr, "postgres-pgbench: the server did not stop; killing it\n");
        kill(server_pid, SIGKILL);
        wait_server_gone(10);
    }
    remove_top_dir();
    _exit(0);
}
