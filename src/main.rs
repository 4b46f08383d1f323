//! The `shardcron` binary: see `shardcron --help`.

fn main() -> std::process::ExitCode {
    shardcron_cli::main()
}
