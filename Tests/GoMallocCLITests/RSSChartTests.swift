// RSSChartTests: `gomalloc bench`'s RSS over time on a handmade report: rss-over-time.svg
// (well-formed XML, one polyline per allocator that has samples, its points in order, the
// legend with the end-of-idle RSS, each run's phase strip, axes), the table's end-of-idle row, the
// phase-marker parser, the choice of the run drawn, and results.json round-tripping the
// series and the phases (absent, not null, for runs without them).
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import gomalloc

final class RSSChartTests: XCTestCase {
    // MARK: - The report

    /// A run whose RSS rises linearly to `peakMiB` at 1 s, drops to `idleMiB` at 1.2 s and
    /// stays there until 3 s, sampled every 100 ms, with its phase markers.
    private func run(peakMiB: Int, idleMiB: Int) -> RunJSON {
        let series = (1...30).map { i -> RSSSampleJSON in
            let ms = i * 100
            let mib = ms <= 1000 ? peakMiB * ms / 1000 : (ms < 1200 ? peakMiB : idleMiB)
            return RSSSampleJSON(timeMs: ms, rssKiB: mib * 1024)
        }
        let phases = [
            PhaseJSON(name: "grow", timeMs: 2, rssKiB: 1500), PhaseJSON(name: "churn", timeMs: 600, rssKiB: peakMiB * 600),
            PhaseJSON(name: "shrink", timeMs: 1000, rssKiB: peakMiB * 1024),
            PhaseJSON(name: "idle", timeMs: 1150, rssKiB: idleMiB * 1024),
            PhaseJSON(name: "idle-end", timeMs: 2950, rssKiB: idleMiB * 1024),
            PhaseJSON(name: "exit", timeMs: 2990, rssKiB: 2048),
        ]
        return RunJSON(
            wallSeconds: 3, maxRSSKiB: peakMiB * 1024, userSeconds: 2, systemSeconds: 0.5, rssSeries: series,
            phases: phases)
    }

    /// glibc and gomalloc ran server-churn (gomalloc three times), mimalloc failed it,
    /// jemalloc is not installed; cold-free ran too, without samples.
    private func sampleReport() -> ReportJSON {
        func result(_ a: String, _ runs: [RunJSON], idleEnd: Double?) -> ResultJSON {
            ResultJSON(
                workload: "server-churn", allocator: a, ok: true, error: nil, runs: runs, medianWallSeconds: 3,
                medianMaxRSSKiB: 100 * 1024, timeRatio: 1, rssRatio: 1, medianIdleEndRSSKiB: idleEnd)
        }
        return ReportJSON(
            generated: "2026-01-02T03:04:05Z", mode: .quick, repetitions: 3, threads: 2, baseline: "glibc",
            machine: MachineJSON(hostname: "h", os: "Linux 6.1.0", arch: "x86_64", cpuModel: "CPU <x> & y", cpus: 2, memoryKiB: 1 << 24),
            allocators: [
                AllocatorJSON(name: "glibc", available: true),
                AllocatorJSON(name: "jemalloc", available: false, skipped: "not found", install: "apt-get install -y libjemalloc2"),
                AllocatorJSON(name: "mimalloc", available: true, library: "/usr/lib/libmimalloc.so.2"),
                AllocatorJSON(name: "gomalloc", available: true, library: "/src/.build/release/libgomalloc-preload.so"),
            ],
            workloads: [
                WorkloadJSON(name: "server-churn", models: "m", description: "d", threads: 2, command: ["server-churn.c"]),
                WorkloadJSON(name: "cold-free", models: "m", description: "d", threads: 1, command: ["cold-free.c"]),
            ],
            results: [
                result("glibc", [run(peakMiB: 160, idleMiB: 120)], idleEnd: 120 * 1024),
                ResultJSON(workload: "server-churn", allocator: "mimalloc", ok: false, error: "exit status 3", runs: []),
                result("gomalloc", [run(peakMiB: 150, idleMiB: 90), run(peakMiB: 150, idleMiB: 40), run(peakMiB: 150, idleMiB: 60)],
                       idleEnd: 60 * 1024),
                ResultJSON(
                    workload: "cold-free", allocator: "glibc", ok: true, error: nil,
                    runs: [RunJSON(wallSeconds: 1, maxRSSKiB: 1000, userSeconds: 1, systemSeconds: 0)],
                    medianWallSeconds: 1, medianMaxRSSKiB: 1000, timeRatio: 1, rssRatio: 1),
            ],
            geomean: [], fastPath: FastPathJSON(tool: nil, skipped: "not selected (--only)", results: []))
    }

    // MARK: - The SVG

    private func parse(_ svg: String) throws -> [SVGElement] {
        parseSVG(svg, what: "rss-over-time.svg")
    }

    private func points(_ polyline: SVGElement) -> [(x: Double, y: Double)] {
        (polyline.attributes["points"] ?? "").split(separator: " ").map { pair in
            let xy = pair.split(separator: ",").map { Double($0)! }
            return (xy[0], xy[1])
        }
    }

    func testChartIsWellFormedWithOneLinePerAllocator() throws {
        let svg = try XCTUnwrap(renderRSSChart(sampleReport(), workload: "server-churn"))
        XCTAssertTrue(svg.hasPrefix("<?xml"))
        let elements = try parse(svg)
        let root = try XCTUnwrap(elements.first)
        XCTAssertEqual(root.name, "svg")
        XCTAssertEqual(root.attributes["xmlns"], "http://www.w3.org/2000/svg")
        let width = try XCTUnwrap(root.attributes["width"]), height = try XCTUnwrap(root.attributes["height"])
        XCTAssertEqual(root.attributes["viewBox"], "0 0 \(width) \(height)")

        // One polyline per allocator with samples (mimalloc failed, jemalloc did not run),
        // in its colour, named by its tooltip, one point per sample, time increasing.
        let lines = elements.filter { $0.name == "polyline" }
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(lines.map { $0.attributes["stroke"] }, ["#7f7f7f", "#d62728"])
        XCTAssertEqual(elements.filter { $0.name == "title" && $0.parent == "polyline" }.map(\.text), ["glibc", "gomalloc"])
        for line in lines {
            let ps = points(line)
            XCTAssertEqual(ps.count, 30)
            XCTAssertEqual(ps.map(\.x), ps.map(\.x).sorted())
            XCTAssertEqual(line.attributes["fill"], "none")
        }
        // y is proportional to RSS: glibc's peak (160 MiB) is higher up than gomalloc's (150).
        let glibc = points(lines[0]), gomalloc = points(lines[1])
        XCTAssertLessThan(glibc[9].y, gomalloc[9].y)
        XCTAssertEqual(glibc[9].x, gomalloc[9].x, "the same time axis")
        // gomalloc's drawn run is its median one by end-of-idle RSS (60 MiB, not 40 or 90).
        let zero = try XCTUnwrap(elements.first { $0.name == "text" && $0.text == "0" && $0.attributes["text-anchor"] == "end" })
        let y0 = try XCTUnwrap(Double(zero.attributes["y"] ?? "")) - 4
        XCTAssertEqual((y0 - gomalloc[29].y) / (y0 - glibc[29].y), 60.0 / 120.0, accuracy: 0.01)
    }

    func testChartTitleAxesLegendAndPhases() throws {
        let elements = try parse(try XCTUnwrap(renderRSSChart(sampleReport(), workload: "server-churn")))
        let texts = elements.filter { $0.name == "text" }.map(\.text)
        XCTAssertEqual(texts.first, "RSS over time: server-churn (quick, 2 threads), sampled every 100 ms")
        XCTAssertTrue(texts.contains { $0.contains("CPU <x> & y") }, "the machine, escaped and unescaped")
        XCTAssertTrue(texts.contains("seconds since start"))
        XCTAssertTrue(texts.contains("RSS (MiB)"))
        // Legend: every allocator drawn, with its median end-of-idle RSS; no failed or absent one.
        XCTAssertTrue(texts.contains("RSS at the end of the idle phase"))
        for label in ["glibc", "gomalloc", "120.0 MiB (median)", "60.0 MiB (median)"] {
            XCTAssertTrue(texts.contains(label), "legend: \(label)")
        }
        XCTAssertFalse(texts.contains("mimalloc"))
        XCTAssertFalse(texts.contains("jemalloc"))
        // A phase strip per allocator: a segment from each marker of its drawn run to the
        // next (grow, churn, shrink, idle, and the drain after idle-end), named where wide
        // enough, its span in the tooltip.
        let segments = elements.filter { $0.name == "rect" && $0.attributes["class"] == "phase" }
        XCTAssertEqual(segments.count, 2 * 5)
        XCTAssertEqual(segments.filter { $0.attributes["fill"] == "#d62728" }.count, 5)
        let tips = elements.filter { $0.name == "title" && $0.parent == "rect" }.map(\.text)
        XCTAssertEqual(tips.filter { $0.hasPrefix("gomalloc: ") }, [
            "gomalloc: grow 0.002-0.6 s", "gomalloc: churn 0.6-1 s", "gomalloc: shrink 1-1.15 s",
            "gomalloc: idle 1.15-2.95 s", "gomalloc: idle-end 2.95-2.99 s",
        ])
        for phase in ["grow", "churn", "idle"] { XCTAssertEqual(texts.filter { $0 == phase }.count, 2, phase) }
        XCTAssertFalse(texts.contains("exit"))
        XCTAssertEqual(texts.filter { $0 == "glibc" }.count, 2, "legend and strip")
        // Axis ticks: seconds 0...3 and MiB from 0 past the peak of 160.
        for tick in ["0", "1", "2", "3"] { XCTAssertTrue(texts.contains(tick), "x tick \(tick)") }
        let yTicks = elements.filter { $0.name == "text" && $0.attributes["text-anchor"] == "end" }.compactMap { Double($0.text) }
        XCTAssertEqual(yTicks.first, 0)
        XCTAssertGreaterThanOrEqual(yTicks.last ?? 0, 160)
    }

    func testServerThatForksIsChartedAsThePssOfItsProcesses() throws {
        var report = sampleReport()
        report.workloads[0].memory = "pss-tree"
        let texts = try parse(try XCTUnwrap(renderRSSChart(report, workload: "server-churn")))
            .filter { $0.name == "text" }.map(\.text)
        XCTAssertEqual(texts.first, "Pss of the server's processes over time: server-churn (quick, 2 threads), sampled every 100 ms")
        XCTAssertTrue(texts.contains("Pss of the server's processes (MiB)"))
        XCTAssertTrue(texts.contains("Pss at the end of the idle phase"))
        XCTAssertFalse(texts.contains("RSS (MiB)"))
    }

    func testNoChartWithoutSamples() {
        XCTAssertNil(renderRSSChart(sampleReport(), workload: "cold-free"))
        XCTAssertNil(renderRSSChart(sampleReport(), workload: "no-such-workload"))
    }

    func testRepresentativeRunIsTheMedianByIdleEnd() throws {
        let r = try XCTUnwrap(sampleReport().results.first { $0.allocator == "gomalloc" })
        XCTAssertEqual(representativeRun(r)?.phases?.last { $0.name == "idle-end" }?.rssKiB, 60 * 1024)
    }

    // MARK: - Table, markers, JSON

    /// A workload with a "trimmed" marker (idle-return) gets a second row: RSS after malloc_trim(0).
    func testTableHasTheTrimmedRowWhereThereIsOne() throws {
        var report = sampleReport()
        for i in report.results.indices where report.results[i].workload == "server-churn" && report.results[i].ok {
            report.results[i].medianTrimmedRSSKiB = 10 * 1024
        }
        let table = renderTable(report)
        XCTAssertTrue(table.contains("no trim call, and after malloc_trim(0) (median of 3; sampled every 100 ms)\n"), table)
        let row = try XCTUnwrap(table.components(separatedBy: "\n").first { $0.hasPrefix("server-churn trimmed") }, table)
        XCTAssertEqual(row.split(separator: " ", omittingEmptySubsequences: true).dropFirst(2).joined(separator: " "),
                       "10.0 MiB FAIL 10.0 MiB")
    }

    func testTableHasTheEndOfIdleRow() throws {
        let table = renderTable(sampleReport())
        XCTAssertTrue(table.contains("RSS at the end of server-churn's idle phase, no trim call (median of 3; sampled every 100 ms)\n"))
        let row = try XCTUnwrap(table.components(separatedBy: "\n").first { $0.hasPrefix("server-churn idle end") })
        XCTAssertEqual(row.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).joined(separator: " "),
                       "120.0 MiB FAIL 60.0 MiB")
        XCTAssertFalse(table.contains("cold-free idle end"), "no row for a workload without an idle phase")
    }

    func testPhaseMarkersAreParsedOntoTheSamplesTimeAxis() {
        let stdout = """
            phase=grow mono_s=100.002000 rss_kib=1500
            some other line
            phase=idle mono_s=101.250400 rss_kib=9000
            phase=broken mono_s=x rss_kib=1
            workload=server-churn threads=2 idle_end_rss_kib=9000
            phase=idle-end mono_s=103.250000 rss_kib=9100

            """
        XCTAssertEqual(parsePhaseMarkers(stdout, origin: 100), [
            PhaseJSON(name: "grow", timeMs: 2, rssKiB: 1500), PhaseJSON(name: "idle", timeMs: 1250, rssKiB: 9000),
            PhaseJSON(name: "idle-end", timeMs: 3250, rssKiB: 9100),
        ])
    }

    func testJSONRoundTripsTheSeries() throws {
        let report = sampleReport()
        let data = try JSONEncoder().encode(report)
        let decoded = try JSONDecoder().decode(ReportJSON.self, from: data)
        for (a, b) in zip(report.results, decoded.results) {
            XCTAssertEqual(a.medianIdleEndRSSKiB, b.medianIdleEndRSSKiB)
            for (ra, rb) in zip(a.runs, b.runs) {
                XCTAssertEqual(ra.rssSeries, rb.rssSeries)
                XCTAssertEqual(ra.phases, rb.phases)
            }
        }
        XCTAssertEqual(decoded.results[2].runs.count, 3)
        XCTAssertEqual(decoded.results[2].runs[1].rssSeries?.count, 30)
        // The JSON names, and absent (not null) fields for a run without samples.
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let results = try XCTUnwrap(json["results"] as? [[String: Any]])
        let glibcRun = try XCTUnwrap((results[0]["runs"] as? [[String: Any]])?.first)
        let sample = try XCTUnwrap((glibcRun["rssSeries"] as? [[String: Any]])?.first)
        XCTAssertEqual(sample["timeMs"] as? Int, 100)
        XCTAssertEqual(sample["rssKiB"] as? Int, 16 * 1024)
        XCTAssertEqual((glibcRun["phases"] as? [[String: Any]])?.last?["name"] as? String, "exit")
        XCTAssertEqual(results[0]["medianIdleEndRSSKiB"] as? Double, 120 * 1024)
        let coldRun = try XCTUnwrap((results[3]["runs"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(coldRun.keys), ["wallSeconds", "maxRSSKiB", "userSeconds", "systemSeconds"])
        XCTAssertNil(results[3]["medianIdleEndRSSKiB"])
        XCTAssertFalse(String(decoding: data, as: UTF8.self).contains("null"))
    }
}
