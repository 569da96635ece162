//! One module per command, each with `pub fn run(args) -> Result<ExitCode, CliError>`.

pub mod bench;
pub mod convert;
pub mod demo;
pub mod inspect;
pub mod media;
pub mod parity;
pub mod plan;
pub mod score;
pub mod train;
