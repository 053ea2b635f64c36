// WorkloadBuild.swift: compiling the C workloads of `gomalloc bench` into a cache directory,
// each binary named after an FNV-1a hash of its sources, compiler and flags.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// FNV-1a, 64-bit: names cached binaries after their sources and flags.
func fnv1a(_ chunks: [Data]) -> String {
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

func locateWorkloads(explicit: String?) throws -> URL {
    var candidates: [URL] = []
    if let explicit { candidates.append(URL(fileURLWithPath: explicit)) }
    if let env = ProcessInfo.processInfo.environment["GOMALLOC_BENCH_WORKLOADS"] {
        candidates.append(URL(fileURLWithPath: env))
    }
    for root in Locations.packageRootCandidates() { candidates.append(root.appendingPathComponent("Benchmarks/workloads")) }
    for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("common.h").path) {
        return c.standardizedFileURL
    }
    throw SpawnError(
        description: "cannot find the workload sources (Benchmarks/workloads/common.h); looked in: "
            + candidates.map(\.path).joined(separator: ", ") + "; pass --workloads DIR")
}

func defaultCacheDir() -> URL {
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
func buildWorkload(
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
