// BenchRunner.swift: one `gomalloc bench` run: discover the allocators, build the workloads,
// run every workload under every allocator (rotating their order within each repetition;
// sampling the RSS over time of the workloads that have an RSS chart), aggregate medians
// and ratios, then print the table and write results.json, chart.svg and the RSS charts.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct BenchRunner {
    let config: BenchConfig
    var allocators: [AllocatorInfo] = []
    var failures = 0

    init(config: BenchConfig) { self.config = config }

    func say(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
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
            if let missing = w.requires.first(where: { !FileManager.default.isExecutableFile(atPath: $0) }) {
                commands[w.name] = nil
                skippedWorkloads[w.name] = "\(missing) not found" + (w.requiresHint.map { " (\($0))" } ?? "")
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
                        var o = try measuredRun(
                            shim: shim, exe: exe, arguments: args, preload: a.library, environment: environment(for: a),
                            resultPath: scratch.appendingPathComponent("run.result").path, stdoutPath: outPath,
                            stderrPath: errPath, timeout: c.timeout, sampler: w.rssChart != nil || w.processTree ? RSSSampler(processTree: w.processTree) : nil)
                        let stdoutText = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
                        if let origin = o.rssOrigin { o.phases = parsePhaseMarkers(stdoutText, origin: origin) }
                        if w.processTree, let peak = ((o.rssSeries ?? []).map(\.rssKiB) + (o.phases ?? []).map(\.rssKiB)).max() {
                            o.maxRSSKiB = peak  // the tree's, not the server process's alone
                        }
                        if !w.throughput.isEmpty { o.metrics = parseSummaryMetrics(stdoutText, keys: w.throughput) }
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
                            var line = "\(progress) \(String(format: "%8.3f s %9.1f MiB", o.wallSeconds, Double(o.maxRSSKiB) / 1024))"
                            if let idleEnd = o.phases?.last(where: { $0.name == "idle-end" }) {
                                line += String(format: ", %.1f MiB at the end of the idle phase", Double(idleEnd.rssKiB) / 1024)
                            }
                            say(line)
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
                        RunJSON(
                            wallSeconds: $0.wallSeconds, maxRSSKiB: $0.maxRSSKiB, userSeconds: $0.userSeconds,
                            systemSeconds: $0.systemSeconds, rssSeries: $0.rssSeries, phases: $0.phases, metrics: $0.metrics)
                    })
                if r.ok {
                    let t = median(rs.map(\.wallSeconds)), m = median(rs.map { Double($0.maxRSSKiB) })
                    r.medianWallSeconds = t
                    r.medianMaxRSSKiB = m
                    let idleEnds = rs.compactMap { $0.phases?.last { $0.name == "idle-end" }.map { Double($0.rssKiB) } }
                    if !idleEnds.isEmpty { r.medianIdleEndRSSKiB = median(idleEnds) }
                    let trimmed = rs.compactMap { $0.phases?.last { $0.name == "trimmed" }.map { Double($0.rssKiB) } }
                    if !trimmed.isEmpty { r.medianTrimmedRSSKiB = median(trimmed) }
                    let loaded = rs.compactMap { $0.phases?.last { $0.name == "loaded" }.map { Double($0.rssKiB) } }
                    if !loaded.isEmpty { r.medianLoadedRSSKiB = median(loaded) }
                    if !w.throughput.isEmpty {
                        var ms: [String: Double] = [:]
                        for k in w.throughput {
                            let xs = rs.compactMap { $0.metrics?[k] }
                            if !xs.isEmpty { ms[k] = median(xs) }
                        }
                        r.medianMetrics = ms
                    }
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
        // Workloads with an idle phase (RSS sampled) spend most of their wall time asleep,
        // the same for every allocator: their time would pull the time mean towards 1.
        let idling = Set(runnable.filter { $0.rssChart != nil }.map(\.name))
        for a in active {
            let mine = results.filter { $0.allocator == a.name && $0.timeRatio != nil }
            geomeans.append(GeomeanJSON(
                allocator: a.name, timeRatio: geometricMean(mine.filter { !idling.contains($0.workload) }.compactMap(\.timeRatio)),
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
                    command: [w.source] + w.arguments, skipped: skippedWorkloads[w.name],
                    throughput: w.throughput.isEmpty ? nil : w.throughput, memory: w.processTree ? "pss-tree" : nil)
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
        var written = [jsonURL.path, svgURL.path]
        for w in runnable {
            guard let file = w.rssChart, let svg = renderRSSChart(report, workload: w.name) else { continue }
            let url = c.outDir.appendingPathComponent(file)
            try Data(svg.utf8).write(to: url, options: .atomic)
            written.append(url.path)
        }
        print("wrote \(written.dropLast().joined(separator: ", ")) and \(written.last!)")
        if failures > 0 { print("\(failures) workload/allocator combination(s) FAILED; see the errors above and in results.json") }
        return failures
    }
}

/// The numeric `key=value` fields named by `keys` in the workload's summary line (the last
/// line starting with `workload=`).
func parseSummaryMetrics(_ stdout: String, keys: [String]) -> [String: Double] {
    guard let line = stdout.split(separator: "\n").last(where: { $0.hasPrefix("workload=") }) else { return [:] }
    let fields = keyValueFields(line)
    var out: [String: Double] = [:]
    for k in keys { if let v = fields[k].flatMap(Double.init) { out[k] = v } }
    return out
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    let n = s.count
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

func geometricMean(_ xs: [Double]) -> Double? {
    let positive = xs.filter { $0 > 0 && $0.isFinite }
    guard !positive.isEmpty else { return nil }
    return exp(positive.map { log($0) }.reduce(0, +) / Double(positive.count))
}
