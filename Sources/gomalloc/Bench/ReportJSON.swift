// ReportJSON.swift: the results of `gomalloc bench` as Codable types. results.json is their
// JSON encoding; the table and the chart are rendered from them.
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
//       "skipped": "reason",                      // only when it could not be built
//       "throughput": ["set_rps", "get_rps"],     // real servers: their throughput keys
//       "memory": "pss-tree" }                    // Pss over the server's processes
//   ],
//   "results": [                                  // one per workload x available allocator
//     { "workload": "cross-thread-free", "allocator": "jemalloc", "ok": true,
//       "error": "exit status 3: CORRUPTION ...", // only when ok is false
//       "runs": [ { "wallSeconds": 0.123, "maxRSSKiB": 4321,
//                   "userSeconds": 0.2, "systemSeconds": 0.01,
//                   "rssSeries": [ { "timeMs": 100, "rssKiB": 5120 } ],  // sampled workloads
//                   "phases": [ { "name": "idle", "timeMs": 2300, "rssKiB": 9000 } ],
//                   "metrics": { "set_rps": 80000 } } ],   // real servers: throughputs
//       "medianWallSeconds": 0.123, "medianMaxRSSKiB": 4321,     // absent when ok is false
//       "medianIdleEndRSSKiB": 9000,              // phase "idle-end"'s RSS, median of runs
//       "medianLoadedRSSKiB": 9000,               // phase "loaded"'s RSS (real servers)
//       "medianMetrics": { "set_rps": 80000 },    // real servers: median throughputs
//       "timeRatio": 1.05, "rssRatio": 0.98 }     // vs baseline; absent if either failed
//   ],
//   "geomean": [ { "allocator": "jemalloc", "timeRatio": 1.02, "rssRatio": 1.10,
//                  "workloads": 10 } ],           // over workloads where both succeeded
//   "fastPath": {
//     "tool": "callgrind" | "perf",               // absent when skipped
//     "skipped": "reason",                        // only when not measured
//     "results": [ { "allocator": "jemalloc", "size": 16, "instructionsPerPair": 76.2,
//                    "ratioToLeanest": 1.0,       // leanest = fewest instructions, that size
//                    "d1MissesPerColdFree": 1.3,  // callgrind only: freeing 100,000 cold
//                    "instructionsPerColdFree": 111 } ],  // objects of that size, shuffled
//     "errors": [ "gomalloc 16 B: ..." ],         // only when some measurement failed
//     "coldFreeObjects": 100000                   // callgrind only
//   }
// }

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct MachineJSON: Codable {
    var hostname: String
    var os: String
    var arch: String
    var cpuModel: String
    var cpus: Int
    var memoryKiB: Int
}

struct AllocatorJSON: Codable {
    var name: String
    var available: Bool
    var library: String?
    var skipped: String?
    var install: String?
}

struct WorkloadJSON: Codable {
    var name: String
    var models: String
    var description: String
    var threads: Int
    var command: [String]
    var skipped: String?
    /// Real servers: the summary keys that are throughputs (results' metrics).
    var throughput: [String]? = nil
    /// "pss-tree" when the workload's memory is the Pss summed over its process tree
    /// (a server that forks workers); absent: the workload process's RSS.
    var memory: String? = nil
}

/// One sample of a workload's RSS: milliseconds since the run started, resident KiB.
struct RSSSampleJSON: Codable, Equatable {
    var timeMs: Int
    var rssKiB: Int
}

/// A phase boundary the workload printed (`phase=NAME ...`), on the samples' time axis,
/// with the RSS the workload read itself at that moment.
struct PhaseJSON: Codable, Equatable {
    var name: String
    var timeMs: Int
    var rssKiB: Int
}

struct RunJSON: Codable {
    var wallSeconds: Double
    var maxRSSKiB: Int
    var userSeconds: Double
    var systemSeconds: Double
    /// RSS every 100 ms (workloads with an RSS chart only).
    var rssSeries: [RSSSampleJSON]? = nil
    var phases: [PhaseJSON]? = nil
    /// The summary line's throughputs (real servers: the workload's `throughput` keys).
    var metrics: [String: Double]? = nil
}

struct ResultJSON: Codable {
    var workload: String
    var allocator: String
    var ok: Bool
    var error: String?
    var runs: [RunJSON]
    var medianWallSeconds: Double?
    var medianMaxRSSKiB: Double?
    var timeRatio: Double?
    var rssRatio: Double?
    /// Median over the runs of the RSS at the "idle-end" phase marker (server-churn,
    /// idle-return), and at "trimmed" (idle-return: after malloc_trim(0)).
    var medianIdleEndRSSKiB: Double? = nil
    var medianTrimmedRSSKiB: Double? = nil
    /// Real servers: median over the runs of each throughput, and of the RSS at the
    /// "loaded" phase marker (after the load, before any flush or idle).
    var medianMetrics: [String: Double]? = nil
    var medianLoadedRSSKiB: Double? = nil
}

struct GeomeanJSON: Codable {
    var allocator: String
    var timeRatio: Double?
    var rssRatio: Double?
    var workloads: Int
}

struct FastPathEntryJSON: Codable {
    var allocator: String
    var size: Int
    var instructionsPerPair: Double
    var ratioToLeanest: Double?
    /// Data-cache (D1) read and write misses per free of a cold object (pair-cost's cold
    /// mode under callgrind's cache simulation); nil when not measured (perf, or it failed).
    var d1MissesPerColdFree: Double? = nil
    /// Instructions per free of a cold object, from the same run.
    var instructionsPerColdFree: Double? = nil
}

struct FastPathJSON: Codable {
    var tool: String?
    var skipped: String?
    var results: [FastPathEntryJSON]
    var errors: [String]?
    /// Objects freed, shuffled, by the cold-free measurement (callgrind only).
    var coldFreeObjects: Int? = nil
}

struct ReportJSON: Codable {
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

func readMachine() -> MachineJSON {
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
