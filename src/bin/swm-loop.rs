//! `swm-loop`: the real-time daemon beside a robot controller (ingest, inference/planning and output threads,
//! actions published over iceoryx2). It lands with the daemon issue; this build only reports that.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("swm-loop: not yet implemented (the real-time daemon lands with its own issue); see `swm --help`");
    ExitCode::from(2)
}
