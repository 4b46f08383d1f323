//! The shardcron daemon and command-line interface (being written).

/// Entry point of the `shardcron` binary.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
