//! The engine behind a handle. Each handle owns one thread that creates the engine (an `Engine` is not `Send`),
//! captures every CUDA graph and runs the calls C threads hand it over a channel; calls from several C threads
//! are serialised in arrival order. The engine thread polls briefly for the next job before sleeping; a caller
//! polls for its reply (spin, then yield) for the whole call, so that a call costs microseconds, not a thread
//! wake-up. A job replies as soon as its result exists; what is left to do (dropping the observation's buffers,
//! capturing a graph a step left missing) runs after the reply ([`State::after_reply`]), before the next job.
//!
//! With [`Wait::Inline`], a plan whose graphs are all captured ("steady") runs on the calling thread instead,
//! holding the engine's lock, with no hand-over: only replays happen there. Inline plans take the lock in no
//! particular order (not in arrival order, as calls handed to the engine thread are). Captures stay on the engine
//! thread, because Candle keeps the buffers a captured graph copies its parameters from in a cache of the capturing
//! thread (see `swm::graph`): the calling thread holds a [`NoCapture`], so a plan that would capture runs eagerly
//! instead and the next plans go to the engine thread until it is steady again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use runtime::graph::NoCapture;

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
    /// Steady plans on the calling thread, everything else as `Poll`.
    Inline,
}

/// The engine, shared by its thread and (for [`Wait::Inline`]) the calling threads.
struct Shared {
    /// `None` once the engine thread has ended (it drops the state itself, with its context current).
    state: Option<State>,
    /// Every graph a plan replays is captured: a plan may run on a calling thread.
    steady: bool,
}

// SAFETY: `State` is not `Send` only because it holds raw CUDA handles (cudarc's `CudaGraph`; nvJPEG and NVDEC
// handles in the session's media), none of them bound to a host thread: CUDA lets any thread use a context's
// graphs, streams, events and library handles as long as no two threads use one at once and the context is
// current on the using thread. `Shared` lives in a `Mutex` (one thread at a time); a calling thread makes the
// engine's context current for the call (and restores its own after); captures — whose parameter buffers Candle
// keeps per capturing thread — happen only on the engine thread, which outlives every graph (calling threads
// hold a `NoCapture`); the engine thread drops the state.
unsafe impl Send for Shared {}

/// A handle's engine thread, and the engine it shares with inline callers.
pub(crate) struct Worker {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    wait: Wait,
    shared: Arc<Mutex<Shared>>,
}

impl Worker {
    /// Starts the thread and creates its state with `open` there; fails with `open`'s failure.
    pub fn start(open: impl FnOnce() -> Result<State, Failure> + Send + 'static, wait: Wait) -> Result<Self, Failure> {
        let (jobs_tx, jobs_rx) = bounded::<Job>(16);
        let (ready_tx, ready_rx) = bounded::<Result<(), Failure>>(1);
        let shared = Arc::new(Mutex::new(Shared { state: None, steady: false }));
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("swm-engine".into())
            .spawn(move || {
                let state = match catch_unwind(AssertUnwindSafe(open)) {
                    Ok(Ok(state)) => state,
                    Ok(Err(f)) => return drop(ready_tx.send(Err(f))),
                    Err(_) => return drop(ready_tx.send(Err(Failure::new(SwmStatus::Panic, "panic while opening")))),
                };
                match theirs.lock() {
                    Ok(mut s) => s.state = Some(state),
                    Err(_) => return drop(ready_tx.send(Err(Failure::new(SwmStatus::Panic, "engine lock poisoned")))),
                }
                let _ = ready_tx.send(Ok(()));
                run(&theirs, jobs_rx);
                // The state (its graphs, media handles, buffers) is dropped here, on the thread that made it.
                let state = theirs.lock().map(|mut s| s.state.take()).unwrap_or_else(|p| p.into_inner().state.take());
                drop(state);
            })
            .map_err(|e| Failure::new(SwmStatus::Runtime, format!("cannot start the engine thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { jobs: Some(jobs_tx), thread: Some(thread), wait, shared }),
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

    /// A plan: with [`Wait::Inline`] and a steady engine, `f` runs on this thread under the engine's lock (no
    /// graph may be captured here: a plan that would capture runs eagerly and sends the next plans to the engine
    /// thread until it is steady again); otherwise as [`Worker::call`].
    pub fn plan<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, Failure> {
        if self.wait != Wait::Inline {
            return self.call(f);
        }
        let mut shared = self.lock()?;
        if !shared.steady {
            drop(shared);
            return self.call(f);
        }
        let Shared { state, steady } = &mut *shared;
        let state = state.as_mut().ok_or_else(dead)?;
        let _current = state.make_current()?;
        let no_capture = NoCapture::new();
        let result = f(state);
        // Still steady unless a capture was skipped or a graph went stale without one being tried (a plan under a
        // deadline after the session reallocated: LeWM's context window growing after a reset).
        *steady = no_capture.skipped() == 0 && state.is_steady();
        drop(no_capture);
        result
    }

    fn lock(&self) -> Result<MutexGuard<'_, Shared>, Failure> {
        self.shared.lock().map_err(|_| dead())
    }
}

/// The failure of every call after a panic ended the engine thread (or poisoned its lock).
fn dead() -> Failure {
    Failure::new(SwmStatus::Panic, "the engine thread has stopped after a panic; free the handle")
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the jobs already queued; it drops the engine.
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Mutex<Shared>, jobs: Receiver<Job>) {
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
        let Ok(mut guard) = shared.lock() else { return };
        let Shared { state, steady } = &mut *guard;
        let Some(state) = state.as_mut() else { return };
        // A panicking job drops its reply sender: the caller sees the thread stop.
        if catch_unwind(AssertUnwindSafe(|| {
            let steps = state.steps();
            job(state);
            let stepped = state.steps() != steps;
            state.after_reply();
            // A step here captured whatever it replays: steady if the engine says so. Any other job (a deadline, a
            // goal, a new planner) can only end steadiness — an inline plan that skipped a capture (TD-MPC2's
            // proposal) stays unsteady until the engine thread plans again, however many other calls come here.
            *steady = state.is_steady() && (stepped || *steady);
        }))
        .is_err()
        {
            return;
        }
    }
}
