// DropInLibrary.swift: finding the GoMalloc drop-in library, the one rule `gomalloc run`,
// `gomalloc bench` and `gomalloc install` share, composing LD_PRELOAD, and running a command
// under the library so that it writes an at-exit dump (`gomalloc heapmap`, `gomalloc profile`).
//
// Candidates, best first:
//   1. the path given on the command line (--library, --gomalloc-lib): then the only one;
//   2. $GOMALLOC_PRELOAD_LIB;
//   3. libgomalloc-preload.so next to this executable (where `swift build` puts it);
//   4. .build/release/libgomalloc-preload.so under a package root (the current directory,
//      the executable's ancestors, the source tree it was built from);
//   5. libgomalloc.so where `gomalloc install` puts it: ../lib beside this executable's
//      directory, /usr/local/lib, /usr/lib.
// What the library is for changes two things: to measure (bench), a debug build's library
// next to a debug executable comes last, after any release build; to install, an installed
// copy (5) does not count.
import Foundation

enum DropInLibrary {
    /// The file name SwiftPM gives the `gomalloc-preload` product.
    static let buildName = "libgomalloc-preload.so"
    /// The name `gomalloc install` gives it, which `-lgomalloc` finds.
    static let installedName = "libgomalloc.so"

    enum Purpose {
        /// Run a program under it (`gomalloc run`): the library of this build first.
        case run
        /// Measure it (`gomalloc bench`): a release build's library before a debug build's.
        case measure
        /// Install it (`gomalloc install`): a build's library, never an installed copy.
        case install
    }

    struct NotFound: Error, CustomStringConvertible {
        let searched: [String]
        var description: String {
            "cannot find the GoMalloc library; looked for " + searched.joined(separator: ", ")
                + ". Build it with `swift build` (product gomalloc-preload), or pass --library PATH."
        }
    }

    struct Unusable: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "\(path): \(reason)" }
    }

    /// Whether `path` is in a debug build's products directory.
    static func isDebugBuild(_ path: String) -> Bool { path.contains("/debug/") }

    /// The paths to try, best first (see the rule above), without duplicates.
    static func candidates(explicit: String?, for purpose: Purpose) -> [String] {
        if let explicit { return [URL(fileURLWithPath: explicit).standardizedFileURL.path] }
        var list: [String] = []
        if let env = ProcessInfo.processInfo.environment["GOMALLOC_PRELOAD_LIB"], !env.isEmpty { list.append(env) }
        let dir = Locations.executableDirectory
        let adjacent = dir.appendingPathComponent(buildName).path
        let adjacentLast = purpose == .measure && isDebugBuild(adjacent)
        if !adjacentLast { list.append(adjacent) }
        for root in Locations.packageRootCandidates()
        where FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            list.append(root.appendingPathComponent(".build/release/\(buildName)").path)
        }
        if purpose != .install {
            list.append(dir.deletingLastPathComponent().appendingPathComponent("lib").appendingPathComponent(installedName).path)
            list += ["/usr/local/lib/" + installedName, "/usr/lib/" + installedName]
        }
        if adjacentLast { list.append(adjacent) }
        var seen = Set<String>()
        return list.filter { seen.insert($0).inserted }
    }

    /// An absolute path to the library: the first candidate that exists.
    static func locate(explicit: String?, for purpose: Purpose) throws -> String {
        let list = candidates(explicit: explicit, for: purpose)
        for path in list where FileManager.default.fileExists(atPath: path) {
            return URL(fileURLWithPath: path).standardizedFileURL.path
        }
        throw NotFound(searched: list)
    }

    /// LD_PRELOAD with `library` first, keeping what was there (without a duplicate).
    /// The dynamic loader splits the list at spaces and colons.
    static func preloadValue(adding library: String, to existing: String?) -> String {
        let others = (existing ?? "")
            .split(whereSeparator: { $0 == ":" || $0 == " " })
            .map(String.init)
            .filter { $0 != library }
        return ([library] + others).joined(separator: ":")
    }

    /// How a command run by `runWritingDump` ended, and the dump its own process wrote (nil:
    /// none, as when it died or did not run under the library).
    struct DumpRun {
        let dump: Data?
        let exitStatus: Int32?  // nil: killed by a signal
    }

    /// Run `commandLine` (through env(1), which execs it: the pid stays) under `library`, with
    /// the variables `environment` gives for the dump path pattern `DIR/NAME.%p` (DIR a fresh
    /// temporary directory, removed afterwards), and read the dump of that pid.
    static func runWritingDump(_ commandLine: [String], library: String, dumpName: String,
                               environment: (String) -> [String: String]) throws -> DumpRun {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("gomalloc-\(dumpName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["--"] + commandLine
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = preloadValue(adding: library, to: env["LD_PRELOAD"])
        env.merge(environment(dir.appendingPathComponent("\(dumpName).%p").path)) { _, new in new }
        p.environment = env
        try p.run()
        p.waitUntilExit()
        let dump = FileManager.default.contents(atPath: dir.appendingPathComponent("\(dumpName).\(p.processIdentifier)").path)
        return DumpRun(dump: dump, exitStatus: p.terminationReason == .exit ? p.terminationStatus : nil)
    }
}
