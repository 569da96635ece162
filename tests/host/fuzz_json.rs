//! A stable-toolchain fuzz run of the JSON readers (issue 10): seeded mutations of real LeWM, TD-MPC2, planner,
//! `preprocess.json` and `schema.json` texts — byte flips, numbers replaced by huge, negative, fractional or
//! out-of-range values, deletions, duplicated objects, deep nesting, truncation — fed to the readers. Whatever the
//! input, a reader returns `Ok` or a typed error; a panic fails the test. A config that parses must also yield its
//! parameter table within `limits::MAX_PARAMETERS`.
//!
//! `SWM_FUZZ_CASES` (default 5000) and `SWM_FUZZ_SEED` set the run; print the outcome counts with
//! `cargo test --release --test host fuzz_json -- --nocapture`. A longer run:
//! `SWM_FUZZ_CASES=1000000 SWM_FUZZ_SEED=7 cargo test --release --test host fuzz_json -- --nocapture`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use swm::artifact::{Preprocess, Schema};
use swm::config::{limits, ConfigError, ModelConfig};
use swm::planning::PlannerConfig;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The reader a text is fed to.
#[derive(Clone, Copy, Debug)]
enum Reader {
    Model,
    Planner,
    Preprocess,
    Schema,
}

/// Texts to mutate, with their reader.
fn corpus() -> Vec<(Reader, String)> {
    let root = super::repo_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let tdmpc2 = read("tests/fixtures/tdmpc2-tiny/config.json");
    let lewm = swm::models::lewm::Config::tiny();
    let tdmpc2_cfg = swm::models::tdmpc2::Config::from_json_str(&tdmpc2, Path::new("config.json")).unwrap();
    vec![
        (Reader::Model, read("tools/configs/lewm-tiny.json")),
        (Reader::Model, read("tools/configs/lewm-pusht.json")),
        (Reader::Model, read("tools/configs/tdmpc2-bench.json")),
        (Reader::Model, tdmpc2.clone()),
        (Reader::Model, format!(r#"{{"_target_": "stable_worldmodel.wm.tdmpc2.TDMPC2", "cfg": {tdmpc2}}}"#)),
        (
            Reader::Planner,
            r#"{"solver": {"kind": "icem", "num_samples": 300, "topk": 30, "noise_beta": 2.0, "alpha": 0.1},
                "horizon": 5, "action_dim": 2, "action_block": 5, "receding_horizon": 1,
                "bounds": {"low": [-1, -1], "high": [1, 1]}, "sampling": {"mode": "fixed", "seed": 3},
                "fallback_action": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}"#
                .to_string(),
        ),
        (Reader::Preprocess, json(&swm::artifact::Preprocess::for_lewm(&lewm))),
        (Reader::Preprocess, json(&swm::artifact::Preprocess::for_tdmpc2(&tdmpc2_cfg))),
        (
            Reader::Preprocess,
            r#"{"image_size": [224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                "action": {"block": 5, "low": [-1, -1], "high": [1, 1], "mean": [0.1, -0.2], "std": [2.0, 3.0]}}"#
                .to_string(),
        ),
        (Reader::Schema, json(&swm::artifact::Schema::for_lewm(&lewm))),
        (Reader::Schema, json(&swm::artifact::Schema::for_tdmpc2(&tdmpc2_cfg))),
    ]
}

/// Pretty JSON of a typed value of the corpus.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("serialisable")
}

/// Numbers a mutation writes in place of another: limits and their neighbours, overflow edges, negatives,
/// fractions, exponents beyond f64 and spellings JSON does not allow.
fn replacement(rng: &mut Rng) -> String {
    let edges = [
        limits::MAX_WIDTH,
        limits::MAX_LAYERS,
        limits::MAX_HEADS,
        limits::MAX_IMAGE_SIDE,
        limits::MAX_FRAMES,
        limits::MAX_ACTION_DIM,
        limits::MAX_Q_HEADS,
        limits::MAX_MODALITIES,
        limits::MAX_PI_TRAJS,
        limits::MAX_HORIZON,
        1 << 32,
        1 << 40,
        usize::MAX,
    ];
    let fixed = [
        "0",
        "-0",
        "1",
        "2",
        "-1",
        "3",
        "1000000000",
        "1e9",
        "1e308",
        "-1e308",
        "1e309",
        "-1e309",
        "1e-320",
        "0.5",
        "4.5",
        "NaN",
        "Infinity",
        "-Infinity",
        "18446744073709551616",
        "9223372036854775807",
        "-9223372036854775808",
        "1E400",
        "00",
        "1.",
        ".5",
        "0x10",
        "\"7\"",
        "null",
        "true",
        "[]",
        "{}",
    ];
    match rng.below(4) {
        0 => {
            let e = *rng.pick(&edges);
            [e.saturating_sub(1), e, e.saturating_add(1)][rng.below(3)].to_string()
        }
        1 => rng.pick(&fixed).to_string(),
        2 => rng.next().to_string(),
        _ => format!("{}", (rng.next() % 2048) as i64 - 1024),
    }
}

/// Byte spans of the JSON numbers in `text` (a run of `-+.eE0-9` starting with `-` or a digit).
fn numbers(text: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() || text[i] == b'-' {
            let start = i;
            while i < text.len() && (text[i].is_ascii_digit() || b"-+.eE".contains(&text[i])) {
                i += 1;
            }
            spans.push((start, i));
        } else {
            i += 1;
        }
    }
    spans
}

/// The span of the balanced `{…}` starting at `open` (strings are skipped), if it closes.
fn object_at(text: &[u8], open: usize) -> Option<(usize, usize)> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in text.iter().enumerate().skip(open) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some((open, i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// Replaces a random number of `text` by [`replacement`].
fn replace_number(rng: &mut Rng, text: &mut Vec<u8>) -> &'static str {
    let spans = numbers(text);
    if spans.is_empty() {
        return "no number";
    }
    let (s, e) = *rng.pick(&spans);
    text.splice(s..e, replacement(rng).into_bytes());
    "number"
}

/// One random mutation of `text`, named for the counts.
fn mutate(rng: &mut Rng, text: &mut Vec<u8>) -> &'static str {
    if text.is_empty() {
        text.extend_from_slice(b"{}");
    }
    match rng.below(9) {
        0 => {
            let i = rng.below(text.len());
            text[i] ^= 1 << rng.below(8);
            "bit flip"
        }
        1 => {
            let i = rng.below(text.len());
            text[i] = *rng.pick(b"{}[]\",:0123456789-.eE \\\x00\xff");
            "byte set"
        }
        2 | 3 => replace_number(rng, text),
        4 => {
            let s = rng.below(text.len());
            let e = (s + 1 + rng.below(16)).min(text.len());
            text.drain(s..e);
            "deletion"
        }
        5 => {
            // Duplicate an object: as a repeated member after itself (a duplicate key when it follows a key),
            // or wrapped into an array of two copies.
            let opens: Vec<usize> = text.iter().enumerate().filter(|(_, &b)| b == b'{').map(|(i, _)| i).collect();
            if opens.is_empty() {
                return "no object";
            }
            let Some((s, e)) = object_at(text, *rng.pick(&opens)) else { return "no object" };
            let object = text[s..e].to_vec();
            let key_start = text[..s].iter().rposition(|&b| b == b',' || b == b'{').map_or(s, |p| p + 1);
            if rng.below(2) == 0 && key_start < s {
                let member = [b",".as_slice(), &text[key_start..s], &object].concat();
                text.splice(e..e, member);
                "duplicate member"
            } else {
                let pair = [b"[".as_slice(), &object, b",", &object, b"]"].concat();
                text.splice(s..e, pair);
                "object array"
            }
        }
        6 => {
            let i = rng.below(text.len());
            let tokens: [&[u8]; 9] = [
                b"null",
                b"\"pixels\"",
                b"{}",
                b"[]",
                b",",
                b"\"_target_\": \"x.LeWM\",",
                b"\"_target_\": \"x.TDMPC2\",",
                b"\xef\xbb\xbf",
                b"\"\\ud800\"",
            ];
            let token = *rng.pick(&tokens);
            text.splice(i..i, token.iter().copied());
            "insertion"
        }
        7 => {
            // Deep nesting in place of a value: past serde_json's recursion limit of 128 it must still be an
            // error, not a stack overflow.
            let spans = numbers(text);
            if spans.is_empty() {
                return "no number";
            }
            let (s, e) = *rng.pick(&spans);
            let depth = 1 + rng.below(400);
            let nested = [vec![b'['; depth], vec![b'1'], vec![b']'; depth]].concat();
            text.splice(s..e, nested);
            "nesting"
        }
        _ => {
            text.truncate(rng.below(text.len()));
            "truncation"
        }
    }
}

/// What a reader made of one input.
fn outcome(reader: Reader, text: &str) -> &'static str {
    let path = Path::new("config.json");
    let config_error = |e: &ConfigError| match e {
        ConfigError::Parse { .. } => "parse error",
        ConfigError::Invalid { .. } => "invalid",
        ConfigError::UnknownFamily { .. } => "unknown family",
        _ => "other error",
    };
    match reader {
        Reader::Model => match ModelConfig::from_json_str(text, path) {
            Ok(ModelConfig::Lewm(cfg)) => {
                let table = cfg.parameter_table().expect("a validated LeWM config has a parameter table");
                swm::config::parameter_count(&table).expect("a validated config is within MAX_PARAMETERS");
                "ok lewm"
            }
            Ok(ModelConfig::Tdmpc2(cfg)) => {
                swm::config::parameter_count(
                    &cfg.parameter_table().expect("a validated TD-MPC2 config has a parameter table"),
                )
                .expect("a validated config is within MAX_PARAMETERS");
                "ok tdmpc2"
            }
            Err(e) => config_error(&e),
        },
        Reader::Planner => match PlannerConfig::from_json_str(text) {
            Ok(cfg) => {
                assert!(cfg.macro_action_dim() <= limits::MAX_ACTION_DIM);
                "ok planner"
            }
            Err(e) => config_error(&e),
        },
        Reader::Preprocess => match serde_json::from_str::<Preprocess>(text) {
            Ok(_) => "ok preprocess",
            Err(_) => "serde error",
        },
        Reader::Schema => match serde_json::from_str::<Schema>(text) {
            Ok(_) => "ok schema",
            Err(_) => "serde error",
        },
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

#[test]
fn json_readers_never_panic_on_mutated_configs() {
    let cases = env_u64("SWM_FUZZ_CASES", 5000);
    let seed = env_u64("SWM_FUZZ_SEED", 0x5eed_0010);
    let corpus = corpus();
    for (reader, text) in &corpus {
        assert!(outcome(*reader, text).starts_with("ok"), "{reader:?} base text must be valid: {text}");
    }
    let mut rng = Rng::new(seed);
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut mutations: BTreeMap<&str, u64> = BTreeMap::new();
    let mut panics = Vec::new();
    let started = std::time::Instant::now();
    for case in 0..cases {
        let (reader, base) = rng.pick(&corpus);
        let mut bytes = base.clone().into_bytes();
        // Half the cases only replace numbers: the JSON stays well-formed and reaches the validators.
        let numbers_only = rng.below(2) == 0;
        for _ in 0..1 + rng.below(4) {
            let name = if numbers_only { replace_number(&mut rng, &mut bytes) } else { mutate(&mut rng, &mut bytes) };
            *mutations.entry(name).or_default() += 1;
        }
        // The readers take text; invalid UTF-8 is read_text's business (config_bounds tests it).
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match catch_unwind(AssertUnwindSafe(|| outcome(*reader, &text))) {
            Ok(o) => *outcomes.entry(o).or_default() += 1,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                *outcomes.entry("PANIC").or_default() += 1;
                if panics.len() < 5 {
                    let head: String = text.chars().take(2000).collect();
                    panics.push(format!("case {case} ({reader:?}): {message}\n{head}"));
                }
            }
        }
    }
    println!(
        "fuzz_json: {cases} cases, seed {seed:#x}, {:.2} s\n  outcomes: {outcomes:?}\n  mutations: {mutations:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        panics.is_empty(),
        "{} panicking inputs (first {}):\n{}",
        outcomes["PANIC"],
        panics.len(),
        panics.join("\n\n")
    );
}
