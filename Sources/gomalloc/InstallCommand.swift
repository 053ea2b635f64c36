// InstallCommand.swift — `gomalloc install`: put the drop-in library where linkers find it.
//
// Role: copy libgomalloc-preload.so to <prefix>/lib/libgomalloc.so, gomalloc.h to
//   <prefix>/include, write <prefix>/lib/pkgconfig/gomalloc.pc, and refresh the dynamic
//   loader's cache when the library directory is one the loader searches. Afterwards a C
//   program links it with `-lgomalloc` (or `pkg-config --libs gomalloc`), a SwiftPM package
//   with `-Xlinker -lgomalloc` or `.linkedLibrary("gomalloc")`, as with jemalloc.
// Go counterpart: none.
//
// The library has no SONAME, so a program linked with -lgomalloc records `libgomalloc.so`
// as its dependency: that is the one file installed, and the loader finds it by that name.
// Files are written under a temporary name and renamed into place, so processes already
// running with an older libgomalloc.so mapped keep their (unchanged) copy.
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct InstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install libgomalloc.so, gomalloc.h and gomalloc.pc under a prefix, for linking with -lgomalloc.",
        discussion: """
            Installs <prefix>/lib/libgomalloc.so, <prefix>/include/gomalloc.h and \
            <prefix>/lib/pkgconfig/gomalloc.pc, then runs ldconfig if <prefix>/lib is a \
            directory the dynamic loader searches. For another prefix, point the loader at it \
            with LD_LIBRARY_PATH or link with -Xlinker -rpath -Xlinker <prefix>/lib.

            Example: swift build -c release && sudo .build/release/gomalloc install
            """
    )

    @Option(help: ArgumentHelp("Installation prefix.", valueName: "dir"))
    var prefix = "/usr/local"

    @Option(help: ArgumentHelp("The library to install (default: libgomalloc-preload.so next to this executable, else the package's .build/release one).", valueName: "path"))
    var library: String?

    @Option(help: ArgumentHelp("The header to install (default: the source tree's Sources/GoMallocExports/include/gomalloc.h).", valueName: "path"))
    var header: String?

    @Flag(help: "Do not run ldconfig, even for a system prefix.")
    var noLdconfig = false

    func run() throws {
        let fm = FileManager.default
        let prefixURL = URL(fileURLWithPath: prefix).standardizedFileURL
        let libDir = prefixURL.appendingPathComponent("lib")
        let includeDir = prefixURL.appendingPathComponent("include")
        let pkgconfigDir = libDir.appendingPathComponent("pkgconfig")

        let libSource = try locateBuiltLibrary()
        let headerSource = try header.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            ?? locateHeader()
        let headerText = try String(contentsOfFile: headerSource, encoding: .utf8)

        for dir in [libDir, includeDir, pkgconfigDir] {
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        }

        let libTarget = libDir.appendingPathComponent(DropInLibrary.installedName)
        try Self.installFile(from: URL(fileURLWithPath: libSource), to: libTarget, mode: 0o755)
        print("installed \(libTarget.path)")

        let headerTarget = includeDir.appendingPathComponent("gomalloc.h")
        try Self.installFile(from: URL(fileURLWithPath: headerSource), to: headerTarget, mode: 0o644)
        print("installed \(headerTarget.path)")

        let pcTarget = pkgconfigDir.appendingPathComponent("gomalloc.pc")
        let pc = Self.pkgConfig(prefix: prefixURL.path, version: Self.version(inHeader: headerText))
        try Self.installData(Data(pc.utf8), to: pcTarget, mode: 0o644)
        print("installed \(pcTarget.path)")

        if !noLdconfig && Self.loaderSearches(libDir.path) {
            if geteuid() != 0 {
                print("note: not root, so ldconfig was not run; run `ldconfig` to refresh the loader's cache")
            } else if let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"].first(where: { fm.isExecutableFile(atPath: $0) }) {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: ldconfig)
                p.arguments = [libDir.path]
                try p.run()
                p.waitUntilExit()
                if p.terminationStatus == 0 {
                    print("ran \(ldconfig) \(libDir.path)")
                } else {
                    print("warning: \(ldconfig) exited with status \(p.terminationStatus)")
                }
            }
        } else if !Self.loaderSearches(libDir.path) {
            print("note: \(libDir.path) is not in the loader's search path; run programs linked with -lgomalloc with LD_LIBRARY_PATH=\(libDir.path), or link with -Xlinker -rpath -Xlinker \(libDir.path)")
        }
    }

    // MARK: - Locating the inputs

    private func locateBuiltLibrary() throws -> String {
        do {
            return try DropInLibrary.locate(explicit: library, for: .install)
        } catch let error as DropInLibrary.NotFound {
            throw ValidationError("\(error.searched.joined(separator: ", ")): not found: build it first (`swift build -c release`), or pass --library PATH.")
        }
    }

    private func locateHeader() throws -> String {
        // This file is Sources/gomalloc/InstallCommand.swift; the header is in the same tree.
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("GoMallocExports/include/gomalloc.h").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("cannot find gomalloc.h in the source tree (\(path)); pass --header PATH.")
        }
        return path
    }

    // MARK: - Writing

    /// Copy `source` to `target` through a temporary file in the target's directory and a rename.
    static func installFile(from source: URL, to target: URL, mode: Int) throws {
        try installData(Data(contentsOf: source), to: target, mode: mode)
    }

    static func installData(_ data: Data, to target: URL, mode: Int) throws {
        let tmp = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).tmp-\(getpid())")
        try data.write(to: tmp)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: tmp.path)
        if rename(tmp.path, target.path) != 0 {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw ValidationError("cannot install \(target.path): \(reason)")
        }
    }

    /// The contents of gomalloc.pc.
    static func pkgConfig(prefix: String, version: String) -> String {
        """
        # gomalloc.pc — written by `gomalloc install`.
        prefix=\(prefix)
        libdir=${prefix}/lib
        includedir=${prefix}/include

        Name: gomalloc
        Description: Go's memory allocator as a drop-in malloc for Linux
        Version: \(version)
        Libs: -L${libdir} -lgomalloc
        Cflags: -I${includedir}

        """
    }

    /// GOMALLOC_VERSION_STRING from the header text.
    static func version(inHeader text: String) -> String {
        for line in text.split(separator: "\n") where line.hasPrefix("#define GOMALLOC_VERSION_STRING") {
            let parts = line.split(separator: "\"")
            if parts.count >= 2 { return String(parts[1]) }
        }
        return "0"
    }

    // MARK: - The loader's search path

    /// Whether the dynamic loader finds libraries in `dir` without LD_LIBRARY_PATH or an
    /// rpath: a default directory, or one listed in /etc/ld.so.conf (and its includes).
    static func loaderSearches(_ dir: String) -> Bool {
        let defaults: Set<String> = ["/lib", "/usr/lib", "/lib64", "/usr/lib64"]
        if defaults.contains(dir) { return true }
        return configuredDirectories(file: "/etc/ld.so.conf", depth: 0).contains(dir)
    }

    private static func configuredDirectories(file: String, depth: Int) -> [String] {
        guard depth < 4, let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        var dirs: [String] = []
        for raw in text.split(separator: "\n") {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first
                .map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if line.isEmpty { continue }
            if line.hasPrefix("include ") {
                let pattern = line.dropFirst("include ".count).trimmingCharacters(in: .whitespaces)
                for included in expand(pattern) { dirs += configuredDirectories(file: included, depth: depth + 1) }
            } else {
                dirs.append(URL(fileURLWithPath: line).standardizedFileURL.path)
            }
        }
        return dirs
    }

    /// glob(3) over one pattern.
    private static func expand(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { i in g.gl_pathv[i].map { String(cString: $0) } }
    }
}
