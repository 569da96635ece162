//! Handing a GPU command to `swm-gpu`, the half of swm that links CUDA.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::cli::Command;
use crate::error::CliError;

/// Checks that the NVIDIA driver and the CUDA libraries load, then replaces this process with `swm-gpu` and the
/// same arguments. Returns only on failure.
pub fn to_gpu(command: &Command) -> CliError {
    if let Err(missing) = swm::device::probe_cuda_libraries() {
        return CliError::NoDriver(missing, verb(command));
    }
    let path = gpu_binary();
    let source = std::process::Command::new(&path).args(std::env::args_os().skip(1)).exec();
    CliError::Exec { path, source }
}

/// `swm-gpu` beside this executable (symlinks resolved).
fn gpu_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("swm"));
    exe.with_file_name("swm-gpu")
}

/// The command's name, for messages.
fn verb(command: &Command) -> &'static str {
    match command {
        Command::Inspect(_) => "inspect",
        Command::Convert(_) => "convert",
        Command::Demo(_) => "demo",
        Command::Score(_) => "score",
        Command::Plan(_) => "plan",
        Command::Parity(_) => "parity",
        Command::Bench(_) => "bench",
        Command::Media(_) => "media",
        Command::TrainBatch(_) => "train-batch",
    }
}
