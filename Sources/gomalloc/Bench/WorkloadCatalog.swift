// WorkloadCatalog.swift: the workloads of `gomalloc bench` (name, the benchmark each models,
// source file, threads, whether its RSS is sampled over time) and their sizes in full,
// quick and smoke mode.

import Foundation

struct WorkloadSpec {
    enum Kind { case c(linkFlags: [String], skipHint: String?), python }
    var name: String
    var models: String
    var description: String
    var source: String  // file name in the workloads directory
    var kind: Kind
    var threads: Int
    var arguments: [String]  // key=value arguments, threads= included
    /// Sample the workload's RSS every 100 ms while it runs (results.json's rssSeries) and
    /// draw it in this file of the output directory (RSSChartRenderer); nil: not sampled.
    var rssChart: String? = nil
    /// Programs the workload runs (a real server): skipped, with `requiresHint`, when one is missing.
    var requires: [String] = []
    var requiresHint: String? = nil
    /// A server that forks workers or backends: its memory is the Pss summed over the
    /// server's process tree (RSSSampler), and its peak the largest such sample.
    var processTree = false
    /// Keys of the summary line that are throughputs (requests per second): a real server,
    /// listed with them in the table's server section.
    var throughput: [String] = []
}

/// The workloads with their sizes for each mode. Sizes were picked so that a quick run takes
/// a few tenths of a second per workload under glibc and a full run about a second; they
/// are the same for every allocator.
func workloadCatalog(mode: BenchMode, threads: Int) -> [WorkloadSpec] {
    func pick(_ smoke: [String], _ quick: [String], _ full: [String]) -> [String] {
        switch mode {
        case .smoke: smoke
        case .quick: quick
        case .full: full
        }
    }
    let t = "threads=\(threads)"
    return [
        WorkloadSpec(
            name: "cross-thread-free", models: "larson",
            description: "threads replace random-sized objects (8-1000 B) in slot arrays that move between threads, so objects are freed by other threads",
            source: "cross-thread-free.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t] + pick(
                ["slots=200", "rounds=4", "ops=2000"],
                ["slots=1000", "rounds=20", "ops=20000"],
                ["slots=2000", "rounds=50", "ops=40000"])),
        WorkloadSpec(
            name: "producer-consumer", models: "xmalloc-test",
            description: "producer threads allocate (8-512 B) and hand batches to consumer threads that verify and free them",
            source: "producer-consumer.c", kind: .c(linkFlags: [], skipHint: nil), threads: max(2, threads),
            arguments: ["threads=\(max(2, threads))"] + pick(["objects=20000"], ["objects=500000"], ["objects=3000000"])),
        WorkloadSpec(
            name: "false-sharing-active", models: "cache-thrash",
            description: "each thread allocates, writes many times and frees its own 8-byte objects; slow if threads share cache lines",
            source: "false-sharing.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t, "passive=0"] + pick(
                ["iters=50", "writes=1000"], ["iters=1000", "writes=20000"], ["iters=2000", "writes=50000"])),
        WorkloadSpec(
            name: "false-sharing-passive", models: "cache-scratch",
            description: "as false-sharing-active, but each thread first frees an object the main thread allocated next to the others'",
            source: "false-sharing.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t, "passive=1"] + pick(
                ["iters=50", "writes=1000"], ["iters=1000", "writes=20000"], ["iters=2000", "writes=50000"])),
        WorkloadSpec(
            name: "working-set-churn", models: "alloc-test, mstress",
            description: "a working set (8 B-512 KiB, skewed small) that grows and shrinks by phase and is churned, some objects passed between threads; peak RSS matters",
            source: "working-set-churn.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t] + pick(
                ["live=2000", "steps=40000"], ["live=20000", "steps=300000"], ["live=40000", "steps=1200000"])),
        WorkloadSpec(
            name: "server-churn", models: "a server's RSS over time",
            description: "threads serve requests (short-lived 16 B-64 KiB objects, some 256 KiB-1 MiB buffers) and grow a cache to a peak, churn it, evict all but 7% and sit idle without heap calls; RSS sampled every 100 ms",
            source: "server-churn.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t, "keep=70"] + pick(
                ["peak=4", "churn=500", "idle=300"], ["peak=96", "churn=30000", "idle=2000"],
                ["peak=384", "churn=100000", "idle=6000"]),
            rssChart: "rss-over-time.svg"),
        WorkloadSpec(
            name: "idle-return", models: "a server going quiet after a burst",
            description: "one thread allocates a heap of 4 KiB blocks, frees all but one in 256 (scattered survivors), sits idle without heap calls, then calls malloc_trim(0); RSS at each phase",
            source: "idle-return.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: ["keep=256"] + pick(["mib=16", "idle=300"], ["mib=256", "idle=2000"], ["mib=1024", "idle=6000"]),
            rssChart: "idle-return.svg"),
        WorkloadSpec(
            name: "redis-flush", models: "real server (Redis)",
            description: "redis-server under the allocator on loopback: values written and read back, redis-benchmark SET/GET, about 1 GiB of 1000-byte values loaded, FLUSHALL, idle; the server's RSS at each phase",
            source: "redis-flush.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: pick(["keys=500", "requests=2000", "mib=8", "idle=300"],
                            ["keys=5000", "requests=20000", "mib=256", "idle=2000"],
                            ["keys=20000", "requests=100000", "mib=1024", "idle=6000"]),
            rssChart: "redis-flush.svg", requires: ["/usr/bin/redis-server", "/usr/bin/redis-benchmark"],
            requiresHint: "apt-get install -y redis-server", throughput: ["set_rps", "get_rps"]),
        WorkloadSpec(
            name: "memcached-flush", models: "real server (memcached)",
            description: "memcached under the allocator on loopback: values written and read back, 4 client threads of GET/SET (90/10, reconnecting every 500 requests, hits verified), about 1 GiB of 1000-byte values loaded, flush_all, idle; the server's RSS at each phase",
            source: "memcached-flush.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: pick(["keys=500", "ops=2000", "mib=8", "idle=300"],
                            ["keys=5000", "ops=20000", "mib=256", "idle=2000"],
                            ["keys=20000", "ops=50000", "mib=1024", "idle=6000"]),
            rssChart: "memcached-flush.svg", requires: ["/usr/bin/memcached"],
            requiresHint: "apt-get install -y memcached", throughput: ["ops_per_s"]),
        WorkloadSpec(
            name: "nginx-static", models: "real server (nginx)",
            description: "nginx (master and 2 workers) under the allocator on loopback serving 200 B-1 MiB files, text gzipped per request: bodies checked byte for byte, wrk with keep-alive, then with Connection: close, idle; Pss of the server's processes at each phase",
            source: "nginx-static.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: pick(["seconds=1", "connections=16", "idle=300"],
                            ["seconds=3", "idle=2000"],
                            ["seconds=8", "idle=6000"]),
            rssChart: "nginx-static.svg", requires: ["/usr/sbin/nginx", "/usr/bin/wrk"],
            requiresHint: "apt-get install -y nginx-light wrk", processTree: true,
            throughput: ["keepalive_rps", "close_rps"]),
        WorkloadSpec(
            name: "postgres-pgbench", models: "real server (PostgreSQL)",
            description: "PostgreSQL (postmaster and every backend) under the allocator on loopback: pgbench -i, a fixed-transaction pgbench TPC-B run, the balance invariant and amcheck checked, a big sort and hash aggregate in a session that stays connected through the idle phase; Pss of the server's processes at each phase",
            source: "postgres-pgbench.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: pick(["scale=1", "clients=4", "txns=50", "idle=300"],
                            ["scale=15", "clients=8", "txns=3000", "idle=3000"],
                            ["scale=25", "clients=8", "txns=8000", "idle=6000"]),
            rssChart: "postgres-pgbench.svg", requires: [newestPostgres(), "/usr/bin/pgbench"],
            requiresHint: "apt-get install -y postgresql", processTree: true, throughput: ["tps"]),
        WorkloadSpec(
            name: "small-pairs-fixed", models: "glibc bench-malloc-simple",
            description: "one thread: batches of 1-1600 blocks of 16, 32, 64, 128, 256 B allocated, then freed in order",
            source: "small-pairs.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: ["threads=1", "random=0"] + pick(["iters=200000"], ["iters=5000000"], ["iters=30000000"])),
        WorkloadSpec(
            name: "small-pairs-random", models: "glibc bench-malloc-simple/-thread",
            description: "one thread: as small-pairs-fixed with sizes uniform in 8-512 B",
            source: "small-pairs.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: ["threads=1", "random=1", "max=512"] + pick(["iters=200000"], ["iters=5000000"], ["iters=30000000"])),
        WorkloadSpec(
            name: "large-realloc", models: "malloc-large",
            description: "20 live blocks of 256 KiB-16 MiB replaced at random (pages touched), then buffers grown by realloc to 8 MiB and shrunk",
            source: "large-realloc.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: ["threads=1"] + pick(
                ["live=4", "iters=10", "max=4194304", "grow=4", "growmax=1048576", "growrounds=1"],
                ["iters=150", "growrounds=2"],
                ["iters=600", "growrounds=6"])),
        WorkloadSpec(
            name: "thread-handoff", models: "larson (thread succession)",
            description: "chains of short-lived threads: each replaces random objects (8-1000 B) of an array it inherited, then hands the array to a new thread and exits",
            source: "thread-handoff.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t] + pick(
                ["generations=5", "ops=200"], ["generations=500", "ops=2000"], ["generations=2000", "ops=2000"])),
        WorkloadSpec(
            name: "thread-slots", models: "glibc bench-malloc-thread",
            description: "each thread replaces random blocks of its own 1024, sizes 4 B-32 KiB from an inverse-square distribution",
            source: "slot-replace.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t, "dist=0", "slots=1024"] + pick(["ops=20000"], ["ops=4000000"], ["ops=15000000"])),
        WorkloadSpec(
            name: "random-replace", models: "alloc-test",
            description: "each thread replaces random objects of a large working set (40000, 8 B-8 KiB log-uniform): metadata misses",
            source: "slot-replace.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t, "dist=1", "maxlog=12"] + pick(["slots=2000", "ops=20000"], ["slots=40000", "ops=1000000"],
                                                          ["slots=40000", "ops=3000000"])),
        WorkloadSpec(
            name: "batch-handoff", models: "rptest",
            description: "threads allocate and churn batches (16 B-16 KB), free 75% of the previous batch and hand 25% to the next thread",
            source: "batch-handoff.c", kind: .c(linkFlags: [], skipHint: nil), threads: threads,
            arguments: [t] + pick(["loops=5"], ["loops=150"], ["loops=500"])),
        WorkloadSpec(
            name: "cold-free", models: "Redis FLUSHALL (malloc_usable_size, then free)",
            description: "a large data set of small objects built, let go cold, then freed in random order, each after malloc_usable_size",
            source: "cold-free.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: ["threads=1"] + pick(["objects=20000"], ["objects=600000"], ["objects=2000000"])),
        WorkloadSpec(
            name: "tiny-strings", models: "symbol tables of short strings (Go's tiny allocator case)",
            description: "one thread: millions of 1-8-byte strings (half 1-4 bytes) built, a random third replaced per round, then all freed",
            source: "tiny-strings.c", kind: .c(linkFlags: [], skipHint: nil), threads: 1,
            arguments: ["threads=1"] + pick(["strings=20000", "rounds=1"], ["strings=1000000", "rounds=2"], ["strings=3000000", "rounds=2"])),
        WorkloadSpec(
            name: "python-churn", models: "real program (CPython)",
            description: "python3 churning dicts, lists and strings: a replaced working set of records, join/split, sort, index dicts",
            source: "python-churn.py", kind: .python, threads: 1,
            arguments: pick(["rounds=1", "records=1000"], ["rounds=3", "records=10000"], ["rounds=10", "records=20000"])),
        WorkloadSpec(
            name: "sqlite-index", models: "real program (SQLite)",
            description: "libsqlite3 in memory: batched inserts, two CREATE INDEX, point lookups, GROUP BY and range queries, UPDATE, DELETE",
            source: "sqlite-index.c",
            kind: .c(linkFlags: ["-l:libsqlite3.so.0"], skipHint: "apt-get install -y libsqlite3-dev (or sqlite3)"),
            threads: 1,
            arguments: ["threads=1"] + pick(
                ["rows=3000", "lookups=2000"], ["rows=40000", "lookups=20000"], ["rows=200000", "lookups=100000"])),
    ]
}

/// The newest installed PostgreSQL server binary (Debian keeps each major version in
/// /usr/lib/postgresql/VERSION/bin), or where Debian 12's would be when none is.
func newestPostgres() -> String {
    let root = "/usr/lib/postgresql"
    let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init)
    return "\(root)/\(versions.max() ?? 15)/bin/postgres"
}
