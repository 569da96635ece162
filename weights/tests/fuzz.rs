//! A deterministic mutation fuzzer that runs on the stable toolchain.
//!
//! Seeds: the generated valid torch archives and safetensors files, and the two real fixtures. Each case
//! applies 1–4 mutations (bit flips, interesting bytes and words, insertions, deletions, truncation, splicing,
//! chunk duplication) to raw file bytes, or — so that the pickle machine and the storage checks are reached
//! past the CRC — to `data.pkl` / a storage member / the safetensors JSON header, after which the container
//! is rebuilt with valid CRCs and lengths. Pickle-aware mutations replace integer arguments with huge or
//! negative values and swap opcodes. Both readers run under `catch_unwind`, and a panic fails the test
//! (the input is written to `$CARGO_TARGET_TMPDIR/swm-fuzz-crash-<case>.bin`).
//!
//! Default: 20 000 cases. Longer: `SWM_FUZZ_CASES=1000000` or `SWM_FUZZ_SECONDS=600`; `SWM_FUZZ_SEED`
//! changes the xorshift seed.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::*;
use swm_weights::zip::ZipArchive;
use swm_weights::{Limits, SafetensorsFile, TorchFile};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const INTERESTING_BYTES: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, b'(', b'.', b'\n'];
const INTERESTING_WORDS: [u64; 10] =
    [0, 1, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 1 << 32, 0x7fff_ffff_ffff_ffff, u64::MAX, 1 << 63];
/// Opcodes the machine knows plus a few it rejects.
const OPCODES: &[u8] = b"().012}])tdlaesubRcQqrhjJKMGNXBCi\x80\x81\x85\x86\x87\x88\x89\x8a\x8c\x8d\x8e\x93\x94\x95";

/// Maximum size of a mutated input.
const MAX_LEN: usize = 4 << 20;

fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, donors: &[&[u8]]) {
    let len = data.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        2 if len >= 8 => {
            let width = [2, 4, 8][rng.below(3)];
            let i = rng.below(len - width + 1);
            let word = INTERESTING_WORDS[rng.below(INTERESTING_WORDS.len())].to_le_bytes();
            data[i..i + width].copy_from_slice(&word[..width]);
        }
        3 if len < MAX_LEN => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(i..i, bytes);
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let n = (1 + rng.below(16)).min(len - i);
            data.drain(i..i + n);
        }
        5 => data.truncate(rng.below(len + 1)),
        6 if !donors.is_empty() => {
            // Splice: a range of another seed over a range of this one.
            let donor = donors[rng.below(donors.len())];
            if donor.is_empty() || len == 0 {
                return;
            }
            let from = rng.below(donor.len());
            let n = (1 + rng.below(256)).min(donor.len() - from);
            let at = rng.below(len);
            let end = (at + n).min(len);
            data.splice(at..end, donor[from..from + n].iter().copied());
        }
        7 if len > 0 && len < MAX_LEN => {
            // Duplicate a chunk, possibly many times (repeated pickle fragments).
            let i = rng.below(len);
            let n = (1 + rng.below(32)).min(len - i);
            let chunk = data[i..i + n].to_vec();
            let max_times = if rng.chance(10) { 5000 } else { 4 };
            let times = 1 + rng.below(max_times);
            let at = rng.below(len + 1);
            let repeated: Vec<u8> = chunk.iter().copied().cycle().take((n * times).min(MAX_LEN - len)).collect();
            data.splice(at..at, repeated);
        }
        _ => {}
    }
}

/// Pickle-aware mutations: integer arguments, opcode swaps.
fn mutate_pickle(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    match rng.below(4) {
        0 | 1 => {
            // Find an integer opcode from a random start and widen its argument to something extreme.
            let start = rng.below(data.len());
            let Some(off) = data[start..].iter().position(|b| matches!(b, b'K' | b'M' | b'J')) else { return };
            let i = start + off;
            let arg_len = match data[i] {
                b'K' => 1,
                b'M' => 2,
                _ => 4,
            };
            let end = (i + 1 + arg_len).min(data.len());
            let replacement: Vec<u8> = match rng.below(5) {
                0 => [&[b'J'][..], &(-1i32).to_le_bytes()].concat(),
                1 => [&[b'J'][..], &i32::MAX.to_le_bytes()].concat(),
                2 => [&[0x8a, 8][..], &i64::MAX.to_le_bytes()].concat(),
                3 => [&[0x8a, 8][..], &(1i64 << 40).to_le_bytes()].concat(),
                _ => [&[0x8a, 9][..], &[0xff; 9]].concat(),
            };
            data.splice(i..end, replacement);
        }
        2 => {
            let i = rng.below(data.len());
            data[i] = OPCODES[rng.below(OPCODES.len())];
        }
        _ => {
            // Memo indices: point BINGET/BINPUT somewhere else.
            let start = rng.below(data.len());
            if let Some(off) = data[start..].iter().position(|b| matches!(b, b'h' | b'q')) {
                if let Some(arg) = data.get_mut(start + off + 1) {
                    *arg = rng.next() as u8;
                }
            }
        }
    }
}

enum Input {
    Torch(Vec<u8>),
    Safetensors(Vec<u8>),
}

/// Runs the readers; returns the outcome's name (`Ok` or the error variant) for the statistics.
fn run_one(input: &Input, limits: &Limits) -> String {
    let outcome = |r: Result<usize, swm_weights::WeightsError>| match r {
        Ok(_) => "Ok".to_string(),
        Err(e) => format!("{e:?}").split([' ', '(', '{']).next().unwrap_or_default().to_string(),
    };
    match input {
        Input::Torch(bytes) => {
            let nested = TorchFile::from_bytes(bytes.clone(), Some("state_dict"), limits);
            if let Ok(file) = nested {
                let _ = file.read_all();
            }
            let file = TorchFile::from_bytes(bytes.clone(), None, limits);
            outcome(file.and_then(|f| f.read_all()).map(|t| t.len()))
        }
        Input::Safetensors(bytes) => {
            let file = SafetensorsFile::from_bytes(bytes.clone(), limits);
            format!("st:{}", outcome(file.and_then(|f| f.read_all()).map(|t| t.len())))
        }
    }
}

struct TorchSeed {
    members: Vec<(String, Vec<u8>)>,
    style: ZipStyle,
}

fn torch_seeds() -> Vec<TorchSeed> {
    let mut seeds = vec![
        TorchSeed {
            members: torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages()),
            style: TORCH_STYLE,
        },
        TorchSeed {
            members: torch_members("w/", state_dict_pickle(&valid_tensors()), &valid_storages()),
            style: PLAIN_STYLE,
        },
    ];
    // A nested Lightning-style checkpoint.
    let t = T::contiguous("layer.weight", "FloatStorage", "0", &[2]);
    let mut p = Pickle::new();
    p.empty_dict().put();
    p.mark().str("epoch").int(3).str("state_dict").global("collections", "OrderedDict").empty_tuple().reduce();
    p.put();
    p.mark().str(t.key).tensor(&t).setitems().setitems();
    seeds.push(TorchSeed {
        members: torch_members("archive/", p.finish(), &[("0", f32_bytes(&[1.0, 2.0]))]),
        style: TORCH_STYLE,
    });
    for name in ["lewm-tiny", "tdmpc2-tiny"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let archive = ZipArchive::from_bytes(bytes, &Limits::default()).unwrap();
        let members = archive.entries().iter().map(|e| (e.name.clone(), archive.read(&e.name).unwrap())).collect();
        seeds.push(TorchSeed { members, style: TORCH_STYLE });
    }
    seeds
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn fuzz_readers_never_panic() {
    let seconds = env_u64("SWM_FUZZ_SECONDS");
    let cases = env_u64("SWM_FUZZ_CASES").unwrap_or(if seconds.is_some() { u64::MAX } else { 20_000 });
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut rng = Rng(env_u64("SWM_FUZZ_SEED").unwrap_or(0x5eed_cafe_f00d_d00d) | 1);
    // Tight materialisation limits so that a mutated shape cannot make a case slow.
    let limits = Limits { max_tensor_bytes: 16 << 20, max_total_bytes: 64 << 20, ..Limits::default() };

    let torch = torch_seeds();
    let torch_files: Vec<Vec<u8>> = torch.iter().map(|s| zip(&s.members, s.style)).collect();
    for f in &torch_files {
        TorchFile::from_bytes(f.clone(), None, &Limits::default()).unwrap();
    }
    let st_seeds =
        [valid_safetensors(), safetensors(&[("a", "BF16", &[2, 2], vec![0; 8]), ("b", "I8", &[3], vec![1, 2, 3])])];
    let donors: Vec<&[u8]> = torch_files.iter().chain(st_seeds.iter()).map(|v| v.as_slice()).collect();

    let start = Instant::now();
    let mut failures = Vec::new();
    let mut outcomes = std::collections::BTreeMap::new();
    let mut case = 0u64;
    while case < cases && deadline.is_none_or(|d| Instant::now() < d) {
        // The real fixtures are large: mutate them in one case out of ten.
        let pick = |rng: &mut Rng| {
            if rng.chance(10) {
                3 + rng.below(torch.len() - 3)
            } else {
                rng.below(3)
            }
        };
        let rounds = 1 + rng.below(4);
        let input = match rng.below(10) {
            0..=2 => {
                let mut bytes = torch_files[pick(&mut rng)].clone();
                for _ in 0..rounds {
                    mutate_bytes(&mut rng, &mut bytes, &donors);
                }
                Input::Torch(bytes)
            }
            3..=5 => {
                // data.pkl mutated, archive rebuilt with valid CRCs.
                let seed = &torch[pick(&mut rng)];
                let mut members = seed.members.clone();
                let pkl = members.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).unwrap();
                for _ in 0..rounds {
                    if rng.chance(60) {
                        mutate_pickle(&mut rng, &mut pkl.1);
                    } else {
                        mutate_bytes(&mut rng, &mut pkl.1, &[]);
                    }
                }
                Input::Torch(zip(&members, seed.style))
            }
            6 => {
                // Member list mutations: a storage resized, a member renamed, dropped or duplicated.
                let seed = &torch[pick(&mut rng)];
                let mut members = seed.members.clone();
                let i = rng.below(members.len());
                match rng.below(4) {
                    0 => mutate_bytes(&mut rng, &mut members[i].1, &[]),
                    1 => {
                        let mut name = members[i].0.clone().into_bytes();
                        mutate_bytes(&mut rng, &mut name, &[]);
                        members[i].0 = String::from_utf8_lossy(&name).into_owned();
                    }
                    2 => drop(members.remove(i)),
                    _ => {
                        let m = members[i].clone();
                        members.push(m);
                    }
                }
                Input::Torch(zip(&members, seed.style))
            }
            7 | 8 => {
                let mut bytes = st_seeds[rng.below(st_seeds.len())].clone();
                for _ in 0..rounds {
                    mutate_bytes(&mut rng, &mut bytes, &donors);
                }
                Input::Safetensors(bytes)
            }
            _ => {
                // Header text mutated, length prefix fixed.
                let seed = &st_seeds[rng.below(st_seeds.len())];
                let n = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
                let mut header = seed[8..8 + n].to_vec();
                let data = &seed[8 + n..];
                for _ in 0..rounds {
                    if rng.chance(50) {
                        // Replace a digit run with an extreme number.
                        let numbers = ["18446744073709551615", "-1", "1e400", "9223372036854775808", "0", "4294967296"];
                        let from = rng.below(header.len());
                        if let Some(off) = header[from..].iter().position(|b| b.is_ascii_digit()) {
                            let at = from + off;
                            let end = at + header[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                            header.splice(at..end, numbers[rng.below(numbers.len())].bytes());
                        }
                    } else {
                        mutate_bytes(&mut rng, &mut header, &[]);
                    }
                }
                let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
                bytes.extend_from_slice(&header);
                bytes.extend_from_slice(data);
                Input::Safetensors(bytes)
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| run_one(&input, &limits)));
        if let Ok(outcome) = &result {
            *outcomes.entry(outcome.clone()).or_insert(0u64) += 1;
        } else {
            let bytes = match &input {
                Input::Torch(b) | Input::Safetensors(b) => b,
            };
            let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("swm-fuzz-crash-{case}.bin"));
            std::fs::write(&path, bytes).unwrap();
            failures.push(path);
        }
        case += 1;
    }
    eprintln!("fuzz: {case} cases in {:?}; outcomes: {outcomes:?}", start.elapsed());
    assert!(failures.is_empty(), "panics on {} inputs: {failures:?}", failures.len());
}
