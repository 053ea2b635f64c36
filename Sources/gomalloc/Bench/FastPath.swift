// FastPath.swift: instructions per malloc+free pair for `gomalloc bench`, counted with
// valgrind's callgrind (or `perf stat`) from two loop lengths so start-up cost cancels; with
// callgrind also the data-cache misses of freeing cold objects (pair-cost's cold mode under
// the cache simulation: what a free reads and writes that is not in L1).

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension BenchRunner {
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
                    var entry = FastPathEntryJSON(allocator: a.name, size: size, instructionsPerPair: perPair)
                    var cold = ""
                    if let valgrind {
                        do {
                            let c = try coldFreeCounts(valgrind: valgrind, exe: exe, size: size, allocator: a, scratch: scratch)
                            entry.d1MissesPerColdFree = c.d1Misses
                            entry.instructionsPerColdFree = c.instructions
                            cold = String(format: ", cold free: %.2f D1 misses, %.0f instructions", c.d1Misses, c.instructions)
                        } catch {
                            errors.append("\(a.name) \(size) B cold free: \(error)")
                            cold = ", cold free FAILED: \(error)"
                        }
                    }
                    entries.append(entry)
                    say("fast path: \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(format: "%4d", size)) B  \(String(format: "%7.1f", perPair)) instructions per pair\(cold)")
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
        return FastPathJSON(tool: tool, skipped: nil, results: entries, errors: errors.isEmpty ? nil : errors,
                            coldFreeObjects: valgrind != nil ? coldFreeObjects : nil)
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

    /// Objects freed by the cold-free measurement (fewer in smoke mode).
    var coldFreeObjects: Int { config.mode == .smoke ? 10_000 : 100_000 }

    /// Runs pair-cost's cold mode under callgrind's cache simulation (debug info stripped,
    /// which the simulation does not need); returns D1 misses (reads + writes) and
    /// instructions per free, from the profile of cold_free_loop alone.
    func coldFreeCounts(valgrind: String, exe: String, size: Int, allocator a: AllocatorInfo, scratch: URL) throws
        -> (d1Misses: Double, instructions: Double)
    {
        var stripped = a
        if let library = a.library { stripped.library = try strippedCopy(of: library, scratch: scratch) }
        let n = coldFreeObjects
        let profiles = try callgrindProfiles(
            valgrind: valgrind, options: ["--cache-sim=yes", "--dump-before=cold_free_loop", "--dump-after=cold_free_loop"],
            exe: exe, args: ["size=\(size)", "cold=\(n)"], env: environment(for: stripped), scratch: scratch)
        guard let loop = profiles.first(where: { $0.trigger.contains("--dump-after=cold_free_loop") }) else {
            throw SpawnError(description: "callgrind wrote no profile for cold_free_loop")
        }
        guard let ir = loop.count("Ir"), let d1r = loop.count("D1mr"), let d1w = loop.count("D1mw") else {
            throw SpawnError(description: "callgrind's profile has no cache events")
        }
        return ((d1r + d1w) / Double(n), ir / Double(n))
    }

    /// Runs pair-cost under callgrind with one profile dumped before the short loop, one
    /// after it and one after the long loop; returns the instruction totals of the loops.
    func callgrindCounts(valgrind: String, exe: String, args: [String], env: [String: String], scratch: URL) throws
        -> (short: Double, long: Double)
    {
        let profiles = try callgrindProfiles(
            valgrind: valgrind,
            options: ["--dump-before=pair_loop_short", "--dump-after=pair_loop_short", "--dump-after=pair_loop_long"],
            exe: exe, args: args, env: env, scratch: scratch)
        func instructions(after loop: String) -> Double? {
            profiles.first { $0.trigger.contains("--dump-after=\(loop)") }?.count("Ir")
        }
        guard let short = instructions(after: "pair_loop_short"), let long = instructions(after: "pair_loop_long") else {
            throw SpawnError(description: "callgrind wrote no profile for the loops")
        }
        return (short, long)
    }

    /// One profile callgrind dumped: what triggered it, and its event totals.
    struct CallgrindProfile {
        var trigger = ""
        var events: [Substring] = []
        var totals: [Double] = []

        /// The total of one event (callgrind leaves out trailing zero counts); nil if the run
        /// did not record it.
        func count(_ event: String) -> Double? {
            guard let i = events.firstIndex(of: Substring(event)) else { return nil }
            return i < totals.count ? totals[i] : 0
        }
    }

    /// Runs `exe args` under callgrind with `options` (its dump triggers, the cache
    /// simulation) and returns every profile it wrote. A failure whose stderr shows valgrind's
    /// DWARF reader giving up is marked "debuginfo:" for the caller to retry stripped.
    func callgrindProfiles(valgrind: String, options: [String], exe: String, args: [String], env: [String: String],
                           scratch: URL) throws -> [CallgrindProfile]
    {
        let dir = scratch.appendingPathComponent("callgrind-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outBase = dir.appendingPathComponent("cg.out")
        let errPath = dir.appendingPathComponent("stderr").path
        let o = try spawnAndWait(
            valgrind, ["--tool=callgrind", "--callgrind-out-file=\(outBase.path)"] + options + [exe] + args,
            environment: env, stdoutPath: dir.appendingPathComponent("stdout").path, stderrPath: errPath, timeout: 300)
        guard o.ok else {
            let full = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            let why = describeFailure(o, stderrPath: errPath)
            throw SpawnError(description: full.contains("debuginfo reader") && !why.contains("debuginfo") ? "debuginfo: \(why)" : why)
        }
        var profiles: [CallgrindProfile] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: dir.path) where file.hasPrefix("cg.out") {
            var profile = CallgrindProfile()
            for line in try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8).split(separator: "\n") {
                if line.hasPrefix("desc: Trigger:") { profile.trigger = String(line) }
                if line.hasPrefix("events:") { profile.events = Array(line.split(separator: " ").dropFirst()) }
                if line.hasPrefix("totals:") || line.hasPrefix("summary:") {
                    profile.totals = line.split(separator: " ").dropFirst().compactMap { Double($0) }
                }
            }
            profiles.append(profile)
        }
        return profiles
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
