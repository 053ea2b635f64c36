// ProfileTests: heap profiling end to end on Tests/CPrograms/profile.c (compiled with
// -fno-omit-frame-pointer), whose sites allocate known amounts. Sampling at 64 KiB with a
// fixed seed, `gomalloc profile` must attribute each site's bytes to its function by name
// within 20% (at least 150 samples per site checked: 3.5 standard deviations or more), show
// the freed site in the allocated view only, stay right with 8 threads (frees by another
// thread) and across fork (parent and child each write their own profile of their own
// heap); heap.pb.gz must decode with protoc (libprotobuf) against pprof's schema
// (Tests/Protos/profile.proto) with Go's four sample types, and `go tool pprof -top` (Go's
// own reader) must rank the sites by in-use and allocated bytes; the flame graphs must be
// well-formed XML. Built without frame pointers, the unwinder (--unwind) must still name the
// sites and their caller.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

final class ProfileTests: XCTestCase {
    static let rate = 65536

    /// Estimated bytes per innermost (site) frame in a folded file.
    private func bytesBySite(_ folded: URL) throws -> [String: Double] {
        var d: [String: Double] = [:]
        for line in try String(contentsOf: folded, encoding: .utf8).split(separator: "\n") {
            guard let sp = line.lastIndex(of: " "), let v = Double(line[line.index(after: sp)...]) else {
                XCTFail("bad folded line: \(line)")
                continue
            }
            let site = line[..<sp].split(separator: ";").last.map(String.init) ?? ""
            d[site, default: 0] += v
        }
        return d
    }

    private func assertNear(_ got: Double?, _ expected: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let got else { return XCTFail("\(what): missing", file: file, line: line) }
        XCTAssertLessThan(abs(got - expected) / expected, 0.2, "\(what): \(got) estimated, \(expected) expected", file: file, line: line)
    }

    private func profileProgram(_ mode: String) throws -> (dir: URL, stdout: String) {
        let library = try DropIn.requireLibrary("heap profiling")
        let gomalloc = try DropIn.gomallocExecutable()
        let exe = try DropIn.compile("profile.c", extraFlags: ["-fno-omit-frame-pointer"], tag: "fp")
        let dir = DropIn.workDir.appendingPathComponent("profile-\(mode)-\(UUID().uuidString)")
        let r = try DropIn.run(gomalloc, ["profile", "--library", library, "--rate", "\(Self.rate)", "--seed", "1",
                                          "--out", dir.path, "--", exe, mode], timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertTrue(r.stdout.contains("OK profile"), r.summary)
        return (dir, r.stdout)
    }

    func testKnownSitesByNameAndTheFreedSiteLeavesTheInUseView() throws {
        let (dir, stdout) = try profileProgram("single")
        defer { try? FileManager.default.removeItem(at: dir) }
        let inuse = try bytesBySite(dir.appendingPathComponent("inuse.folded"))
        let alloc = try bytesBySite(dir.appendingPathComponent("alloc.folded"))
        assertNear(inuse["site_kept_small"], 20_480_000, "site_kept_small in use")
        assertNear(inuse["site_kept_large"], 10_485_760, "site_kept_large in use")
        XCTAssertNil(inuse["site_freed"], "every sampled block of site_freed was freed: \(inuse)")
        assertNear(alloc["site_freed"], 102_400_000, "site_freed allocated")
        assertNear(alloc["site_kept_small"], 20_480_000, "site_kept_small allocated")
        // The whole stack: main calls each site.
        let folded = try String(contentsOf: dir.appendingPathComponent("alloc.folded"), encoding: .utf8)
        XCTAssertTrue(folded.contains("main;site_freed "), folded)
        // The report's two tables, in order.
        let inuseTable = try XCTUnwrap(stdout.range(of: "top 20 sites by bytes in use when the profile was written"), stdout)
        let allocTable = try XCTUnwrap(stdout.range(of: "top 20 sites by bytes allocated"), stdout)
        XCTAssertLessThan(inuseTable.lowerBound, allocTable.lowerBound)
        let allocPart = stdout[allocTable.upperBound...]
        XCTAssertLessThan(try XCTUnwrap(allocPart.range(of: "site_freed")).lowerBound,
                          try XCTUnwrap(allocPart.range(of: "site_kept_small")).lowerBound, stdout)
        // Sites carry the line of their call to malloc, from the DWARF line table (-g).
        let source = try String(contentsOf: DropIn.programsDir.appendingPathComponent("profile.c"), encoding: .utf8)
        let mallocLine = try XCTUnwrap(source.split(separator: "\n", omittingEmptySubsequences: false)
            .firstIndex { $0.contains("kept_small[i] = malloc(1000)") }) + 1
        XCTAssertTrue(stdout.contains("site_kept_small (profile.c:\(mallocLine))"), stdout)

        // pprof's format, decoded by libprotobuf.
        let protoc = try DropIn.tool("protoc", package: "protobuf-compiler")
        let raw = dir.appendingPathComponent("heap.pb")
        let gunzip = try DropIn.run("/bin/sh", ["-c", "gzip -dc '\(dir.appendingPathComponent("heap.pb.gz").path)' > '\(raw.path)'"])
        XCTAssertEqual(gunzip.status, 0, gunzip.summary)
        let protos = DropIn.packageRoot.appendingPathComponent("Tests/Protos")
        let decoded = try DropIn.run("/bin/sh", ["-c", "'\(protoc)' --proto_path='\(protos.path)' --decode=perftools.profiles.Profile profile.proto < '\(raw.path)'"],
                                     directory: protos)
        XCTAssertEqual(decoded.status, 0, decoded.summary)
        let text = decoded.stdout
        var strings: [String] = []
        for line in text.split(separator: "\n") where line.hasPrefix("string_table: ") {
            var s = String(line.dropFirst("string_table: ".count))
            s = String(s.dropFirst().dropLast())
            strings.append(s)
        }
        XCTAssertEqual(strings.first, "", "string_table[0] is the empty string")
        // sample_type { type: i unit: j } four times: Go's heap profile's types.
        let types = text.components(separatedBy: "sample_type {").dropFirst().compactMap { block -> String? in
            let fields = block.split(separator: "}").first.map(String.init) ?? ""
            let nums = fields.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            guard nums.count == 2, nums[0] < strings.count, nums[1] < strings.count else { return nil }
            return "\(strings[nums[0]])/\(strings[nums[1]])"
        }
        XCTAssertEqual(types, ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"], text.prefix(2000).description)
        XCTAssertTrue(strings.contains("site_kept_small") && strings.contains("site_freed") && strings.contains("main"), "\(strings)")
        XCTAssertTrue(text.contains("period: \(Self.rate)"), String(text.suffix(500)))
        XCTAssertTrue(text.contains("sample {") && text.contains("location {") && text.contains("function {"))
        XCTAssertTrue(strings.contains { $0.hasSuffix("Tests/CPrograms/profile.c") }, "source file in the functions: \(strings)")
        XCTAssertTrue(text.contains("line: \(mallocLine)"), "the malloc call's line in a location")

        // Go's own reader: `go tool pprof` (Debian's golang-go) ranks the sites as they are.
        let go = try DropIn.tool("go", package: "golang-go")
        let goEnv: [String: String?] = ["GOCACHE": DropIn.workDir.appendingPathComponent("gocache").path,
                                        "HOME": DropIn.workDir.path, "GOFLAGS": nil, "GOPATH": nil]
        func pprofTop(_ index: String) throws -> [(site: String, mib: Double)] {
            let r = try DropIn.run(go, ["tool", "pprof", "-top", "-unit=MB", "-sample_index=\(index)",
                                        dir.appendingPathComponent("heap.pb.gz").path], environment: goEnv, timeout: 120)
            XCTAssertEqual(r.status, 0, r.summary)
            XCTAssertTrue(r.stdout.contains("Type: \(index)"), r.stdout)
            // Rows: flat flat% sum% cum cum% name; keep the sites with flat bytes.
            return r.stdout.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count == 6, f[0].hasSuffix("MB"), let v = Double(f[0].dropLast(2)), v > 0 else { return nil }
                return (String(f[5]), v)
            }
        }
        let pprofInuse = try pprofTop("inuse_space")
        XCTAssertEqual(pprofInuse.map(\.site), ["site_kept_small", "site_kept_large"], "\(pprofInuse)")
        assertNear(pprofInuse.first.map { $0.mib * 1_048_576 }, 20_480_000, "go tool pprof: site_kept_small in use")
        let pprofAlloc = try pprofTop("alloc_space")
        XCTAssertEqual(pprofAlloc.map(\.site), ["site_freed", "site_kept_small", "site_kept_large"], "\(pprofAlloc)")
        assertNear(pprofAlloc.first.map { $0.mib * 1_048_576 }, 102_400_000, "go tool pprof: site_freed allocated")

        // The flame graphs parse as XML and name the sites.
        for name in ["inuse.svg", "alloc.svg"] {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            let parser = XMLParser(data: data)
            XCTAssertTrue(parser.parse(), "\(name): \(parser.parserError.map { "\($0)" } ?? "")")
            XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("site_kept_small"), name)
        }
    }

    /// Built without frame pointers, the program's stacks come only from the unwinder
    /// (GOMALLOC_PROFILE_UNWIND=1, `--unwind`): the sites and their caller, main, by name.
    func testUnwinderSeesCodeWithoutFramePointers() throws {
        let library = try DropIn.requireLibrary("heap profiling")
        let gomalloc = try DropIn.gomallocExecutable()
        let exe = try DropIn.compile("profile.c", extraFlags: ["-fomit-frame-pointer"], tag: "nofp")
        let dir = DropIn.workDir.appendingPathComponent("profile-unwind-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try DropIn.run(gomalloc, ["profile", "--library", library, "--unwind", "--rate", "\(Self.rate)", "--seed", "1",
                                          "--out", dir.path, "--", exe, "single"], timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        let alloc = try bytesBySite(dir.appendingPathComponent("alloc.folded"))
        assertNear(alloc["site_freed"], 102_400_000, "site_freed allocated (unwinder)")
        assertNear(alloc["site_kept_small"], 20_480_000, "site_kept_small allocated (unwinder)")
        let folded = try String(contentsOf: dir.appendingPathComponent("alloc.folded"), encoding: .utf8)
        XCTAssertTrue(folded.contains("main;site_freed "), folded)
    }

    func testEightThreadsWithFreesByAnotherThread() throws {
        let (dir, _) = try profileProgram("threads")
        defer { try? FileManager.default.removeItem(at: dir) }
        let inuse = try bytesBySite(dir.appendingPathComponent("inuse.folded"))
        let alloc = try bytesBySite(dir.appendingPathComponent("alloc.folded"))
        assertNear(alloc["site_thread"], 40_960_000, "site_thread allocated (8 threads)")
        assertNear(inuse["site_thread"], 20_480_000, "site_thread in use (half freed by the main thread)")
    }

    /// Parent and child each write their own profile (the path has %p): the child's frees of
    /// inherited blocks and its own allocations are in its profile only.
    func testForkedChildWritesItsOwnProfile() throws {
        let library = try DropIn.requireLibrary("heap profiling")
        let gomalloc = try DropIn.gomallocExecutable()
        let exe = try DropIn.compile("profile.c", extraFlags: ["-fno-omit-frame-pointer"], tag: "fp")
        let dir = DropIn.workDir.appendingPathComponent("profile-fork-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try DropIn.run(exe, ["fork"], environment: [
            "LD_PRELOAD": library, "GOMALLOC_PROFILE": dir.appendingPathComponent("p.%p").path,
            "GOMALLOC_PROFILE_RATE": "\(Self.rate)", "GOMALLOC_PROFILE_SEED": "1",
        ], timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        let child = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("child ") }?.dropFirst(6), r.summary)
        func analyze(_ file: String) throws -> (inuse: [String: Double], alloc: [String: Double]) {
            let out = dir.appendingPathComponent("out-\(file)")
            let a = try DropIn.run(gomalloc, ["profile", "--from", dir.appendingPathComponent(file).path, "--out", out.path])
            XCTAssertEqual(a.status, 0, a.summary)
            return (try bytesBySite(out.appendingPathComponent("inuse.folded")), try bytesBySite(out.appendingPathComponent("alloc.folded")))
        }
        let parentPID = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .first { $0.hasPrefix("p.") && $0 != "p.\(child)" }, "no parent profile")
        let parent = try analyze(parentPID)
        assertNear(parent.inuse["site_kept_small"], 20_480_000, "parent: site_kept_small still in use")
        assertNear(parent.alloc["site_freed"], 102_400_000, "parent: site_freed allocated")
        XCTAssertNil(parent.inuse["site_freed"])
        XCTAssertNil(parent.alloc["site_child"], "the child's allocations are not the parent's")
        let kid = try analyze("p.\(child)")
        XCTAssertNil(kid.inuse["site_kept_small"], "the child freed every inherited block: \(kid.inuse)")
        assertNear(kid.alloc["site_kept_small"], 20_480_000, "child: inherited samples")
        assertNear(kid.inuse["site_child"], 40_960_000, "child: site_child in use")
        XCTAssertNil(kid.alloc["site_freed"], "site_freed ran in the parent after the fork")
    }

    /// SIGUSR2 makes the library write its GOMALLOC_PROFILE file at once (for servers); the
    /// exit profile, written afresh, shows the blocks freed after it.
    func testSIGUSR2WritesTheProfile() throws {
        let library = try DropIn.requireLibrary("heap profiling")
        let gomalloc = try DropIn.gomallocExecutable()
        let exe = try DropIn.compile("profile.c", extraFlags: ["-fno-omit-frame-pointer"], tag: "fp")
        let dir = DropIn.workDir.appendingPathComponent("profile-usr2-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("profile")
        let r = try DropIn.run(exe, ["signal", path.path], environment: [
            "LD_PRELOAD": library, "GOMALLOC_PROFILE": path.path, "GOMALLOC_PROFILE_RATE": "\(Self.rate)",
        ], timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        for (file, live) in [(URL(fileURLWithPath: path.path + ".usr2"), true), (path, false)] {
            let out = dir.appendingPathComponent("out-\(file.lastPathComponent)")
            let a = try DropIn.run(gomalloc, ["profile", "--from", file.path, "--out", out.path])
            XCTAssertEqual(a.status, 0, a.summary)
            let inuse = try bytesBySite(out.appendingPathComponent("inuse.folded"))
            if live { assertNear(inuse["site_kept_small"], 20_480_000, "on SIGUSR2: site_kept_small") }
            else { XCTAssertNil(inuse["site_kept_small"], "freed after the signal: \(inuse)") }
        }
    }

    /// gomalloc_profile_dump from C writes the profile of the moment; the exit profile shows
    /// the blocks freed after it.
    func testProfileDumpFromC() throws {
        let library = try DropIn.requireLibrary("heap profiling")
        let gomalloc = try DropIn.gomallocExecutable()
        let exe = try DropIn.compile("profile.c", extraFlags: ["-fno-omit-frame-pointer"], tag: "fp")
        let dir = DropIn.workDir.appendingPathComponent("profile-dump-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let now = dir.appendingPathComponent("now"), atExit = dir.appendingPathComponent("exit")
        let r = try DropIn.run(exe, ["dump", now.path], environment: [
            "LD_PRELOAD": library, "GOMALLOC_PROFILE": atExit.path, "GOMALLOC_PROFILE_RATE": "\(Self.rate)",
        ], timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        for (file, live) in [(now, true), (atExit, false)] {
            let out = dir.appendingPathComponent("out-\(file.lastPathComponent)")
            let a = try DropIn.run(gomalloc, ["profile", "--from", file.path, "--out", out.path])
            XCTAssertEqual(a.status, 0, a.summary)
            let inuse = try bytesBySite(out.appendingPathComponent("inuse.folded"))
            if live { assertNear(inuse["site_kept_small"], 20_480_000, "\(file.lastPathComponent): site_kept_small") }
            else { XCTAssertNil(inuse["site_kept_small"], "freed after the dump: \(inuse)") }
            assertNear(inuse["site_kept_large"], 10_485_760, "\(file.lastPathComponent): site_kept_large")
        }
    }
}
