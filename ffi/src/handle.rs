//! What a `swm_engine *` stands for: the engine thread ([`Worker`]), what never changes about the model (read
//! once at open, so describing it costs no hand-over), and the inputs each calling thread has staged (kept here,
//! on the callers' side: staging is a host copy under a lock, and only planning goes to the engine thread).

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;

use crate::engine::{Input, Staged, StagedInputs, State};
use crate::error::Failure;
use crate::swm_status as SwmStatus;
use crate::worker::{Wait, Worker};

/// An open handle.
pub(crate) struct Handle {
    /// The engine thread.
    pub worker: Worker,
    /// Model family (0 LeWM, 1 TD-MPC2).
    pub family: u32,
    /// Env action dim.
    pub action_dim: usize,
    /// The model's inputs, in schema order.
    pub inputs: Vec<Input>,
    /// Inputs staged by each calling thread: threads sharing a handle each build their own observation.
    staged: Mutex<HashMap<ThreadId, StagedInputs>>,
    /// The thread whose split plan (`swm_engine_plan_async`) is in flight.
    in_flight: Mutex<Option<ThreadId>>,
}

impl Handle {
    /// Starts the engine thread with `open` and reads the model's description from it; `wait`: how callers
    /// reach the engine (`swm_engine_options.wait`).
    pub fn start(open: impl FnOnce() -> Result<State, Failure> + Send + 'static, wait: Wait) -> Result<Self, Failure> {
        let worker = Worker::start(open, wait)?;
        let ((family, action_dim, n), inputs) = worker.call(|s| {
            let info = s.info();
            let inputs = (0..info.2).filter_map(|i| s.input(i)).collect::<Vec<_>>();
            Ok((info, inputs))
        })?;
        debug_assert_eq!(n, inputs.len());
        Ok(Self { worker, family, action_dim, inputs, staged: Mutex::new(HashMap::new()), in_flight: Mutex::new(None) })
    }

    /// Stages `input` under `name` for the calling thread's next observation or goal (replacing one of the same
    /// name).
    pub fn stage(&self, name: String, input: Staged) -> Result<(), Failure> {
        self.check_name(&name)?;
        let mut staged = self.lock()?;
        let mine = staged.entry(std::thread::current().id()).or_default();
        mine.retain(|(n, _)| *n != name);
        mine.push((name, input));
        Ok(())
    }

    /// Refuses a name that is not one of the model's inputs.
    pub fn check_name(&self, name: &str) -> Result<(), Failure> {
        if self.inputs.iter().any(|i| i.name == name) {
            return Ok(());
        }
        let known: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        Err(Failure::new(SwmStatus::BadInput, format!("no input `{name}` (the model takes {})", known.join(", "))))
    }

    /// The calling thread's staged inputs, taken (the next observation starts empty).
    pub fn take_staged(&self) -> Result<StagedInputs, Failure> {
        Ok(self.lock()?.remove(&std::thread::current().id()).unwrap_or_default())
    }

    /// Refuses a new plan while a split plan is in flight (before the caller's staged inputs are taken, so that
    /// they survive the refusal).
    pub fn check_no_plan_in_flight(&self) -> Result<(), Failure> {
        match *self.flight()? {
            Some(_) => Err(Failure::new(
                SwmStatus::BadInput,
                "a plan is in flight (swm_engine_plan_async): collect it first; the staged observation is kept",
            )),
            None => Ok(()),
        }
    }

    /// Records that the calling thread's split plan is in flight.
    pub fn set_in_flight(&self) -> Result<(), Failure> {
        *self.flight()? = Some(std::thread::current().id());
        Ok(())
    }

    /// Ends the calling thread's split plan (the next collection finds none); refuses another thread's.
    pub fn take_in_flight(&self) -> Result<(), Failure> {
        let mut flight = self.flight()?;
        match *flight {
            Some(t) if t == std::thread::current().id() => {
                *flight = None;
                Ok(())
            }
            Some(_) => Err(Failure::new(SwmStatus::BadInput, "the plan in flight was issued by another thread")),
            None => Err(Failure::new(SwmStatus::BadInput, "no plan in flight (swm_engine_plan_async first)")),
        }
    }

    fn flight(&self) -> Result<std::sync::MutexGuard<'_, Option<ThreadId>>, Failure> {
        self.in_flight.lock().map_err(|_| Failure::new(SwmStatus::Panic, "plan state poisoned by a panic"))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<ThreadId, StagedInputs>>, Failure> {
        self.staged.lock().map_err(|_| Failure::new(SwmStatus::Panic, "staged inputs poisoned by a panic"))
    }
}
