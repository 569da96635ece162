//! A robot controller beside `swm-loop`: publishes synthetic camera frames (and state vectors) shaped by an
//! artifact's `schema.json` at a fixed rate, receives the actions, and prints the observation-to-action latency and
//! the daemon's statistics at the end. It links only `swm-ipc` (no CUDA).
//!
//! ```text
//! swm-loop --config configs/loop-tdmpc2.toml &
//! cargo run --release -p swm-loop --example controller -- --artifact artifacts/tdmpc2 --prefix swm-tdmpc2 \
//!     --rate-hz 200 --seconds 10
//! ```
//!
//! Camera-like frames: `--frame-size 640x480` sends synthetic RGB frames of that size (the daemon resizes them as
//! upstream does); `--jpeg FILE` sends that JPEG file as every frame (decoded by the daemon with nvJPEG);
//! `--h264 FILE` / `--hevc FILE` send an Annex-B stream's access units, one per observation in decode order,
//! starting over at its end (decoded by the daemon with NVDEC; the stream must start with an IDR and have one slice
//! per picture, as `tests/data/media`'s clips do). A LeWM goal is then a synthetic RGB frame, so as not to
//! interleave a second stream into the decoder.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use swm_ipc::iceoryx2::prelude::AllocationStrategy;
use swm_ipc::transport::{self as ipc, EventKind};
use swm_ipc::{monotonic_ns, ActionStatus, Encoding, ObservationHeader, STAGE_NAMES};

struct Args {
    artifact: PathBuf,
    prefix: String,
    rate_hz: f64,
    seconds: f64,
    json: Option<PathBuf>,
    /// Frames of this (width, height) instead of the model's input size.
    frame_size: Option<(u32, u32)>,
    /// A JPEG file sent as every frame.
    jpeg: Option<Vec<u8>>,
    /// A video stream's access units, sent in turn.
    video: Option<(Encoding, Vec<Vec<u8>>)>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        artifact: PathBuf::new(),
        prefix: "swm".into(),
        rate_hz: 30.0,
        seconds: 10.0,
        json: None,
        frame_size: None,
        jpeg: None,
        video: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--artifact" => a.artifact = PathBuf::from(value()?),
            "--prefix" => a.prefix = value()?,
            "--rate-hz" => a.rate_hz = value()?.parse().map_err(|e| format!("--rate-hz: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--frame-size" => {
                let v = value()?;
                let (w, h) = v.split_once('x').ok_or(format!("--frame-size {v}: expected WxH"))?;
                let parse = |t: &str| t.parse::<u32>().map_err(|e| format!("--frame-size {v}: {e}"));
                a.frame_size = Some((parse(w)?, parse(h)?));
            }
            "--jpeg" => {
                let path = value()?;
                a.jpeg = Some(std::fs::read(&path).map_err(|e| format!("--jpeg {path}: {e}"))?);
            }
            "--h264" | "--hevc" => {
                let path = value()?;
                let data = std::fs::read(&path).map_err(|e| format!("{flag} {path}: {e}"))?;
                let hevc = flag == "--hevc";
                let units = access_units(&data, hevc);
                if units.is_empty() {
                    return Err(format!("{flag} {path}: no coded picture found"));
                }
                a.video = Some((if hevc { Encoding::Hevc } else { Encoding::H264 }, units));
            }
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--artifact DIR --prefix P --rate-hz R --seconds S --json F \
                     --frame-size WxH --jpeg FILE --h264 FILE --hevc FILE)"
                ))
            }
        }
    }
    if a.artifact.as_os_str().is_empty() {
        return Err("--artifact DIR is required (its schema.json shapes the observations)".into());
    }
    Ok(a)
}

/// Splits an Annex-B stream into access units for streams of one slice per picture: a unit runs from the first
/// NAL unit after the previous picture's slice to the end of the next coded slice (parameter sets and SEI travel
/// with the picture they precede).
fn access_units(data: &[u8], hevc: bool) -> Vec<Vec<u8>> {
    let mut starts: Vec<usize> = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            // A four-byte start code's leading zero belongs to this NAL unit.
            starts.push(if i > 0 && data[i - 1] == 0 { i - 1 } else { i });
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::new();
    let mut unit_start = None;
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let header = data[start..end].iter().skip_while(|b| **b == 0).nth(1).copied().unwrap_or(0);
        let vcl = if hevc { (header >> 1) & 0x3F < 32 } else { (1..=5).contains(&(header & 0x1F)) };
        let first = *unit_start.get_or_insert(start);
        if vcl {
            units.push(data[first..end].to_vec());
            unit_start = None;
        }
    }
    units
}

/// One observation stream of the schema.
enum Stream {
    Frame { name: String, height: u32, width: u32 },
    State { name: String, dim: u32 },
}

fn streams(artifact: &std::path::Path) -> Result<Vec<Stream>, String> {
    let path = artifact.join("schema.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let obs = schema["observations"].as_array().ok_or(format!("{}: no observations", path.display()))?;
    obs.iter()
        .map(|o| {
            let name = o["name"].as_str().unwrap_or_default().to_string();
            let shape: Vec<u32> =
                o["shape"].as_array().into_iter().flatten().filter_map(|v| v.as_u64()).map(|v| v as u32).collect();
            match (o["kind"].as_str(), shape.as_slice()) {
                (Some("state"), [d]) => Ok(Stream::State { name, dim: *d }),
                (Some("image" | "video"), [3, h, w]) => Ok(Stream::Frame { name, height: *h, width: *w }),
                _ => Err(format!("{}: observation {name:?} has an unexpected kind or shape", path.display())),
            }
        })
        .collect()
}

/// The artifact's model family (`lewm` or `tdmpc2`) from its `schema.json`.
fn family(artifact: &std::path::Path) -> Result<String, String> {
    let path = artifact.join("schema.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(schema["family"].as_str().unwrap_or_default().to_string())
}

/// What frames the controller sends.
struct FrameSource<'a> {
    frame_size: Option<(u32, u32)>,
    jpeg: Option<&'a [u8]>,
    video: Option<(Encoding, &'a [Vec<u8>])>,
}

/// Publishes one synthetic observation (every stream of the schema) with `sequence`.
fn publish(
    publisher: &ipc::ObservationPublisher,
    streams: &[Stream],
    source: &FrameSource<'_>,
    sequence: u64,
    capture: u64,
    frame: &mut Vec<u8>,
) -> Result<(), Box<dyn std::error::Error>> {
    for s in streams {
        match s {
            Stream::Frame { name, .. } if source.video.is_some() => {
                let (encoding, units) = source.video.unwrap_or((Encoding::H264, &[]));
                let unit = &units[(sequence.saturating_sub(1) as usize) % units.len().max(1)];
                let h = ObservationHeader::frame(sequence, capture, encoding, 0, 0, 0).with_name(name)?;
                ipc::send_observation(publisher, &h, unit)?;
            }
            Stream::Frame { name, .. } if source.jpeg.is_some() => {
                let jpeg = source.jpeg.unwrap_or_default();
                // A JPEG's size is optional in the header (0 x 0: the daemon reads it from the file).
                let h = ObservationHeader::frame(sequence, capture, Encoding::Jpeg, 0, 0, 0).with_name(name)?;
                ipc::send_observation(publisher, &h, jpeg)?;
            }
            Stream::Frame { name, height, width } => {
                let (width, height) = source.frame_size.unwrap_or((*width, *height));
                let pitch = width * 3;
                frame.clear();
                frame.extend((0..pitch * height).map(|i| (i as u64 + sequence * 7) as u8));
                let h = ObservationHeader::frame(sequence, capture, Encoding::Rgb8, width, height, pitch)
                    .with_name(name)?;
                ipc::send_observation(publisher, &h, frame)?;
            }
            Stream::State { name, dim } => {
                let values: Vec<u8> =
                    (0..*dim).flat_map(|i| ((sequence as f32 * 0.01 + i as f32).sin()).to_le_bytes()).collect();
                let h = ObservationHeader::state(sequence, capture, *dim).with_name(name)?;
                ipc::send_observation(publisher, &h, &values)?;
            }
        }
    }
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let streams = streams(&args.artifact)?;
    let video = args.video.as_ref().map(|(e, units)| (*e, units.as_slice()));
    let source = FrameSource { frame_size: args.frame_size, jpeg: args.jpeg.as_deref(), video };
    // A goal is never a video access unit: it would interleave a second stream into the daemon's decoder.
    let goal_source = FrameSource { video: None, ..source };
    let node = ipc::node(&format!("controller-{}", std::process::id()))?;
    let observations = ipc::observation_service(&node, &args.prefix)?;
    let actions = ipc::action_service(&node, &args.prefix)?;
    let stats = ipc::stats_service(&node, &args.prefix)?;
    let events = ipc::events_service(&node, &args.prefix)?;
    let family = family(&args.artifact)?;
    let largest = streams
        .iter()
        .map(|s| match s {
            Stream::Frame { height, width, .. } => (height * width * 3) as usize,
            Stream::State { dim, .. } => *dim as usize * 4,
        })
        .max()
        .unwrap_or(1);
    let publisher = ipc::observation_publisher(&observations, largest)?;
    let action_sub = ipc::action_subscriber(&actions)?;
    let stats_sub = ipc::stats_subscriber(&stats)?;
    let notifier = ipc::notifier(&events)?;
    let listener = ipc::listener(&events)?;
    if family == "lewm" {
        // LeWM plans toward a goal image: send one (a synthetic frame) before the first observation.
        let goals = ipc::goal_service(&node, &args.prefix)?;
        let goal_pub = goals
            .publisher_builder()
            .initial_max_slice_len(largest)
            .allocation_strategy(AllocationStrategy::PowerOfTwo)
            .create()?;
        publish(&goal_pub, &streams, &goal_source, 0, monotonic_ns(), &mut Vec::new())?;
        notifier.notify_with_custom_event_id(EventKind::Goal.id())?;
        std::thread::sleep(Duration::from_millis(100));
    }

    let period = Duration::from_secs_f64(1.0 / args.rate_hz);
    let total = (args.seconds * args.rate_hz).round() as u64;
    let mut latencies_us = Vec::with_capacity(total as usize);
    let mut statuses = [0u64; 5];
    let mut last_answered = 0u64;
    let mut frame = Vec::new();
    let start = Instant::now();
    for sequence in 1..=total {
        let tick = start + period.mul_f64((sequence - 1) as f64);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        publish(&publisher, &streams, &source, sequence, monotonic_ns(), &mut frame)?;
        notifier.notify_with_custom_event_id(EventKind::Observation.id())?;
        // Wait for the answer until the next tick; the daemon wakes us with an Action event.
        let next = start + period.mul_f64(sequence as f64);
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if let Some(sample) = action_sub.receive()? {
                let slot = *sample.payload();
                if slot.observation_sequence > last_answered {
                    last_answered = slot.observation_sequence;
                    latencies_us.push(monotonic_ns().saturating_sub(slot.captured_ns) as f64 / 1e3);
                    if let Some(s) = slot.status() {
                        statuses[s as usize] += 1;
                    }
                }
                if slot.observation_sequence == sequence {
                    break;
                }
                continue;
            }
            listener.timed_wait(|_| {}, left)?;
        }
    }
    // The newest stats of the daemon (published once per stats period).
    std::thread::sleep(Duration::from_millis(1100));
    let mut daemon = None;
    while let Some(s) = stats_sub.receive()? {
        daemon = Some(*s.payload());
    }
    latencies_us.sort_by(f64::total_cmp);
    let answered = latencies_us.len();
    println!("sent {total} observations at {} Hz, {answered} answered", args.rate_hz);
    println!(
        "observation -> action latency (us): p50 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies_us, 0.5),
        percentile(&latencies_us, 0.99),
        latencies_us.last().copied().unwrap_or(f64::NAN)
    );
    let names = ["solved", "truncated", "warm-start", "fallback", "prior"];
    let status_line: Vec<String> =
        ActionStatus::ALL.iter().map(|s| format!("{} {}", names[*s as usize], statuses[*s as usize])).collect();
    println!("statuses: {}", status_line.join(", "));
    if let Some(d) = &daemon {
        println!(
            "daemon: steps {} received {} dropped {} rejected {} deadline misses {} fallbacks {} published {}",
            d.steps,
            d.observations_received,
            d.observations_dropped_stale,
            d.observations_rejected,
            d.deadline_misses,
            d.fallbacks_published,
            d.actions_published
        );
        for (name, s) in STAGE_NAMES.iter().zip(d.stages.iter()) {
            println!(
                "  {name:<11} p50 {:>9.1} us  p99 {:>9.1} us  max {:>9.1} us  (n={})",
                s.p50_us, s.p99_us, s.max_us, s.count
            );
        }
    }
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "rate_hz": args.rate_hz, "sent": total, "answered": answered,
            "latency_us": {"p50": percentile(&latencies_us, 0.5), "p99": percentile(&latencies_us, 0.99), "max": latencies_us.last()},
            "statuses": statuses,
            "daemon": daemon.map(|d| serde_json::json!({
                "steps": d.steps, "received": d.observations_received, "dropped": d.observations_dropped_stale,
                "rejected": d.observations_rejected, "deadline_misses": d.deadline_misses, "fallbacks": d.fallbacks_published,
                "stages_us": STAGE_NAMES.iter().zip(d.stages.iter()).map(|(n, s)| (n.to_string(), serde_json::json!([s.p50_us, s.p99_us, s.max_us]))).collect::<serde_json::Map<_, _>>(),
            })),
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
