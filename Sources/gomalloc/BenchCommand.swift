// BenchCommand.swift: `gomalloc bench`, GoMalloc side by side with glibc, jemalloc,
// tcmalloc and mimalloc.
//
// What it does
//   1. Finds the allocators: glibc is the system's malloc (no preload); jemalloc, tcmalloc
//      (gperftools' minimal build) and mimalloc are Debian's shared libraries, searched in
//      the multiarch library directories and through `ldconfig -p`; GoMalloc is
//      `libgomalloc-preload.so` next to this executable or in `.build/release/`. A missing
//      one is skipped with a line naming the apt package that installs it.
//   2. Compiles the workloads of `Benchmarks/workloads/` (C, `cc -O2 -pthread`) into a
//      cache directory keyed by a hash of their sources; the Python workload runs under the
//      system's python3.
//   3. Runs every workload under every allocator (LD_PRELOAD), repetition by repetition,
//      with the order of the allocators rotated inside each repetition so no allocator is
//      always first or last. Each run is spawned directly with posix_spawn and reaped with
//      wait4, so wall time and peak RSS (ru_maxrss) are those of the workload process
//      itself, not of a shell. A run that exits non-zero (the workloads verify their memory)
//      is a failure, reported and recorded, never a time.
//   4. Counts the instructions of one malloc+free pair (16 B and 256 B, warm loop) under
//      `valgrind --tool=callgrind` (or `perf stat -e instructions:u` when valgrind is
//      missing and perf works), from two loop lengths so start-up cost cancels.
//   5. Prints a table of medians normalised to mimalloc (to glibc when mimalloc did not
//      run) with a geometric-mean row, writes `results.json` and `chart.svg` under --out.
//
// results.json schema ("gomalloc-bench/1"; also documented in Benchmarks/README.md).
// Optional fields are absent rather than null.
// {
//   "schema": "gomalloc-bench/1",
//   "generated": "2026-11-23T10:00:00Z",          // ISO 8601, UTC
//   "mode": "full" | "quick" | "smoke",
//   "repetitions": 5,                             // runs per workload x allocator
//   "threads": 2,                                 // --threads (multi-threaded workloads)
//   "baseline": "mimalloc",                       // allocator the ratios are relative to
//   "machine": { "hostname": "...", "os": "Linux 6.1.0-...", "arch": "x86_64",
//                "cpuModel": "...", "cpus": 2, "memoryKiB": 24000000 },
//   "allocators": [                               // every allocator considered, in order
//     { "name": "jemalloc", "available": true,
//       "library": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",   // absent for glibc
//       "skipped": "reason",                      // only when available is false
//       "install": "apt-get install -y libjemalloc2" }             // absent for glibc, gomalloc
//   ],
//   "workloads": [                                // every selected workload
//     { "name": "cross-thread-free", "models": "larson", "description": "...",
//       "threads": 2, "command": ["cross-thread-free.c", "threads=2", "..."],
//       "skipped": "reason" }                     // only when it could not be built
//   ],
//   "results": [                                  // one per workload x available allocator
//     { "workload": "cross-thread-free", "allocator": "jemalloc", "ok": true,
//       "error": "exit status 3: CORRUPTION ...", // only when ok is false
//       "runs": [ { "wallSeconds": 0.123, "maxRSSKiB": 4321,
//                   "userSeconds": 0.2, "systemSeconds": 0.01 } ],
//       "medianWallSeconds": 0.123, "medianMaxRSSKiB": 4321,     // absent when ok is false
//       "timeRatio": 1.05, "rssRatio": 0.98 }     // vs baseline; absent if either failed
//   ],
//   "geomean": [ { "allocator": "jemalloc", "timeRatio": 1.02, "rssRatio": 1.10,
//                  "workloads": 10 } ],           // over workloads where both succeeded
//   "fastPath": {
//     "tool": "callgrind" | "perf",               // absent when skipped
//     "skipped": "reason",                        // only when not measured
//     "results": [ { "allocator": "jemalloc", "size": 16, "instructionsPerPair": 76.2,
//                    "ratioToLeanest": 1.0 } ],   // leanest = fewest instructions, that size
//     "errors": [ "gomalloc 16 B: ..." ]          // only when some measurement failed
//   }
// }

import ArgumentParser
import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark GoMalloc against glibc, jemalloc, tcmalloc and mimalloc.",
        discussion: """
            Runs allocation workloads (Benchmarks/workloads) under each allocator via \
            LD_PRELOAD, interleaving the allocators within each repetition, and prints \
            median wall time and peak RSS as ratios to mimalloc (to glibc when mimalloc is \
            absent), plus the instruction count of a malloc+free pair. Writes results.json \
            and chart.svg under --out. Peers: apt-get install -y libjemalloc2 \
            libtcmalloc-minimal4 libmimalloc2.0 valgrind sqlite3 libsqlite3-dev
            """
    )

    @Flag(help: "Smaller sizes and 3 repetitions (finishes in under two minutes on 2 cores).")
    var quick = false

    @Flag(help: "Tiny sizes and one repetition: checks that everything runs, measures nothing.")
    var smoke = false

    @Option(
        parsing: .upToNextOption,
        help: "Run only these workloads (names or comma lists; `fastpath` is the malloc+free pair count).")
    var only: [String] = []

    @Option(help: "Threads for the multi-threaded workloads (default: CPUs available, at least 2).")
    var threads: Int?

    @Option(help: "Directory for results.json and chart.svg.")
    var out: String = "bench-out"

    @Option(help: "Repetitions per workload and allocator (default 5; --quick 3; --smoke 1).")
    var reps: Int?

    @Option(
        name: .customLong("allocator"), parsing: .upToNextOption,
        help: "Run only these allocators (glibc, jemalloc, tcmalloc, mimalloc, gomalloc).")
    var allocators: [String] = []

    @Option(name: .customLong("gomalloc-lib"), help: "Path of libgomalloc-preload.so (default: found automatically).")
    var gomallocLib: String?

    @Option(name: .customLong("workloads"), help: "Directory of the workload sources (default: Benchmarks/workloads).")
    var workloadsDir: String?

    @Option(name: .customLong("cache"), help: "Directory for the compiled workloads (default: ~/.cache/gomalloc-bench).")
    var cacheDir: String?

    @Option(help: "Seconds after which one run is killed and counted as failed.")
    var timeout: Double?

    @Flag(help: "List the workloads and exit.")
    var list = false

    func validate() throws {
        if let reps, reps < 1 { throw ValidationError("--reps must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let timeout, timeout <= 0 { throw ValidationError("--timeout must be positive") }
        let known = Set(allocatorNames)
        for name in splitList(allocators) where !known.contains(name) {
            throw ValidationError("unknown allocator '\(name)'; known: \(allocatorNames.joined(separator: ", "))")
        }
    }

    mutating func run() throws {
        let mode: BenchMode = smoke ? .smoke : (quick ? .quick : .full)
        let threadCount = threads ?? max(2, ProcessInfo.processInfo.activeProcessorCount)
        let catalog = workloadCatalog(mode: mode, threads: threadCount)
        if list {
            for w in catalog {
                print("\(w.name.padding(toLength: 22, withPad: " ", startingAt: 0)) like \(w.models): \(w.description)")
            }
            print("\("fastpath".padding(toLength: 22, withPad: " ", startingAt: 0)) instructions per malloc+free pair (16 B, 256 B)")
            return
        }
        let names = splitList(only)
        let known = Set(catalog.map(\.name) + ["fastpath"])
        for name in names where !known.contains(name) {
            throw ValidationError(
                "unknown workload '\(name)'; known: \((catalog.map(\.name) + ["fastpath"]).joined(separator: ", "))")
        }
        let selected = names.isEmpty ? catalog : catalog.filter { names.contains($0.name) }
        let config = BenchConfig(
            mode: mode,
            repetitions: reps ?? mode.defaultRepetitions,
            threads: threadCount,
            outDir: URL(fileURLWithPath: out),
            workloads: selected,
            fastPath: names.isEmpty || names.contains("fastpath"),
            allocatorFilter: splitList(allocators),
            gomallocLib: gomallocLib,
            workloadsDir: workloadsDir,
            cacheDir: cacheDir,
            timeout: timeout ?? mode.defaultTimeout
        )
        var runner = BenchRunner(config: config)
        let failures = try runner.run()
        if failures > 0 { throw ExitCode(1) }
    }
}

// MARK: - Configuration and workloads

private let allocatorNames = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "gomalloc"]

private func splitList(_ values: [String]) -> [String] {
    values.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
}

private enum BenchMode: String, Codable {
    case full, quick, smoke

    var defaultRepetitions: Int {
        switch self {
        case .full: 5
        case .quick: 3
        case .smoke: 1
        }
    }

    var defaultTimeout: Double {
        switch self {
        case .full: 600
        case .quick: 120
        case .smoke: 60
        }
    }
}

private struct BenchConfig {
    var mode: BenchMode
    var repetitions: Int
    var threads: Int
    var outDir: URL
    var workloads: [WorkloadSpec]
    var fastPath: Bool
    var allocatorFilter: [String]
    var gomallocLib: String?
    var workloadsDir: String?
    var cacheDir: String?
    var timeout: Double
}

private struct WorkloadSpec {
    enum Kind { case c(linkFlags: [String], skipHint: String?), python }
    var name: String
    var models: String
    var description: String
    var source: String  // file name in the workloads directory
    var kind: Kind
    var threads: Int
    var arguments: [String]  // key=value arguments, threads= included
}

/// The workloads with their sizes for each mode. Sizes were picked so that a quick run takes
/// a few tenths of a second per workload under glibc and a full run about a second; they
/// are the same for every allocator.
private func workloadCatalog(mode: BenchMode, threads: Int) -> [WorkloadSpec] {
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

// MARK: - Allocators

private struct AllocatorInfo {
    var name: String
    var library: String?  // nil: the system allocator
    var available: Bool
    var skipped: String?
    var install: String?
}

private struct PeerSpec {
    var name: String
    var sonames: [String]
    var package: String
}

private let peerSpecs = [
    PeerSpec(name: "jemalloc", sonames: ["libjemalloc.so.2", "libjemalloc.so"], package: "libjemalloc2"),
    PeerSpec(
        name: "tcmalloc", sonames: ["libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so"],
        package: "libtcmalloc-minimal4"),
    PeerSpec(name: "mimalloc", sonames: ["libmimalloc.so.2", "libmimalloc.so"], package: "libmimalloc2.0"),
]

private func machineName() -> String {
    var u = utsname()
    uname(&u)
    return withUnsafeBytes(of: &u.machine) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}

/// Library directories to search, the multiarch ones of this machine first.
private func librarySearchDirs() -> [String] {
    let machine = machineName()
    var triples: [String] = []
    switch machine {
    case "x86_64", "amd64": triples = ["x86_64-linux-gnu"]
    case "aarch64", "arm64": triples = ["aarch64-linux-gnu"]
    default: triples = ["\(machine)-linux-gnu"]
    }
    var dirs: [String] = []
    for t in triples { dirs += ["/usr/lib/\(t)", "/lib/\(t)", "/usr/local/lib/\(t)"] }
    dirs += ["/usr/lib64", "/lib64", "/usr/local/lib", "/usr/lib", "/lib"]
    return dirs
}

/// `ldconfig -p` lines `\tlibfoo.so.2 (libc6,x86-64) => /path/libfoo.so.2`, by soname.
private func ldconfigCache() -> [String: String] {
    var map: [String: String] = [:]
    for ldconfig in ["/sbin/ldconfig", "/usr/sbin/ldconfig"] where FileManager.default.isExecutableFile(atPath: ldconfig) {
        guard let text = try? captureOutput(ldconfig, ["-p"]) else { continue }
        for line in text.split(separator: "\n") {
            let parts = line.components(separatedBy: " => ")
            guard parts.count == 2, let soname = parts[0].trimmingCharacters(in: .whitespaces).split(separator: " ").first
            else { continue }
            if map[String(soname)] == nil { map[String(soname)] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        break
    }
    return map
}

private func findPeer(_ spec: PeerSpec, ldcache: () -> [String: String]) -> String? {
    let env = ProcessInfo.processInfo.environment["GOMALLOC_BENCH_\(spec.name.uppercased())"]
    if let env, FileManager.default.fileExists(atPath: env) { return env }
    let dirs = librarySearchDirs()
    for soname in spec.sonames {
        for dir in dirs {
            let path = "\(dir)/\(soname)"
            if FileManager.default.fileExists(atPath: path) { return path }
        }
    }
    let cache = ldcache()
    for soname in spec.sonames {
        if let path = cache[soname], FileManager.default.fileExists(atPath: path) { return path }
    }
    return nil
}

private func currentExecutable() -> URL {
    if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        return URL(fileURLWithPath: path)
    }
    return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
}

/// Directories that may be the package root: ancestors of the executable and of this
/// source file (`#filePath`), and the current directory.
private func packageRootCandidates() -> [URL] {
    var roots: [URL] = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
    var dir = currentExecutable().deletingLastPathComponent()
    for _ in 0..<6 {
        roots.append(dir)
        dir = dir.deletingLastPathComponent()
    }
    let source = URL(fileURLWithPath: #filePath)
    roots.append(source.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent())
    var seen = Set<String>()
    return roots.filter { seen.insert($0.standardizedFileURL.path).inserted }
}

private func findGoMallocLibrary(explicit: String?) -> (path: String?, looked: [String]) {
    let name = "libgomalloc-preload.so"
    var candidates: [String] = []
    if let explicit { candidates.append(explicit) }
    if let env = ProcessInfo.processInfo.environment["GOMALLOC_PRELOAD_LIB"] { candidates.append(env) }
    // Next to this executable; but a debug build's library (SwiftPM builds the .so with the
    // debug CLI too) only after a release build's, which is what is worth measuring.
    let adjacent = currentExecutable().deletingLastPathComponent().appendingPathComponent(name).path
    let adjacentIsDebug = adjacent.contains("/debug/")
    if !adjacentIsDebug { candidates.append(adjacent) }
    for root in packageRootCandidates()
    where FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
        candidates.append(root.appendingPathComponent(".build/release/\(name)").path)
    }
    if adjacentIsDebug { candidates.append(adjacent) }
    var seen = Set<String>()
    candidates = candidates.filter { seen.insert($0).inserted }
    for c in candidates where FileManager.default.fileExists(atPath: c) {
        return (URL(fileURLWithPath: c).standardizedFileURL.path, candidates)
    }
    return (nil, candidates)
}

// MARK: - Processes

private struct RunOutcome {
    var exitCode: Int32?  // nil when killed by a signal
    var signal: Int32?
    var timedOut: Bool
    var wallSeconds: Double
    var maxRSSKiB: Int
    var userSeconds: Double
    var systemSeconds: Double
    var ok: Bool { exitCode == 0 && !timedOut }
}

private struct SpawnError: Error, CustomStringConvertible {
    var description: String
}

private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Kills a child that outlives its deadline. The child is only marked finished after it
/// has exited but before it is reaped (waitid with WNOWAIT), so the pid cannot have been
/// reused by the time the timer fires.
private final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var finished = false
    private var fired = false
    private let pid: pid_t

    init(pid: pid_t, seconds: Double) {
        self.pid = pid
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.lock()
            if !finished {
                fired = true
                kill(pid, SIGKILL)
            }
            lock.unlock()
        }
    }

    func finish() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        finished = true
        return fired
    }
}

/// Spawns `path` directly (no shell) with stdin from /dev/null and stdout/stderr to files,
/// waits for it and returns its own wall time, peak RSS and CPU time (from wait4).
private func spawnAndWait(
    _ path: String, _ arguments: [String], environment: [String: String],
    stdoutPath: String, stderrPath: String, timeout: Double
) throws -> RunOutcome {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attr, &noSignals)
    var defaultSignals = sigset_t()
    sigemptyset(&defaultSignals)
    sigaddset(&defaultSignals, SIGPIPE)
    posix_spawnattr_setsigdefault(&attr, &defaultSignals)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    var pid: pid_t = 0
    let start = monotonicSeconds()
    let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
    if rc != 0 { throw SpawnError(description: "cannot start \(path): \(String(cString: strerror(rc)))") }
    let watchdog = Watchdog(pid: pid, seconds: timeout)
    var info = siginfo_t()
    while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 {
        if errno != EINTR { break }
    }
    let wall = monotonicSeconds() - start
    let timedOut = watchdog.finish()
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 {
        if errno != EINTR { throw SpawnError(description: "wait4 failed: \(String(cString: strerror(errno)))") }
    }
    let termSignal = status & 0x7f
    let exited = termSignal == 0
    return RunOutcome(
        exitCode: exited ? (status >> 8) & 0xff : nil,
        signal: exited ? nil : termSignal,
        timedOut: timedOut,
        wallSeconds: wall,
        maxRSSKiB: Int(usage.ru_maxrss),
        userSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6,
        systemSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
    )
}

/// Runs a helper command and returns its stdout (stderr discarded); throws on failure.
private func captureOutput(_ path: String, _ arguments: [String], timeout: Double = 60) throws -> String {
    let dir = FileManager.default.temporaryDirectory
    let tag = "gomalloc-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let outPath = dir.appendingPathComponent("\(tag).out").path
    let errPath = dir.appendingPathComponent("\(tag).err").path
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
    var env = ProcessInfo.processInfo.environment
    env["LD_PRELOAD"] = nil
    let outcome = try spawnAndWait(path, arguments, environment: env, stdoutPath: outPath, stderrPath: errPath, timeout: timeout)
    let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    guard outcome.ok else {
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        throw SpawnError(description: "\(path) \(arguments.joined(separator: " ")) failed: \(tail(err, lines: 5))")
    }
    return text
}

/// Runs one workload through the run-measured shim (see Benchmarks/workloads/run-measured.c
/// for why the shim is needed: ru_maxrss would otherwise include this process's RSS) and
/// returns the workload process's own wall time, peak RSS and CPU time.
private func measuredRun(
    shim: String, exe: String, arguments: [String], preload: String?, environment: [String: String],
    resultPath: String, stdoutPath: String, stderrPath: String, timeout: Double
) throws -> RunOutcome {
    var env = environment
    env["LD_PRELOAD"] = nil  // the shim itself runs on the system allocator
    try? FileManager.default.removeItem(atPath: resultPath)
    let shimOutcome = try spawnAndWait(
        shim, [resultPath, preload ?? "-", "--", exe] + arguments, environment: env,
        stdoutPath: stdoutPath, stderrPath: stderrPath, timeout: timeout)
    let fields = ((try? String(contentsOfFile: resultPath, encoding: .utf8)) ?? "").split(separator: " ")
        .map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
    guard fields.count >= 6, let wall = Double(fields[0]), let rss = Int(fields[1]), let user = Double(fields[2]),
        let sys = Double(fields[3]), let code = Int32(fields[4]), let sig = Int32(fields[5])
    else {
        var o = shimOutcome
        if o.exitCode == 0 { o.exitCode = 125 }  // no result although the shim succeeded
        return o
    }
    return RunOutcome(
        exitCode: sig == 0 ? code : nil, signal: sig == 0 ? nil : sig, timedOut: shimOutcome.timedOut,
        wallSeconds: wall, maxRSSKiB: rss, userSeconds: user, systemSeconds: sys)
}

private func findInPath(_ name: String) -> String? {
    if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

private func tail(_ text: String, lines: Int) -> String {
    let all = text.split(separator: "\n", omittingEmptySubsequences: true)
    return all.suffix(lines).joined(separator: " | ")
}

private func describeFailure(_ o: RunOutcome, stderrPath: String) -> String {
    let err = tail((try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "", lines: 3)
    let how: String
    if o.timedOut {
        how = "timed out"
    } else if let code = o.exitCode {
        how = "exit status \(code)"
    } else {
        how = "killed by signal \(o.signal ?? 0)"
    }
    return err.isEmpty ? how : "\(how): \(err)"
}

// MARK: - Building the workloads

/// FNV-1a, 64-bit: names cached binaries after their sources and flags.
private func fnv1a(_ chunks: [Data]) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for chunk in chunks {
        for b in chunk {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        h ^= 0xff
        h = h &* 0x100_0000_01b3
    }
    return String(h, radix: 16)
}

private func locateWorkloads(explicit: String?) throws -> URL {
    var candidates: [URL] = []
    if let explicit { candidates.append(URL(fileURLWithPath: explicit)) }
    if let env = ProcessInfo.processInfo.environment["GOMALLOC_BENCH_WORKLOADS"] {
        candidates.append(URL(fileURLWithPath: env))
    }
    for root in packageRootCandidates() { candidates.append(root.appendingPathComponent("Benchmarks/workloads")) }
    for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("common.h").path) {
        return c.standardizedFileURL
    }
    throw SpawnError(
        description: "cannot find the workload sources (Benchmarks/workloads/common.h); looked in: "
            + candidates.map(\.path).joined(separator: ", ") + "; pass --workloads DIR")
}

private func defaultCacheDir() -> URL {
    let env = ProcessInfo.processInfo.environment
    if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty {
        return URL(fileURLWithPath: xdg).appendingPathComponent("gomalloc-bench")
    }
    if let home = env["HOME"], !home.isEmpty {
        return URL(fileURLWithPath: home).appendingPathComponent(".cache/gomalloc-bench")
    }
    return FileManager.default.temporaryDirectory.appendingPathComponent("gomalloc-bench-cache")
}

/// Compiles `source` (with common.h) unless a binary built from the same bytes and flags
/// is already cached. Concurrent runs are safe: each builds to a private name and renames.
private func buildWorkload(
    source: URL, linkFlags: [String], compiler: String, cache: URL, log: URL, flags: [String] = ["-O2", "-pthread"]
) throws -> String {
    let common = source.deletingLastPathComponent().appendingPathComponent("common.h")
    let hash = fnv1a([
        try Data(contentsOf: source), try Data(contentsOf: common),
        Data((compiler + " " + (flags + linkFlags).joined(separator: " ")).utf8),
    ])
    let base = source.deletingPathExtension().lastPathComponent
    let binary = cache.appendingPathComponent("\(base)-\(hash)")
    if FileManager.default.isExecutableFile(atPath: binary.path) { return binary.path }
    try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
    let temp = cache.appendingPathComponent(".\(base)-\(hash).\(getpid()).tmp")
    var env = ProcessInfo.processInfo.environment
    env["LD_PRELOAD"] = nil
    let outcome = try spawnAndWait(
        compiler, flags + ["-o", temp.path, source.path, "-lm"] + linkFlags,
        environment: env, stdoutPath: log.path, stderrPath: log.path, timeout: 300)
    guard outcome.ok else {
        try? FileManager.default.removeItem(at: temp)
        let err = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        throw SpawnError(description: "\(compiler) failed for \(source.lastPathComponent): \(tail(err, lines: 4))")
    }
    if rename(temp.path, binary.path) != 0 {
        try? FileManager.default.removeItem(at: temp)
        if !FileManager.default.isExecutableFile(atPath: binary.path) {
            throw SpawnError(description: "cannot move the build of \(source.lastPathComponent) into \(cache.path)")
        }
    }
    return binary.path
}

// MARK: - Results (the JSON model)

private struct MachineJSON: Codable {
    var hostname: String
    var os: String
    var arch: String
    var cpuModel: String
    var cpus: Int
    var memoryKiB: Int
}

private struct AllocatorJSON: Codable {
    var name: String
    var available: Bool
    var library: String?
    var skipped: String?
    var install: String?
}

private struct WorkloadJSON: Codable {
    var name: String
    var models: String
    var description: String
    var threads: Int
    var command: [String]
    var skipped: String?
}

private struct RunJSON: Codable {
    var wallSeconds: Double
    var maxRSSKiB: Int
    var userSeconds: Double
    var systemSeconds: Double
}

private struct ResultJSON: Codable {
    var workload: String
    var allocator: String
    var ok: Bool
    var error: String?
    var runs: [RunJSON]
    var medianWallSeconds: Double?
    var medianMaxRSSKiB: Double?
    var timeRatio: Double?
    var rssRatio: Double?
}

private struct GeomeanJSON: Codable {
    var allocator: String
    var timeRatio: Double?
    var rssRatio: Double?
    var workloads: Int
}

private struct FastPathEntryJSON: Codable {
    var allocator: String
    var size: Int
    var instructionsPerPair: Double
    var ratioToLeanest: Double?
}

private struct FastPathJSON: Codable {
    var tool: String?
    var skipped: String?
    var results: [FastPathEntryJSON]
    var errors: [String]?
}

private struct ReportJSON: Codable {
    var schema = "gomalloc-bench/1"
    var generated: String
    var mode: BenchMode
    var repetitions: Int
    var threads: Int
    var baseline: String
    var machine: MachineJSON
    var allocators: [AllocatorJSON]
    var workloads: [WorkloadJSON]
    var results: [ResultJSON]
    var geomean: [GeomeanJSON]
    var fastPath: FastPathJSON
}

private func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    let n = s.count
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

private func geometricMean(_ xs: [Double]) -> Double? {
    let positive = xs.filter { $0 > 0 && $0.isFinite }
    guard !positive.isEmpty else { return nil }
    return exp(positive.map { log($0) }.reduce(0, +) / Double(positive.count))
}

private func readMachine() -> MachineJSON {
    var u = utsname()
    uname(&u)
    func field<T>(_ value: inout T) -> String {
        withUnsafeBytes(of: &value) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }
    let sysname = field(&u.sysname), release = field(&u.release), arch = field(&u.machine)
    var host = [CChar](repeating: 0, count: 256)
    gethostname(&host, host.count - 1)
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    var model = "unknown"
    for line in cpuinfo.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { continue }
        let key = parts[0].trimmingCharacters(in: .whitespaces)
        if key == "model name" || key == "Model" || key == "cpu model" {
            model = parts[1].trimmingCharacters(in: .whitespaces)
            break
        }
    }
    let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
    var mem = 0
    for line in meminfo.split(separator: "\n") where line.hasPrefix("MemTotal:") {
        mem = Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return MachineJSON(
        hostname: String(decoding: host.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self),
        os: "\(sysname) \(release)", arch: arch, cpuModel: model,
        cpus: ProcessInfo.processInfo.activeProcessorCount, memoryKiB: mem)
}

// MARK: - The runner

private struct BenchRunner {
    let config: BenchConfig
    var allocators: [AllocatorInfo] = []
    var failures = 0

    init(config: BenchConfig) { self.config = config }

    func say(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    mutating func discoverAllocators() {
        var ldcacheMemo: [String: String]?
        let ldcache: () -> [String: String] = {
            if ldcacheMemo == nil { ldcacheMemo = ldconfigCache() }
            return ldcacheMemo!
        }
        var found: [AllocatorInfo] = [AllocatorInfo(name: "glibc", library: nil, available: true)]
        for spec in peerSpecs {
            let install = "apt-get install -y \(spec.package)"
            if let path = findPeer(spec, ldcache: ldcache) {
                found.append(AllocatorInfo(name: spec.name, library: path, available: true, install: install))
            } else {
                found.append(AllocatorInfo(
                    name: spec.name, library: nil, available: false,
                    skipped: "\(spec.sonames[0]) not found (Debian package \(spec.package))", install: install))
            }
        }
        let go = findGoMallocLibrary(explicit: config.gomallocLib)
        if let path = go.path {
            found.append(AllocatorInfo(name: "gomalloc", library: path, available: true))
        } else {
            found.append(AllocatorInfo(
                name: "gomalloc", library: nil, available: false,
                skipped: "libgomalloc-preload.so not found (build it with `swift build -c release`; looked in \(go.looked.joined(separator: ", ")))"
            ))
        }
        if !config.allocatorFilter.isEmpty {
            for i in found.indices where !config.allocatorFilter.contains(found[i].name) {
                found[i].available = false
                found[i].skipped = "not selected (--allocator)"
            }
        }
        allocators = found
        for a in allocators {
            if a.available {
                var line = "allocator \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(a.library ?? "system malloc (no preload)")"
                if a.name == "gomalloc", let lib = a.library, lib.contains("/debug/") {
                    line += "  (a debug build: numbers are not representative)"
                }
                say(line)
            } else if let install = a.install, a.skipped?.hasPrefix("not selected") != true {
                say("allocator \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) SKIPPED: \(a.skipped ?? "") — install it with: \(install)")
            } else {
                say("allocator \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) SKIPPED: \(a.skipped ?? "")")
            }
        }
    }

    func environment(for allocator: AllocatorInfo) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = allocator.library
        env["PYTHONHASHSEED"] = "0"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env
    }

    /// Resolves the real python3 binary (a pyenv shim is a shell script: spawning it would
    /// measure bash, and its children's RSS would not be ours).
    func findPython() -> String? {
        let candidates = [findInPath("python3"), "/usr/bin/python3"].compactMap { $0 }
        for c in candidates {
            if let out = try? captureOutput(c, ["-c", "import sys; print(sys.executable)"]) {
                let exe = out.trimmingCharacters(in: .whitespacesAndNewlines)
                if !exe.isEmpty, FileManager.default.isExecutableFile(atPath: exe) { return exe }
            }
        }
        return nil
    }

    mutating func run() throws -> Int {
        let c = config
        say("gomalloc bench: \(c.mode.rawValue) mode, \(c.repetitions) repetition(s), \(c.threads) thread(s), results in \(c.outDir.path)")
        discoverAllocators()
        let active = allocators.filter(\.available)
        guard !active.isEmpty else { throw SpawnError(description: "no allocator to run") }

        // Build.
        let sourceDir = try locateWorkloads(explicit: c.workloadsDir)
        let cache = c.cacheDir.map { URL(fileURLWithPath: $0) } ?? defaultCacheDir()
        let compiler = findInPath(ProcessInfo.processInfo.environment["CC"] ?? "cc") ?? findInPath("gcc") ?? findInPath("clang")
        try FileManager.default.createDirectory(at: c.outDir, withIntermediateDirectories: true)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gomalloc-bench-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        say("building workloads from \(sourceDir.path) into \(cache.path)")

        guard let compiler else { throw SpawnError(description: "no C compiler found (set CC, or apt-get install -y gcc)") }
        // The measuring shim: static if the C library allows it (smallest pre-exec RSS).
        let shimSource = sourceDir.appendingPathComponent("run-measured.c")
        let shimLog = scratch.appendingPathComponent("build-run-measured.log")
        let shim: String
        if let s = try? buildWorkload(
            source: shimSource, linkFlags: [], compiler: compiler, cache: cache, log: shimLog, flags: ["-O2", "-static"])
        {
            shim = s
        } else {
            shim = try buildWorkload(source: shimSource, linkFlags: [], compiler: compiler, cache: cache, log: shimLog, flags: ["-O2"])
            say("note: run-measured could not be linked statically; peak RSS includes ~1 MiB of its dynamic start-up")
        }

        var commands: [String: (exe: String, args: [String])] = [:]
        var skippedWorkloads: [String: String] = [:]
        var python: String?
        var pythonLooked = false
        for w in c.workloads {
            let source = sourceDir.appendingPathComponent(w.source)
            switch w.kind {
            case .python:
                if !pythonLooked {
                    python = findPython()
                    pythonLooked = true
                }
                if let python {
                    commands[w.name] = (python, [source.path] + w.arguments)
                } else {
                    skippedWorkloads[w.name] = "python3 not found (apt-get install -y python3)"
                }
            case .c(let linkFlags, let hint):
                do {
                    let exe = try buildWorkload(
                        source: source, linkFlags: linkFlags, compiler: compiler, cache: cache,
                        log: scratch.appendingPathComponent("build-\(w.name).log"))
                    commands[w.name] = (exe, w.arguments)
                } catch {
                    skippedWorkloads[w.name] = "\(error)" + (hint.map { "; install: \($0)" } ?? "")
                }
            }
            if let why = skippedWorkloads[w.name] { say("workload \(w.name): SKIPPED: \(why)") }
        }
        let runnable = c.workloads.filter { commands[$0.name] != nil }

        // Run: repetition by repetition, allocators rotated within each.
        var runs: [String: [RunOutcome]] = [:]  // "workload\u{0}allocator"
        var errors: [String: String] = [:]
        let total = c.repetitions * runnable.count * active.count
        var done = 0
        let startAll = monotonicSeconds()
        for rep in 0..<c.repetitions {
            for (wi, w) in runnable.enumerated() {
                let (exe, args) = commands[w.name]!
                let shift = (rep + wi) % active.count
                let order = Array(active[shift...] + active[..<shift])
                for a in order {
                    let key = "\(w.name)\u{0}\(a.name)"
                    done += 1
                    let progress = "[\(String(done).leftPad(String(total).count))/\(total)] rep \(rep + 1)/\(c.repetitions) \(w.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0))"
                    if errors[key] != nil {
                        say("\(progress) skipped (failed before)")
                        continue
                    }
                    let outPath = scratch.appendingPathComponent("run.out").path
                    let errPath = scratch.appendingPathComponent("run.err").path
                    do {
                        let o = try measuredRun(
                            shim: shim, exe: exe, arguments: args, preload: a.library, environment: environment(for: a),
                            resultPath: scratch.appendingPathComponent("run.result").path, stdoutPath: outPath,
                            stderrPath: errPath, timeout: c.timeout)
                        let stderrText = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
                        if !o.ok {
                            errors[key] = describeFailure(o, stderrPath: errPath)
                        } else if stderrText.contains("cannot be preloaded") {
                            errors[key] = "LD_PRELOAD failed: \(tail(stderrText, lines: 2))"
                        } else {
                            runs[key, default: []].append(o)
                        }
                        if let e = errors[key] {
                            say("\(progress) FAILED: \(e)")
                        } else {
                            say("\(progress) \(String(format: "%8.3f s %9.1f MiB", o.wallSeconds, Double(o.maxRSSKiB) / 1024))")
                        }
                    } catch {
                        errors[key] = "\(error)"
                        say("\(progress) FAILED: \(error)")
                    }
                }
            }
        }
        if total > 0 { say(String(format: "workloads done in %.1f s", monotonicSeconds() - startAll)) }

        // Fast path.
        var fastPath = FastPathJSON(tool: nil, skipped: "not selected (--only)", results: [])
        if c.fastPath {
            fastPath = measureFastPath(
                sourceDir: sourceDir, cache: cache, compiler: compiler, scratch: scratch, allocators: active)
        }

        // Aggregate.
        let baselineName =
            active.contains { $0.name == "mimalloc" && runnable.allSatisfy { w in errors["\(w.name)\u{0}mimalloc"] == nil } }
            ? "mimalloc" : (active.contains { $0.name == "glibc" } ? "glibc" : active[0].name)
        var results: [ResultJSON] = []
        for w in runnable {
            let base = runs["\(w.name)\u{0}\(baselineName)"].map { rs in
                (median(rs.map(\.wallSeconds)), median(rs.map { Double($0.maxRSSKiB) }))
            }
            for a in active {
                let key = "\(w.name)\u{0}\(a.name)"
                let rs = runs[key] ?? []
                var r = ResultJSON(
                    workload: w.name, allocator: a.name, ok: errors[key] == nil && !rs.isEmpty,
                    error: errors[key],
                    runs: rs.map {
                        RunJSON(wallSeconds: $0.wallSeconds, maxRSSKiB: $0.maxRSSKiB, userSeconds: $0.userSeconds, systemSeconds: $0.systemSeconds)
                    })
                if r.ok {
                    let t = median(rs.map(\.wallSeconds)), m = median(rs.map { Double($0.maxRSSKiB) })
                    r.medianWallSeconds = t
                    r.medianMaxRSSKiB = m
                    if let base, base.0 > 0, base.1 > 0 {
                        r.timeRatio = t / base.0
                        r.rssRatio = m / base.1
                    }
                } else if r.error == nil {
                    r.error = "no successful run"
                }
                if !r.ok { failures += 1 }
                results.append(r)
            }
        }
        var geomeans: [GeomeanJSON] = []
        for a in active {
            let mine = results.filter { $0.allocator == a.name && $0.timeRatio != nil }
            geomeans.append(GeomeanJSON(
                allocator: a.name, timeRatio: geometricMean(mine.compactMap(\.timeRatio)),
                rssRatio: geometricMean(mine.compactMap(\.rssRatio)), workloads: mine.count))
        }

        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        let report = ReportJSON(
            generated: formatter.string(from: Date()), mode: c.mode, repetitions: c.repetitions, threads: c.threads,
            baseline: baselineName, machine: readMachine(),
            allocators: allocators.map {
                AllocatorJSON(
                    name: $0.name, available: $0.available, library: $0.library, skipped: $0.skipped,
                    install: $0.install)
            },
            workloads: c.workloads.map { w in
                WorkloadJSON(
                    name: w.name, models: w.models, description: w.description, threads: w.threads,
                    command: [w.source] + w.arguments, skipped: skippedWorkloads[w.name])
            },
            results: results, geomean: geomeans, fastPath: fastPath)

        print(renderTable(report), terminator: "")
        fflush(nil)

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let jsonURL = c.outDir.appendingPathComponent("results.json")
        try encoder.encode(report).write(to: jsonURL, options: .atomic)
        let svgURL = c.outDir.appendingPathComponent("chart.svg")
        try Data(renderChart(report).utf8).write(to: svgURL, options: .atomic)
        print("wrote \(jsonURL.path) and \(svgURL.path)")
        if failures > 0 { print("\(failures) workload/allocator combination(s) FAILED; see the errors above and in results.json") }
        return failures
    }

    // MARK: Fast path

    func measureFastPath(
        sourceDir: URL, cache: URL, compiler: String, scratch: URL, allocators: [AllocatorInfo]
    ) -> FastPathJSON {
        let exe: String
        do {
            exe = try buildWorkload(
                source: sourceDir.appendingPathComponent("pair-cost.c"), linkFlags: [], compiler: compiler,
                cache: cache, log: scratch.appendingPathComponent("build-pair-cost.log"))
        } catch {
            say("fast path: SKIPPED: \(error)")
            return FastPathJSON(tool: nil, skipped: "\(error)", results: [])
        }
        let (nShort, nLong) = config.mode == .smoke ? (1000, 6000) : (2000, 12000)
        let valgrind = findInPath("valgrind")
        var perf: String?
        if valgrind == nil, let p = findInPath("perf") {
            // `perf stat` exists; does this machine let it count instructions?
            if let out = try? perfCount(perf: p, exe: "/bin/true", args: [], env: ProcessInfo.processInfo.environment, scratch: scratch),
                out > 0
            {
                perf = p
            }
        }
        guard valgrind != nil || perf != nil else {
            let why = "valgrind not found and perf cannot count instructions here (apt-get install -y valgrind)"
            say("fast path: SKIPPED: \(why)")
            return FastPathJSON(tool: nil, skipped: why, results: [])
        }
        let tool = valgrind != nil ? "callgrind" : "perf"
        say("fast path: instructions per malloc+free pair with \(tool)")
        var entries: [FastPathEntryJSON] = []
        var errors: [String] = []
        for a in allocators {
            for size in [16, 256] {
                let args = ["size=\(size)", "short=\(nShort)", "long=\(nLong)"]
                var perPair: Double?
                var problem: String?
                if let valgrind {
                    do {
                        let counts: (short: Double, long: Double)
                        do {
                            counts = try callgrindCounts(
                                valgrind: valgrind, exe: exe, args: args, env: environment(for: a), scratch: scratch)
                        } catch let error as SpawnError where error.description.contains("debuginfo") {
                            // valgrind 3.19 cannot read some DWARF 5 (Swift's clang emits it);
                            // instruction counts do not depend on debug info, so drop it.
                            var stripped = a
                            stripped.library = try strippedCopy(of: a.library ?? "", scratch: scratch)
                            counts = try callgrindCounts(
                                valgrind: valgrind, exe: exe, args: args, env: environment(for: stripped), scratch: scratch)
                        }
                        perPair = (counts.long - counts.short) / Double(nLong - nShort)
                    } catch { problem = "\(error)" }
                } else if let perf {
                    do {
                        let env = environment(for: a)
                        let short = try perfCount(perf: perf, exe: exe, args: ["size=\(size)", "short=0", "long=\(nShort)"], env: env, scratch: scratch)
                        let long = try perfCount(perf: perf, exe: exe, args: ["size=\(size)", "short=0", "long=\(nLong)"], env: env, scratch: scratch)
                        perPair = (long - short) / Double(nLong - nShort)
                    } catch { problem = "\(error)" }
                }
                if let perPair {
                    entries.append(FastPathEntryJSON(allocator: a.name, size: size, instructionsPerPair: perPair))
                    say("fast path: \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(format: "%4d", size)) B  \(String(format: "%7.1f", perPair)) instructions per pair")
                } else {
                    say("fast path: \(a.name) \(size) B FAILED: \(problem ?? "?")")
                    errors.append("\(a.name) \(size) B: \(problem ?? "?")")
                }
            }
        }
        for size in [16, 256] {
            let lean = entries.filter { $0.size == size }.map(\.instructionsPerPair).filter { $0 > 0 }.min()
            for i in entries.indices where entries[i].size == size {
                if let lean { entries[i].ratioToLeanest = entries[i].instructionsPerPair / lean }
            }
        }
        return FastPathJSON(tool: tool, skipped: nil, results: entries, errors: errors.isEmpty ? nil : errors)
    }

    /// A copy of `library` without debug sections (objcopy or strip), in the scratch dir.
    func strippedCopy(of library: String, scratch: URL) throws -> String {
        let copy = scratch.appendingPathComponent("nodebug-" + URL(fileURLWithPath: library).lastPathComponent).path
        if FileManager.default.fileExists(atPath: copy) { return copy }
        for (tool, args) in [("objcopy", ["--strip-debug", library, copy]), ("strip", ["--strip-debug", "-o", copy, library])] {
            if let path = findInPath(tool), (try? captureOutput(path, args)) != nil,
                FileManager.default.fileExists(atPath: copy)
            {
                return copy
            }
        }
        throw SpawnError(description: "valgrind cannot read the debug info of \(library), and objcopy/strip could not remove it")
    }

    /// Runs pair-cost under callgrind with one profile dumped before the short loop, one
    /// after it and one after the long loop; returns the instruction totals of the loops.
    func callgrindCounts(valgrind: String, exe: String, args: [String], env: [String: String], scratch: URL) throws
        -> (short: Double, long: Double)
    {
        let dir = scratch.appendingPathComponent("callgrind-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outBase = dir.appendingPathComponent("cg.out")
        let o = try spawnAndWait(
            valgrind,
            [
                "--tool=callgrind", "--callgrind-out-file=\(outBase.path)",
                "--dump-before=pair_loop_short", "--dump-after=pair_loop_short", "--dump-after=pair_loop_long",
                exe,
            ] + args,
            environment: env, stdoutPath: dir.appendingPathComponent("stdout").path,
            stderrPath: dir.appendingPathComponent("stderr").path, timeout: 300)
        guard o.ok else {
            let errPath = dir.appendingPathComponent("stderr").path
            let full = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            let why = describeFailure(o, stderrPath: errPath)
            throw SpawnError(description: full.contains("debuginfo reader") && !why.contains("debuginfo") ? "debuginfo: \(why)" : why)
        }
        var short: Double?, long: Double?
        for file in try FileManager.default.contentsOfDirectory(atPath: dir.path) where file.hasPrefix("cg.out") {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            var trigger = "", totals: Double?
            for line in text.split(separator: "\n") {
                if line.hasPrefix("desc: Trigger:") { trigger = String(line) }
                if line.hasPrefix("totals:") || (totals == nil && line.hasPrefix("summary:")) {
                    totals = Double(line.split(separator: " ").last ?? "")
                }
            }
            if trigger.contains("--dump-after=pair_loop_short") { short = totals }
            if trigger.contains("--dump-after=pair_loop_long") { long = totals }
        }
        guard let short, let long else { throw SpawnError(description: "callgrind wrote no profile for the loops") }
        return (short, long)
    }

    /// Instructions (user space) of one whole run, from `perf stat -x, -e instructions:u`.
    func perfCount(perf: String, exe: String, args: [String], env: [String: String], scratch: URL) throws -> Double {
        let errPath = scratch.appendingPathComponent("perf.err").path
        let o = try spawnAndWait(
            perf, ["stat", "-x", ",", "-e", "instructions:u", exe] + args, environment: env,
            stdoutPath: scratch.appendingPathComponent("perf.out").path, stderrPath: errPath, timeout: 120)
        guard o.ok else { throw SpawnError(description: describeFailure(o, stderrPath: errPath)) }
        let text = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.contains("instructions") {
            if let n = Double(line.split(separator: ",").first ?? "") { return n }
        }
        throw SpawnError(description: "perf did not count instructions")
    }
}

// MARK: - Table

extension String {
    fileprivate func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }

    fileprivate func rightPad(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

private func formatBytes(kib: Double) -> String {
    if kib >= 1024 * 1024 { return String(format: "%.2f GiB", kib / 1024 / 1024) }
    if kib >= 1024 { return String(format: "%.1f MiB", kib / 1024) }
    return String(format: "%.0f KiB", kib)
}

private func formatRatio(_ r: Double?) -> String {
    guard let r else { return "-" }
    return r >= 100 ? String(format: "%.0f", r) : String(format: "%.2f", r)
}

private func renderTable(_ report: ReportJSON) -> String {
    let allocs = report.allocators.filter(\.available).map(\.name)
    let ranWorkloads = report.workloads.filter { $0.skipped == nil }.map(\.name)
    let nameWidth = max(22, (ranWorkloads.map(\.count).max() ?? 0) + 2)
    let col = 14
    var s = "\n"
    let m = report.machine
    s += "GoMalloc benchmark: \(report.mode.rawValue) mode, \(report.repetitions) repetition(s), \(report.threads) thread(s); "
    s += "median wall time and peak RSS as ratios to \(report.baseline) (lower is better)\n"
    s += "machine: \(m.cpuModel), \(m.cpus) CPUs, \(formatBytes(kib: Double(m.memoryKiB))), \(m.os) \(m.arch)\n\n"
    var header1 = "".rightPad(nameWidth), header2 = "workload".rightPad(nameWidth)
    for a in allocs {
        header1 += (a == report.baseline ? "\(a)*" : a).rightPad(col)
        header2 += "time  rss".rightPad(col)
    }
    header1 += "| \(report.baseline) (absolute)"
    header2 += "| time      peak RSS"
    if let lib = report.allocators.first(where: { $0.name == "gomalloc" && $0.available })?.library,
        lib.contains("/debug/")
    {
        s += "note: gomalloc is a debug build (\(lib)): its numbers are not representative\n\n"
    }
    if !ranWorkloads.isEmpty {
        s += header1 + "\n" + header2 + "\n"
        s += String(repeating: "-", count: header2.count + 4) + "\n"
    }
    func find(_ w: String, _ a: String) -> ResultJSON? {
        report.results.first { $0.workload == w && $0.allocator == a }
    }
    for w in ranWorkloads {
        var line = w.rightPad(nameWidth)
        for a in allocs {
            guard let r = find(w, a) else {
                line += "-".rightPad(col)
                continue
            }
            if !r.ok {
                line += "FAIL".rightPad(col)
            } else {
                line += "\(formatRatio(r.timeRatio).leftPad(5)) \(formatRatio(r.rssRatio).leftPad(5))".rightPad(col)
            }
        }
        if let b = find(w, report.baseline), b.ok, let t = b.medianWallSeconds, let kib = b.medianMaxRSSKiB {
            line += "| " + String(format: "%.3f s", t).rightPad(10) + formatBytes(kib: kib)
        } else {
            line += "| -"
        }
        s += line + "\n"
    }
    if !ranWorkloads.isEmpty {
        s += String(repeating: "-", count: header2.count + 4) + "\n"
        var line = "geometric mean".rightPad(nameWidth)
        for a in allocs {
            let g = report.geomean.first { $0.allocator == a }
            line += "\(formatRatio(g?.timeRatio).leftPad(5)) \(formatRatio(g?.rssRatio).leftPad(5))".rightPad(col)
        }
        s += line + "\n"
    }
    if !report.fastPath.results.isEmpty {
        if ranWorkloads.isEmpty {
            s += "".rightPad(nameWidth) + allocs.map { ($0 == report.baseline ? "\($0)*" : $0).rightPad(col) }.joined() + "\n"
        }
        s += "\n" + "".rightPad(nameWidth) + "instructions per malloc+free pair, warm loop (\(report.fastPath.tool ?? "?")); x = ratio to the leanest\n"
        for size in [16, 256] {
            var line = "malloc+free \(size) B".rightPad(nameWidth)
            for a in allocs {
                if let e = report.fastPath.results.first(where: { $0.allocator == a && $0.size == size }) {
                    line += "\(String(format: "%.0f", e.instructionsPerPair).leftPad(5)) \(String(format: "%.2fx", e.ratioToLeanest ?? 0))".rightPad(col)
                } else {
                    line += "-".rightPad(col)
                }
            }
            s += line + "\n"
        }
    } else if let why = report.fastPath.skipped {
        s += "\nmalloc+free pair cost: not measured (\(why))\n"
    }
    let skipped = report.allocators.filter { !$0.available }
    if !skipped.isEmpty {
        s += "\n"
        for a in skipped {
            s += "skipped \(a.name): \(a.skipped ?? "")" + (a.install.map { " (install: \($0))" } ?? "") + "\n"
        }
    }
    for w in report.workloads where w.skipped != nil {
        s += "skipped workload \(w.name): \(w.skipped!)\n"
    }
    s += "* baseline. time and rss: median wall time and median peak RSS (of the workload process) divided by the baseline's.\n"
    return s
}

// MARK: - Chart

private func xmlEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

private let chartColors: [String: String] = [
    "glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#2ca02c", "mimalloc": "#ff7f0e", "gomalloc": "#d62728",
]

/// Grouped bar charts as plain SVG text: time ratio and RSS ratio per workload (plus the
/// geometric mean), one bar per allocator; and, when measured, instructions per pair.
private func renderChart(_ report: ReportJSON) -> String {
    let allocs = report.allocators.filter(\.available).map(\.name)
    let workloads = report.workloads.filter { $0.skipped == nil }.map(\.name)
    let groups = workloads + (workloads.isEmpty ? [] : ["geometric mean"])
    let barWidth = 12.0, groupGap = 22.0
    let groupWidth = Double(max(allocs.count, 1)) * barWidth + groupGap
    let left = 60.0, right = 90.0, panelHeight = 220.0, labelSpace = 110.0, titleSpace = 36.0
    let width = max(640.0, left + right + Double(max(groups.count, 2)) * groupWidth)

    struct Panel {
        var title: String
        var groups: [String]
        var values: [[Double?]]  // [group][allocator]
        var reference: Double?
    }
    func value(_ w: String, _ a: String, _ key: KeyPath<ResultJSON, Double?>, _ g: KeyPath<GeomeanJSON, Double?>) -> Double? {
        if w == "geometric mean" { return report.geomean.first { $0.allocator == a }?[keyPath: g] }
        return report.results.first { $0.workload == w && $0.allocator == a }?[keyPath: key]
    }
    var panels: [Panel] = []
    if !groups.isEmpty {
        panels.append(Panel(
            title: "Wall time relative to \(report.baseline) (median of \(report.repetitions); lower is better)",
            groups: groups, values: groups.map { w in allocs.map { value(w, $0, \.timeRatio, \.timeRatio) } }, reference: 1))
        panels.append(Panel(
            title: "Peak RSS relative to \(report.baseline) (lower is better)",
            groups: groups, values: groups.map { w in allocs.map { value(w, $0, \.rssRatio, \.rssRatio) } }, reference: 1))
    }
    if !report.fastPath.results.isEmpty {
        let fg = ["malloc+free 16 B", "malloc+free 256 B"]
        panels.append(Panel(
            title: "Instructions per malloc+free pair (\(report.fastPath.tool ?? "")); lower is better",
            groups: fg,
            values: [16, 256].map { size in
                allocs.map { a in report.fastPath.results.first { $0.allocator == a && $0.size == size }?.instructionsPerPair }
            }, reference: nil))
    }
    let legendHeight = 30.0
    let height = 50.0 + legendHeight + Double(panels.count) * (titleSpace + panelHeight + labelSpace)
    var svg = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="white"/>

        """
    let m = report.machine
    svg += "<text x=\"\(left)\" y=\"22\" font-size=\"15\" font-weight=\"bold\">\(xmlEscape("gomalloc bench (\(report.mode.rawValue)): \(m.cpuModel), \(m.cpus) CPUs, \(m.os) \(m.arch)"))</text>\n"
    var lx = left
    for a in allocs {
        svg += "<rect x=\"\(lx)\" y=\"34\" width=\"12\" height=\"12\" fill=\"\(chartColors[a] ?? "#444")\"/>"
        svg += "<text x=\"\(lx + 16)\" y=\"44\">\(xmlEscape(a == report.baseline ? "\(a) (baseline)" : a))</text>\n"
        lx += 16 + Double(a.count + (a == report.baseline ? 11 : 0)) * 7 + 18
    }
    var top = 50.0 + legendHeight
    for p in panels {
        let all = p.values.flatMap { $0.compactMap { $0 } }
        var raw = max(all.max() ?? 1, p.reference ?? 0) * 1.1
        if p.reference != nil { raw = min(raw, 4.0) }
        let step = niceStep(max(raw, 0.000001) / 4)
        let ticks = Int((raw / step).rounded(.up))
        let ymax = step * Double(ticks)
        let y0 = top + titleSpace, plotBottom = y0 + panelHeight
        func y(_ v: Double) -> Double { plotBottom - min(v, ymax) / ymax * panelHeight }
        svg += "<text x=\"\(left)\" y=\"\(top + 22)\" font-size=\"13\" font-weight=\"bold\">\(xmlEscape(p.title))</text>\n"
        // Grid and axis labels.
        for i in 0...ticks {
            let v = step * Double(i)
            let yy = y(v)
            svg += "<line x1=\"\(left)\" y1=\"\(f(yy))\" x2=\"\(f(width - right))\" y2=\"\(f(yy))\" stroke=\"#e0e0e0\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(f(yy + 4))\" text-anchor=\"end\">\(xmlEscape(formatAxis(v)))</text>\n"
        }
        for (gi, g) in p.groups.enumerated() {
            let gx = left + groupGap / 2 + Double(gi) * groupWidth
            for (ai, a) in allocs.enumerated() {
                let x = gx + Double(ai) * barWidth
                guard let v = p.values[gi][ai] else {
                    svg += "<text x=\"\(f(x + barWidth / 2))\" y=\"\(f(plotBottom - 3))\" text-anchor=\"middle\" fill=\"#999\" font-size=\"9\">×</text>\n"
                    continue
                }
                let yy = y(v)
                svg += "<rect x=\"\(f(x + 1))\" y=\"\(f(yy))\" width=\"\(f(barWidth - 2))\" height=\"\(f(plotBottom - yy))\" fill=\"\(chartColors[a] ?? "#444")\"><title>\(xmlEscape("\(g), \(a): \(String(format: "%.3g", v))"))</title></rect>"
                if v > ymax {
                    svg += "<text x=\"\(f(x + barWidth / 2))\" y=\"\(f(yy - 3))\" text-anchor=\"middle\" font-size=\"9\">\(xmlEscape(String(format: "%.1f", v)))</text>"
                }
                svg += "\n"
            }
            let lxg = gx + Double(allocs.count) * barWidth / 2
            svg += "<text transform=\"translate(\(f(lxg)),\(f(plotBottom + 12))) rotate(35)\" text-anchor=\"start\"\(g == "geometric mean" ? " font-weight=\"bold\"" : "")>\(xmlEscape(g))</text>\n"
        }
        if let r = p.reference, r <= ymax {
            svg += "<line x1=\"\(left)\" y1=\"\(f(y(r)))\" x2=\"\(f(width - right))\" y2=\"\(f(y(r)))\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\n"
        }
        svg += "<line x1=\"\(left)\" y1=\"\(f(plotBottom))\" x2=\"\(f(width - right))\" y2=\"\(f(plotBottom))\" stroke=\"black\"/>\n"
        top = plotBottom + labelSpace
    }
    svg += "</svg>\n"
    return svg
}

private func f(_ v: Double) -> String { String(format: "%.1f", v) }

private func formatAxis(_ v: Double) -> String {
    v >= 10 ? String(format: "%.0f", v) : String(format: "%.2g", v)
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten at or above v: an axis tick step.
private func niceStep(_ v: Double) -> Double {
    let p = pow(10, floor(log10(v)))
    for m in [1.0, 2, 2.5, 5, 10] where m * p >= v * 0.999_999 { return m * p }
    return 10 * p
}
