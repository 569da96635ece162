//! Host tests of the C ABI (no GPU): the committed header is what cbindgen makes of this crate, and misuse —
//! NULL and unknown handles, short buffers, wrong struct sizes, unknown enum values, calls after a failed open —
//! returns a status with a message.

use std::ffi::CString;
use std::ptr::{null, null_mut};

use super::*;

fn message() -> String {
    let mut buf = vec![0 as c_char; 1024];
    let mut len = 0usize;
    // SAFETY: `buf` holds 1024 bytes; `len` is a live local.
    assert_eq!(unsafe { swm_last_error(buf.as_mut_ptr(), buf.len(), &mut len) }, swm_status::Ok);
    // SAFETY: `swm_last_error` wrote a NUL-terminated string.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

#[test]
fn the_committed_header_is_up_to_date() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate")
        .write(&mut generated);
    let path = format!("{dir}/include/swm.h");
    if std::env::var_os("SWM_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/swm.h is out of date: run `SWM_BLESS=1 cargo test -p swm-ffi header` and commit it"
    );
}

#[test]
fn null_and_unknown_handles_are_statuses_with_messages() {
    assert_eq!(swm_abi_version(), SWM_ABI_VERSION);
    assert_eq!(swm_engine_free(null_mut()), swm_status::Ok, "free(NULL) is allowed");
    let bogus = 0x1234usize as *mut swm_engine;
    assert_eq!(swm_engine_free(bogus), swm_status::InvalidHandle);
    assert!(message().contains("not an open handle"), "{}", message());
    assert_eq!(swm_engine_reset(null_mut()), swm_status::NullArgument);
    assert!(message().contains("engine is NULL"));
    assert_eq!(swm_engine_commit_goal(bogus), swm_status::InvalidHandle);
    let name = CString::new("state").unwrap();
    let v = [1.0f32; 3];
    // SAFETY: valid pointers; the handle is checked before use.
    unsafe {
        assert_eq!(swm_engine_set_state(bogus, name.as_ptr(), v.as_ptr(), 3), swm_status::InvalidHandle);
        assert_eq!(swm_engine_set_state(null_mut(), name.as_ptr(), v.as_ptr(), 3), swm_status::NullArgument);
        let mut a = [0f32; 4];
        assert_eq!(swm_engine_plan(bogus, a.as_mut_ptr(), 4, 0, null_mut()), swm_status::InvalidHandle);
        assert_eq!(swm_engine_set_jpeg(null_mut(), name.as_ptr(), null(), 0), swm_status::NullArgument);
        assert_eq!(swm_engine_act(bogus, 0, a.as_mut_ptr(), 4, null_mut()), swm_status::InvalidHandle);
        assert_eq!(swm_engine_act(bogus, 0, null_mut(), 4, null_mut()), swm_status::InvalidHandle);
    }
    assert_eq!(swm_engine_set_deadline(bogus, f64::NAN), swm_status::InvalidArgument, "the value is checked first");
}

#[test]
fn struct_sizes_are_the_documented_versions() {
    // The header's "added in struct size N" notes: versions grow at the end only.
    assert_eq!(std::mem::size_of::<swm_plan_result>(), 80, "before/after_step_ms: added in struct size 80");
    assert_eq!(std::mem::size_of::<swm_engine_options>(), 32, "wait: added in struct size 32");
}

#[test]
fn split_plans_check_their_arguments() {
    let mut event = 0u64;
    // SAFETY: NULL and bogus handles are refused before anything is dereferenced.
    assert_eq!(unsafe { swm_engine_plan_async(null_mut(), &mut event) }, swm_status::NullArgument);
    let bogus = 0x1234usize as *mut swm_engine;
    assert_eq!(unsafe { swm_engine_plan_async(bogus, &mut event) }, swm_status::InvalidHandle);
    let mut actions = [0f32; 4];
    // SAFETY: as above.
    let status = unsafe { swm_engine_plan_collect(bogus, actions.as_mut_ptr(), 4, 0, null_mut()) };
    assert_eq!(status, swm_status::InvalidHandle);
}

#[test]
fn opening_fails_with_a_status_and_leaves_a_null_handle() {
    let mut engine = std::ptr::dangling_mut::<swm_engine>();
    let missing = CString::new("/nonexistent/artifact").unwrap();
    // SAFETY: valid pointers.
    let status = unsafe { swm_engine_open(missing.as_ptr(), null(), &mut engine) };
    assert_ne!(status, swm_status::Ok);
    assert!(engine.is_null(), "a failed open stores NULL");
    let text = message();
    assert!(text.starts_with("swm_engine_open:"), "{text}");
    // SAFETY: as above.
    assert_eq!(unsafe { swm_engine_open(null(), null(), &mut engine) }, swm_status::NullArgument);
    assert_eq!(unsafe { swm_engine_open(missing.as_ptr(), null(), null_mut()) }, swm_status::NullArgument);
    // A struct_size below version 1's, and one that is not a multiple of 4.
    for size in [0u32, 4, 9] {
        let options = swm_engine_options { struct_size: size, ..Default::default() };
        // SAFETY: as above.
        assert_eq!(unsafe { swm_engine_open(missing.as_ptr(), &options, &mut engine) }, swm_status::StructSize);
        assert!(message().contains("struct_size"));
    }
    let options = swm_engine_options {
        struct_size: std::mem::size_of::<swm_engine_options>() as u32,
        deadline_ms: -1.0,
        ..Default::default()
    };
    // SAFETY: as above.
    assert_eq!(unsafe { swm_engine_open(missing.as_ptr(), &options, &mut engine) }, swm_status::InvalidArgument);
    // An unknown wait mode is refused before anything is opened.
    let options = swm_engine_options {
        struct_size: std::mem::size_of::<swm_engine_options>() as u32,
        wait: 7,
        ..Default::default()
    };
    // SAFETY: as above.
    assert_eq!(unsafe { swm_engine_open(missing.as_ptr(), &options, &mut engine) }, swm_status::UnknownEnum);
    assert!(message().contains("options.wait = 7"), "{}", message());
    // Every known wait mode gets as far as opening (and fails there, on the calling thread for an inline one).
    for wait in [swm_wait::Poll, swm_wait::Sleep, swm_wait::Inline] {
        let options = swm_engine_options {
            struct_size: std::mem::size_of::<swm_engine_options>() as u32,
            wait: wait as u32,
            ..Default::default()
        };
        // SAFETY: as above.
        let status = unsafe { swm_engine_open(missing.as_ptr(), &options, &mut engine) };
        assert!(status != swm_status::Ok && status != swm_status::UnknownEnum, "{wait:?}: {status:?}");
        assert!(engine.is_null() && message().contains("/nonexistent/artifact"), "{wait:?}: {}", message());
    }
    // Calls on the handle a failed open left are NULL-handle errors, not crashes.
    assert_eq!(swm_engine_reset(engine), swm_status::NullArgument);
}

#[test]
fn last_error_reports_its_size_and_refuses_short_buffers() {
    assert_eq!(swm_engine_reset(null_mut()), swm_status::NullArgument);
    let mut len = 0usize;
    // SAFETY: NULL buffer with capacity 0 asks for the size.
    assert_eq!(unsafe { swm_last_error(null_mut(), 0, &mut len) }, swm_status::Ok);
    assert_eq!(len, message().len() + 1);
    let mut short = [0 as c_char; 4];
    // SAFETY: `short` holds 4 bytes.
    assert_eq!(unsafe { swm_last_error(short.as_mut_ptr(), 4, null_mut()) }, swm_status::BufferTooSmall);
    assert_eq!(short, [0; 4], "nothing written");
}

#[test]
fn frames_and_enums_are_checked_before_anything_runs() {
    let name = CString::new("pixels").unwrap();
    let data = [0u8; 12];
    let mut frame = swm_frame {
        struct_size: std::mem::size_of::<swm_frame>() as u32,
        format: 99,
        width: 2,
        height: 2,
        pitch: 6,
        uv_offset: 0,
        data: data.as_ptr(),
        size: data.len(),
    };
    assert!(matches!(layout(99, 2, 2, 6, 0), Err(Failure { status: swm_status::UnknownEnum, .. })));
    assert!(matches!(layout(0, 2, 2, 5, 0), Err(Failure { status: swm_status::InvalidArgument, .. })), "pitch");
    assert!(layout(4, 2, 2, 2, 0).is_ok(), "NV12");
    assert!(read_whole(&frame, "frame").is_ok());
    frame.struct_size = 12;
    assert!(matches!(read_whole(&frame, "frame"), Err(Failure { status: swm_status::StructSize, .. })));
    let bogus = 0x1234usize as *mut swm_engine;
    // SAFETY: valid pointers; the handle is checked first.
    assert_eq!(unsafe { swm_engine_set_frame(bogus, name.as_ptr(), &frame) }, swm_status::InvalidHandle);
    let planner = swm_planner_options { struct_size: 32, solver: 9, ..Default::default() };
    // SAFETY: as above.
    assert_eq!(unsafe { swm_engine_set_planner(bogus, &planner) }, swm_status::InvalidHandle);
    // The enum and the deadline are checked by themselves too (the handle check above comes first).
    assert!(matches!(solver_kind(9), Err(Failure { status: swm_status::UnknownEnum, .. })));
    assert!(matches!(solver_kind(2), Ok(Some(SolverKind::Mppi))));
    for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
        assert!(matches!(deadline(bad), Err(Failure { status: swm_status::InvalidArgument, .. })), "{bad}");
    }
    assert!(matches!(deadline(0.0), Ok(None)));
}

/// The demo artifact (tiny LeWM) written to a temporary directory.
fn demo_artifact() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    runtime::tools::demo::write_artifact(dir.path()).unwrap();
    dir
}

/// Opens `dir` through the C ABI with a fixed planner seed and the `wait` mode.
fn open(dir: &std::path::Path, wait: swm_wait) -> *mut swm_engine {
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let mut engine = null_mut();
    let options = swm_engine_options {
        struct_size: std::mem::size_of::<swm_engine_options>() as u32,
        wait: wait as u32,
        ..Default::default()
    };
    // SAFETY: valid pointers.
    let status = unsafe { swm_engine_open(path.as_ptr(), &options, &mut engine) };
    assert_eq!(status, swm_status::Ok, "{}", message());
    let planner = swm_planner_options { struct_size: 32, samples: 64, iterations: 3, seed: 11, ..Default::default() };
    // SAFETY: as above.
    assert_eq!(unsafe { swm_engine_set_planner(engine, &planner) }, swm_status::Ok, "{}", message());
    engine
}

/// Stages a synthetic 640x480 RGB frame of `seed` for `pixels`.
fn stage_frame(engine: *mut swm_engine, seed: u8) {
    let rgb: Vec<u8> = (0..640 * 480 * 3).map(|i| ((i * 7) as u8).wrapping_add(seed)).collect();
    let frame = swm_frame {
        struct_size: std::mem::size_of::<swm_frame>() as u32,
        format: swm_pixel_format::Rgb8 as u32,
        width: 640,
        height: 480,
        pitch: 640 * 3,
        uv_offset: 0,
        data: rgb.as_ptr(),
        size: rgb.len(),
    };
    let name = CString::new("pixels").unwrap();
    // SAFETY: valid pointers; the frame is copied during the call.
    assert_eq!(unsafe { swm_engine_set_frame(engine, name.as_ptr(), &frame) }, swm_status::Ok, "{}", message());
}

fn plan(engine: *mut swm_engine) -> (Vec<f32>, swm_plan_result) {
    let mut actions = vec![0f32; 64];
    let mut result =
        swm_plan_result { struct_size: std::mem::size_of::<swm_plan_result>() as u32, ..Default::default() };
    // SAFETY: `actions` holds 64 floats; `result` is a live local of the size it states.
    let status = unsafe { swm_engine_plan(engine, actions.as_mut_ptr(), actions.len(), 0, &mut result) };
    assert_eq!(status, swm_status::Ok, "{}", message());
    actions.truncate(result.written as usize);
    (actions, result)
}

/// On the GPU: a C caller plans like the Rust `Engine` with the same seed, frames of a camera's size are taken,
/// and four threads sharing one handle each get their calls through intact — with an engine thread, and inline.
#[test]
#[ignore = "needs a CUDA device"]
fn c_calls_plan_like_the_rust_engine_and_one_handle_serves_four_threads() {
    for wait in [swm_wait::Poll, swm_wait::Inline] {
        c_calls_with(wait);
    }
    // Inline plans (on this thread once the engine is steady) are the engine thread's plans: the same sequence of
    // observations planned on two handles with the same seed, warm starts carried along.
    let dir = demo_artifact();
    let (poll, inline) = (open(dir.path(), swm_wait::Poll), open(dir.path(), swm_wait::Inline));
    for engine in [poll, inline] {
        stage_frame(engine, 99);
        assert_eq!(swm_engine_commit_goal(engine), swm_status::Ok, "{}", message());
    }
    for step in 0..6u8 {
        let [(a, ra), (b, rb)] = [poll, inline].map(|engine| {
            stage_frame(engine, step);
            plan(engine)
        });
        assert_eq!((ra.source, rb.source), (swm_plan_source::Solved as u32, swm_plan_source::Solved as u32));
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-6, "step {step}: engine thread {a:?}, inline {b:?}");
    }
    inline_plans_leave_the_caller_s_context(inline);
    assert_eq!(swm_engine_free(poll), swm_status::Ok);
    assert_eq!(swm_engine_free(inline), swm_status::Ok);
}

/// A steady inline handle: a thread with no CUDA context keeps the device's primary context current after a plan
/// (as the runtime's first call would bind it); a thread with a context of its own gets it back.
fn inline_plans_leave_the_caller_s_context(inline: *mut swm_engine) {
    use cudarc::driver::result::ctx;
    let handle = inline as usize;
    let primary = cudarc::driver::CudaContext::new(0).unwrap();
    let primary_ctx = primary.cu_ctx() as usize;
    std::thread::spawn(move || {
        let engine = handle as *mut swm_engine;
        assert_eq!(ctx::get_current().unwrap(), None, "a fresh thread has no context");
        stage_frame(engine, 7);
        let (actions, result) = plan(engine);
        assert_eq!(result.source, swm_plan_source::Solved as u32);
        assert!(actions.iter().all(|v| v.is_finite()));
        assert_eq!(ctx::get_current().unwrap().map(|c| c as usize), Some(primary_ctx), "the primary context stays");

        let own = cudarc::driver::CudaContext::new_non_primary(0, 0).unwrap();
        own.bind_to_thread().unwrap();
        stage_frame(engine, 8);
        let (actions, _) = plan(engine);
        assert!(actions.iter().all(|v| v.is_finite()));
        assert_eq!(ctx::get_current().unwrap(), Some(own.cu_ctx()), "the thread's own context is restored");
        // SAFETY: unbinding only changes this thread's binding, before `own` is destroyed.
        unsafe { ctx::set_current(std::ptr::null_mut()) }.unwrap();
    })
    .join()
    .unwrap();
}

fn c_calls_with(wait: swm_wait) {
    let dir = demo_artifact();
    let engine = open(dir.path(), wait);
    let mut info = swm_engine_info { struct_size: std::mem::size_of::<swm_engine_info>() as u32, ..Default::default() };
    // SAFETY: a live local of the size it states.
    assert_eq!(unsafe { swm_engine_describe(engine, &mut info) }, swm_status::Ok);
    assert_eq!((info.family, info.inputs), (0, 1));
    stage_frame(engine, 99);
    assert_eq!(swm_engine_commit_goal(engine), swm_status::Ok, "{}", message());
    stage_frame(engine, 1);
    let (c_actions, result) = plan(engine);
    assert_eq!(result.source, swm_plan_source::Solved as u32);
    assert_eq!(c_actions.len(), info.action_dim as usize);
    // The actor is TD-MPC2's: a LeWM handle says so.
    stage_frame(engine, 2);
    let mut a = [0f32; 16];
    // SAFETY: `a` holds 16 floats.
    assert_eq!(unsafe { swm_engine_act(engine, 0, a.as_mut_ptr(), 16, null_mut()) }, swm_status::BadInput);
    assert!(message().contains("TD-MPC2"), "{}", message());

    // The same through the Rust API.
    let mut rust = runtime::engine::Engine::open(dir.path(), &engine::engine_options(0, 1, None, false)).unwrap();
    // The engine's own device: a second `cuda(0)` is another Candle device, whose tensors the kernels refuse.
    let device = rust.device().clone();
    let mut config = rust.planner().config().clone();
    config.apply(&PlannerOverrides { samples: Some(64), iterations: Some(3), seed: Some(11), ..Default::default() });
    rust.set_planner(config).unwrap();
    let frame = |seed: u8| {
        let rgb: Vec<u8> = (0..640 * 480 * 3).map(|i| ((i * 7) as u8).wrapping_add(seed)).collect();
        candle_core::Tensor::from_vec(rgb, (1, 640 * 480 * 3), &device).unwrap()
    };
    let layout = FrameLayout::packed(PixelFormat::Rgb, 640, 480);
    let goal = frame(99);
    rust.set_goal(&runtime::session::Observation::new().image("pixels", &goal, layout)).unwrap();
    let obs = frame(1);
    let step = rust.step(&runtime::session::Observation::new().image("pixels", &obs, layout)).unwrap();
    let diff = step.first_action(0).iter().zip(&c_actions).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6, "C {c_actions:?} vs Rust {:?}", step.first_action(0));

    // Split plans: the first half returns an event and leaves the plan in flight; a second plan is refused until
    // the second half collects it; collecting twice is refused.
    stage_frame(engine, 3);
    let mut event = 0u64;
    // SAFETY: `event` is a live local.
    assert_eq!(unsafe { swm_engine_plan_async(engine, &mut event) }, swm_status::Ok, "{}", message());
    assert_ne!(event, 0, "a CUevent");
    stage_frame(engine, 4);
    let mut again = 0u64;
    // SAFETY: as above.
    assert_eq!(unsafe { swm_engine_plan_async(engine, &mut again) }, swm_status::BadInput, "one plan in flight");
    assert!(message().contains("in flight"), "{}", message());
    let mut actions = vec![0f32; 64];
    let mut result =
        swm_plan_result { struct_size: std::mem::size_of::<swm_plan_result>() as u32, ..Default::default() };
    // SAFETY: `actions` holds 64 floats; `result` is a live local of the size it states.
    let collected = unsafe { swm_engine_plan_collect(engine, actions.as_mut_ptr(), 64, 0, &mut result) };
    assert_eq!(collected, swm_status::Ok, "{}", message());
    assert_eq!(result.source, swm_plan_source::Solved as u32);
    assert!(actions[..result.written as usize].iter().all(|v| v.is_finite()));
    assert!(result.wall_ms > 0.0, "the step's time from its issue to its collection");
    // SAFETY: as above.
    let twice = unsafe { swm_engine_plan_collect(engine, actions.as_mut_ptr(), 64, 0, &mut result) };
    assert_eq!(twice, swm_status::BadInput, "nothing in flight");

    // Four threads, one handle: each stages its own observation (inputs are staged per thread) and plans.
    let handle = engine as usize;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let engine = handle as *mut swm_engine;
                for i in 0..5 {
                    stage_frame(engine, (t * 10 + i) as u8);
                    let (actions, result) = plan(engine);
                    assert_eq!(result.source, swm_plan_source::Solved as u32);
                    assert!(actions.iter().all(|v| v.is_finite()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(swm_engine_free(engine), swm_status::Ok);
    assert_eq!(swm_engine_free(engine), swm_status::InvalidHandle, "a double free is detected");
}

/// Options structs grow only at the end: a newer caller's larger struct is read up to this library's fields, an
/// older caller's smaller one keeps the defaults of the fields it lacks.
#[test]
fn options_of_other_struct_versions_are_read_by_their_size() {
    #[derive(Clone, Copy, Default)]
    #[repr(C)]
    struct Newer {
        current: swm_planner_options,
        extra: u64,
    }
    let newer = Newer {
        current: swm_planner_options {
            struct_size: std::mem::size_of::<Newer>() as u32,
            solver: 2,
            samples: 128,
            seed: 9,
            ..Default::default()
        },
        extra: u64::MAX,
    };
    let read = read_options(&newer as *const Newer as *const swm_planner_options, "options").unwrap();
    assert_eq!((read.solver, read.samples, read.seed), (2, 128, 9));
    // An older caller that knew only the first three fields (struct_size, solver, samples: 12 bytes): the rest
    // default to zero ("keep").
    let older = swm_planner_options { struct_size: 12, solver: 1, samples: 64, iterations: 7, ..Default::default() };
    let read = read_options(&older, "options").unwrap();
    assert_eq!((read.solver, read.samples, read.iterations, read.seed), (1, 64, 0, 0), "fields past 12 bytes ignored");
}
