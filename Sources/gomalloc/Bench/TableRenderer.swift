// TableRenderer.swift: the text table `gomalloc bench` prints: ratios to the baseline per
// workload and allocator, a geometric-mean row, the RSS at the end of an idle phase (the
// workloads whose RSS is sampled over time), the real servers' throughput and memory,
// instructions per pair, what was skipped.

import Foundation

extension String {
    func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }

    func rightPad(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

func formatBytes(kib: Double) -> String {
    if kib >= 1024 * 1024 { return String(format: "%.2f GiB", kib / 1024 / 1024) }
    if kib >= 1024 { return String(format: "%.1f MiB", kib / 1024) }
    return String(format: "%.0f KiB", kib)
}

/// A rate such as requests per second: 81.2k, 1.05M.
func formatRate(_ x: Double) -> String {
    if x >= 1e6 { return String(format: "%.2fM", x / 1e6) }
    if x >= 1e4 { return String(format: "%.1fk", x / 1e3) }
    return String(format: "%.0f", x)
}

func formatRatio(_ r: Double?) -> String {
    guard let r else { return "-" }
    return r >= 100 ? String(format: "%.0f", r) : String(format: "%.2f", r)
}

func renderTable(_ report: ReportJSON) -> String {
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
    let servers = report.workloads.filter { $0.skipped == nil && $0.throughput != nil }
    for w in ranWorkloads where !servers.contains(where: { $0.name == w })
        && report.results.contains(where: { $0.workload == w && $0.medianIdleEndRSSKiB != nil })
    {
        let trims = report.results.contains { $0.workload == w && $0.medianTrimmedRSSKiB != nil }
        s += "\n" + "".rightPad(nameWidth)
            + "RSS at the end of \(w)'s idle phase, no trim call\(trims ? ", and after malloc_trim(0)" : "") (median of \(report.repetitions); sampled every 100 ms)\n"
        let rows: [(String, KeyPath<ResultJSON, Double?>)] = [("idle end", \.medianIdleEndRSSKiB)] + (trims ? [("trimmed", \.medianTrimmedRSSKiB)] : [])
        for (label, field) in rows {
            var line = "\(w) \(label)".rightPad(nameWidth)
            for a in allocs {
                guard let r = find(w, a) else {
                    line += "-".rightPad(col)
                    continue
                }
                line += (r.ok ? r[keyPath: field].map { formatBytes(kib: $0) } ?? "-" : "FAIL").rightPad(col)
            }
            s += line + "\n"
        }
    }
    if !servers.isEmpty {
        let labelWidth = max(nameWidth, servers.map { w in
            w.name.count + 1 + max(8, (w.throughput ?? []).map(\.count).max() ?? 0) + 2 }.max() ?? 0)
        s += "\n" + "".rightPad(labelWidth)
            + "real servers: median throughput (per second) and the server's memory at its peak, after the load, at the end of the idle phase\n"
        for w in servers {
            let rows: [(String, (ResultJSON) -> String?)] =
                (w.throughput ?? []).map { key in (key, { r in r.medianMetrics?[key].map(formatRate) }) } + [
                    ("peak", { r in r.medianMaxRSSKiB.map { formatBytes(kib: $0) } }),
                    ("loaded", { r in r.medianLoadedRSSKiB.map { formatBytes(kib: $0) } }),
                    ("idle end", { r in r.medianIdleEndRSSKiB.map { formatBytes(kib: $0) } }),
                ]
            for (label, value) in rows {
                var line = "\(w.name) \(label)".rightPad(labelWidth)
                for a in allocs {
                    guard let r = find(w.name, a) else {
                        line += "-".rightPad(col)
                        continue
                    }
                    line += (r.ok ? value(r) ?? "-" : "FAIL").rightPad(col)
                }
                s += line + "\n"
            }
        }
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
        if report.fastPath.results.contains(where: { $0.d1MissesPerColdFree != nil }) {
            s += "\n" + "".rightPad(nameWidth)
                + "D1 misses (and instructions) per free of a cold object, \(report.fastPath.coldFreeObjects ?? 0) freed shuffled (callgrind --cache-sim)\n"
            for size in [16, 256] {
                var line = "cold free \(size) B".rightPad(nameWidth)
                for a in allocs {
                    if let e = report.fastPath.results.first(where: { $0.allocator == a && $0.size == size }),
                       let d1 = e.d1MissesPerColdFree {
                        let ir = e.instructionsPerColdFree.map { String(format: "%.0f", $0) } ?? "-"
                        line += "\(String(format: "%.2f", d1).leftPad(5)) (\(ir))".rightPad(col)
                    } else {
                        line += "-".rightPad(col)
                    }
                }
                s += line + "\n"
            }
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
