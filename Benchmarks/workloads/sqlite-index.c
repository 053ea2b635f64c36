// sqlite-index: a real program's allocation pattern: SQLite (the system's libsqlite3, with
// its default configuration, so it allocates through malloc) builds an in-memory table,
// indexes it and queries it: batched inserts through a prepared statement, two CREATE
// INDEX, point lookups through an index, GROUP BY and range aggregates, an UPDATE that
// grows text values, and a DELETE. Every query result is compared with what the program
// computed itself, so a misbehaving allocator shows as a wrong answer, not a fast one.
//
// Links against libsqlite3.so.0 (Debian: libsqlite3-0, pulled in by sqlite3 or
// libsqlite3-dev); uses <sqlite3.h> when it is installed, otherwise declares the few
// functions it calls (SQLite's C interface is a stable ABI).
//
// Arguments: rows, lookups, groups, seed (threads accepted for uniformity).
#include "common.h"

#if __has_include(<sqlite3.h>)
#include <sqlite3.h>
#else
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
int sqlite3_open(const char *, sqlite3 **);
int sqlite3_close(sqlite3 *);
int sqlite3_exec(sqlite3 *, const char *, int (*)(void *, int, char **, char **), void *, char **);
int sqlite3_prepare_v2(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
int sqlite3_bind_int64(sqlite3_stmt *, int, long long);
int sqlite3_bind_text(sqlite3_stmt *, int, const char *, int, void (*)(void *));
int sqlite3_step(sqlite3_stmt *);
int sqlite3_reset(sqlite3_stmt *);
int sqlite3_finalize(sqlite3_stmt *);
long long sqlite3_column_int64(sqlite3_stmt *, int);
int sqlite3_changes(sqlite3 *);
const char *sqlite3_errmsg(sqlite3 *);
#define SQLITE_OK 0
#define SQLITE_ROW 100
#define SQLITE_DONE 101
#define SQLITE_TRANSIENT ((void (*)(void *)) - 1)
#endif

static sqlite3 *db;

static void check_rc(int rc, int want, const char *what) {
    if (rc != want) die("sqlite: %s: %s (rc %d)", what, sqlite3_errmsg(db), rc);
}

static void exec(const char *sql) { check_rc(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, sql); }

static sqlite3_stmt *prepare(const char *sql) {
    sqlite3_stmt *st = NULL;
    check_rc(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, sql);
    return st;
}

static void make_name(char *buf, size_t cap, long long id) {
    snprintf(buf, cap, "item-%016llx-%lld", (unsigned long long)id * 0x9E3779B97F4A7C15ull, id % 97);
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"rows", 100000, "rows inserted"},
        {"lookups", 50000, "point lookups by name"},
        {"groups", 200, "distinct values of the grouping column"},
        {"threads", 1, "accepted for uniformity; single-threaded"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("sqlite-index", argc, argv, args, nargs);
    long rows = arg_get(args, nargs, "rows"), lookups = arg_get(args, nargs, "lookups");
    long groups = arg_get(args, nargs, "groups"), seed = arg_get(args, nargs, "seed");
    if (rows < 1 || lookups < 0 || groups < 1) die("bad arguments");
    rng_t rng = rng_seeded((uint64_t)seed, 1);
    double t0 = now_seconds();

    // What the database should contain, kept on the side.
    long long *grp = (long long *)xmalloc(sizeof(long long) * (size_t)rows);
    long long *score = (long long *)xmalloc(sizeof(long long) * (size_t)rows);
    long long *plen = (long long *)xmalloc(sizeof(long long) * (size_t)rows);
    char *alive = (char *)xmalloc((size_t)rows);
    char name[64], payload[512];

    check_rc(sqlite3_open(":memory:", &db), SQLITE_OK, "open");
    exec("CREATE TABLE items(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, payload TEXT, score INTEGER)");

    sqlite3_stmt *ins = prepare("INSERT INTO items(id, grp, name, payload, score) VALUES(?, ?, ?, ?, ?)");
    exec("BEGIN");
    for (long i = 0; i < rows; i++) {
        if (i > 0 && i % 1000 == 0) {
            exec("COMMIT");
            exec("BEGIN");
        }
        grp[i] = (long long)rng_below(&rng, (uint64_t)groups);
        score[i] = (long long)rng_below(&rng, 1000000);
        plen[i] = (long long)rng_range(&rng, 20, 400);
        alive[i] = 1;
        for (long long k = 0; k < plen[i]; k++) payload[k] = (char)('a' + rng_below(&rng, 26));
        make_name(name, sizeof name, i);
        sqlite3_bind_int64(ins, 1, i);
        sqlite3_bind_int64(ins, 2, grp[i]);
        sqlite3_bind_text(ins, 3, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 4, payload, (int)plen[i], SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 5, score[i]);
        check_rc(sqlite3_step(ins), SQLITE_DONE, "insert");
        sqlite3_reset(ins);
    }
    exec("COMMIT");
    sqlite3_finalize(ins);

    exec("CREATE INDEX items_grp ON items(grp)");
    exec("CREATE INDEX items_name ON items(name)");

    // Point lookups through the name index.
    uint64_t checksum = 0;
    sqlite3_stmt *look = prepare("SELECT id, grp, score, length(payload) FROM items WHERE name = ?");
    for (long q = 0; q < lookups; q++) {
        long long id = (long long)rng_below(&rng, (uint64_t)rows);
        make_name(name, sizeof name, id);
        sqlite3_bind_text(look, 1, name, -1, SQLITE_TRANSIENT);
        check_rc(sqlite3_step(look), SQLITE_ROW, "lookup");
        if (sqlite3_column_int64(look, 0) != id || sqlite3_column_int64(look, 1) != grp[id] ||
            sqlite3_column_int64(look, 2) != score[id] || sqlite3_column_int64(look, 3) != plen[id])
            corruption("sqlite-index: lookup of row %lld returned wrong values", id);
        checksum = mix(checksum, (uint64_t)score[id]);
        check_rc(sqlite3_step(look), SQLITE_DONE, "lookup end");
        sqlite3_reset(look);
    }
    sqlite3_finalize(look);

    // Grow the payloads of a few groups (text values reallocated by SQLite).
    long long *gcount = (long long *)calloc((size_t)groups, sizeof(long long));
    long long *gsum = (long long *)calloc((size_t)groups, sizeof(long long));
    sqlite3_stmt *upd = prepare("UPDATE items SET payload = payload || ?, score = score + 1 WHERE grp = ?");
    for (long g = 0; g < groups; g += 7) {
        sqlite3_bind_text(upd, 1, "-appended-text-", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(upd, 2, g);
        check_rc(sqlite3_step(upd), SQLITE_DONE, "update");
        sqlite3_reset(upd);
        for (long i = 0; i < rows; i++)
            if (grp[i] == g) {
                plen[i] += 15;
                score[i] += 1;
            }
    }
    sqlite3_finalize(upd);

    // Delete every row whose id is a multiple of 7.
    exec("DELETE FROM items WHERE id % 7 = 0");
    for (long i = 0; i < rows; i += 7) alive[i] = 0;
    for (long i = 0; i < rows; i++)
        if (alive[i]) {
            gcount[grp[i]]++;
            gsum[grp[i]] += score[i];
        }

    // GROUP BY through the grp index.
    sqlite3_stmt *agg = prepare("SELECT grp, count(*), sum(score) FROM items GROUP BY grp ORDER BY grp");
    long seen = 0;
    int rc;
    while ((rc = sqlite3_step(agg)) == SQLITE_ROW) {
        long long g = sqlite3_column_int64(agg, 0);
        if (g < 0 || g >= groups || sqlite3_column_int64(agg, 1) != gcount[g] ||
            sqlite3_column_int64(agg, 2) != gsum[g])
            corruption("sqlite-index: GROUP BY row for group %lld is wrong", g);
        checksum = mix(checksum, (uint64_t)gsum[g]);
        seen++;
    }
    check_rc(rc, SQLITE_DONE, "group by");
    sqlite3_finalize(agg);
    for (long g = 0; g < groups; g++)
        if (gcount[g] > 0) seen--;
    if (seen != 0) corruption("sqlite-index: GROUP BY returned the wrong number of groups");

    // Range aggregates over the grp index.
    sqlite3_stmt *range = prepare("SELECT count(*), total(length(payload)) FROM items WHERE grp BETWEEN ? AND ?");
    for (long q = 0; q < 50; q++) {
        long long a = (long long)rng_below(&rng, (uint64_t)groups), b = a + (long long)rng_below(&rng, 20);
        long long cnt = 0, len = 0;
        for (long i = 0; i < rows; i++)
            if (alive[i] && grp[i] >= a && grp[i] <= b) {
                cnt++;
                len += plen[i];
            }
        sqlite3_bind_int64(range, 1, a);
        sqlite3_bind_int64(range, 2, b);
        check_rc(sqlite3_step(range), SQLITE_ROW, "range");
        if (sqlite3_column_int64(range, 0) != cnt || sqlite3_column_int64(range, 1) != len)
            corruption("sqlite-index: range [%lld, %lld] gave %lld rows / %lld bytes, expected %lld / %lld", a, b,
                       sqlite3_column_int64(range, 0), sqlite3_column_int64(range, 1), cnt, len);
        checksum = mix(checksum, (uint64_t)len);
        sqlite3_reset(range);
    }
    sqlite3_finalize(range);

    check_rc(sqlite3_close(db), SQLITE_OK, "close");
    free(grp);
    free(score);
    free(plen);
    free(alive);
    free(gcount);
    free(gsum);
    double elapsed = now_seconds() - t0;
    printf("workload=sqlite-index rows=%ld lookups=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n", rows,
           lookups, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
