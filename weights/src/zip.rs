//! A minimal, strict zip reader for the archives `torch.save` writes: stored members only, ZIP64 aware,
//! every structure checked (bounds, consistency of local and central headers, no overlapping or duplicate
//! members, CRC-32 of every member read).

use std::collections::HashMap;
use std::path::Path;

use crate::source::Source;
use crate::{Limits, Result, WeightsError};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const EOCD_LEN: u64 = 22;
const MAX_COMMENT: u64 = 0xFFFF;
const LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_LEN: u64 = 56;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: u64 = 30;
/// General purpose flag bit 3: sizes and CRC follow the data in a data descriptor.
const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// Flag bits for encryption (traditional, strong) and masked local headers.
const FLAG_ENCRYPTED: u16 = 1 | (1 << 6) | (1 << 13);

/// One member of a [`ZipArchive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The member name.
    pub name: String,
    /// Size of the (stored, uncompressed) data in bytes.
    pub size: u64,
    /// CRC-32 recorded in the central directory.
    pub crc32: u32,
    /// Offset of the member's local header in the file.
    pub header_offset: u64,
    /// Offset of the member's data in the file.
    pub data_offset: u64,
}

/// A validated zip archive. Opening checks the whole directory structure; member data is only read (and
/// its CRC-32 verified) by [`ZipArchive::read`].
#[derive(Debug)]
pub struct ZipArchive {
    source: Source,
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
}

/// Little-endian cursor over a byte slice; every read is bounds checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
}

/// A central directory entry before its local header has been checked.
struct Central {
    name: String,
    flags: u16,
    method: u16,
    crc32: u32,
    size: u64,
    offset: u64,
}

/// Reads the fields of a ZIP64 extended information extra field (id 1) that the saturated 32-bit fields
/// call for, in the order the specification gives.
fn zip64_extra(extra: &[u8], wants: [bool; 4], member: &str) -> Result<[Option<u64>; 4]> {
    let bad = |reason: &str| WeightsError::zip(Some(member), reason.to_string());
    let mut fields = [None; 4];
    if !wants.iter().any(|&w| w) {
        return Ok(fields);
    }
    let mut cur = Cursor::new(extra);
    while cur.pos < extra.len() {
        let (Some(id), Some(len)) = (cur.u16(), cur.u16()) else { return Err(bad("truncated extra field")) };
        let Some(data) = cur.bytes(len as usize) else { return Err(bad("extra field overruns its area")) };
        if id != 1 {
            continue;
        }
        let mut field = Cursor::new(data);
        for (i, want) in wants.iter().enumerate() {
            if *want {
                // The disk number (index 3) is 4 bytes, the others 8.
                let value = if i == 3 { field.u32().map(u64::from) } else { field.u64() };
                fields[i] = Some(value.ok_or_else(|| bad("ZIP64 extra field is too short"))?);
            }
        }
        return Ok(fields);
    }
    Err(bad("saturated size or offset but no ZIP64 extra field"))
}

impl ZipArchive {
    /// Opens and validates the archive at `path`.
    pub fn open(path: impl AsRef<Path>, limits: &Limits) -> Result<Self> {
        Self::from_source(Source::open(path.as_ref())?, limits)
    }

    /// Validates an archive held in memory.
    pub fn from_bytes(bytes: Vec<u8>, limits: &Limits) -> Result<Self> {
        Self::from_source(Source::Memory(bytes), limits)
    }

    /// All members, in central directory order.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member called `name`, if any.
    pub fn entry(&self, name: &str) -> Option<&ZipEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Reads a member's data and verifies its CRC-32.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let entry = self.entry(name).ok_or_else(|| WeightsError::zip(Some(name), "no such member"))?;
        let data = self.source.read_at(entry.data_offset, entry.size)?;
        let actual = crc32fast::hash(&data);
        if actual != entry.crc32 {
            return Err(WeightsError::CrcMismatch { member: entry.name.clone(), expected: entry.crc32, actual });
        }
        Ok(data)
    }

    pub(crate) fn from_source(source: Source, limits: &Limits) -> Result<Self> {
        let len = source.len();
        let not_zip = |reason: &str| WeightsError::NotZip { reason: reason.to_string() };
        if len < EOCD_LEN {
            return Err(not_zip("the file is too short"));
        }
        let magic = source.read_at(0, 4)?;
        if magic != LOCAL_SIG.to_le_bytes() {
            return Err(not_zip(if magic[..2] == [0x80, 0x02] {
                "it starts with a pickle (the legacy pre-1.6 torch.save format is not supported)"
            } else {
                "it does not start with a zip local file header"
            }));
        }

        // End of central directory: the last signature whose comment length reaches exactly the end of the
        // file, searched backwards through at most 64 KiB + 22 bytes.
        let tail_len = len.min(EOCD_LEN + MAX_COMMENT);
        let tail_start = len - tail_len;
        let tail = source.read_at(tail_start, tail_len)?;
        let found = (0..=tail.len() - EOCD_LEN as usize).rev().find(|&pos| {
            tail[pos..pos + 4] == EOCD_SIG.to_le_bytes()
                && u16::from_le_bytes([tail[pos + 20], tail[pos + 21]]) as usize == tail.len() - pos - EOCD_LEN as usize
        });
        let Some(pos) = found else { return Err(not_zip("no end-of-central-directory record")) };
        let eocd_offset = tail_start + pos as u64;
        let mut cur = Cursor::new(&tail[pos + 4..]);
        let eocd = || WeightsError::zip(None, "truncated end-of-central-directory record");
        let disk = cur.u16().ok_or_else(eocd)?;
        let cd_disk = cur.u16().ok_or_else(eocd)?;
        let disk_entries = cur.u16().ok_or_else(eocd)?;
        let total_entries = cur.u16().ok_or_else(eocd)?;
        let cd_size32 = cur.u32().ok_or_else(eocd)?;
        let cd_offset32 = cur.u32().ok_or_else(eocd)?;

        let (mut entries_n, mut cd_size, mut cd_offset) =
            (u64::from(total_entries), u64::from(cd_size32), u64::from(cd_offset32));
        let mut directory_end = eocd_offset;
        if eocd_offset >= LOCATOR_LEN {
            let locator = source.read_at(eocd_offset - LOCATOR_LEN, LOCATOR_LEN)?;
            let mut cur = Cursor::new(&locator);
            if cur.u32() == Some(ZIP64_LOCATOR_SIG) {
                let bad = |reason: &str| WeightsError::zip(None, format!("ZIP64: {reason}"));
                let (z64_disk, z64_offset, disks) = (cur.u32(), cur.u64(), cur.u32());
                let (Some(0), Some(z64_offset), Some(0 | 1)) = (z64_disk, z64_offset, disks) else {
                    return Err(bad("multi-disk archives are not supported"));
                };
                let locator_offset = eocd_offset - LOCATOR_LEN;
                if z64_offset.checked_add(ZIP64_EOCD_LEN).is_none_or(|end| end > locator_offset) {
                    return Err(bad("end-of-central-directory record out of place"));
                }
                let record = source.read_at(z64_offset, ZIP64_EOCD_LEN)?;
                let mut cur = Cursor::new(&record);
                let fields = (
                    cur.u32(),
                    cur.u64(),
                    cur.u16(),
                    cur.u16(),
                    cur.u32(),
                    cur.u32(),
                    cur.u64(),
                    cur.u64(),
                    cur.u64(),
                    cur.u64(),
                );
                let (
                    Some(ZIP64_EOCD_SIG),
                    Some(rec_size),
                    _,
                    _,
                    Some(0),
                    Some(0),
                    Some(n_disk),
                    Some(n),
                    Some(size),
                    Some(off),
                ) = fields
                else {
                    return Err(bad("bad end-of-central-directory record"));
                };
                if z64_offset.checked_add(12).and_then(|o| o.checked_add(rec_size)) != Some(locator_offset) {
                    return Err(bad("end-of-central-directory record size does not reach its locator"));
                }
                if n_disk != n {
                    return Err(bad("multi-disk archives are not supported"));
                }
                // Non-saturated 32-bit fields must agree with the ZIP64 ones: two readers must see one directory.
                let agrees = |small: u64, saturated: u64, big: u64| small == saturated || small == big;
                if !agrees(u64::from(total_entries), 0xFFFF, n)
                    || !agrees(u64::from(disk_entries), 0xFFFF, n)
                    || !agrees(u64::from(cd_size32), 0xFFFF_FFFF, size)
                    || !agrees(u64::from(cd_offset32), 0xFFFF_FFFF, off)
                {
                    return Err(bad("end-of-central-directory records disagree"));
                }
                (entries_n, cd_size, cd_offset) = (n, size, off);
                directory_end = z64_offset;
            } else if disk != 0 || cd_disk != 0 || disk_entries != total_entries {
                return Err(WeightsError::zip(None, "multi-disk archives are not supported"));
            }
        }

        if entries_n > limits.max_zip_entries {
            return Err(WeightsError::limit("zip entries", "max_zip_entries", entries_n, limits.max_zip_entries));
        }
        if cd_size > limits.max_central_directory_bytes {
            return Err(WeightsError::limit(
                "zip central directory bytes",
                "max_central_directory_bytes",
                cd_size,
                limits.max_central_directory_bytes,
            ));
        }
        if cd_offset.checked_add(cd_size) != Some(directory_end) {
            return Err(WeightsError::zip(None, "the central directory does not end where its end record starts"));
        }
        if entries_n.saturating_mul(CENTRAL_LEN as u64) > cd_size {
            return Err(WeightsError::zip(None, "the central directory is too small for its entry count"));
        }
        let cd = source.read_at(cd_offset, cd_size)?;

        let mut cur = Cursor::new(&cd);
        let mut centrals = Vec::new();
        let mut by_name = HashMap::new();
        for index in 0..entries_n {
            let truncated = || WeightsError::zip(None, format!("central directory entry {index} is truncated"));
            let header = cur.bytes(CENTRAL_LEN).ok_or_else(truncated)?;
            let mut h = Cursor::new(header);
            let sig = h.u32();
            let (_made, _needed, flags, method) = (h.u16(), h.u16(), h.u16(), h.u16());
            let (_time, _date, crc32, csize, usize_, nlen, elen, clen, disk) =
                (h.u16(), h.u16(), h.u32(), h.u32(), h.u32(), h.u16(), h.u16(), h.u16(), h.u16());
            let (_int_attr, _ext_attr, offset) = (h.u16(), h.u32(), h.u32());
            let (Some(CENTRAL_SIG), Some(flags), Some(method), Some(crc32)) = (sig, flags, method, crc32) else {
                return Err(WeightsError::zip(None, format!("central directory entry {index} has a bad signature")));
            };
            let (Some(csize), Some(usize_), Some(nlen), Some(elen), Some(clen), Some(disk), Some(offset)) =
                (csize, usize_, nlen, elen, clen, disk, offset)
            else {
                return Err(truncated());
            };
            if nlen as usize > limits.max_name_bytes {
                return Err(WeightsError::limit(
                    format!("name of zip entry {index}"),
                    "max_name_bytes",
                    nlen.into(),
                    limits.max_name_bytes as u64,
                ));
            }
            let name = cur.bytes(nlen as usize).ok_or_else(truncated)?;
            let name = std::str::from_utf8(name)
                .map_err(|_| {
                    WeightsError::zip(Some(&String::from_utf8_lossy(name)), "the member name is not valid UTF-8")
                })?
                .to_string();
            let extra = cur.bytes(elen as usize).ok_or_else(truncated)?;
            cur.bytes(clen as usize).ok_or_else(truncated)?;
            if flags & FLAG_ENCRYPTED != 0 {
                return Err(WeightsError::zip(Some(&name), "encrypted members are not supported"));
            }
            if method != 0 {
                return Err(WeightsError::UnsupportedCompression { member: name, method });
            }
            let [u, c, o, d] = zip64_extra(
                extra,
                [usize_ == 0xFFFF_FFFF, csize == 0xFFFF_FFFF, offset == 0xFFFF_FFFF, disk == 0xFFFF],
                &name,
            )?;
            let size = u.unwrap_or(usize_.into());
            let csize = c.unwrap_or(csize.into());
            let offset = o.unwrap_or(offset.into());
            if d.unwrap_or(disk.into()) != 0 {
                return Err(WeightsError::zip(Some(&name), "multi-disk archives are not supported"));
            }
            if csize != size {
                return Err(WeightsError::zip(
                    Some(&name),
                    "a stored member's compressed and uncompressed sizes differ",
                ));
            }
            if by_name.insert(name.clone(), centrals.len()).is_some() {
                return Err(WeightsError::DuplicateMember { member: name });
            }
            centrals.push(Central { name, flags, method, crc32, size, offset });
        }
        if cur.pos != cd.len() {
            return Err(WeightsError::zip(None, "the central directory has bytes after its last entry"));
        }

        // Local headers, in file order, so that overlaps can be detected.
        let mut order: Vec<usize> = (0..centrals.len()).collect();
        order.sort_by_key(|&i| centrals[i].offset);
        let mut entries: Vec<Option<ZipEntry>> = vec![None; centrals.len()];
        let mut previous: Option<(usize, u64)> = None;
        for &i in &order {
            let c = &centrals[i];
            let (start, data_offset, end) = Self::check_local(&source, c, cd_offset)?;
            if let Some((p, prev_end)) = previous {
                if start < prev_end {
                    return Err(WeightsError::OverlappingMembers {
                        first: centrals[p].name.clone(),
                        second: c.name.clone(),
                    });
                }
            }
            previous = Some((i, end));
            entries[i] = Some(ZipEntry {
                name: c.name.clone(),
                size: c.size,
                crc32: c.crc32,
                header_offset: c.offset,
                data_offset,
            });
        }
        let entries = entries.into_iter().flatten().collect();
        Ok(ZipArchive { source, entries, by_name })
    }

    /// Checks a member's local header against its central entry; returns (start, data offset, end) of the
    /// member's bytes in the file, the data descriptor included.
    fn check_local(source: &Source, c: &Central, limit: u64) -> Result<(u64, u64, u64)> {
        let member = Some(c.name.as_str());
        let outside = || WeightsError::zip(member, "the member lies outside the file's member area");
        if c.offset.checked_add(LOCAL_LEN).is_none_or(|end| end > limit) {
            return Err(outside());
        }
        let header = source.read_at(c.offset, LOCAL_LEN)?;
        let mut h = Cursor::new(&header);
        let fields =
            (h.u32(), h.u16(), h.u16(), h.u16(), h.u16(), h.u16(), h.u32(), h.u32(), h.u32(), h.u16(), h.u16());
        let (
            Some(sig),
            _,
            Some(flags),
            Some(method),
            _,
            _,
            Some(crc32),
            Some(csize),
            Some(usize_),
            Some(nlen),
            Some(elen),
        ) = fields
        else {
            return Err(outside());
        };
        if sig != LOCAL_SIG {
            return Err(WeightsError::zip(member, "bad local header signature"));
        }
        if flags != c.flags || method != c.method {
            return Err(WeightsError::zip(member, "local header flags or method differ from the central directory"));
        }
        let deferred = flags & FLAG_DESCRIPTOR != 0;
        // With a data descriptor the local fields may be zero; 0xFFFFFFFF defers to ZIP64 fields.
        let consistent = |local: u32, central: u64, saturated: bool| {
            u64::from(local) == central || (deferred && local == 0) || (saturated && local == 0xFFFF_FFFF)
        };
        if !consistent(crc32, c.crc32.into(), false)
            || !consistent(csize, c.size, true)
            || !consistent(usize_, c.size, true)
        {
            return Err(WeightsError::zip(member, "local header CRC or sizes differ from the central directory"));
        }
        let names_end = c.offset + LOCAL_LEN + u64::from(nlen);
        let data_offset = names_end + u64::from(elen);
        if data_offset > limit {
            return Err(outside());
        }
        let name = source.read_at(c.offset + LOCAL_LEN, nlen.into())?;
        if name != c.name.as_bytes() {
            return Err(WeightsError::zip(member, "local header name differs from the central directory"));
        }
        let data_end = data_offset.checked_add(c.size).filter(|&end| end <= limit).ok_or_else(outside)?;
        if !deferred {
            return Ok((c.offset, data_offset, data_end));
        }
        // Data descriptor: optional signature, CRC, then 4- or 8-byte sizes; it must agree with the directory.
        let available = (limit - data_end).min(24);
        let desc = source.read_at(data_end, available)?;
        for (signed, wide) in [(true, false), (true, true), (false, false), (false, true)] {
            let mut d = Cursor::new(&desc);
            if signed && d.u32() != Some(DESCRIPTOR_SIG) {
                continue;
            }
            let crc = d.u32();
            let (cs, us) = if wide { (d.u64(), d.u64()) } else { (d.u32().map(u64::from), d.u32().map(u64::from)) };
            if crc == Some(c.crc32) && cs == Some(c.size) && us == Some(c.size) {
                return Ok((c.offset, data_offset, data_end + d.pos as u64));
            }
        }
        Err(WeightsError::zip(member, "the data descriptor is missing or differs from the central directory"))
    }
}
