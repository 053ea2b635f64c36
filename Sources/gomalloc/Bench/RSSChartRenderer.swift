// RSSChartRenderer.swift: rss-over-time.svg of `gomalloc bench` as plain SVG text: a line
// chart of one workload's RSS (MiB) against time (seconds), one line per allocator (its
// median run), under it one strip per allocator showing when that run was in which phase
// (the runs differ in speed), and a legend with each allocator's RSS at the end of the
// idle phase.

import Foundation

/// The run drawn for one allocator: of the runs with samples, the one whose end-of-idle
/// RSS is the median (the first such run when there is no idle-end marker).
func representativeRun(_ result: ResultJSON) -> RunJSON? {
    let sampled = result.runs.filter { !($0.rssSeries ?? []).isEmpty }
    func idleEnd(_ r: RunJSON) -> Int { r.phases?.last { $0.name == "idle-end" }?.rssKiB ?? 0 }
    let sorted = sampled.enumerated().sorted { (idleEnd($0.element), $0.offset) < (idleEnd($1.element), $1.offset) }
    return sorted.isEmpty ? nil : sorted[(sorted.count - 1) / 2].element
}

/// The line chart of `workload`'s RSS over time; nil when no run of it has samples.
func renderRSSChart(_ report: ReportJSON, workload: String) -> String? {
    // A server that forks (nginx, PostgreSQL) is measured as the Pss of its processes.
    let measure = report.workloads.first { $0.name == workload }?.memory == "pss-tree" ? "Pss of the server's processes" : "RSS"
    let allocs = report.allocators.filter(\.available).map(\.name)
    var lines: [(allocator: String, run: RunJSON, idleEnd: Double?)] = []
    for a in allocs {
        guard let r = report.results.first(where: { $0.workload == workload && $0.allocator == a }), r.ok,
            let run = representativeRun(r)
        else { continue }
        lines.append((a, run, r.medianIdleEndRSSKiB))
    }
    guard !lines.isEmpty else { return nil }

    let stripHeight = 12.0, stripsTop = 30.0  // phase strips, below the x tick labels
    let width = 880.0, plotHeight = 360.0
    let left = 86.0, right = 250.0, top = 64.0
    let bottom = stripsTop + Double(lines.count) * stripHeight + 36
    let height = top + plotHeight + bottom
    let plotWidth = width - left - right
    let maxMs = lines.flatMap { l in (l.run.rssSeries ?? []).map(\.timeMs) }.max() ?? 1
    let maxKiB = lines.flatMap { l in (l.run.rssSeries ?? []).map(\.rssKiB) + (l.run.phases ?? []).map(\.rssKiB) }.max() ?? 1
    let xStep = niceStep(max(Double(maxMs) / 1000, 0.001) / 8)
    let xTicks = Int((Double(maxMs) / 1000 / xStep).rounded(.up))
    let xmax = xStep * Double(max(xTicks, 1))
    let yStep = niceStep(max(Double(maxKiB) / 1024 * 1.05, 0.001) / 5)
    let yTicks = Int((Double(maxKiB) / 1024 * 1.05 / yStep).rounded(.up))
    let ymax = yStep * Double(max(yTicks, 1))
    func x(_ ms: Int) -> Double { left + min(Double(ms) / 1000, xmax) / xmax * plotWidth }
    func y(_ kib: Int) -> Double { top + plotHeight - min(Double(kib) / 1024, ymax) / ymax * plotHeight }

    var svg = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="white"/>

        """
    let m = report.machine
    let threads = report.workloads.first { $0.name == workload }?.threads ?? report.threads
    svg += "<text x=\"\(left)\" y=\"24\" font-size=\"15\" font-weight=\"bold\">\(xmlEscape("\(measure) over time: \(workload) (\(report.mode.rawValue), \(threads) threads), sampled every 100 ms"))</text>\n"
    svg += "<text x=\"\(left)\" y=\"42\" fill=\"#444\">\(xmlEscape("each allocator's median run of \(report.repetitions), no malloc_trim; \(m.cpuModel), \(m.cpus) CPUs, \(m.os) \(m.arch)"))</text>\n"

    // Grid, ticks and axis labels.
    for i in 0...max(yTicks, 1) {
        let v = yStep * Double(i)
        let yy = top + plotHeight - v / ymax * plotHeight
        svg += "<line x1=\"\(left)\" y1=\"\(f1(yy))\" x2=\"\(f1(left + plotWidth))\" y2=\"\(f1(yy))\" stroke=\"#e0e0e0\"/>"
        svg += "<text x=\"\(left - 6)\" y=\"\(f1(yy + 4))\" text-anchor=\"end\">\(xmlEscape(axisLabel(v)))</text>\n"
    }
    for i in 0...max(xTicks, 1) {
        let v = xStep * Double(i)
        let xx = left + v / xmax * plotWidth
        svg += "<line x1=\"\(f1(xx))\" y1=\"\(f1(top + plotHeight))\" x2=\"\(f1(xx))\" y2=\"\(f1(top + plotHeight + 5))\" stroke=\"black\"/>"
        svg += "<text x=\"\(f1(xx))\" y=\"\(f1(top + plotHeight + 18))\" text-anchor=\"middle\">\(xmlEscape(axisLabel(v)))</text>\n"
    }
    svg += "<line x1=\"\(left)\" y1=\"\(f1(top + plotHeight))\" x2=\"\(f1(left + plotWidth))\" y2=\"\(f1(top + plotHeight))\" stroke=\"black\"/>\n"
    svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(f1(top + plotHeight))\" stroke=\"black\"/>\n"
    svg += "<text x=\"\(f1(left + plotWidth / 2))\" y=\"\(f1(height - 12))\" text-anchor=\"middle\">seconds since start</text>\n"
    svg += "<text transform=\"translate(18,\(f1(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(xmlEscape(measure)) (MiB)</text>\n"

    // Phases: one strip per allocator under the axis, a segment from each phase marker of
    // its run to the next, shaded by phase and named where there is room.
    let shade: [String: Double] = ["grow": 0.25, "churn": 0.45, "shrink": 1.0, "idle": 0.12, "idle-end": 0.6]
    for (i, l) in lines.enumerated() {
        let sy = top + plotHeight + stripsTop + Double(i) * stripHeight
        let colour = chartColors[l.allocator] ?? "#444"
        svg += "<text x=\"8\" y=\"\(f1(sy + stripHeight - 4))\" font-size=\"9\">\(xmlEscape(l.allocator))</text>"
        let phases = l.run.phases ?? []
        for (p, next) in zip(phases, phases.dropFirst()) {
            let x0 = x(p.timeMs), x1 = x(next.timeMs)
            svg += "<rect class=\"phase\" x=\"\(f1(x0))\" y=\"\(f1(sy))\" width=\"\(f1(max(x1 - x0, 0.5)))\" height=\"\(f1(stripHeight - 2))\" fill=\"\(colour)\" fill-opacity=\"\(shade[p.name] ?? 0.3)\"><title>\(xmlEscape("\(l.allocator): \(p.name) \(axisLabel(Double(p.timeMs) / 1000))-\(axisLabel(Double(next.timeMs) / 1000)) s"))</title></rect>"
            let label = p.name == "idle-end" ? "drain" : p.name
            if x1 - x0 >= Double(label.count) * 5.5 + 4 {
                svg += "<text x=\"\(f1(x0 + 2))\" y=\"\(f1(sy + stripHeight - 4))\" font-size=\"8\" fill=\"#222\">\(xmlEscape(label))</text>"
            }
        }
        svg += "\n"
    }

    // One line per allocator.
    for l in lines {
        let points = (l.run.rssSeries ?? []).map { "\(f1(x($0.timeMs))),\(f1(y($0.rssKiB)))" }.joined(separator: " ")
        svg += "<polyline fill=\"none\" stroke=\"\(chartColors[l.allocator] ?? "#444")\" stroke-width=\"1.8\" stroke-linejoin=\"round\" points=\"\(points)\"><title>\(xmlEscape(l.allocator))</title></polyline>\n"
    }

    // Legend: name and RSS at the end of the idle phase.
    let lx = left + plotWidth + 24
    svg += "<text x=\"\(f1(lx))\" y=\"\(f1(top + 4))\" font-weight=\"bold\">\(measure == "RSS" ? "RSS" : "Pss") at the end of the idle phase</text>\n"
    for (i, l) in lines.enumerated() {
        let ly = top + 26 + Double(i) * 34
        svg += "<line x1=\"\(f1(lx))\" y1=\"\(f1(ly - 4))\" x2=\"\(f1(lx + 22))\" y2=\"\(f1(ly - 4))\" stroke=\"\(chartColors[l.allocator] ?? "#444")\" stroke-width=\"3\"/>"
        svg += "<text x=\"\(f1(lx + 30))\" y=\"\(f1(ly))\">\(xmlEscape(l.allocator))</text>"
        let idle = l.idleEnd.map { formatBytes(kib: $0) + " (median)" } ?? "no idle phase"
        svg += "<text x=\"\(f1(lx + 30))\" y=\"\(f1(ly + 13))\" font-size=\"10\" fill=\"#444\">\(xmlEscape(idle))</text>\n"
    }
    svg += "</svg>\n"
    return svg
}

private func f1(_ v: Double) -> String { String(format: "%.1f", v) }

private func axisLabel(_ v: Double) -> String {
    v == v.rounded() ? String(format: "%.0f", v) : String(format: "%g", v)
}
