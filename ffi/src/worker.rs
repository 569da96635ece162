//! The engine thread behind a handle. An `Engine` holds CUDA graphs, which must be launched from the thread that
//! captured them, so each handle owns one thread that creates the engine and runs every call on it; C threads hand
//! it closures over a channel and wait for the reply. Calls from several C threads are serialised in arrival
//! order. The engine thread polls briefly for the next job before sleeping; a caller polls for its reply (spin,
//! then yield) for the whole call, so that a call costs microseconds, not a thread wake-up. A job replies as soon
//! as its result exists; what is left to do (dropping the observation's buffers, capturing a graph a step left
//! missing) runs after the reply ([`State::after_reply`]), before the next job.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};

use crate::engine::State;
use crate::error::Failure;
use crate::swm_status as SwmStatus;

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// How long the engine thread polls for the next job in a spin loop before it sleeps.
const SPIN: Duration = Duration::from_micros(100);

/// How long a caller waiting for its reply keeps polling (yielding between polls) before it sleeps: longer than
/// any control step.
const YIELD_FOR: Duration = Duration::from_secs(1);

/// A handle's engine thread.
pub(crate) struct Worker {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Callers sleep on their replies instead of polling.
    sleep: bool,
}

impl Worker {
    /// Starts the thread and creates its state with `open` there; fails with `open`'s failure. With `sleep`,
    /// callers sleep on their replies instead of polling for them.
    pub fn start(open: impl FnOnce() -> Result<State, Failure> + Send + 'static, sleep: bool) -> Result<Self, Failure> {
        let (jobs_tx, jobs_rx) = bounded::<Job>(16);
        let (ready_tx, ready_rx) = bounded::<Result<(), Failure>>(1);
        let thread = std::thread::Builder::new()
            .name("swm-engine".into())
            .spawn(move || {
                let state = match catch_unwind(AssertUnwindSafe(open)) {
                    Ok(Ok(state)) => state,
                    Ok(Err(f)) => return drop(ready_tx.send(Err(f))),
                    Err(_) => return drop(ready_tx.send(Err(Failure::new(SwmStatus::Panic, "panic while opening")))),
                };
                let _ = ready_tx.send(Ok(()));
                run(state, jobs_rx);
            })
            .map_err(|e| Failure::new(SwmStatus::Runtime, format!("cannot start the engine thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { jobs: Some(jobs_tx), thread: Some(thread), sleep }),
            Ok(Err(f)) => {
                let _ = thread.join();
                Err(f)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Failure::new(SwmStatus::Panic, "the engine thread ended while opening"))
            }
        }
    }

    /// Runs `f` on the engine thread and returns its result. A panic in `f` is reported as `SWM_STATUS_PANIC`
    /// and ends the thread (later calls fail the same way).
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, Failure> {
        let dead = || Failure::new(SwmStatus::Panic, "the engine thread has stopped after a panic; free the handle");
        let jobs = self.jobs.as_ref().ok_or_else(dead)?;
        let (tx, rx) = bounded::<Result<R, Failure>>(1);
        let job: Job = Box::new(move |state: &mut State| {
            let _ = tx.send(f(state));
        });
        jobs.send(job).map_err(|_| dead())?;
        // The caller is blocked for the whole call anyway: it polls for the reply (spinning first, then yielding
        // its CPU between polls, as CUDA's default synchronisation does) instead of sleeping on the channel, whose
        // futex wake-up cost ~130 µs per call on the GPU hosts (measured: swm_engine_plan overhead p50 134 µs with
        // a sleeping caller). Spinning for the whole call instead of yielding measured no faster (hand-over p50 14
        // against 13 µs, H200). Past `YIELD_FOR` (a call stuck behind a long one) it sleeps.
        if self.sleep {
            return rx.recv().map_err(|_| dead())?;
        }
        let start = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(r) => return r,
                Err(TryRecvError::Disconnected) => return Err(dead()),
                Err(TryRecvError::Empty) => match start.elapsed() {
                    t if t < SPIN => std::hint::spin_loop(),
                    t if t < YIELD_FOR => std::thread::yield_now(),
                    _ => return rx.recv().map_err(|_| dead())?,
                },
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the jobs already queued.
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut state: State, jobs: Receiver<Job>) {
    loop {
        let until = Instant::now() + SPIN;
        let job = loop {
            match jobs.try_recv() {
                Ok(job) => break Some(job),
                Err(TryRecvError::Disconnected) => break None,
                Err(TryRecvError::Empty) if Instant::now() < until => std::hint::spin_loop(),
                Err(TryRecvError::Empty) => break jobs.recv().ok(),
            }
        };
        let Some(job) = job else { return };
        // A panicking job drops its reply sender: the caller sees the thread stop.
        if catch_unwind(AssertUnwindSafe(|| {
            job(&mut state);
            state.after_reply();
        }))
        .is_err()
        {
            return;
        }
    }
}
