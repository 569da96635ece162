//! The engine behind a handle. By default each handle owns one thread that creates the engine (an `Engine` is not
//! `Send`: it holds CUDA graphs) and runs every call on it; C threads hand it closures over a channel and wait for
//! the reply. Calls from several C threads are serialised in arrival
//! order. The engine thread polls briefly for the next job before sleeping; a caller polls for its reply (spin,
//! then yield) for the whole call, so that a call costs microseconds, not a thread wake-up. A job replies as soon
//! as its result exists; what is left to do (dropping the observation's buffers, capturing a graph a step left
//! missing) runs after the reply ([`State::after_reply`]), before the next job.
//!
//! With [`Wait::Inline`] there is no engine thread: each call runs on the calling thread, holding the handle's
//! lock, so that a call pays no hand-over at all.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
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

/// How a calling thread reaches the engine (`swm_engine_options.wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Hand the call to the engine thread and poll for the reply (spin, then yield).
    Poll,
    /// Hand the call to the engine thread and sleep on the reply.
    Sleep,
    /// Run the call on the calling thread under the handle's lock (no engine thread).
    Inline,
}

/// The engine of a [`Wait::Inline`] handle, run by the calling threads one at a time.
struct Inline(State);

// SAFETY: `State` is not `Send` only because it holds raw CUDA handles (cudarc's `CudaGraph`; nvJPEG and NVDEC
// handles in the session's media), none of them bound to a host thread: CUDA lets any thread use a context's
// graphs, streams, events and library handles as long as no two threads use one at once and the context is
// current on the thread. An `Inline` lives in a `Mutex` (one thread at a time) and every call makes the context
// current first (`State::bind`); graph capture happens inside one call, on one thread, in thread-local mode, with
// Candle's capture cache switched on for that thread only. Candle keeps its cuDNN handles per thread (each calling
// thread gets its own; none moves between threads).
unsafe impl Send for Inline {}

/// A handle's engine: its thread, or the engine itself for [`Wait::Inline`].
pub(crate) struct Worker {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    wait: Wait,
    inline: Option<Mutex<Inline>>,
}

impl Worker {
    /// Creates the state with `open` — on a new engine thread, or on the calling thread for [`Wait::Inline`] —
    /// and fails with `open`'s failure.
    pub fn start(open: impl FnOnce() -> Result<State, Failure> + Send + 'static, wait: Wait) -> Result<Self, Failure> {
        if wait == Wait::Inline {
            let state = match catch_unwind(AssertUnwindSafe(open)) {
                Ok(state) => state?,
                Err(_) => return Err(Failure::new(SwmStatus::Panic, "panic while opening")),
            };
            return Ok(Self { jobs: None, thread: None, wait, inline: Some(Mutex::new(Inline(state))) });
        }
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
            Ok(Ok(())) => Ok(Self { jobs: Some(jobs_tx), thread: Some(thread), wait, inline: None }),
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

    /// Runs `f` on the engine thread (on this thread, holding the handle's lock, for [`Wait::Inline`]) and
    /// returns its result. A panic in `f` is reported as `SWM_STATUS_PANIC` and ends the thread (poisons the
    /// lock): later calls fail the same way.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, Failure> {
        let dead = || Failure::new(SwmStatus::Panic, "the engine thread has stopped after a panic; free the handle");
        if let Some(inline) = &self.inline {
            let mut engine = inline.lock().map_err(|_| dead())?;
            engine.0.bind()?;
            let result = f(&mut engine.0);
            engine.0.after_reply();
            return result;
        }
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
        if self.wait == Wait::Sleep {
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
        // An inline engine is dropped here, with its context current (its media handles free through it).
        if let Some(inline) = self.inline.take() {
            let engine = inline.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = engine.0.bind();
            drop(engine);
        }
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
