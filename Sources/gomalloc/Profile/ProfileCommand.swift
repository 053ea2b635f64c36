// ProfileCommand.swift — `gomalloc profile`: where a program's memory goes.
//
// Role: run a command under the drop-in library with GOMALLOC_PROFILE pointing into a
//   temporary directory (and GOMALLOC_PROFILE_RATE from --rate); the library samples
//   allocations as Go does and writes its samples and memory map at exit (Profile.swift in
//   the core). Parse the dump of the command's own process (ProfileDump), symbolize its
//   stacks from the binaries' ELF symbol tables and DWARF line tables (ELFSymbols,
//   DWARFLines), and write into --out:
//     heap.pb.gz     pprof's format (pprof, go tool pprof), Go's four heap sample types
//     inuse.folded   folded stacks of the estimated bytes still in use at exit
//     alloc.folded   folded stacks of the estimated bytes allocated
//     inuse.svg, alloc.svg   flame graphs of the same
//     profile.txt    the raw dump
//   and print the top 20 allocation sites by in-use and by allocated bytes.
// Exit: the command's exit status when it exited (its profile is written either way, if
//   dumped); 125 when gomalloc itself fails or no dump came back.
// Go counterpart: runtime/pprof's WriteHeapProfile and `go tool pprof -top`.
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Run a command with heap profiling: pprof file, folded stacks, flame graphs, top sites.",
        discussion: """
            Runs COMMAND under the GoMalloc library with GOMALLOC_PROFILE set. The library \
            samples one allocation per --rate bytes on average (an exponential distribution, \
            as Go's MemProfileRate), recording its call stack from frame pointers, and counts \
            the frees of the objects it sampled; at exit it writes the samples and its memory \
            map. gomalloc then names the frames from the binaries' symbol tables (with file \
            and line where they have DWARF line tables) and writes \
            heap.pb.gz (pprof), inuse.folded and alloc.folded (folded stacks of estimated \
            bytes), inuse.svg and alloc.svg (flame graphs) into --out, and prints the 20 sites \
            holding the most memory at exit and the 20 that allocated the most. A server can \
            be sent SIGUSR2 to write its profile without exiting (see GOMALLOC_PROFILE). \
            Frames come from frame pointers (build C and C++ with -fno-omit-frame-pointer), or \
            with --unwind from the binaries' unwind tables, which also see through code built \
            without them. Only the command's own process is reported: programs it starts \
            write profiles of their own, which are left out (run the program itself rather \
            than a shell around it, or set GOMALLOC_PROFILE with %p and read each file with \
            --from). Exit status: the command's; 125 if no profile came back.

            Example: gomalloc profile --out prof -- python3 -c 'x = [str(i) for i in range(10**6)]'
            """)

    @ArgumentParser.Option(help: ArgumentHelp("Mean bytes between samples (Go's MemProfileRate; 1 = every allocation).", valueName: "bytes"))
    var rate: Int = 512 * 1024
    @ArgumentParser.Option(help: ArgumentHelp("Directory for the output files.", valueName: "dir"))
    var out: String = "gomalloc-profile"
    @ArgumentParser.Option(help: ArgumentHelp("Seed of the sampling (GOMALLOC_PROFILE_SEED).", valueName: "n"))
    var seed: Int?
    @Flag(help: "Walk stacks with the .eh_frame unwinder instead of frame pointers (GOMALLOC_PROFILE_UNWIND=1): for programs built without frame pointers.")
    var unwind = false
    @ArgumentParser.Option(help: ArgumentHelp("Sites printed per table.", valueName: "n"))
    var top: Int = 20
    @ArgumentParser.Option(help: ArgumentHelp("Read this dump (a GOMALLOC_PROFILE file, gomalloc_profile_dump's) instead of running a command; its binaries must still be where the dump's memory map says.", valueName: "file"))
    var from: String?
    @ArgumentParser.Option(help: ArgumentHelp("The library to preload, instead of searching for it.", valueName: "path"))
    var library: String?
    @Argument(parsing: .remaining, help: ArgumentHelp("The program to run and its arguments, after `--`.", valueName: "command"))
    var commandLine: [String] = []

    func validate() throws {
        if from != nil && !commandLine.isEmpty { throw ValidationError("Give either --from or a command, not both.") }
        if commandLine.isEmpty && from == nil { throw ValidationError("Missing the command to run (gomalloc profile [options] -- COMMAND ARGS...).") }
        if rate < 1 { throw ValidationError("--rate must be at least 1 byte.") }
    }

    private func fail(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("gomalloc profile: \(message)\n".utf8))
        return ExitCode(125)
    }

    func run() throws {
        if let from {
            guard let data = FileManager.default.contents(atPath: from) else { throw fail("cannot read \(from)") }
            let outDir = URL(fileURLWithPath: out)
            try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
            let dump: ProfileDump
            do { dump = try ProfileDump(parsing: String(decoding: data, as: UTF8.self)) } catch { throw fail("\(error)") }
            let profile = SymbolizedProfile(dump)
            let title = "gomalloc profile: \(from) (pid \(dump.pid))"
            try ProfileOutput.write(profile, to: outDir, title: title)
            print(ProfileOutput.report(profile, dump: dump, title: title, top: top, outDir: outDir.path), terminator: "")
            return
        }
        let lib: String
        do { lib = try DropInLibrary.locate(explicit: library, for: .run) } catch { throw fail("\(error)") }
        let outDir = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
        let started = Date()
        let r: DropInLibrary.DumpRun
        do {
            r = try DropInLibrary.runWritingDump(commandLine, library: lib, dumpName: "profile") { path in
                var env = ["GOMALLOC_PROFILE": path, "GOMALLOC_PROFILE_RATE": String(rate)]
                if let seed { env["GOMALLOC_PROFILE_SEED"] = String(seed) }
                if unwind { env["GOMALLOC_PROFILE_UNWIND"] = "1" }
                return env
            }
        } catch {
            throw fail("cannot run \(commandLine[0]): \(error)")
        }
        guard let data = r.dump else {
            throw fail("\(commandLine[0]) left no profile (did it run under the library, and exit rather than die?)")
        }
        try data.write(to: outDir.appendingPathComponent("profile.txt"))
        let dump: ProfileDump
        do { dump = try ProfileDump(parsing: String(decoding: data, as: UTF8.self)) } catch { throw fail("\(error)") }
        let profile = SymbolizedProfile(dump)
        let title = "gomalloc profile: " + commandLine.joined(separator: " ")
        try ProfileOutput.write(profile, to: outDir, title: title, timeNanos: Int64(started.timeIntervalSince1970 * 1e9))
        print(ProfileOutput.report(profile, dump: dump, title: title, top: top, outDir: outDir.path), terminator: "")
        if let status = r.exitStatus, status != 0 { throw ExitCode(status) }
    }
}

/// The files and the terminal report of a symbolized profile.
enum ProfileOutput {
    static func write(_ profile: SymbolizedProfile, to dir: URL, title: String, timeNanos: Int64 = 0) throws {
        try Pprof.gzipped(profile, timeNanos: timeNanos).write(to: dir.appendingPathComponent("heap.pb.gz"))
        for (name, inuse) in [("inuse", true), ("alloc", false)] {
            let folded = profile.folded(inuse: inuse)
            try folded.write(to: dir.appendingPathComponent("\(name).folded"), atomically: true, encoding: .utf8)
            let total = profile.entries.reduce(0.0) { $0 + (inuse ? $1.inuseBytes : $1.allocBytes) }
            let sub = (inuse ? "bytes in use at exit" : "bytes allocated") + ", estimated from samples every \(profile.rate) bytes: "
                + FlameGraph.formatBytes(total)
            try FlameGraph.render(folded: folded, title: title, subtitle: sub)
                .write(to: dir.appendingPathComponent("\(name).svg"), atomically: true, encoding: .utf8)
        }
    }

    static func report(_ profile: SymbolizedProfile, dump: ProfileDump, title: String, top: Int, outDir: String) -> String {
        var s = "\(title)\n"
        let samples = dump.samples.reduce(0) { $0 + $1.allocs }
        s += "\(samples) samples in \(dump.samples.count) stacks, one per \(dump.rate) bytes on average"
        if dump.droppedSamples + dump.droppedObjects > 0 {
            s += " (\(dump.droppedSamples) samples and \(dump.droppedObjects) objects dropped: tables full)"
        }
        s += "\n"
        for inuse in [true, false] {
            let total = profile.entries.reduce(0.0) { $0 + (inuse ? $1.inuseBytes : $1.allocBytes) }
            s += "\ntop \(top) sites by \(inuse ? "bytes in use when the profile was written" : "bytes allocated") (total \(FlameGraph.formatBytes(total))):\n"
            s += "       bytes      %      objects  site\n"
            for t in profile.topSites(inuse: inuse, count: top) {
                let b = FlameGraph.formatBytes(t.bytes)
                s += String(repeating: " ", count: max(0, 12 - b.count)) + b
                s += String(format: " %6.2f%% %12.0f  ", total > 0 ? t.bytes / total * 100 : 0, t.objects)
                s += t.site + "\n"
            }
        }
        s += "\nwrote \(outDir)/heap.pb.gz (go tool pprof -top \(outDir)/heap.pb.gz), inuse.folded, alloc.folded, inuse.svg, alloc.svg, profile.txt\n"
        return s
    }
}
