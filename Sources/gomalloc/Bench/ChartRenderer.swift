// ChartRenderer.swift: chart.svg of `gomalloc bench` as plain SVG text: grouped bars of the
// time and RSS ratios per workload (and their geometric mean), and instructions per pair.
// Its colours, escaping and tick steps are shared with RSSChartRenderer.

import Foundation

func xmlEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

let chartColors: [String: String] = [
    "glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#2ca02c", "mimalloc": "#ff7f0e", "gomalloc": "#d62728",
]

/// Grouped bar charts as plain SVG text: time ratio and RSS ratio per workload (plus the
/// geometric mean), one bar per allocator; and, when measured, instructions per pair.
func renderChart(_ report: ReportJSON) -> String {
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
func niceStep(_ v: Double) -> Double {
    let p = pow(10, floor(log10(v)))
    for m in [1.0, 2, 2.5, 5, 10] where m * p >= v * 0.999_999 { return m * p }
    return 10 * p
}
