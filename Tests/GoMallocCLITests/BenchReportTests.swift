// BenchReportTests: `gomalloc bench`'s renderers on a small report built by hand: the text
// table (columns, formatted ratios, failures, the baseline's absolute numbers, the
// geometric-mean row, instruction counts, skipped allocators and workloads), chart.svg
// (well-formed XML, one panel per measure, one bar per value, labels and legend), and
// results.json (optional fields absent rather than null).
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import gomalloc

final class BenchReportTests: XCTestCase {
    // MARK: - The report

    /// glibc, mimalloc (the baseline) and gomalloc ran; jemalloc is missing. Two workloads
    /// ran, gomalloc failed one of them; a third could not be built.
    private func sampleReport(gomallocLibrary: String = "/src/.build/release/libgomalloc-preload.so") -> ReportJSON {
        func ok(_ w: String, _ a: String, _ t: Double, _ kib: Double, _ tr: Double, _ rr: Double) -> ResultJSON {
            ResultJSON(
                workload: w, allocator: a, ok: true, error: nil,
                runs: [RunJSON(wallSeconds: t, maxRSSKiB: Int(kib), userSeconds: t, systemSeconds: 0.01)],
                medianWallSeconds: t, medianMaxRSSKiB: kib, timeRatio: tr, rssRatio: rr)
        }
        return ReportJSON(
            generated: "2026-01-02T03:04:05Z", mode: .quick, repetitions: 3, threads: 2, baseline: "mimalloc",
            machine: MachineJSON(
                hostname: "host", os: "Linux 6.1.0", arch: "x86_64", cpuModel: "Test CPU <model> & \"co\"", cpus: 2,
                memoryKiB: 16 * 1024 * 1024),
            allocators: [
                AllocatorJSON(name: "glibc", available: true),
                AllocatorJSON(
                    name: "jemalloc", available: false,
                    skipped: "libjemalloc.so.2 not found (Debian package libjemalloc2)",
                    install: "apt-get install -y libjemalloc2"),
                AllocatorJSON(
                    name: "mimalloc", available: true, library: "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
                    install: "apt-get install -y libmimalloc2.0"),
                AllocatorJSON(name: "gomalloc", available: true, library: gomallocLibrary),
            ],
            workloads: [
                WorkloadJSON(name: "small-pairs-fixed", models: "m", description: "d", threads: 1, command: ["small-pairs.c"]),
                WorkloadJSON(name: "large-realloc", models: "m", description: "d", threads: 1, command: ["large-realloc.c"]),
                WorkloadJSON(
                    name: "sqlite-index", models: "m", description: "d", threads: 1, command: ["sqlite-index.c"],
                    skipped: "cc failed for sqlite-index.c: no sqlite3.h"),
            ],
            results: [
                ok("small-pairs-fixed", "glibc", 0.75, 2048, 1.5, 1.0),
                ok("small-pairs-fixed", "mimalloc", 0.5, 2048, 1.0, 1.0),
                ok("small-pairs-fixed", "gomalloc", 0.625, 1638.4, 1.25, 0.8),
                ok("large-realloc", "glibc", 60, 12288 * 150, 150, 150),
                ok("large-realloc", "mimalloc", 0.4, 12288, 1.0, 1.0),
                ResultJSON(
                    workload: "large-realloc", allocator: "gomalloc", ok: false,
                    error: "exit status 3: CORRUPTION", runs: []),
            ],
            geomean: [
                GeomeanJSON(allocator: "glibc", timeRatio: 15, rssRatio: 12.247, workloads: 2),
                GeomeanJSON(allocator: "mimalloc", timeRatio: 1, rssRatio: 1, workloads: 2),
                GeomeanJSON(allocator: "gomalloc", timeRatio: 1.25, rssRatio: 0.8, workloads: 1),
            ],
            fastPath: FastPathJSON(
                tool: "callgrind", skipped: nil,
                results: [
                    FastPathEntryJSON(allocator: "glibc", size: 16, instructionsPerPair: 152.4, ratioToLeanest: 2.0),
                    FastPathEntryJSON(allocator: "mimalloc", size: 16, instructionsPerPair: 76.2, ratioToLeanest: 1.0),
                    FastPathEntryJSON(allocator: "gomalloc", size: 16, instructionsPerPair: 95.25, ratioToLeanest: 1.25),
                    FastPathEntryJSON(allocator: "glibc", size: 256, instructionsPerPair: 160, ratioToLeanest: 1.6),
                    FastPathEntryJSON(allocator: "mimalloc", size: 256, instructionsPerPair: 100, ratioToLeanest: 1.0),
                    FastPathEntryJSON(allocator: "gomalloc", size: 256, instructionsPerPair: 120, ratioToLeanest: 1.2),
                ]))
    }

    // MARK: - Table

    /// The table's lines, and the cells of one of them: the name column (22 wide) then one
    /// 14-wide column per allocator that ran, then the baseline's absolute numbers.
    private func cells(_ line: String, allocators: Int) -> (name: String, columns: [String], rest: String) {
        let chars = Array(line)
        func slice(_ from: Int, _ to: Int) -> String {
            String(chars[min(from, chars.count)..<min(to, chars.count)]).trimmingCharacters(in: .whitespaces)
        }
        let columns = (0..<allocators).map { slice(22 + 14 * $0, 22 + 14 * ($0 + 1)) }
        return (slice(0, 22), columns, slice(22 + 14 * allocators, chars.count))
    }

    private func line(_ table: String, startingWith prefix: String) throws -> String {
        try XCTUnwrap(
            table.components(separatedBy: "\n").first { $0.hasPrefix(prefix) }, "no line starting with '\(prefix)' in\n\(table)")
    }

    func testTableHeaderNamesTheAllocatorsThatRan() throws {
        let table = renderTable(sampleReport())
        XCTAssertTrue(table.contains(
            "GoMalloc benchmark: quick mode, 3 repetition(s), 2 thread(s); median wall time and peak RSS as ratios to mimalloc (lower is better)\n"))
        XCTAssertTrue(table.contains("machine: Test CPU <model> & \"co\", 2 CPUs, 16.00 GiB, Linux 6.1.0 x86_64\n"))
        let lines = table.components(separatedBy: "\n")
        let header2 = try line(table, startingWith: "workload")
        let header1 = try XCTUnwrap(lines[lines.firstIndex(of: header2)! - 1])
        let h1 = cells(header1, allocators: 3)
        XCTAssertEqual(h1.columns, ["glibc", "mimalloc*", "gomalloc"], "the baseline is starred; jemalloc did not run")
        XCTAssertEqual(h1.rest, "| mimalloc (absolute)")
        let h2 = cells(header2, allocators: 3)
        XCTAssertEqual(h2.name, "workload")
        XCTAssertEqual(h2.columns, ["time  rss", "time  rss", "time  rss"])
        XCTAssertEqual(h2.rest, "| time      peak RSS")
        XCTAssertFalse(header1.contains("jemalloc"))
        XCTAssertFalse(table.contains("debug build"), "a release build gets no note")
    }

    func testTableRowsFormatRatiosFailuresAndAbsoluteNumbers() throws {
        let table = renderTable(sampleReport())
        let small = cells(try line(table, startingWith: "small-pairs-fixed "), allocators: 3)
        XCTAssertEqual(small.columns, ["1.50  1.00", "1.00  1.00", "1.25  0.80"])
        XCTAssertEqual(small.rest, "| 0.500 s   2.0 MiB")
        let large = cells(try line(table, startingWith: "large-realloc "), allocators: 3)
        XCTAssertEqual(large.columns, ["150   150", "1.00  1.00", "FAIL"], "ratios of 100 and more have no decimals")
        XCTAssertEqual(large.rest, "| 0.400 s   12.0 MiB")
        XCTAssertFalse(table.components(separatedBy: "\n").contains { $0.hasPrefix("sqlite-index") }, "no row for a workload that did not build")
    }

    func testTableGeometricMeanRow() throws {
        let table = renderTable(sampleReport())
        let lines = table.components(separatedBy: "\n")
        let geo = try line(table, startingWith: "geometric mean")
        XCTAssertEqual(cells(geo, allocators: 3).columns, ["15.00 12.25", "1.00  1.00", "1.25  0.80"])
        // It follows the workload rows, after a rule as wide as the header plus 4.
        let i = try XCTUnwrap(lines.firstIndex(of: geo))
        let header2 = try line(table, startingWith: "workload")
        XCTAssertEqual(lines[i - 1], String(repeating: "-", count: header2.count + 4))
        XCTAssertTrue(lines[i - 2].hasPrefix("large-realloc"))
        // A missing geometric mean is a dash.
        var report = sampleReport()
        report.geomean.removeLast()
        XCTAssertEqual(cells(try line(renderTable(report), startingWith: "geometric mean"), allocators: 3).columns.last, "-     -")
    }

    /// With callgrind's cache simulation, D1 misses and instructions per cold free follow
    /// the pair rows, one row per size; an allocator without figures gets a dash.
    func testTableColdFreeMisses() throws {
        var report = sampleReport()
        report.fastPath.coldFreeObjects = 100_000
        for i in report.fastPath.results.indices where report.fastPath.results[i].allocator != "glibc" {
            report.fastPath.results[i].d1MissesPerColdFree = report.fastPath.results[i].size == 16 ? 1.125 : 2.5
            report.fastPath.results[i].instructionsPerColdFree = 140.4
        }
        let table = renderTable(report)
        XCTAssertTrue(table.contains(
            "D1 misses (and instructions) per free of a cold object, 100000 freed shuffled (callgrind --cache-sim)\n"))
        XCTAssertEqual(cells(try line(table, startingWith: "cold free 16 B"), allocators: 3).columns,
                       ["-", "1.12 (140)", "1.12 (140)"])
        XCTAssertEqual(cells(try line(table, startingWith: "cold free 256 B"), allocators: 3).columns,
                       ["-", "2.50 (140)", "2.50 (140)"])
        // And they survive the JSON round trip.
        let decoded = try JSONDecoder().decode(ReportJSON.self, from: try JSONEncoder().encode(report))
        XCTAssertEqual(decoded.fastPath.coldFreeObjects, 100_000)
        XCTAssertEqual(decoded.fastPath.results.compactMap(\.d1MissesPerColdFree), [1.125, 1.125, 2.5, 2.5])
    }

    func testTableFastPathAndSkipped() throws {
        let table = renderTable(sampleReport())
        XCTAssertTrue(table.contains("instructions per malloc+free pair, warm loop (callgrind); x = ratio to the leanest\n"))
        XCTAssertEqual(cells(try line(table, startingWith: "malloc+free 16 B"), allocators: 3).columns,
                       ["152 2.00x", "76 1.00x", "95 1.25x"])
        XCTAssertEqual(cells(try line(table, startingWith: "malloc+free 256 B"), allocators: 3).columns,
                       ["160 1.60x", "100 1.00x", "120 1.20x"])
        // No cold-free figures in the sample: no cold-free block.
        XCTAssertFalse(table.contains("cold free"))
        XCTAssertTrue(table.contains(
            "\nskipped jemalloc: libjemalloc.so.2 not found (Debian package libjemalloc2) (install: apt-get install -y libjemalloc2)\n"))
        XCTAssertTrue(table.contains("skipped workload sqlite-index: cc failed for sqlite-index.c: no sqlite3.h\n"))
        XCTAssertTrue(table.hasSuffix(
            "* baseline. time and rss: median wall time and median peak RSS (of the workload process) divided by the baseline's.\n"))

        var report = sampleReport(gomallocLibrary: "/src/.build/debug/libgomalloc-preload.so")
        report.fastPath = FastPathJSON(tool: nil, skipped: "valgrind not found", results: [])
        let other = renderTable(report)
        XCTAssertTrue(other.contains("\nmalloc+free pair cost: not measured (valgrind not found)\n"))
        XCTAssertFalse(other.contains("malloc+free 16 B"))
        XCTAssertTrue(other.contains(
            "note: gomalloc is a debug build (/src/.build/debug/libgomalloc-preload.so): its numbers are not representative\n"))
    }

    // MARK: - Chart

    private func parseChart(_ report: ReportJSON) throws -> [SVGElement] {
        parseSVG(renderChart(report), what: "chart.svg")
    }

    func testChartIsWellFormedSVGWithOnePanelPerMeasure() throws {
        let elements = try parseChart(sampleReport())
        let root = try XCTUnwrap(elements.first)
        XCTAssertEqual(root.name, "svg")
        XCTAssertEqual(root.attributes["xmlns"], "http://www.w3.org/2000/svg")
        let width = try XCTUnwrap(Int(root.attributes["width"] ?? ""))
        let height = try XCTUnwrap(Int(root.attributes["height"] ?? ""))
        XCTAssertEqual(root.attributes["viewBox"], "0 0 \(width) \(height)")
        XCTAssertGreaterThanOrEqual(width, 640)

        let texts = elements.filter { $0.name == "text" }
        XCTAssertEqual(texts.first?.text, "gomalloc bench (quick): Test CPU <model> & \"co\", 2 CPUs, Linux 6.1.0 x86_64",
                       "the title, escaped in the SVG and unescaped by the parser")
        let panelTitles = texts.filter { $0.attributes["font-size"] == "13" }.map(\.text)
        XCTAssertEqual(panelTitles, [
            "Wall time relative to mimalloc (median of 3; lower is better)",
            "Peak RSS relative to mimalloc (lower is better)",
            "Instructions per malloc+free pair (callgrind); lower is better",
        ])
    }

    func testChartHasOneBarPerValue() throws {
        let elements = try parseChart(sampleReport())
        // A bar is a rect with a tooltip (legend swatches and the background have none).
        let bars = elements.indices.filter { i in
            elements[i].name == "rect" && i + 1 < elements.count && elements[i + 1].name == "title"
        }.map { elements[$0] }
        let titles = elements.filter { $0.name == "title" && $0.parent == "rect" }.map(\.text)
        // Time and RSS: 3 groups (2 workloads + geometric mean) x 3 allocators, less gomalloc's
        // failed large-realloc; fast path: 2 sizes x 3 allocators.
        XCTAssertEqual(bars.count, 2 * (3 * 3 - 1) + 2 * 3)
        XCTAssertEqual(titles.count, bars.count)
        XCTAssertTrue(titles.contains("small-pairs-fixed, gomalloc: 1.25"))
        XCTAssertTrue(titles.contains("geometric mean, glibc: 15"))
        XCTAssertTrue(titles.contains("malloc+free 16 B, mimalloc: 76.2"))
        XCTAssertFalse(titles.contains { $0.hasPrefix("large-realloc, gomalloc") })
        XCTAssertEqual(elements.filter { $0.name == "text" && $0.text == "×" }.count, 2, "a mark for each missing value")
        XCTAssertEqual(bars.filter { $0.attributes["fill"] == "#d62728" }.count, 2 * 2 + 2, "gomalloc's bars in its colour")
        XCTAssertFalse(titles.contains { $0.contains("jemalloc") })

        // Within a panel bar heights are proportional to the values (axis capped at 4 for
        // ratios: glibc's 15 and 150 are clipped and labelled).
        func barHeight(_ title: String) throws -> Double {
            let i = try XCTUnwrap(elements.firstIndex { $0.name == "title" && $0.text == title }, title)
            return try XCTUnwrap(Double(elements[i - 1].attributes["height"] ?? ""))
        }
        let one = try barHeight("small-pairs-fixed, mimalloc: 1")
        XCTAssertEqual(try barHeight("small-pairs-fixed, glibc: 1.5") / one, 1.5, accuracy: 0.01)
        XCTAssertEqual(try barHeight("small-pairs-fixed, gomalloc: 1.25") / one, 1.25, accuracy: 0.01)
        XCTAssertEqual(try barHeight("malloc+free 16 B, glibc: 152") / (try barHeight("malloc+free 16 B, mimalloc: 76.2")), 2, accuracy: 0.01)
        XCTAssertTrue(elements.contains { $0.name == "text" && $0.text == "150.0" }, "a clipped bar carries its value")
    }

    func testChartLegendAndGroupLabels() throws {
        let elements = try parseChart(sampleReport())
        let texts = elements.filter { $0.name == "text" }.map(\.text)
        for label in ["glibc", "mimalloc (baseline)", "gomalloc"] { XCTAssertTrue(texts.contains(label), "legend: \(label)") }
        XCTAssertFalse(texts.contains("jemalloc"))
        XCTAssertFalse(texts.contains("sqlite-index"), "a workload that did not build has no group")
        for group in ["small-pairs-fixed", "large-realloc", "geometric mean"] {
            XCTAssertEqual(texts.filter { $0 == group }.count, 2, "\(group) labels the time and the RSS panels")
        }
        XCTAssertEqual(elements.filter { $0.name == "text" && $0.text == "geometric mean" }.map { $0.attributes["font-weight"] },
                       ["bold", "bold"])
        XCTAssertEqual(texts.filter { $0.hasPrefix("malloc+free ") }, ["malloc+free 16 B", "malloc+free 256 B"])
        // The dashed line at ratio 1 in the two ratio panels.
        XCTAssertEqual(elements.filter { $0.name == "line" && $0.attributes["stroke-dasharray"] == "4 3" }.count, 2)
    }

    func testChartWithoutFastPathHasTwoPanels() throws {
        var report = sampleReport()
        report.fastPath = FastPathJSON(tool: nil, skipped: "not selected (--only)", results: [])
        let elements = try parseChart(report)
        XCTAssertEqual(elements.filter { $0.name == "text" && $0.attributes["font-size"] == "13" }.count, 2)
        XCTAssertFalse(elements.contains { $0.name == "text" && $0.text.hasPrefix("malloc+free") })
    }

    // MARK: - results.json

    func testJSONOmitsAbsentFields() throws {
        let data = try JSONEncoder().encode(sampleReport())
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(json["schema"] as? String, "gomalloc-bench/1")
        XCTAssertEqual(json["mode"] as? String, "quick")
        let allocators = try XCTUnwrap(json["allocators"] as? [[String: Any]])
        XCTAssertEqual(Set(allocators[0].keys), ["name", "available"], "glibc: no library, skipped or install")
        let results = try XCTUnwrap(json["results"] as? [[String: Any]])
        XCTAssertEqual(Set(results[5].keys), ["workload", "allocator", "ok", "error", "runs"], "a failure has no medians or ratios")
        XCTAssertFalse(String(decoding: data, as: UTF8.self).contains("null"))
        XCTAssertEqual(try JSONDecoder().decode(ReportJSON.self, from: data).results.count, 6, "it decodes back")
    }

    // MARK: - Real servers

    func testSummaryMetricsAreTheNamedNumericFieldsOfTheLastSummaryLine() {
        let out = "phase=start mono_s=1.0 rss_kib=10\nworkload=old set_rps=1\nnoise\n"
            + "workload=redis-flush set_rps=80000 get_rps=71429.5 seconds=0.9 checksum=0 maxrss_kib=0\n"
        XCTAssertEqual(parseSummaryMetrics(out, keys: ["set_rps", "get_rps", "missing"]), ["set_rps": 80000, "get_rps": 71429.5])
        XCTAssertEqual(parseSummaryMetrics("no summary\n", keys: ["set_rps"]), [:])
    }

    func testTableServerSectionListsThroughputsAndMemoryPerAllocator() throws {
        var report = sampleReport()
        report.workloads.append(WorkloadJSON(
            name: "redis-flush", models: "m", description: "d", threads: 1, command: ["redis-flush.c"],
            throughput: ["set_rps", "get_rps"]))
        func server(_ a: String, _ set: Double, _ peak: Double, _ loaded: Double, _ idle: Double) -> ResultJSON {
            var r = ResultJSON(
                workload: "redis-flush", allocator: a, ok: true, error: nil,
                runs: [RunJSON(wallSeconds: 5, maxRSSKiB: Int(peak), userSeconds: 1, systemSeconds: 1)],
                medianWallSeconds: 5, medianMaxRSSKiB: peak, timeRatio: 1, rssRatio: 1)
            r.medianMetrics = ["set_rps": set, "get_rps": set / 2]
            r.medianLoadedRSSKiB = loaded
            r.medianIdleEndRSSKiB = idle
            return r
        }
        report.results += [
            server("glibc", 73_000, 1_300_000, 1_250_000, 1_200_000),
            server("mimalloc", 48_000, 1_310_000, 1_260_000, 1_210_000),
            ResultJSON(workload: "redis-flush", allocator: "gomalloc", ok: false, error: "exit status 2", runs: []),
        ]
        let table = renderTable(report)
        XCTAssertTrue(table.contains("real servers: median throughput"), table)
        let set = try line(table, startingWith: "redis-flush set_rps")
        XCTAssertEqual(set.split(separator: " ").map(String.init), ["redis-flush", "set_rps", "73.0k", "48.0k", "FAIL"])
        let get = try line(table, startingWith: "redis-flush get_rps")
        XCTAssertEqual(get.split(separator: " ").suffix(3).map(String.init), ["36.5k", "24.0k", "FAIL"])
        XCTAssertTrue(try line(table, startingWith: "redis-flush peak").contains("1.24 GiB"))
        XCTAssertTrue(try line(table, startingWith: "redis-flush loaded").contains("1.19 GiB"))
        XCTAssertTrue(try line(table, startingWith: "redis-flush idle end").contains("1.14 GiB"))
        XCTAssertEqual(table.components(separatedBy: "redis-flush idle end").count - 1, 1,
                       "a server's end-of-idle memory is in its own section only")
    }

    func testTreePssCoversThisProcess() throws {
        let mine = try XCTUnwrap(pssKiB(pid: getpid()), "smaps_rollup of this process")
        XCTAssertGreaterThan(mine, 0)
        let tree = try XCTUnwrap(treePssKiB(root: getpid()))
        XCTAssertGreaterThanOrEqual(tree, mine / 2, "the tree includes its root (Pss moves a little between reads)")
        XCTAssertNil(treePssKiB(root: 0x7fff_fff0), "no such process")
    }
}
