// BenchSmokeTests: runs the real `gomalloc bench --smoke` (one repetition, tiny sizes) and
// checks that it prints its table and writes results.json, chart.svg and rss-over-time.svg
// (server-churn's RSS sampled every 100 ms, one line per allocator). It measures
// nothing; it proves the suite works end to end: workloads compile and pass their own
// memory checks under every allocator that is installed, the JSON has one entry per
// workload x allocator that ran, and GoMalloc's drop-in library is among them whenever it
// has been built. Absent peers (jemalloc, tcmalloc, mimalloc) or an absent
// libgomalloc-preload.so only shrink the matrix.
import Foundation
import XCTest

final class BenchSmokeTests: XCTestCase {
    /// The package root, from this file's place in it (Tests/GoMallocIntegrationTests/...).
    private static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The build products directory holding this test binary, hence `gomalloc` too.
    private func productsDirectories() -> [URL] {
        var dirs: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        let bundle = Bundle(for: BenchSmokeTests.self).bundleURL
        dirs.append(bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle)
        dirs.append(Self.packageRoot.appendingPathComponent(".build/debug"))
        return dirs
    }

    private func gomallocExecutable() throws -> URL {
        for dir in productsDirectories() {
            let candidate = dir.appendingPathComponent("gomalloc")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw DropIn.Failure("the gomalloc executable is not built next to the tests (looked in \(productsDirectories().map(\.path))): run `swift build`")
    }

    func testSmokeRunPrintsTableAndWritesResults() throws {
        let gomalloc = try gomallocExecutable()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("bench-smoke-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("out")

        // DropIn.run waits for the process's exit (killing it after the timeout).
        let r = try DropIn.run(gomalloc.path, ["bench", "--smoke", "--out", out.path], directory: Self.packageRoot,
                               timeout: 900)
        let stdout = r.stdout
        let stderr = r.stderr
        let context = "\n--- stdout ---\n\(stdout)\n--- stderr (last lines) ---\n\(stderr.split(separator: "\n").suffix(40).joined(separator: "\n"))"
        XCTAssertFalse(r.timedOut, "gomalloc bench --smoke did not finish within 15 minutes\(context)")
        XCTAssertTrue(r.exitedNormally && r.status == 0, "gomalloc bench --smoke failed: \(r.summary)")
        guard r.exitedNormally && r.status == 0 else { return }

        // The table.
        XCTAssertTrue(stdout.contains("GoMalloc benchmark: smoke mode"), "no table header\(context)")
        XCTAssertTrue(stdout.contains("geometric mean"), "no geometric-mean row\(context)")

        // results.json: parse it and check the matrix.
        let jsonURL = out.appendingPathComponent("results.json")
        let data = try Data(contentsOf: jsonURL)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(json["schema"] as? String, "gomalloc-bench/1")
        XCTAssertEqual(json["mode"] as? String, "smoke")
        let allocators = try XCTUnwrap(json["allocators"] as? [[String: Any]])
        let ran = allocators.filter { $0["available"] as? Bool == true }.compactMap { $0["name"] as? String }
        XCTAssertTrue(ran.contains("glibc"), "the system allocator always runs")
        for a in allocators where a["available"] as? Bool != true {
            XCTAssertNotNil(a["skipped"] as? String, "a skipped allocator says why: \(a)")
            XCTAssertTrue(stdout.contains("skipped \(a["name"] as? String ?? "?")"), "the table names skipped allocators")
        }
        let workloads = try XCTUnwrap(json["workloads"] as? [[String: Any]])
        let ranWorkloads = workloads.filter { $0["skipped"] == nil }.compactMap { $0["name"] as? String }
        XCTAssertGreaterThanOrEqual(ranWorkloads.count, 8, "the C workloads build wherever cc does")
        let results = try XCTUnwrap(json["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, ranWorkloads.count * ran.count, "one entry per workload x allocator")
        for w in ranWorkloads {
            XCTAssertTrue(stdout.contains(w), "the table has a row for \(w)")
            for a in ran {
                let entries = results.filter { $0["workload"] as? String == w && $0["allocator"] as? String == a }
                XCTAssertEqual(entries.count, 1, "exactly one result for \(w) under \(a)")
                guard let r = entries.first else { continue }
                XCTAssertEqual(r["ok"] as? Bool, true, "\(w) under \(a): \(r["error"] as? String ?? "failed")")
                if r["ok"] as? Bool == true {
                    XCTAssertGreaterThan(r["medianWallSeconds"] as? Double ?? 0, 0)
                    XCTAssertGreaterThan(r["medianMaxRSSKiB"] as? Double ?? 0, 0)
                    XCTAssertEqual((r["runs"] as? [Any])?.count, 1, "--smoke is one repetition")
                }
            }
        }
        XCTAssertEqual((json["geomean"] as? [Any])?.count, ran.count)

        // The real servers (installed by .ci/run): each ran under every allocator, checked
        // its own answers (a wrong value fails the run, above), and reported its throughputs
        // and the server's memory after the load and at the end of the idle phase.
        let servers = workloads.filter { $0["throughput"] != nil }
        XCTAssertEqual(
            Set(servers.compactMap { $0["name"] as? String }),
            ["redis-flush", "memcached-flush", "nginx-static", "postgres-pgbench"])
        for w in servers {
            let name = w["name"] as? String ?? "?"
            XCTAssertNil(w["skipped"], "\(name) skipped: \(w["skipped"] ?? "") (bash .ci/run installs the servers)")
            let keys = (w["throughput"] as? [String]) ?? []
            for r in results where r["workload"] as? String == name && r["ok"] as? Bool == true {
                let metrics = (r["medianMetrics"] as? [String: Double]) ?? [:]
                for k in keys { XCTAssertGreaterThan(metrics[k] ?? 0, 0, "\(name) under \(r["allocator"] ?? "?"): \(k)") }
                XCTAssertGreaterThan(r["medianLoadedRSSKiB"] as? Double ?? 0, 0, "\(name): memory after the load")
                XCTAssertGreaterThan(r["medianIdleEndRSSKiB"] as? Double ?? 0, 0, "\(name): memory after idle")
            }
            XCTAssertTrue(stdout.contains("\(name) \(keys.first ?? "")"), "the table's server section lists \(name)")
        }

        // GoMalloc's drop-in library takes part whenever it has been built.
        var libraries = productsDirectories().map { $0.appendingPathComponent("libgomalloc-preload.so") }
        libraries.insert(gomalloc.deletingLastPathComponent().appendingPathComponent("libgomalloc-preload.so"), at: 0)
        libraries.append(Self.packageRoot.appendingPathComponent(".build/release/libgomalloc-preload.so"))
        if let lib = libraries.first(where: { FileManager.default.fileExists(atPath: $0.path) }) {
            XCTAssertTrue(ran.contains("gomalloc"), "\(lib.path) exists but gomalloc did not run\(context)")
        }

        // chart.svg.
        let svg = try String(contentsOf: out.appendingPathComponent("chart.svg"), encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<?xml"), "chart.svg is an XML document")
        XCTAssertTrue(svg.contains("<svg") && svg.contains("</svg>"), "chart.svg is an SVG")
        for a in ran { XCTAssertTrue(svg.contains(">\(a)"), "the chart's legend names \(a)") }

        // server-churn's RSS over time: samples in every run, the end-of-idle RSS, the chart.
        for r in results where r["workload"] as? String == "server-churn" && r["ok"] as? Bool == true {
            let runs = (r["runs"] as? [[String: Any]]) ?? []
            for run in runs {
                XCTAssertFalse((run["rssSeries"] as? [Any] ?? []).isEmpty, "server-churn under \(r["allocator"] ?? "?") has RSS samples")
                let phases = (run["phases"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
                XCTAssertEqual(phases, ["grow", "churn", "shrink", "idle", "idle-end", "exit"])
            }
            XCTAssertGreaterThan(r["medianIdleEndRSSKiB"] as? Double ?? 0, 0)
        }
        XCTAssertTrue(stdout.contains("server-churn idle end"), "the table has the end-of-idle row\(context)")
        let rss = try String(contentsOf: out.appendingPathComponent("rss-over-time.svg"), encoding: .utf8)
        XCTAssertTrue(rss.hasPrefix("<?xml") && rss.contains("</svg>"), "rss-over-time.svg is an SVG document")
        XCTAssertEqual(rss.components(separatedBy: "<polyline").count - 1, ran.count, "one line per allocator")
    }
}
