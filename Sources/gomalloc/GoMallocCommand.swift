// GoMallocCommand.swift: `gomalloc`, the command-line tool: its subcommands, and in its help
// the GOMALLOC_* options (OptionsHelp).
import ArgumentParser

@main
struct GoMallocCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gomalloc",
        abstract: "Go's memory allocator as a malloc for Linux: run programs under it, inspect it, benchmark it.",
        discussion: OptionsHelp.text,
        subcommands: [RunCommand.self, SizeClassesCommand.self, HeapCommand.self, HeapMapCommand.self, ProfileCommand.self, BenchCommand.self, StacksDemoCommand.self, InstallCommand.self]
    )
}
