// DropIn.swift — plumbing for the tests that run real processes (DropInTests,
// RealProgramTests, StressTests, BenchSmokeTests): where the built products are, how to
// compile the C programs in Tests/CPrograms, how to run a process with the drop-in library
// preloaded.
//
// Environment (for developing the tests themselves):
//   GOMALLOC_TEST_PRELOAD=glibc   run the programs on glibc's malloc, no preload; the
//                                 checks that need GoMalloc are skipped.
//   GOMALLOC_TEST_PRELOAD=<path>  preload that library instead of the built one.
import Foundation
import XCTest

/// Where things are, how to compile a test program, and how to run a process.
enum DropIn {
    /// The package root: this file is Tests/GoMallocIntegrationTests/DropIn.swift.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let programsDir = packageRoot.appendingPathComponent("Tests/CPrograms")
    static let exportsDir = packageRoot.appendingPathComponent("Sources/GoMallocExports")
    static let headerDir = exportsDir.appendingPathComponent("include")

    /// The build products directory: the one holding the running test executable
    /// (.build/<triple>/<config>/GoMallocPackageTests.xctest on Linux).
    static let productsDir: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).resolvingSymlinksInPath().deletingLastPathComponent()
        // A bundle-shaped .xctest (macOS layout) sits two levels deeper.
        while dir.path.contains(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir
    }()

    /// A scratch directory for this test process, removed at exit.
    static let workDir: URL = {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("gomalloc-dropin-\(getpid())", isDirectory: true)
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: DropIn.workDirPath) }
        return dir
    }()
    private static let workDirPath = FileManager.default.temporaryDirectory
        .appendingPathComponent("gomalloc-dropin-\(getpid())").path

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: Which allocator

    enum Allocator {
        /// Preload this library.
        case gomalloc(library: String)
        /// glibc's own malloc (GOMALLOC_TEST_PRELOAD=glibc): validates the programs.
        case glibc
    }

    static func allocator() throws -> Allocator {
        switch ProcessInfo.processInfo.environment["GOMALLOC_TEST_PRELOAD"] {
        case "glibc":
            return .glibc
        case let path? where !path.isEmpty:
            guard FileManager.default.fileExists(atPath: path) else {
                throw Failure("GOMALLOC_TEST_PRELOAD=\(path): no such file")
            }
            return .gomalloc(library: URL(fileURLWithPath: path).standardizedFileURL.path)
        default:
            let path = productsDir.appendingPathComponent("libgomalloc-preload.so").path
            guard FileManager.default.fileExists(atPath: path) else {
                throw Failure("""
                    \(path) is missing. The drop-in library is the `gomalloc-preload` product: build it \
                    with `swift build` (or `swift build -c release` for release tests) before running these tests.
                    """)
            }
            return .gomalloc(library: path)
        }
    }

    /// The library path, or XCTSkip when running on glibc.
    static func requireLibrary(_ why: String) throws -> String {
        switch try allocator() {
        case .gomalloc(let library): return library
        case .glibc: throw XCTSkip("GOMALLOC_TEST_PRELOAD=glibc: \(why) needs the GoMalloc library")
        }
    }

    /// The `gomalloc` CLI in the products directory.
    static func gomallocExecutable() throws -> String {
        let path = productsDir.appendingPathComponent("gomalloc").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failure("\(path) is missing: build the `gomalloc` executable with `swift build`.")
        }
        return path
    }

    // MARK: Finding tools

    /// The first executable called `name` in PATH (or `name` itself if it is a path).
    static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A tool the tests need: its path, or a failure naming what to install. Not a skip: CI
    /// (.ci/run) installs every tool the tests use, and a missing one must not pass silently.
    static func tool(_ name: String, package: String) throws -> String {
        guard let path = which(name) else {
            throw Failure("\(name) is not installed (install \(package)); the test needs it")
        }
        return path
    }

    // MARK: Compiling the C programs

    private final class Cache: @unchecked Sendable {
        let lock = NSLock()
        var binaries: [String: String] = [:]
    }
    private static let cache = Cache()

    /// Compile Tests/CPrograms/<file> once per test process (`cc -O1 -g -pthread`, or `c++`
    /// for .cc) and return the executable's path. Extra flags (e.g. link options) make a
    /// separate binary.
    static func compile(_ file: String, extraFlags: [String] = [], tag: String = "") throws -> String {
        let key = file + "|" + tag + "|" + extraFlags.joined(separator: " ")
        cache.lock.lock()
        defer { cache.lock.unlock() }
        if let done = cache.binaries[key] { return done }

        let source = programsDir.appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: source.path) else { throw Failure("no such program: \(source.path)") }
        let isCxx = file.hasSuffix(".cc")
        let base = (file as NSString).deletingPathExtension + (tag.isEmpty ? "" : "-" + tag)
        let output = workDir.appendingPathComponent(base).path
        let compiler = isCxx ? "c++" : "cc"
        guard let cc = which(compiler) else { throw Failure("\(compiler) not found in PATH") }
        var args = ["-O1", "-g", "-pthread"]
        if isCxx { args.append("-std=c++17") }
        args += ["-I", programsDir.path, "-I", headerDir.path, source.path, "-o", output] + extraFlags
        // The compiler itself must not run under the preloaded library: a clean environment.
        let r = try run(cc, args, environment: [:], timeout: 300)
        guard r.exitedNormally && r.status == 0 else {
            throw Failure("compiling \(file) failed: \(compiler) \(args.joined(separator: " "))\n\(r.stderr)")
        }
        cache.binaries[key] = output
        return output
    }

    // MARK: Running processes

    struct Result {
        /// Exit status, or the signal number when `signaled`.
        var status: Int32
        var signaled: Bool
        var timedOut: Bool
        var stdout: String
        var stderr: String

        var exitedNormally: Bool { !signaled && !timedOut }
        var summary: String {
            let how = timedOut ? "timed out" : signaled ? "killed by signal \(status)" : "exit status \(status)"
            return "\(how)\n--- stdout (last 2000 bytes) ---\n\(String(stdout.suffix(2000)))\n--- stderr (last 4000 bytes) ---\n\(String(stderr.suffix(4000)))"
        }
    }

    /// Run `executable` with `arguments`, the test process's environment minus any
    /// LD_PRELOAD, plus `environment` (a nil value removes a variable). stdout and stderr go
    /// to files (no pipe can fill up); the process is killed after `timeout` seconds.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String?] = [:],
                    directory: URL? = nil, stdin: String? = nil, timeout: TimeInterval = 300) throws -> Result {
        let id = UUID().uuidString
        let outURL = workDir.appendingPathComponent("out-\(id)")
        let errURL = workDir.appendingPathComponent("err-\(id)")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = nil
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if let directory { p.currentDirectoryURL = directory }
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input

        let finished = DispatchSemaphore(value: 0)
        p.terminationHandler = { _ in finished.signal() }
        try p.run()
        try? out.close()
        try? err.close()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        }
        var timedOut = false
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(p.processIdentifier, SIGKILL)
            finished.wait()
        }
        p.waitUntilExit()
        let stdoutText = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let stderrText = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return Result(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                      timedOut: timedOut, stdout: stdoutText, stderr: stderrText)
    }

    /// Compile and run a program of Tests/CPrograms under the allocator; it must exit 0, print
    /// `OK <name>` last and write nothing to stderr (the dynamic loader's warnings would
    /// appear there). Returns the run, for checks of its output.
    @discardableResult
    static func runProgram(_ file: String, _ args: [String] = [], env extra: [String: String] = [:],
                           timeout: TimeInterval = 300, file testFile: StaticString = #filePath,
                           line: UInt = #line) throws -> Result {
        let exe = try compile(file)
        let r = try run(exe, args, environment: environment(for: try allocator(), extra), timeout: timeout)
        let name = (file as NSString).deletingPathExtension
        XCTAssertTrue(r.exitedNormally && r.status == 0, "\(file) \(args): \(r.summary)", file: testFile, line: line)
        XCTAssertEqual(r.stdout.split(separator: "\n").last.map(String.init), "OK \(name)",
                       "\(file): \(r.summary)", file: testFile, line: line)
        XCTAssertEqual(r.stderr, "", "\(file) wrote to stderr: \(r.summary)", file: testFile, line: line)
        return r
    }

    /// The environment that puts `allocator` under a process.
    static func environment(for allocator: Allocator, _ extra: [String: String] = [:]) -> [String: String?] {
        var env: [String: String?] = [:]
        if case .gomalloc(let library) = allocator {
            env["LD_PRELOAD"] = library
            env["GOMALLOC_TEST_EXPECT_GOMALLOC"] = "1"
        }
        for (k, v) in extra { env[k] = v }
        return env
    }
}
