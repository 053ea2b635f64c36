// Locations.swift: where this executable is, and which directories may be the root of the
// GoMalloc package it was built from (to find .build/release and Benchmarks/workloads).
import Foundation

enum Locations {
    /// This executable, symlinks resolved.
    static var executable: URL {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: path).resolvingSymlinksInPath()
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    }

    /// The directory holding this executable.
    static var executableDirectory: URL { executable.deletingLastPathComponent() }

    /// Directories that may be the package root, without duplicates: the current directory,
    /// ancestors of the executable, and the source tree of this file (`#filePath`).
    static func packageRootCandidates() -> [URL] {
        var roots: [URL] = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        var dir = executableDirectory
        for _ in 0..<6 {
            roots.append(dir)
            dir = dir.deletingLastPathComponent()
        }
        // This file is Sources/gomalloc/Locations.swift.
        let source = URL(fileURLWithPath: #filePath)
        roots.append(source.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent())
        var seen = Set<String>()
        return roots.filter { seen.insert($0.standardizedFileURL.path).inserted }
    }
}
