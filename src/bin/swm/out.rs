//! Writing to stdout without panicking on a closed pipe.
//!
//! `println!` panics when stdout is a pipe whose reader is gone (`swm inspect | head -1`). Every command writes
//! its stdout through [`out!`] / [`outln!`] instead: a `BrokenPipe` becomes [`CliError::BrokenPipe`], which ends
//! the command and exits 0 quietly; other write errors are reported.

use std::fmt;
use std::io::{self, Write};

use crate::error::CliError;

/// Writes `args` to stdout; `?`-propagates [`CliError::BrokenPipe`] when the reader has gone.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))?
    };
}

/// Writes `args` and a newline to stdout (see [`out!`]).
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// Writes formatted text to stdout (line-buffered), mapping a closed pipe to [`CliError::BrokenPipe`].
pub fn write(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    io::stdout().lock().write_fmt(args).map_err(|e| match e.kind() {
        io::ErrorKind::BrokenPipe => CliError::BrokenPipe,
        _ => CliError::Stdout(e),
    })
}
