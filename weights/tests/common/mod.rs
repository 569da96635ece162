//! Test helpers: a tiny pickle writer, a zip writer that lays archives out the way `torch.save` does, and a
//! safetensors writer. Shared by the integration tests and the fuzz harness.
#![allow(dead_code)]

use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------------------
// Pickle writer
// ---------------------------------------------------------------------------------------------------------

/// Builds a pickle byte stream opcode by opcode.
pub struct Pickle {
    pub buf: Vec<u8>,
    memo: u32,
}

impl Default for Pickle {
    fn default() -> Self {
        Self::new()
    }
}

impl Pickle {
    /// Starts a protocol 2 pickle.
    pub fn new() -> Self {
        Self::with_protocol(2)
    }
    pub fn with_protocol(proto: u8) -> Self {
        Pickle { buf: vec![0x80, proto], memo: 0 }
    }
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }
    pub fn op(&mut self, op: u8) -> &mut Self {
        self.raw(&[op])
    }
    pub fn mark(&mut self) -> &mut Self {
        self.op(b'(')
    }
    pub fn tuple(&mut self) -> &mut Self {
        self.op(b't')
    }
    pub fn empty_dict(&mut self) -> &mut Self {
        self.op(b'}')
    }
    pub fn empty_tuple(&mut self) -> &mut Self {
        self.op(b')')
    }
    pub fn setitems(&mut self) -> &mut Self {
        self.op(b'u')
    }
    pub fn setitem(&mut self) -> &mut Self {
        self.op(b's')
    }
    pub fn reduce(&mut self) -> &mut Self {
        self.op(b'R')
    }
    pub fn build(&mut self) -> &mut Self {
        self.op(b'b')
    }
    pub fn persid(&mut self) -> &mut Self {
        self.op(b'Q')
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.op(if v { 0x88 } else { 0x89 })
    }
    pub fn none(&mut self) -> &mut Self {
        self.op(b'N')
    }
    pub fn stop(&mut self) -> &mut Self {
        self.op(b'.')
    }
    /// BINPUT / LONG_BINPUT with the next memo index; returns the index.
    pub fn put(&mut self) -> u32 {
        let i = self.memo;
        self.memo += 1;
        if i < 256 {
            self.raw(&[b'q', i as u8]);
        } else {
            self.op(b'r').raw(&i.to_le_bytes());
        }
        i
    }
    pub fn get(&mut self, i: u32) -> &mut Self {
        if i < 256 {
            self.raw(&[b'h', i as u8])
        } else {
            self.op(b'j').raw(&i.to_le_bytes())
        }
    }
    /// The smallest of BININT1, BININT2, BININT, LONG1.
    pub fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.raw(&[b'K', v as u8])
        } else if (0..65536).contains(&v) {
            self.op(b'M').raw(&(v as u16).to_le_bytes())
        } else if i32::try_from(v).is_ok() {
            self.op(b'J').raw(&(v as i32).to_le_bytes())
        } else {
            self.raw(&[0x8a, 8]).raw(&v.to_le_bytes())
        }
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.op(b'X').raw(&(s.len() as u32).to_le_bytes()).raw(s.as_bytes())
    }
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c').raw(module.as_bytes()).op(b'\n').raw(name.as_bytes()).op(b'\n')
    }
    pub fn ints_tuple(&mut self, values: &[i64]) -> &mut Self {
        match values.len() {
            0 => self.empty_tuple(),
            1..=3 => {
                for &v in values {
                    self.int(v);
                }
                self.op(0x84 + values.len() as u8)
            }
            _ => {
                self.mark();
                for &v in values {
                    self.int(v);
                }
                self.tuple()
            }
        }
    }
    /// The sequence `torch.save` emits for one tensor (no memo reuse).
    pub fn tensor(&mut self, t: &T) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.mark();
        self.mark().str("storage").global("torch", t.class).str(t.storage).str("cpu").int(t.numel).tuple();
        self.persid();
        self.int(t.offset);
        self.ints_tuple(&t.size);
        self.ints_tuple(&t.stride);
        self.bool(false);
        self.global("collections", "OrderedDict").empty_tuple().reduce();
        self.tuple().reduce()
    }
    pub fn finish(&mut self) -> Vec<u8> {
        self.stop();
        std::mem::take(&mut self.buf)
    }
}

/// One tensor of a generated state dict.
#[derive(Clone, Debug)]
pub struct T {
    pub key: &'static str,
    pub class: &'static str,
    pub storage: &'static str,
    pub numel: i64,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

impl T {
    /// A contiguous tensor filling its own storage.
    pub fn contiguous(key: &'static str, class: &'static str, storage: &'static str, size: &[i64]) -> T {
        let mut stride = vec![1; size.len()];
        for i in (0..size.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * size[i + 1];
        }
        T { key, class, storage, numel: size.iter().product(), offset: 0, size: size.to_vec(), stride }
    }
}

/// `OrderedDict` state dict of `tensors`, with the `_metadata` BUILD that `Module.state_dict()` adds.
pub fn state_dict_pickle(tensors: &[T]) -> Vec<u8> {
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict").empty_tuple().reduce();
    p.put();
    p.mark();
    for t in tensors {
        p.str(t.key);
        p.tensor(t);
    }
    p.setitems();
    // BUILD state {'_metadata': OrderedDict({'': {'version': 1}})}: ignored by the reader.
    p.empty_dict().str("_metadata").global("collections", "OrderedDict").empty_tuple().reduce();
    p.str("").empty_dict().str("version").int(1).setitem().setitem();
    p.setitem().build();
    p.finish()
}

// ---------------------------------------------------------------------------------------------------------
// Zip writer
// ---------------------------------------------------------------------------------------------------------

/// How to lay out an archive.
#[derive(Clone, Copy, Debug)]
pub struct ZipStyle {
    /// Data descriptors after each member, zero CRC/sizes in local headers (flag bit 3), as torch writes.
    pub descriptor: bool,
    /// ZIP64 end of central directory record and locator, as torch writes.
    pub zip64: bool,
    /// Pad local extra fields so that data starts on 64-byte boundaries, as torch does.
    pub align: bool,
}

pub const TORCH_STYLE: ZipStyle = ZipStyle { descriptor: true, zip64: true, align: true };
pub const PLAIN_STYLE: ZipStyle = ZipStyle { descriptor: false, zip64: false, align: false };

/// A central directory record, editable before the archive is finished.
#[derive(Clone, Debug)]
pub struct Central {
    pub name: Vec<u8>,
    pub flags: u16,
    pub method: u16,
    pub crc: u32,
    pub size: u64,
    pub offset: u64,
}

/// Writes a stored zip of `members`; `edit` may change the bytes written so far and the central records.
pub fn zip_with(
    members: &[(String, Vec<u8>)],
    style: ZipStyle,
    edit: impl FnOnce(&mut Vec<u8>, &mut Vec<Central>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut centrals = Vec::new();
    for (name, data) in members {
        let offset = out.len() as u64;
        let crc = crc32fast::hash(data);
        let flags: u16 = if style.descriptor { 0x0808 } else { 0x0800 };
        let extra = if style.align {
            let unpadded = out.len() + 30 + name.len() + 4;
            let pad = (64 - unpadded % 64) % 64;
            let mut e = vec![b'F', b'B'];
            e.extend_from_slice(&(pad as u16).to_le_bytes());
            e.extend(std::iter::repeat_n(b'Z', pad));
            e
        } else {
            Vec::new()
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // method
        out.extend_from_slice(&[0; 4]); // time, date
        let (lcrc, lsize) = if style.descriptor { (0, 0) } else { (crc, data.len() as u32) };
        out.extend_from_slice(&lcrc.to_le_bytes());
        out.extend_from_slice(&lsize.to_le_bytes());
        out.extend_from_slice(&lsize.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&extra);
        out.extend_from_slice(data);
        if style.descriptor {
            out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        centrals.push(Central {
            name: name.as_bytes().to_vec(),
            flags,
            method: 0,
            crc,
            size: data.len() as u64,
            offset,
        });
    }
    edit(&mut out, &mut centrals);
    let cd_offset = out.len() as u64;
    for c in &centrals {
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&0x031eu16.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&c.flags.to_le_bytes());
        out.extend_from_slice(&c.method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&c.crc.to_le_bytes());
        out.extend_from_slice(&(c.size as u32).to_le_bytes());
        out.extend_from_slice(&(c.size as u32).to_le_bytes());
        out.extend_from_slice(&(c.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 4]); // extra, comment length
        out.extend_from_slice(&[0; 8]); // disk, internal and external attributes
        out.extend_from_slice(&(c.offset as u32).to_le_bytes());
        out.extend_from_slice(&c.name);
    }
    let cd_size = out.len() as u64 - cd_offset;
    let n = centrals.len() as u64;
    if style.zip64 {
        let z64 = out.len() as u64;
        out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&0x031eu16.to_le_bytes());
        out.extend_from_slice(&45u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // disks
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&cd_size.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&z64.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
    }
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&(cd_size as u32).to_le_bytes());
    out.extend_from_slice(&(cd_offset as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

pub fn zip(members: &[(String, Vec<u8>)], style: ZipStyle) -> Vec<u8> {
    zip_with(members, style, |_, _| {})
}

/// The members of a torch archive: `<prefix>data.pkl`, `byteorder`, `data/<key>` for each storage, `version`.
pub fn torch_members(prefix: &str, pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut m = vec![(format!("{prefix}data.pkl"), pickle), (format!("{prefix}byteorder"), b"little".to_vec())];
    for (key, data) in storages {
        m.push((format!("{prefix}data/{key}"), data.clone()));
    }
    m.push((format!("{prefix}version"), b"3\n".to_vec()));
    m
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The valid state dict used by several tests: F32 (contiguous, transposed view of the same storage, with
/// storage offset), F16, BF16, I64 counter, BOOL mask.
pub fn valid_tensors() -> Vec<T> {
    vec![
        T::contiguous("w", "FloatStorage", "0", &[2, 3]),
        T { key: "wt", class: "FloatStorage", storage: "0", numel: 6, offset: 0, size: vec![3, 2], stride: vec![1, 3] },
        T::contiguous("h", "HalfStorage", "1", &[4]),
        T::contiguous("b", "BFloat16Storage", "2", &[3]),
        T::contiguous("bn.num_batches_tracked", "LongStorage", "3", &[]),
        T {
            key: "off",
            class: "FloatStorage",
            storage: "4",
            numel: 10,
            offset: 4,
            size: vec![2, 2],
            stride: vec![2, 1],
        },
        T::contiguous("mask", "BoolStorage", "5", &[3]),
    ]
}

pub fn valid_storages() -> Vec<(&'static str, Vec<u8>)> {
    let f16: Vec<u8> = [0x3c00u16, 0x4000, 0xc000, 0x0000].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bf16: Vec<u8> = [0x3f80u16, 0x4040, 0xbf80].iter().flat_map(|v| v.to_le_bytes()).collect();
    vec![
        ("0", f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])),
        ("1", f16),
        ("2", bf16),
        ("3", 7i64.to_le_bytes().to_vec()),
        ("4", f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])),
        ("5", vec![1, 0, 1]),
    ]
}

/// The valid torch archive in the torch layout.
pub fn valid_torch_file() -> Vec<u8> {
    zip(&torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages()), TORCH_STYLE)
}

// ---------------------------------------------------------------------------------------------------------
// Safetensors writer
// ---------------------------------------------------------------------------------------------------------

/// A safetensors file from a raw JSON header (padded to 8 bytes with spaces) and a data region.
pub fn safetensors_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A valid safetensors file of (name, dtype, shape, data) entries laid out in order.
pub fn safetensors(entries: &[(&str, &str, &[u64], Vec<u8>)]) -> Vec<u8> {
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in entries {
        let begin = data.len();
        data.extend_from_slice(bytes);
        header.push_str(&format!(
            ",\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{begin},{}]}}",
            data.len()
        ));
    }
    header.push('}');
    safetensors_raw(&header, &data)
}

pub fn valid_safetensors() -> Vec<u8> {
    safetensors(&[
        ("w", "F32", &[2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
        ("n", "I64", &[], 5i64.to_le_bytes().to_vec()),
        ("mask", "BOOL", &[3], vec![1, 0, 1]),
        ("h", "F16", &[2], vec![0x00, 0x3c, 0x00, 0x40]),
        ("empty", "F32", &[0, 4], Vec::new()),
    ])
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

/// `../tests/fixtures/<name>/weights.pt` relative to this crate, found at run time.
pub fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo test");
    PathBuf::from(dir).join("../tests/fixtures").join(name).join("weights.pt")
}
