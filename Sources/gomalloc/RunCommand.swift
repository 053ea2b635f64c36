// RunCommand.swift — `gomalloc run`: run a program with the GoMalloc library preloaded.
//
// Role: find the drop-in library, put it first in LD_PRELOAD, set the GOMALLOC_* options the
//   flags ask for, and exec the command in place of this process, so that its exit status
//   (and death by a signal) is the command's own, and signals from the terminal reach it
//   directly.
// Go counterpart: none.
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a program with GoMalloc as its malloc (through LD_PRELOAD).",
        usage: "gomalloc run [--stats] [--maxprocs <n>] [--library <path>] -- <command> [<argument> ...]",
        discussion: """
            The library is --library, else $GOMALLOC_PRELOAD_LIB, else libgomalloc-preload.so \
            next to this executable (where `swift build` puts it), else the package's \
            .build/release/libgomalloc-preload.so, else libgomalloc.so where `gomalloc install` \
            put it (../lib relative to this executable, /usr/local/lib, /usr/lib). It is \
            prepended to any LD_PRELOAD already set, so every process the command starts runs under GoMalloc too. The command replaces \
            this process (exec): its exit status and any signal that ends it are passed through \
            unchanged. If gomalloc itself fails, it exits 125; a command that cannot be run \
            gives 126, one that is not found 127 (as env(1) does).

            Example: gomalloc run --stats -- python3 -c 'print(sum(range(10**6)))'
            """
    )

    @Flag(help: "Print GoMalloc's statistics summary to stderr when the program exits (GOMALLOC_STATS=<its pid>: the program itself, not the processes it starts).")
    var stats = false

    @Option(help: ArgumentHelp("Number of Ps, i.e. at most this many per-P caches (GOMALLOC_MAXPROCS).", valueName: "n"))
    var maxprocs: Int?

    @Option(help: ArgumentHelp("The library to preload, instead of searching for it.", valueName: "path"))
    var library: String?

    // `.remaining`: everything after `--` is the command, dashes and all; before `--`, words
    // that look like options are ours (so `gomalloc run --help` is help, not a command).
    @Argument(parsing: .remaining, help: ArgumentHelp("The program to run and its arguments, after `--`.", valueName: "command"))
    var commandLine: [String] = []

    func validate() throws {
        if commandLine.isEmpty { throw ValidationError("Missing the command to run (gomalloc run [options] -- COMMAND ARGS...).") }
        if let n = maxprocs, n < 1 { throw ValidationError("--maxprocs must be at least 1.") }
    }

    func run() throws {
        let lib: String
        do {
            lib = try DropInLibrary.locate(explicit: library, for: .run)
            if lib.contains(":") || lib.contains(" ") {
                throw DropInLibrary.Unusable(path: lib, reason: "LD_PRELOAD cannot hold a path with a space or a colon")
            }
        } catch {
            FileHandle.standardError.write(Data("gomalloc: \(error)\n".utf8))
            throw ExitCode(125)
        }

        setenv("LD_PRELOAD", DropInLibrary.preloadValue(adding: lib, to: ProcessInfo.processInfo.environment["LD_PRELOAD"]), 1)
        // The command replaces this process (exec), so it keeps our pid: only it reports.
        if stats { setenv("GOMALLOC_STATS", String(getpid()), 1) }
        if let n = maxprocs { setenv("GOMALLOC_MAXPROCS", String(n), 1) }

        let argv = commandLine
        // Flush whatever Foundation or stdio may have buffered; exec discards it otherwise.
        fflush(nil)
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArgs.append(nil)
        execvp(argv[0], cArgs)
        let err = errno
        let reason = String(cString: strerror(err))
        FileHandle.standardError.write(Data("gomalloc: \(argv[0]): \(reason)\n".utf8))
        throw ExitCode(err == ENOENT ? 127 : 126)
    }
}
