// DropInTests.swift — the drop-in library under real processes: the C programs in
// Tests/CPrograms run with libgomalloc-preload.so in LD_PRELOAD, misuse that must abort with
// one exact line, the library's exports and dependencies, and `gomalloc install` + linking.
//
// The library is the `gomalloc-preload` product, which `swift build` (and `swift test`)
// builds next to this test bundle, in .build/<config>/. Building it is not this file's job:
// if it is missing the tests fail and say so.
//
// The plumbing (compiling, running, GOMALLOC_TEST_PRELOAD) is in DropIn.swift.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
import GoMalloc

// MARK: - The tests

final class DropInTests: XCTestCase {
    /// Every program in Tests/CPrograms, and the test that runs it.
    static let programs: [String: String] = [
        "api.c": "testAPI",
        "stacks.c": "testStackAllocatorFromC, testStackGuardPagesFault",
        "fork.c": "testForkWhileThreadsAllocate",
        "tls.c": "testThreadExitWithKeyDestructors",
        "tls_cxx.cc": "testThreadExitWithCxxThreadLocals",
        "threads.c": "testCrossThreadFrees",
        "cxx.cc": "testCxxNewDeleteAndContainers",
        "misuse.c": "testFreeOfStackAddressAborts",
        "sizeclasses.c": "testEverySmallSizeGetsTheSmallestFittingAlignedClass",
        "realloc_move.c": "testLargeReallocThatCannotGrowMovesItsPages",
        "stats_forms.c": "testMallocInfoAndStatsJSONFromC",
        "heapmap.c": "HeapMapTests.testDumpOfAKnownProgram, testOnlyTheRegisteringProcessWrites",
        "memory_return.c": "MemoryReturnTests (every test)",
        "hostile.c": "HostileInputTests.testEveryEntryPointAgainstTheReadmeTable",
        "debug_mode.c": "DebugModeTests (every test)",
        "soak.c": "SoakTests.testSoakTwentySeconds",
        "profile.c": "ProfileTests (every test)",
    ]

    private func runProgram(_ file: String, _ args: [String] = [], env extra: [String: String] = [:],
                            timeout: TimeInterval = 300, file testFile: StaticString = #filePath, line: UInt = #line) throws {
        try DropIn.runProgram(file, args, env: extra, timeout: timeout, file: testFile, line: line)
    }

    func testEveryProgramHasATest() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: DropIn.programsDir.path)
            .filter { $0.hasSuffix(".c") || $0.hasSuffix(".cc") }
        XCTAssertEqual(Set(files), Set(Self.programs.keys).union(StressTests.programs.keys).union(SoundnessTests.programs.keys),
                       "Tests/CPrograms and DropInTests.programs + StressTests.programs + SoundnessTests.programs disagree")
    }

    // MARK: The library itself

    /// `ldd` must show only the C library and the dynamic loader: no libswiftCore.
    func testLibraryDependsOnlyOnLibc() throws {
        let library = try DropIn.requireLibrary("inspecting the library")
        let readelf = try DropIn.tool("readelf", package: "binutils (.ci/run installs it with gcc)")
        let r = try DropIn.run(readelf, ["-d", library], timeout: 60)
        XCTAssertEqual(r.status, 0, r.summary)
        let needed = r.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }
            .compactMap { line in line.split(separator: "[").last?.split(separator: "]").first.map(String.init) }
        // The C library and the dynamic loader (which defines __rseq_offset), nothing else.
        let allowed: Set<String> = ["libc.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"]
        XCTAssertTrue(needed.contains("libc.so.6"), "NEEDED entries of \(library): \(needed)")
        XCTAssertTrue(Set(needed).isSubset(of: allowed), "NEEDED entries of \(library): \(needed)")
    }

    /// The dynamic symbol table holds exactly the names in exports.map: the embedded Swift
    /// runtime's symbols must stay hidden, or they replace libswiftCore's in Swift programs.
    func testLibraryExportsExactlyTheVersionScript() throws {
        let library = try DropIn.requireLibrary("inspecting the library")
        let nm = try DropIn.tool("nm", package: "binutils (.ci/run installs it with gcc)")
        let r = try DropIn.run(nm, ["-D", "--defined-only", library], timeout: 60)
        XCTAssertEqual(r.status, 0, r.summary)
        // `nm` prints global symbols with an upper-case type letter; lower case is local (the
        // TLS variable of CGoMallocSys has a local dynamic-symbol entry for its relocation).
        let exported = Set(r.stdout.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count >= 2, let type = fields[fields.count - 2].first, type.isUppercase else { return nil }
            return String(fields[fields.count - 1])
        })
        XCTAssertEqual(exported, try Self.versionScriptNames())
    }

    /// exports.map, the GM_EXPORT definitions in exports.c and gomalloc.h agree.
    func testExportListsAgree() throws {
        let mapNames = try Self.versionScriptNames()
        let source = try String(contentsOf: DropIn.exportsDir.appendingPathComponent("exports.c"), encoding: .utf8)
        var defined = Set<String>()
        for line in source.split(separator: "\n") where line.hasPrefix("GM_EXPORT ") {
            // GM_EXPORT <type> [*]name(
            guard let paren = line.firstIndex(of: "(") else { continue }
            let head = line[..<paren]
            let name = head.split(whereSeparator: { $0 == " " || $0 == "*" }).last.map(String.init) ?? ""
            defined.insert(name)
        }
        XCTAssertEqual(defined, mapNames, "exports.c defines vs exports.map lists")
        let header = try String(contentsOf: DropIn.headerDir.appendingPathComponent("gomalloc.h"), encoding: .utf8)
        for name in mapNames where name.hasPrefix("gomalloc_") || name.hasPrefix("free_") {
            XCTAssertTrue(header.contains(" \(name)(") || header.contains("*\(name)("), "gomalloc.h does not declare \(name)")
        }
    }

    /// The global names of exports.map.
    static func versionScriptNames() throws -> Set<String> {
        var text = try String(contentsOf: DropIn.exportsDir.appendingPathComponent("exports.map"), encoding: .utf8)
        while let start = text.range(of: "/*"), let end = text.range(of: "*/", range: start.upperBound..<text.endIndex) {
            text.removeSubrange(start.lowerBound..<end.upperBound)
        }
        guard let global = text.range(of: "global:"), let local = text.range(of: "local:") else {
            throw DropIn.Failure("exports.map has no global:/local: sections")
        }
        return Set(text[global.upperBound..<local.lowerBound]
            .split(whereSeparator: { $0 == ";" || $0.isWhitespace })
            .map(String.init))
    }

    /// Preloading costs a process nothing visible: /bin/true and a shell pipeline work, silently.
    func testTrivialProgramsStartAndExit() throws {
        let allocator = try DropIn.allocator()
        for argv in [["/bin/true"], ["/bin/sh", "-c", "ls / | sort | head -3 >/dev/null; echo done"]] {
            let r = try DropIn.run(argv[0], Array(argv.dropFirst()), environment: DropIn.environment(for: allocator), timeout: 60)
            XCTAssertTrue(r.exitedNormally && r.status == 0, "\(argv): \(r.summary)")
            XCTAssertEqual(r.stderr, "", "\(argv): \(r.summary)")
        }
    }

    // MARK: The C programs

    func testAPI() throws { try runProgram("api.c") }

    /// gomalloc_stack_*: errors, every order, threads trading stacks, growth, a ucontext
    /// coroutine, and the misuse reports (free() of a stack, a second stack_free).
    func testStackAllocatorFromC() throws { try runProgram("stacks.c") }

    /// GOMALLOC_STACK_GUARD=1: a write to a large stack's lowest page faults (in a child),
    /// the page above does not, and trim lifts the guards.
    func testStackGuardPagesFault() throws { try runProgram("stacks.c", env: ["GOMALLOC_STACK_GUARD": "1"]) }

    func testForkWhileThreadsAllocate() throws { try runProgram("fork.c") }

    func testThreadExitWithKeyDestructors() throws { try runProgram("tls.c") }

    func testThreadExitWithCxxThreadLocals() throws { try runProgram("tls_cxx.cc") }

    func testCrossThreadFrees() throws { try runProgram("threads.c") }

    /// One P: every thread shares a single mcache slot.
    func testCrossThreadFreesWithOneP() throws {
        try runProgram("threads.c", ["4", "4", "20000"], env: ["GOMALLOC_MAXPROCS": "1"])
    }

    func testCxxNewDeleteAndContainers() throws { try runProgram("cxx.cc") }

    /// realloc of a 40 MiB block with a neighbour to 80 MiB: the pages move (mremap), every
    /// byte with them; the old range and the freed block come back from calloc zeroed.
    func testLargeReallocThatCannotGrowMovesItsPages() throws { try runProgram("realloc_move.c") }

    /// malloc and calloc of every size 0...32768 in the drop-in (the C fast path's lookup
    /// table and the general path's): the smallest class that fits, 16-byte aligned above 8.
    func testEverySmallSizeGetsTheSmallestFittingAlignedClass() throws {
        try runProgram("sizeclasses.c", GoAllocator.sizeClasses.map { String($0.bytesPerObject) })
    }

    /// The same with the tiny allocator on: 0-4 bytes get their own rounded size, packed.
    func testEverySmallSizeWithTinyPacking() throws {
        try runProgram("sizeclasses.c", GoAllocator.sizeClasses.map { String($0.bytesPerObject) },
                       env: ["GOMALLOC_TINY": "1"])
    }

    /// GOMALLOC_STATS=1: the summary at exit, on stderr, one line per figure.
    func testStatsSummaryAtExit() throws {
        let library = try DropIn.requireLibrary("GOMALLOC_STATS")
        let exe = try DropIn.compile("threads.c")
        let r = try DropIn.run(exe, ["2", "2", "5000"],
                               environment: DropIn.environment(for: .gomalloc(library: library), ["GOMALLOC_STATS": "1"]),
                               timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        for figure in ["HeapAlloc", "HeapSys", "HeapIdle", "HeapInuse", "HeapReleased", "Mallocs", "Frees"] {
            XCTAssertTrue(lines.contains { $0.hasPrefix(figure) || $0.contains(" \(figure)") || $0.contains("\(figure):") },
                          "no \(figure) line in the summary:\n\(r.stderr)")
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("mcaches: ") }, "no `mcaches: N` line:\n\(r.stderr)")
        // Byte figures: the exact number, then the readable size; counts stay bare numbers.
        let heapSys = try XCTUnwrap(lines.first { $0.hasPrefix("HeapSys: ") }, r.stderr)
        XCTAssertNotNil(heapSys.range(of: #"^HeapSys: [0-9]+ \([0-9]+\.[0-9] (KiB|MiB|GiB)\)$"#, options: .regularExpression), heapSys)
        XCTAssertNotNil(lines.first { $0.range(of: #"^Mallocs: [0-9]+$"#, options: .regularExpression) != nil }, r.stderr)
        // The per-class table: a header, then right-aligned rows of equal width.
        let header = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("class ") && $0.contains("Mallocs") }, r.stderr)
        let rows = lines[(header + 1)...].filter { !$0.isEmpty }
        XCTAssertFalse(rows.isEmpty, r.stderr)
        for row in rows where !row.contains("large") {
            XCTAssertEqual(row.count, lines[header].count, "aligned with the header: \(row)")
        }
        // Without the variable, nothing is printed.
        let quiet = try DropIn.run(exe, ["2", "2", "1000"], environment: DropIn.environment(for: .gomalloc(library: library)), timeout: 120)
        XCTAssertEqual(quiet.stderr, "", quiet.summary)
    }

    /// GOMALLOC_STATS=json: the summary at exit is one line of JSON with Go's names that adds up.
    func testStatsJSONAtExit() throws {
        let library = try DropIn.requireLibrary("GOMALLOC_STATS=json")
        let exe = try DropIn.compile("threads.c")
        let r = try DropIn.run(exe, ["2", "2", "5000"],
                               environment: DropIn.environment(for: .gomalloc(library: library), ["GOMALLOC_STATS": "json"]),
                               timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, 2, "one line and its newline: \(r.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(String(lines[0]).utf8))
        let j = try XCTUnwrap(object as? [String: Any], r.stderr)
        func figure(_ name: String) throws -> UInt64 { try XCTUnwrap((j[name] as? NSNumber)?.uint64Value, name) }
        XCTAssertEqual(try figure("HeapSys"), try figure("HeapIdle") + figure("HeapInuse"))
        XCTAssertLessThanOrEqual(try figure("HeapReleased"), try figure("HeapIdle"))
        XCTAssertEqual(try figure("Mallocs") - figure("Frees"), try figure("HeapObjects"))
        XCTAssertGreaterThan(try figure("Mallocs"), 5000, "the threads' blocks")
        XCTAssertEqual((j["BySize"] as? [Any])?.count, 68)
    }

    /// malloc_info(0, stdout) prints glibc's XML document (it parses; one heap; our size
    /// classes as its sizes), malloc_info(1, fp) returns EINVAL, and gomalloc_stats_json keeps
    /// snprintf's contract and prints JSON that parses.
    func testMallocInfoAndStatsJSONFromC() throws {
        let allocator = try DropIn.allocator()
        let exe = try DropIn.compile("stats_forms.c")
        let r = try DropIn.run(exe, [], environment: DropIn.environment(for: allocator), timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stderr, "", r.summary)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.last, "OK stats_forms", r.summary)
        let begin = try XCTUnwrap(lines.firstIndex(of: "--- malloc_info"), r.summary)
        let end = try XCTUnwrap(lines.firstIndex(of: "--- end"), r.summary)
        let xml = lines[(begin + 1)..<end].joined(separator: "\n")
        final class Collect: NSObject, XMLParserDelegate {
            var names: [String] = []
            var sizes: [[String: String]] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
                        qualifiedName: String?, attributes: [String: String] = [:]) {
                names.append(name)
                if name == "size" { sizes.append(attributes) }
            }
        }
        let parser = XMLParser(data: Data(xml.utf8))
        let collect = Collect()
        parser.delegate = collect
        XCTAssertTrue(parser.parse(), "malloc_info's output is not XML (\(parser.parserError.map { "\($0)" } ?? "")):\n\(xml)")
        XCTAssertEqual(collect.names.first, "malloc")
        XCTAssertEqual(collect.names.filter { $0 == "heap" }.count, 1, xml)
        for name in ["sizes", "total", "system", "aspace"] { XCTAssertTrue(collect.names.contains(name), "no <\(name)>: \(xml)") }
        guard case .gomalloc = allocator else { return }
        let classSizes = Set(GoAllocator.sizeClasses.map { String($0.bytesPerObject) })
        XCTAssertFalse(collect.sizes.isEmpty, xml)
        for s in collect.sizes { XCTAssertTrue(classSizes.contains(s["to"] ?? ""), "not a class size: \(s)") }
        let jsonLine = try XCTUnwrap(lines.first { $0.hasPrefix("json ") }, r.summary)
        let object = try JSONSerialization.jsonObject(with: Data(jsonLine.dropFirst(5).utf8))
        let j = try XCTUnwrap(object as? [String: Any], jsonLine)
        let sys = try XCTUnwrap((j["HeapSys"] as? NSNumber)?.uint64Value)
        let idle = try XCTUnwrap((j["HeapIdle"] as? NSNumber)?.uint64Value)
        let inuse = try XCTUnwrap((j["HeapInuse"] as? NSNumber)?.uint64Value)
        XCTAssertEqual(sys, idle + inuse)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap((j["HeapAlloc"] as? NSNumber)?.uint64Value), 1 << 20, "the large block is live")
    }

    // MARK: Misuse: one exact line, then SIGABRT

    /// Run `misuse MODE`; it prints `addr 0x...` and then must die of SIGABRT after writing
    /// exactly `gomalloc: <function>(): <problem> <that address>` to stderr.
    private func expectAbort(mode: String, function: String, problem: String,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let library = try DropIn.requireLibrary("the misuse reports")
        let exe = try DropIn.compile("misuse.c")
        let r = try DropIn.run(exe, [mode], environment: DropIn.environment(for: .gomalloc(library: library)), timeout: 60)
        XCTAssertTrue(r.signaled && r.status == SIGABRT, "misuse \(mode): want SIGABRT, got \(r.summary)", file: file, line: line)
        guard let addrLine = r.stdout.split(separator: "\n").first(where: { $0.hasPrefix("addr ") }) else {
            return XCTFail("misuse \(mode) printed no address: \(r.summary)", file: file, line: line)
        }
        let address = addrLine.dropFirst("addr ".count)
        XCTAssertEqual(r.stderr, "gomalloc: \(function)(): \(problem) \(address)\n", "misuse \(mode)", file: file, line: line)
    }

    func testFreeOfStackAddressAborts() throws {
        try expectAbort(mode: "free-stack", function: "free", problem: "invalid pointer")
    }

    func testFreeOfGlobalAborts() throws {
        try expectAbort(mode: "free-global", function: "free", problem: "invalid pointer")
    }

    func testFreeOfMmapPageAborts() throws {
        try expectAbort(mode: "free-mmap", function: "free", problem: "invalid pointer")
    }

    func testDoubleFreeAborts() throws {
        try expectAbort(mode: "double-free", function: "free", problem: "double free")
    }

    func testDoubleFreeOfLargeBlockAborts() throws {
        try expectAbort(mode: "double-free-large", function: "free", problem: "double free")
    }

    func testFreeOfInteriorPointerAborts() throws {
        try expectAbort(mode: "free-interior", function: "free", problem: "invalid pointer")
    }

    /// An inner page of a live large block is an interior pointer, even where the page map
    /// still holds the tombstone of a large block that started there before.
    func testFreeOfInnerPageOverATombstoneAborts() throws {
        try expectAbort(mode: "free-inner-page", function: "free", problem: "invalid pointer")
    }

    func testReallocOfInvalidPointerAborts() throws {
        try expectAbort(mode: "realloc-stack", function: "realloc", problem: "invalid pointer")
    }

    // MARK: Linking instead of preloading

    /// `gomalloc install --prefix P`, then a C program built with pkg-config's flags links
    /// libgomalloc.so and runs on it (the api program insists on GoMalloc answering).
    func testInstallThenLinkWithLgomalloc() throws {
        let library = try DropIn.requireLibrary("gomalloc install")
        let gomalloc = try DropIn.gomallocExecutable()
        let prefix = DropIn.workDir.appendingPathComponent("prefix-\(UUID().uuidString)")
        let install = try DropIn.run(gomalloc, ["install", "--prefix", prefix.path, "--library", library, "--no-ldconfig"], timeout: 60)
        XCTAssertEqual(install.status, 0, install.summary)

        let lib = prefix.appendingPathComponent("lib/libgomalloc.so")
        let header = prefix.appendingPathComponent("include/gomalloc.h")
        let pc = prefix.appendingPathComponent("lib/pkgconfig/gomalloc.pc")
        XCTAssertEqual(try Data(contentsOf: lib), try Data(contentsOf: URL(fileURLWithPath: library)), "installed library differs")
        XCTAssertEqual(try Data(contentsOf: header), try Data(contentsOf: DropIn.headerDir.appendingPathComponent("gomalloc.h")),
                       "installed header differs from the source tree's")
        let pcText = try String(contentsOf: pc, encoding: .utf8)
        XCTAssertTrue(pcText.contains("prefix=\(prefix.path)\n"), pcText)
        XCTAssertTrue(pcText.contains("Libs: -L${libdir} -lgomalloc"), pcText)

        var flags = ["-L\(prefix.path)/lib", "-lgomalloc"]
        if let pkgConfig = DropIn.which("pkg-config") {
            let r = try DropIn.run(pkgConfig, ["--libs", "gomalloc"], environment: ["PKG_CONFIG_PATH": "\(prefix.path)/lib/pkgconfig"], timeout: 60)
            XCTAssertEqual(r.status, 0, r.summary)
            XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "-L\(prefix.path)/lib -lgomalloc")
            flags = r.stdout.split(whereSeparator: \.isWhitespace).map(String.init)
        }
        let exe = try DropIn.compile("api.c", extraFlags: flags, tag: "linked-\(UUID().uuidString.prefix(8))")
        if let readelf = DropIn.which("readelf") {
            let r = try DropIn.run(readelf, ["-d", exe], timeout: 60)
            let needed = r.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }
            let gm = needed.firstIndex { $0.contains("[libgomalloc.so]") }
            let libc = needed.firstIndex { $0.contains("[libc.so.6]") }
            XCTAssertNotNil(gm, "the linked program does not need libgomalloc.so:\n\(r.stdout)")
            if let gm, let libc { XCTAssertLessThan(gm, libc, "libgomalloc.so must come before libc.so.6 in the lookup order") }
        }
        let r = try DropIn.run(exe, [], environment: ["LD_LIBRARY_PATH": "\(prefix.path)/lib", "GOMALLOC_TEST_EXPECT_GOMALLOC": "1"], timeout: 300)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stdout.split(separator: "\n").last.map(String.init), "OK api", r.summary)
    }
}
