//! libswm: the C ABI of swm, for C and C++ controllers that plan in their own control loop (no daemon).
//!
//! The header is `ffi/include/swm.h`, generated from this crate by cbindgen and committed. Rules every entry point
//! follows:
//! - it returns a [`swm_status`] (0 = `SWM_STATUS_OK`); on failure the calling thread's last error
//!   ([`swm_last_error`]) says what was wrong, naming the argument or input;
//! - NULL handles and pointers are `SWM_STATUS_NULL_ARGUMENT`; a handle that was never opened or is already freed
//!   is `SWM_STATUS_INVALID_HANDLE` (handles are checked against a registry, not dereferenced); every output
//!   buffer comes with its capacity; enum arguments are `uint32_t` and unknown values are
//!   `SWM_STATUS_UNKNOWN_ENUM`;
//! - every options struct starts with `uint32_t struct_size` (`sizeof` the caller's struct) and only grows at the
//!   end: a size below 8 or not a multiple of 4 is `SWM_STATUS_STRUCT_SIZE`, fields past the caller's size keep
//!   their defaults; output structs are written up to their size (only `struct_size` is read); frame structs must
//!   be whole;
//! - a Rust panic never unwinds into C: it becomes `SWM_STATUS_PANIC`.
//!
//! Threads: a handle may be used from several threads at once. Its engine lives on a thread of its own (CUDA graphs
//! must be launched from the thread that captured them); calls that use the GPU (goal, plan, act, device frames,
//! planner and deadline changes, reset) are handed to it and serialised in arrival order. Describing the model and
//! staging host inputs stay on the calling thread. Inputs are staged per calling thread, so threads sharing a
//! handle each plan from their own observation (the planner's warm start is the handle's: the previous plan,
//! whichever thread asked for it).

#![allow(non_camel_case_types)]

mod engine;
mod error;
mod handle;
mod worker;

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, Mutex, OnceLock};

use runtime::ops::{FrameLayout, PixelFormat, YuvColor, YuvMatrix, YuvRange};
use runtime::planning::{PlanSource, PlannerOverrides, SolverKind};

use crate::engine::{engine_options, ActionsOut, Shape, Staged, State};
use crate::error::{boundary, last_error, Failure};
use crate::handle::Handle;

/// The ABI version: raised when a function, struct or enum changes incompatibly.
pub const SWM_ABI_VERSION: u32 = 1;

/// What a call returned. `SWM_STATUS_OK` is 0; every other value comes with a message from `swm_last_error` on
/// the calling thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum swm_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument is out of range or malformed (the message names it).
    InvalidArgument = 2,
    /// An output buffer is too small (the message says how large it must be).
    BufferTooSmall = 3,
    /// An options struct's `struct_size` is smaller than its first version or not a multiple of 4.
    StructSize = 4,
    /// An enum argument has a value this library does not know.
    UnknownEnum = 5,
    /// A handle that is not open: never returned by `swm_engine_open`, or already freed.
    InvalidHandle = 6,
    /// No usable CUDA device or driver.
    NoDevice = 7,
    /// The artifact could not be read or validated.
    Artifact = 8,
    /// The observation or goal is missing or malformed (the message names the input).
    BadInput = 9,
    /// The runtime failed (a CUDA error, a kernel, the planner).
    Runtime = 10,
    /// Rust panicked inside the call; the handle is unusable afterwards (free it).
    Panic = 11,
}

/// An engine handle (opaque): one artifact on one GPU with its planner.
pub struct swm_engine {
    _private: [u8; 0],
}

/// Pixel formats of `swm_frame` and `swm_device_frame`.
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum swm_pixel_format {
    /// 3 bytes per pixel, R G B.
    Rgb8 = 0,
    /// 3 bytes per pixel, B G R.
    Bgr8 = 1,
    /// 4 bytes per pixel, R G B A (alpha ignored).
    Rgba8 = 2,
    /// 4 bytes per pixel, B G R A (alpha ignored).
    Bgra8 = 3,
    /// NV12, BT.601 limited range: `height` luma rows, then `height / 2` rows of interleaved U, V.
    Nv12 = 4,
    /// NV12, BT.709 limited range.
    Nv12Bt709 = 5,
    /// NV12, BT.601 full range.
    Nv12Full = 6,
    /// NV12, BT.709 full range.
    Nv12Bt709Full = 7,
}

/// Solvers of `swm_planner_options`.
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum swm_solver {
    /// Keep the current solver.
    Keep = 0,
    /// The cross-entropy method.
    Cem = 1,
    /// MPPI.
    Mppi = 2,
    /// iCEM.
    Icem = 3,
}

/// How a calling thread reaches the handle's engine and waits for its call (`swm_engine_options.wait`).
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum swm_wait {
    /// Poll: spin 100 µs, then yield the CPU between polls (the default; a hand-over costs microseconds, and the
    /// waiting thread keeps a core busy for the whole call, as CUDA's default synchronisation does).
    Poll = 0,
    /// Sleep on the reply (no CPU while waiting; each call costs a thread wake-up, ~130 µs on the H200 hosts).
    Sleep = 1,
    /// As `SWM_WAIT_POLL`, except that `swm_engine_plan` runs on the calling thread, with no hand-over, once the
    /// engine is steady (every CUDA graph a plan replays captured; captures stay on the engine thread). The
    /// engine's CUDA context (the device's primary context) is current during the call; a thread that had
    /// another context current gets it back, one that had none keeps the primary context current. Inline plans
    /// take the engine's lock in no particular order. TD-MPC2 pixel models and eager engines plan on the engine
    /// thread. The lowest call overhead (`examples/c/bench`).
    Inline = 2,
}

/// How a plan's action was produced (swm's `PlanSource`).
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum swm_plan_source {
    /// Every configured iteration ran.
    Solved = 0,
    /// The deadline stopped the solver early.
    Truncated = 1,
    /// No iteration fitted: the previous plan, shifted.
    WarmStart = 2,
    /// No iteration fitted and no warm start: the configured fallback action.
    Fallback = 3,
    /// Neither: the prior mean.
    Prior = 4,
}

/// Options of `swm_engine_open` (all zero = the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct swm_engine_options {
    /// `sizeof(swm_engine_options)` as the caller compiled it.
    pub struct_size: u32,
    /// CUDA device ordinal.
    pub gpu: u32,
    /// LeWM: context frames kept (0 = 1).
    pub history: u32,
    /// Non-zero: run planner iterations eagerly instead of replaying CUDA graphs (debugging).
    pub eager: u32,
    /// Step budget in milliseconds, from the plan call to the action in host memory; 0 = every iteration runs.
    pub deadline_ms: f64,
    /// A `swm_wait` value: how calling threads reach the engine (added in struct size 32; older callers
    /// get `SWM_WAIT_POLL`).
    pub wait: u32,
    /// Reserved, 0.
    pub reserved: u32,
}

/// Changes to the planner (`swm_engine_set_planner`); zero fields keep their value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct swm_planner_options {
    /// `sizeof(swm_planner_options)` as the caller compiled it.
    pub struct_size: u32,
    /// A `swm_solver` value (0 keeps the solver; another resets its parameters to upstream's defaults).
    pub solver: u32,
    /// Candidates per iteration.
    pub samples: u32,
    /// Iterations per plan.
    pub iterations: u32,
    /// Planning horizon in macro steps.
    pub horizon: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Noise seed (0 keeps it).
    pub seed: u64,
}

/// A frame in host memory (`swm_engine_set_frame`); copied during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct swm_frame {
    /// `sizeof(swm_frame)` as the caller compiled it.
    pub struct_size: u32,
    /// A `swm_pixel_format` value.
    pub format: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (NV12: of both planes).
    pub pitch: u32,
    /// NV12: bytes from `data` to the UV plane (0 = `pitch * height`).
    pub uv_offset: u32,
    /// The pixels.
    pub data: *const u8,
    /// Bytes readable at `data`.
    pub size: usize,
}

/// A frame in the caller's CUDA device memory (`swm_engine_set_device_frame`): copied on the engine's stream,
/// after `wait_event` when given. The memory must stay unchanged until the next `swm_engine_plan` (or
/// `swm_engine_commit_goal`) returns — for a split plan, until its `done_event` has completed or it is collected.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct swm_device_frame {
    /// `sizeof(swm_device_frame)` as the caller compiled it.
    pub struct_size: u32,
    /// A `swm_pixel_format` value.
    pub format: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next.
    pub pitch: u32,
    /// NV12: bytes to the UV plane (0 = `pitch * height`).
    pub uv_offset: u32,
    /// The device address (`CUdeviceptr`) in the engine's CUDA context (the device's primary context).
    pub device_ptr: u64,
    /// Bytes readable there.
    pub size: usize,
    /// A `CUevent` recorded after the caller's writes, or NULL when they are complete.
    pub wait_event: *mut c_void,
}

/// What `swm_engine_plan` returns besides the actions.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct swm_plan_result {
    /// `sizeof(swm_plan_result)` as the caller compiled it.
    pub struct_size: u32,
    /// A `swm_plan_source` value.
    pub source: u32,
    /// Planner iterations that ran.
    pub iterations: u32,
    /// Env action dim (values per action).
    pub action_dim: u32,
    /// Executed actions in the plan (the receding horizon × action block).
    pub steps: u32,
    /// Values written to the caller's buffer.
    pub written: u32,
    /// The plan's cost (NaN when no iteration ran).
    pub cost: f32,
    /// Reserved, 0.
    pub reserved: u32,
    /// GPU time of the observation's preprocessing and encoding, ms.
    pub encode_ms: f64,
    /// GPU time of planning, ms.
    pub plan_ms: f64,
    /// Host time of the call on the engine thread, ms.
    pub wall_ms: f64,
    /// Host time of the whole job on the engine thread (building the observation, the step, collecting the
    /// result), ms: with `wall_ms` and the caller's own clock it splits the C call's cost into the hand-over and
    /// the work around the step (added in struct size 64). For `swm_engine_plan_collect`: the collecting job only
    /// (`wall_ms` then spans from the issue to the collection).
    pub job_ms: f64,
    /// Of `job_ms`, the host time before the step (the staged inputs made an observation), ms (added in struct
    /// size 80).
    pub before_step_ms: f64,
    /// Of `job_ms`, the host time after the step (its result read into the reply), ms (struct size 80).
    pub after_step_ms: f64,
}

/// The model behind a handle (`swm_engine_describe`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct swm_engine_info {
    /// `sizeof(swm_engine_info)` as the caller compiled it.
    pub struct_size: u32,
    /// 0 LeWM, 1 TD-MPC2.
    pub family: u32,
    /// Env action dim.
    pub action_dim: u32,
    /// Inputs an observation has (see `swm_engine_input`).
    pub inputs: u32,
}

/// One input of the model's observations (`swm_engine_input`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct swm_input_info {
    /// `sizeof(swm_input_info)` as the caller compiled it.
    pub struct_size: u32,
    /// 0: frames (`swm_engine_set_frame`, `_device_frame`, `_jpeg`); 1: a state vector (`swm_engine_set_state`).
    pub kind: u32,
    /// State vectors: values. Frames: 3 (channels).
    pub dim: u32,
    /// Frames: the model's input height (frames of other sizes are resized). 0 for states.
    pub height: u32,
    /// Frames: the model's input width. 0 for states.
    pub width: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// The input's name, NUL-terminated (names longer than 31 bytes are truncated here; use the artifact's
    /// schema.json for those).
    pub name: [u8; 32],
}

/// Live handles: the pointer given to C is a registry key (never reused, never dereferenced).
fn handles() -> &'static Mutex<HashMap<usize, Arc<Handle>>> {
    static HANDLES: OnceLock<Mutex<HashMap<usize, Arc<Handle>>>> = OnceLock::new();
    HANDLES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A live handle.
fn handle(engine: *const swm_engine) -> Result<Arc<Handle>, Failure> {
    if engine.is_null() {
        return Err(Failure::new(swm_status::NullArgument, "engine is NULL"));
    }
    let map = handles().lock().map_err(|_| Failure::new(swm_status::Panic, "handle registry poisoned"))?;
    map.get(&(engine as usize))
        .cloned()
        .ok_or_else(|| Failure::new(swm_status::InvalidHandle, "engine is not an open handle (never opened, or freed)"))
}

/// `name` as UTF-8.
fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::new(swm_status::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string (header contract); it is only read during the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| Failure::new(swm_status::InvalidArgument, format!("{what} is not UTF-8")))
}

/// The `struct_size` of a caller's output struct (at least 8 and a multiple of 4); only that field is read, the
/// rest may be uninitialised.
fn output_size<T>(p: *const T, what: &str) -> Result<usize, Failure> {
    if p.is_null() {
        return Err(Failure::new(swm_status::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: every struct of this ABI starts with a `uint32_t struct_size`; the caller's pointer is valid for it.
    let size = unsafe { p.cast::<u32>().read_unaligned() } as usize;
    if size < 8 || !size.is_multiple_of(4) {
        return Err(Failure::new(swm_status::StructSize, format!("{what}.struct_size = {size} (set it to sizeof)")));
    }
    Ok(size)
}

/// A step budget in milliseconds (0 = none), checked on the calling thread.
fn deadline(ms: f64) -> Result<Option<std::time::Duration>, Failure> {
    if ms == 0.0 {
        return Ok(None);
    }
    std::time::Duration::try_from_secs_f64(ms / 1e3)
        .map(Some)
        .map_err(|_| Failure::new(swm_status::InvalidArgument, format!("deadline_ms = {ms}")))
}

/// A `swm_solver` value (`None`: keep the solver).
fn solver_kind(raw: u32) -> Result<Option<SolverKind>, Failure> {
    match raw {
        0 => Ok(None),
        1 => Ok(Some(SolverKind::Cem)),
        2 => Ok(Some(SolverKind::Mppi)),
        3 => Ok(Some(SolverKind::Icem)),
        other => Err(Failure::new(swm_status::UnknownEnum, format!("solver {other}"))),
    }
}

/// A caller's slice of `length` values at `p` (non-NULL), refusing lengths no allocation can have.
///
/// # Safety
/// `p` is valid for `length` values of `T`.
unsafe fn caller_slice<'a, T>(p: *const T, length: usize, what: &str) -> Result<&'a [T], Failure> {
    if p.is_null() {
        return Err(Failure::new(swm_status::NullArgument, format!("{what} is NULL")));
    }
    if length > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Failure::new(swm_status::InvalidArgument, format!("{what}: length {length}")));
    }
    // SAFETY: the caller guarantees `length` readable values; the total size fits `isize` (checked above).
    Ok(unsafe { std::slice::from_raw_parts(p, length) })
}

/// Reads a versioned options struct: at least `min` bytes (version 1), at most our size; the rest default.
fn read_options<T: Copy + Default>(p: *const T, what: &str) -> Result<T, Failure> {
    if p.is_null() {
        return Err(Failure::new(swm_status::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: every options struct starts with a `uint32_t struct_size`; the caller's pointer is valid for it.
    let size = unsafe { p.cast::<u32>().read_unaligned() } as usize;
    let ours = std::mem::size_of::<T>();
    if size < 8 || !size.is_multiple_of(4) {
        return Err(Failure::new(
            swm_status::StructSize,
            format!("{what}.struct_size = {size} (set it to sizeof; this library's is {ours})"),
        ));
    }
    let mut value = T::default();
    // SAFETY: the caller's struct holds `size` bytes; we copy at most `ours` of them into a `T` whose fields are
    // plain integers and floats (any bit pattern is valid).
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), size.min(ours)) };
    Ok(value)
}

fn layout(format: u32, width: u32, height: u32, pitch: u32, uv_offset: u32) -> Result<FrameLayout, Failure> {
    let nv12 = |matrix, range| PixelFormat::Nv12(YuvColor { matrix, range });
    let format = match format {
        0 => PixelFormat::Rgb,
        1 => PixelFormat::Bgr,
        2 => PixelFormat::Rgba,
        3 => PixelFormat::Bgra,
        4 => nv12(YuvMatrix::Bt601, YuvRange::Limited),
        5 => nv12(YuvMatrix::Bt709, YuvRange::Limited),
        6 => nv12(YuvMatrix::Bt601, YuvRange::Full),
        7 => nv12(YuvMatrix::Bt709, YuvRange::Full),
        other => return Err(Failure::new(swm_status::UnknownEnum, format!("pixel format {other}"))),
    };
    let (w, h, p) = (width as usize, height as usize, pitch as usize);
    let uv = if uv_offset == 0 { p * h } else { uv_offset as usize };
    let layout = FrameLayout { format, width: w, height: h, pitch: p, uv_offset: uv };
    if w == 0 || h == 0 || p < w * format.bytes_per_pixel() {
        return Err(Failure::new(swm_status::InvalidArgument, format!("frame {w}x{h} with pitch {p}")));
    }
    Ok(layout)
}

/// The ABI version this library implements ([`SWM_ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn swm_abi_version() -> u32 {
    SWM_ABI_VERSION
}

/// Copies the calling thread's last error message (NUL-terminated) into `buffer` of `capacity` bytes and stores
/// its length plus one in `*length` (when not NULL). `SWM_STATUS_BUFFER_TOO_SMALL` when it does not fit (nothing
/// is written; call with a NULL buffer and capacity 0 to ask for the size).
///
/// # Safety
/// `buffer` is NULL or valid for `capacity` bytes; `length` is NULL or valid for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn swm_last_error(buffer: *mut c_char, capacity: usize, length: *mut usize) -> swm_status {
    let message = last_error();
    let needed = message.len() + 1;
    if !length.is_null() {
        // SAFETY: the caller passes NULL or a valid `size_t` pointer.
        unsafe { length.write(needed) };
    }
    if buffer.is_null() || capacity < needed {
        return if buffer.is_null() && capacity == 0 { swm_status::Ok } else { swm_status::BufferTooSmall };
    }
    // SAFETY: `buffer` holds `capacity >= needed` bytes (caller contract, checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), buffer.cast::<u8>(), message.len());
        buffer.add(message.len()).write(0);
    }
    swm_status::Ok
}

/// Opens the deployment artifact at `artifact_dir` (from `swm convert`) on a GPU and stores a new handle in
/// `*engine` (NULL on failure). `options` may be NULL for the defaults. The engine captures its CUDA graphs on the
/// first plan.
///
/// # Safety
/// `artifact_dir` is a NUL-terminated string; `options` is NULL or points to a `swm_engine_options` of at least
/// version 1's size; `engine` is valid for one pointer.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_open(
    artifact_dir: *const c_char,
    options: *const swm_engine_options,
    engine: *mut *mut swm_engine,
) -> swm_status {
    boundary("swm_engine_open", || {
        if engine.is_null() {
            return Err(Failure::new(swm_status::NullArgument, "engine (the output) is NULL"));
        }
        // SAFETY: checked non-NULL; the caller's pointer is valid for one write.
        unsafe { engine.write(std::ptr::null_mut()) };
        let dir = std::path::PathBuf::from(text(artifact_dir, "artifact_dir")?);
        let o = if options.is_null() { swm_engine_options::default() } else { read_options(options, "options")? };
        let opts = engine_options(o.gpu as usize, o.history as usize, deadline(o.deadline_ms)?, o.eager != 0);
        let wait = match o.wait {
            0 => worker::Wait::Poll,
            1 => worker::Wait::Sleep,
            2 => worker::Wait::Inline,
            other => return Err(Failure::new(swm_status::UnknownEnum, format!("options.wait = {other}"))),
        };
        let handle = Arc::new(Handle::start(move || State::open(&dir, &opts), wait)?);
        // Keys are never reused, so that a freed handle stays unknown even when its memory is reused.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0x5_0000);
        let key = NEXT.fetch_add(16, std::sync::atomic::Ordering::Relaxed);
        handles().lock().map_err(|_| Failure::new(swm_status::Panic, "handle registry poisoned"))?.insert(key, handle);
        // SAFETY: as above.
        unsafe { engine.write(key as *mut swm_engine) };
        Ok(())
    })
}

/// Frees a handle (its engine and GPU memory, after any call still running on it). NULL is accepted; a handle that
/// is not open (freed twice) is `SWM_STATUS_INVALID_HANDLE` and nothing happens.
#[no_mangle]
pub extern "C" fn swm_engine_free(engine: *mut swm_engine) -> swm_status {
    boundary("swm_engine_free", || {
        if engine.is_null() {
            return Ok(());
        }
        let removed = handles()
            .lock()
            .map_err(|_| Failure::new(swm_status::Panic, "handle registry poisoned"))?
            .remove(&(engine as usize));
        match removed {
            Some(handle) => {
                drop(handle);
                Ok(())
            }
            None => Err(Failure::new(swm_status::InvalidHandle, "engine is not an open handle (freed twice?)")),
        }
    })
}

/// Describes the model behind `engine` into `*info` (its `struct_size` set by the caller).
///
/// # Safety
/// `info` is valid for a `swm_engine_info` of the `struct_size` it states.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_describe(engine: *const swm_engine, info: *mut swm_engine_info) -> swm_status {
    boundary("swm_engine_describe", || {
        let h = handle(engine)?;
        let size = output_size(info, "info")?;
        let out = swm_engine_info {
            struct_size: size as u32,
            family: h.family,
            action_dim: h.action_dim as u32,
            inputs: h.inputs.len() as u32,
        };
        // SAFETY: the caller's struct holds `size` bytes (at least 8, checked by `read_options`).
        unsafe { write_prefix(info, &out, size) };
        Ok(())
    })
}

/// Describes input `index` (0 ≤ index < `swm_engine_info.inputs`) into `*input`.
///
/// # Safety
/// `input` is valid for a `swm_input_info` of the `struct_size` it states.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_input(
    engine: *const swm_engine,
    index: u32,
    input: *mut swm_input_info,
) -> swm_status {
    boundary("swm_engine_input", || {
        let h = handle(engine)?;
        let size = output_size(input, "input")?;
        let Some(spec) = h.inputs.get(index as usize) else {
            return Err(Failure::new(swm_status::InvalidArgument, format!("input {index} does not exist")));
        };
        let mut out = swm_input_info { struct_size: size as u32, ..Default::default() };
        match spec.shape {
            Shape::State(d) => (out.kind, out.dim) = (1, d as u32),
            Shape::Frame(h, w) => (out.kind, out.dim, out.height, out.width) = (0, 3, h as u32, w as u32),
        }
        let n = spec.name.len().min(out.name.len() - 1);
        out.name[..n].copy_from_slice(&spec.name.as_bytes()[..n]);
        // SAFETY: the caller's struct holds `size` bytes (at least 8, checked by `read_options`).
        unsafe { write_prefix(input, &out, size) };
        Ok(())
    })
}

/// Writes the first `size` bytes (at most ours) of `value` to `p`.
///
/// # Safety
/// `p` is valid for `size` bytes.
unsafe fn write_prefix<T>(p: *mut T, value: &T, size: usize) {
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller guarantees `p` holds `size >= n` bytes; `value` holds `size_of::<T>() >= n`.
    unsafe { std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), p.cast::<u8>(), n) };
}

/// Stages a state vector of `length` floats for input `name` of the next observation or goal.
///
/// # Safety
/// `name` is NUL-terminated; `values` is valid for `length` floats.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_set_state(
    engine: *mut swm_engine,
    name: *const c_char,
    values: *const f32,
    length: usize,
) -> swm_status {
    boundary("swm_engine_set_state", || {
        let h = handle(engine)?;
        let name = text(name, "name")?.to_string();
        // SAFETY: caller contract: `length` readable floats.
        let v = unsafe { caller_slice(values, length, "values") }?.to_vec();
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Failure::new(swm_status::BadInput, format!("`{name}` value {i} is not finite")));
        }
        h.stage(name, Staged::state(v)?)
    })
}

/// Stages a frame in host memory (copied now) for input `name`; any size (resized on the GPU as upstream does).
///
/// # Safety
/// `name` is NUL-terminated; `frame` points to a `swm_frame` whose `data` holds `size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_set_frame(
    engine: *mut swm_engine,
    name: *const c_char,
    frame: *const swm_frame,
) -> swm_status {
    boundary("swm_engine_set_frame", || {
        let h = handle(engine)?;
        let name = text(name, "name")?.to_string();
        let f = read_whole(frame, "frame")?;
        let layout = layout(f.format, f.width, f.height, f.pitch, f.uv_offset)?;
        if f.data.is_null() {
            return Err(Failure::new(swm_status::NullArgument, "frame.data is NULL"));
        }
        check_frame_size(&layout, f.size)?;
        // SAFETY: caller contract: `size` readable bytes at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(f.data, layout.required_bytes()) }.to_vec();
        h.stage(name, Staged::host_frame(bytes, layout)?)
    })
}

/// Refuses a frame the fused kernel would refuse (odd NV12 sides, overlapping planes, a side beyond the limit) and a
/// `size` short of the layout, at staging time rather than at the plan that would consume the observation.
fn check_frame_size(layout: &FrameLayout, size: usize) -> Result<(), Failure> {
    if size < layout.required_bytes() {
        return Err(Failure::new(
            swm_status::BufferTooSmall,
            format!("frame.size {size} < {} bytes the layout needs", layout.required_bytes()),
        ));
    }
    layout.check(size).map_err(|e| Failure::new(swm_status::InvalidArgument, format!("frame: {e}")))
}

/// Reads a struct whose every field is required (a frame: version 1 is the current one): the caller's
/// `struct_size` is checked before anything beyond it is read.
fn read_whole<T: Copy>(p: *const T, what: &str) -> Result<T, Failure> {
    if p.is_null() {
        return Err(Failure::new(swm_status::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: every struct of this ABI starts with a `uint32_t struct_size`; the caller's pointer is valid for it.
    let size = unsafe { p.cast::<u32>().read_unaligned() } as usize;
    if size < std::mem::size_of::<T>() {
        return Err(Failure::new(
            swm_status::StructSize,
            format!("{what}.struct_size = {size}, version 1's is {}", std::mem::size_of::<T>()),
        ));
    }
    // SAFETY: the caller's struct holds `size >= size_of::<T>()` bytes (checked above); `T` is plain data.
    Ok(unsafe { p.read_unaligned() })
}

/// Stages a frame in the caller's device memory for input `name` (see `swm_device_frame`).
///
/// # Safety
/// `name` is NUL-terminated; `frame` points to a `swm_device_frame` whose memory and event are valid.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_set_device_frame(
    engine: *mut swm_engine,
    name: *const c_char,
    frame: *const swm_device_frame,
) -> swm_status {
    boundary("swm_engine_set_device_frame", || {
        let h = handle(engine)?;
        let name = text(name, "name")?.to_string();
        let f = read_whole(frame, "frame")?;
        let layout = layout(f.format, f.width, f.height, f.pitch, f.uv_offset)?;
        if f.device_ptr == 0 {
            return Err(Failure::new(swm_status::NullArgument, "frame.device_ptr is 0"));
        }
        check_frame_size(&layout, f.size)?;
        let (src, bytes, event) = (f.device_ptr, layout.required_bytes(), f.wait_event as usize);
        h.check_name(&name)?; // before the copy
        let t = h.worker.call(move |s| Ok(s.copy_device(src, bytes, event)?.unsqueeze(0)?))?;
        h.stage(name, Staged::Frame(t, layout))
    })
}

/// Stages a JPEG file of `length` bytes (copied now) for input `name`; decoded on the GPU at the next plan.
///
/// # Safety
/// `name` is NUL-terminated; `bytes` is valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_set_jpeg(
    engine: *mut swm_engine,
    name: *const c_char,
    bytes: *const u8,
    length: usize,
) -> swm_status {
    boundary("swm_engine_set_jpeg", || {
        let h = handle(engine)?;
        let name = text(name, "name")?.to_string();
        // SAFETY: caller contract: `length` readable bytes.
        let file = unsafe { caller_slice(bytes, length, "bytes") }?.to_vec();
        if !file.starts_with(&[0xFF, 0xD8]) {
            return Err(Failure::new(swm_status::BadInput, format!("`{name}` is not a JPEG file (no FF D8)")));
        }
        h.stage(name, Staged::Jpeg(file))
    })
}

/// The calling thread's staged inputs become the goal (LeWM; TD-MPC2 takes none: `SWM_STATUS_BAD_INPUT`).
#[no_mangle]
pub extern "C" fn swm_engine_commit_goal(engine: *mut swm_engine) -> swm_status {
    boundary("swm_engine_commit_goal", || {
        let h = handle(engine)?;
        let staged = h.take_staged()?;
        h.worker.call(move |s| s.commit_goal(staged))
    })
}

/// Plans from the calling thread's staged observation (every input of the model) and writes the first action — or, with
/// `sequence` non-zero, every executed action of the plan — into `actions` (capacity `capacity` floats), and the
/// rest into `*result` (its `struct_size` set by the caller; `result` may be NULL). The observation is consumed.
///
/// # Safety
/// `actions` is valid for `capacity` floats; `result` is NULL or valid for the size it states.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_plan(
    engine: *mut swm_engine,
    actions: *mut f32,
    capacity: usize,
    sequence: u32,
    result: *mut swm_plan_result,
) -> swm_status {
    boundary("swm_engine_plan", || {
        let h = handle(engine)?;
        let result_size = plan_outputs(actions, result)?;
        h.check_no_plan_in_flight()?;
        let staged = h.take_staged()?;
        // SAFETY: `actions` is non-NULL (checked) and valid for `capacity` floats (caller contract); this thread
        // stays in the call until the job has replied.
        let out = unsafe { ActionsOut::new(actions, capacity, sequence != 0) };
        let p = h.worker.plan(move |s| s.plan(staged, out))?;
        // SAFETY: caller contract, as `write_result` requires.
        unsafe { write_result(&p, result, result_size) };
        Ok(())
    })
}

/// The first half of `swm_engine_plan`: plans from the calling thread's staged observation without waiting for the
/// GPU, and stores in `*done_event` a `CUevent` recorded after the result's copy to host memory (a caller can
/// make its own stream wait on it, or poll it, with the CUDA driver API). The event belongs to the handle: valid
/// until the next plan on it or `swm_engine_free`. Collect the result on the same thread with
/// `swm_engine_plan_collect`; another plan before that is `SWM_STATUS_BAD_INPUT` (the caller's staged observation
/// is kept). A device frame staged for this plan must stay unchanged until the plan is collected.
///
/// # Safety
/// `done_event` is valid for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_plan_async(engine: *mut swm_engine, done_event: *mut u64) -> swm_status {
    boundary("swm_engine_plan_async", || {
        let h = handle(engine)?;
        if done_event.is_null() {
            return Err(Failure::new(swm_status::NullArgument, "done_event is NULL"));
        }
        h.check_no_plan_in_flight()?;
        let staged = h.take_staged()?;
        let event = h.worker.call(move |s| s.plan_issue(staged))?;
        h.set_in_flight()?;
        // SAFETY: checked non-NULL; the caller's pointer is valid for one write.
        unsafe { done_event.write(event) };
        Ok(())
    })
}

/// The second half of `swm_engine_plan`: waits for the plan this thread's `swm_engine_plan_async` issued and writes
/// it as `swm_engine_plan` does. `SWM_STATUS_BAD_INPUT` when none is in flight, or when another thread issued it.
///
/// # Safety
/// As `swm_engine_plan`.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_plan_collect(
    engine: *mut swm_engine,
    actions: *mut f32,
    capacity: usize,
    sequence: u32,
    result: *mut swm_plan_result,
) -> swm_status {
    boundary("swm_engine_plan_collect", || {
        let h = handle(engine)?;
        let result_size = plan_outputs(actions, result)?;
        h.take_in_flight()?;
        // SAFETY: as in `swm_engine_plan`.
        let out = unsafe { ActionsOut::new(actions, capacity, sequence != 0) };
        let p = h.worker.call(move |s| s.plan_collect(out))?;
        // SAFETY: caller contract, as `write_result` requires.
        unsafe { write_result(&p, result, result_size) };
        Ok(())
    })
}

/// Checks a plan call's output arguments before any work: `actions` non-NULL, `result` NULL or of a valid
/// `struct_size` (returned; 0 for NULL).
fn plan_outputs(actions: *mut f32, result: *mut swm_plan_result) -> Result<usize, Failure> {
    if actions.is_null() {
        return Err(Failure::new(swm_status::NullArgument, "actions is NULL"));
    }
    if result.is_null() {
        Ok(0)
    } else {
        output_size(result, "result")
    }
}

/// Writes the plan's summary into `*result` when not NULL (its actions are already in the caller's buffer).
///
/// # Safety
/// `result` is NULL or valid for `result_size` bytes (at least 8).
unsafe fn write_result(p: &crate::engine::Planned, result: *mut swm_plan_result, result_size: usize) {
    if !result.is_null() {
        let (source, iterations) = match p.source {
            PlanSource::Solved => (swm_plan_source::Solved, p.iterations),
            PlanSource::Truncated { iterations } => (swm_plan_source::Truncated, iterations),
            PlanSource::WarmStart => (swm_plan_source::WarmStart, 0),
            PlanSource::Fallback => (swm_plan_source::Fallback, 0),
            PlanSource::Prior => (swm_plan_source::Prior, 0),
        };
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let out = swm_plan_result {
            struct_size: result_size as u32,
            source: source as u32,
            iterations: iterations as u32,
            action_dim: p.action_dim as u32,
            steps: p.steps as u32,
            written: p.written as u32,
            cost: p.cost,
            reserved: 0,
            encode_ms: ms(p.encode),
            plan_ms: ms(p.plan),
            wall_ms: ms(p.wall),
            job_ms: ms(p.job),
            before_step_ms: ms(p.before_step),
            after_step_ms: ms(p.after_step),
        };
        // SAFETY: `result` holds `result_size` bytes (caller contract; at least 8, checked by the caller).
        unsafe { write_prefix(result, &out, result_size) };
    }
}

/// TD-MPC2's actor instead of the planner, on the calling thread's staged observation: the policy mean (`sample`
/// 0) or a sample from it, in env units, into `actions` (capacity `capacity`); `*written` (when not NULL) gets the
/// number of values. A LeWM handle is `SWM_STATUS_BAD_INPUT`. The observation is consumed.
///
/// # Safety
/// `actions` is valid for `capacity` floats; `written` is NULL or valid for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_act(
    engine: *mut swm_engine,
    sample: u32,
    actions: *mut f32,
    capacity: usize,
    written: *mut usize,
) -> swm_status {
    boundary("swm_engine_act", || {
        let h = handle(engine)?;
        if actions.is_null() {
            return Err(Failure::new(swm_status::NullArgument, "actions is NULL"));
        }
        let staged = h.take_staged()?;
        let a = h.worker.call(move |s| s.act(staged, sample != 0))?;
        if capacity < a.len() {
            return Err(Failure::new(
                swm_status::BufferTooSmall,
                format!("actions holds {capacity} floats, the action has {}", a.len()),
            ));
        }
        // SAFETY: `actions` holds `capacity >= a.len()` floats (caller contract, checked above).
        unsafe { std::ptr::copy_nonoverlapping(a.as_ptr(), actions, a.len()) };
        if !written.is_null() {
            // SAFETY: the caller passes NULL or a valid `size_t` pointer.
            unsafe { written.write(a.len()) };
        }
        Ok(())
    })
}

/// Changes the planner (zero fields keep their value; see `swm_planner_options`).
///
/// # Safety
/// `options` points to a `swm_planner_options` of at least version 1's size.
#[no_mangle]
pub unsafe extern "C" fn swm_engine_set_planner(
    engine: *mut swm_engine,
    options: *const swm_planner_options,
) -> swm_status {
    boundary("swm_engine_set_planner", || {
        let h = handle(engine)?;
        let o = read_options(options, "options")?;
        let solver = solver_kind(o.solver)?;
        let nonzero = |v: u32| (v != 0).then_some(v as usize);
        let overrides = PlannerOverrides {
            solver,
            samples: nonzero(o.samples),
            iterations: nonzero(o.iterations),
            horizon: nonzero(o.horizon),
            seed: (o.seed != 0).then_some(o.seed),
        };
        h.worker.call(move |s| s.set_planner(&overrides))
    })
}

/// Starts a new episode: the observation context and the warm start are forgotten (the goal is kept).
#[no_mangle]
pub extern "C" fn swm_engine_reset(engine: *mut swm_engine) -> swm_status {
    boundary("swm_engine_reset", || {
        handle(engine)?.worker.call(|s| {
            s.engine.reset();
            Ok(())
        })
    })
}

/// Sets the step budget in milliseconds (0 = none: every iteration runs).
#[no_mangle]
pub extern "C" fn swm_engine_set_deadline(engine: *mut swm_engine, deadline_ms: f64) -> swm_status {
    boundary("swm_engine_set_deadline", || {
        let budget = deadline(deadline_ms)?;
        handle(engine)?.worker.call(move |s| {
            s.engine.set_deadline(budget);
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests;
