//! `swm-loop`, the real-time control-loop daemon: observations from a robot controller in, actions out, at a fixed
//! rate, over iceoryx2 zero-copy shared memory, with swm's [`Engine`](swm::engine::Engine) on one GPU.
//!
//! The pieces: [`config`] (TOML, every field defaulted), [`message`] (checking observations against the model's
//! inputs), [`backend`] (the inference actor's work behind a trait: the engine, or a test double), [`daemon`]
//! (the ingest, inference, output and control threads), [`metrics`] (counters and per-stage percentiles) and
//! [`transport`] (the iceoryx2 services of [`swm_ipc`]).

#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod daemon;
pub mod message;
pub mod metrics;
pub mod realtime;
pub mod spin;
pub mod transport;
pub mod watchdog;
