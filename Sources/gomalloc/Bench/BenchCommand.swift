// BenchCommand.swift: `gomalloc bench`, GoMalloc side by side with glibc, jemalloc,
// tcmalloc and mimalloc.
//
// What it does
//   1. Finds the allocators: glibc is the system's malloc (no preload); jemalloc, tcmalloc
//      (gperftools' minimal build) and mimalloc are Debian's shared libraries, searched in
//      the multiarch library directories and through `ldconfig -p`; GoMalloc is
//      `libgomalloc-preload.so`, found by the rule `gomalloc run` uses (DropInLibrary.swift),
//      a release build preferred. A missing one is skipped with a line naming the apt
//      package that installs it.
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
//      For server-churn it also samples the workload's RSS every 100 ms (RSSSampler),
//      prints the RSS at the end of its idle phase and draws `rss-over-time.svg`.
//
// The results.json schema is documented in ReportJSON.swift (and Benchmarks/README.md).
//
// Files (Sources/gomalloc/Bench/): BenchCommand (arguments, this file), WorkloadCatalog,
// Allocators, WorkloadBuild (compile cache), Processes (spawning and timing), RSSSampler
// (RSS over time), BenchRunner, FastPath (instruction counts), ReportJSON, TableRenderer,
// ChartRenderer, RSSChartRenderer; the GoMalloc
// library is found by DropInLibrary (Sources/gomalloc), which `gomalloc run` uses too.

import ArgumentParser
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark GoMalloc against glibc, jemalloc, tcmalloc and mimalloc.",
        discussion: """
            Runs allocation workloads (Benchmarks/workloads) under each allocator via \
            LD_PRELOAD, interleaving the allocators within each repetition, and prints \
            median wall time and peak RSS as ratios to mimalloc (to glibc when mimalloc is \
            absent), plus the instruction count of a malloc+free pair. Writes results.json, \
            chart.svg and rss-over-time.svg (server-churn's RSS sampled every 100 ms) under \
            --out. Peers: apt-get install -y libjemalloc2 \
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

    @Option(help: "Directory for results.json, chart.svg and rss-over-time.svg.")
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

let allocatorNames = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "gomalloc"]

func splitList(_ values: [String]) -> [String] {
    values.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
}

enum BenchMode: String, Codable {
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

struct BenchConfig {
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
