#!/usr/bin/env python3
"""Generates the malformed-input corpus of issue 10 (untrusted checkpoints and artifacts).

Usage: python3 tools/corpus/gen.py OUT_DIR [--seed N] [--fixtures DIR]

Writes one directory per case under OUT_DIR (a checkpoint or artifact directory: config.json + weights.pt or
model.safetensors, and for artifacts preprocess.json + schema.json) and OUT_DIR/cases.json, the list the runner
(run.py) executes. Every file is built here from the two committed fixtures (tests/fixtures/lewm-tiny and
tests/fixtures/tdmpc2-tiny) with the standard library only: zip archives, pickles and safetensors files are
written byte by byte, so each case controls exactly what is malformed. The output is deterministic for a seed.

A case in cases.json:
  name              directory name under OUT_DIR
  class             the finding of issue 10 it covers ("1" .. "10"), "fuzz" or "valid"
  description       what is malformed
  command           swm arguments; "{case}" stands for the case directory, "{tmp}" for a fresh empty
                    scratch directory the runner creates per case
  outcome           "ok" (exit 0), "error" (exit 1 or 2 and a stderr line starting with "error:"), or "any"
                    (0, 1 or 2: anything but a crash)
  expect_substring  optional list of strings the error message must all contain (case-insensitive)
  expect_one_of     optional list of strings of which the error message must contain at least one
  expect_absent     optional list of strings the error message must not contain (a misleading diagnosis)
  unchanged         optional {relative path: sha256} of the case's input files, checked after the run
  expect_mode       optional {path: "644"}: permission bits of output files (the runner sets umask 022)
"""

from __future__ import annotations

import argparse
import collections
import copy
import functools
import hashlib
import io
import json
import os
import pickle
import random
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

GIB = 1 << 30

# ---------------------------------------------------------------------------------------------------------------
# Pickle writer
# ---------------------------------------------------------------------------------------------------------------


class Pickle:
    """Emits pickle opcodes by hand (protocol 2 by default), so that a case controls every byte."""

    def __init__(self, proto: int | None = 2):
        self.out = bytearray()
        if proto is not None:
            self.op(b"\x80", bytes([proto]))

    def op(self, *parts: bytes) -> "Pickle":
        """Appends raw bytes."""
        for part in parts:
            self.out += part
        return self

    def mark(self) -> "Pickle":
        return self.op(b"(")

    def unicode(self, text: str) -> "Pickle":
        """BINUNICODE."""
        data = text.encode()
        return self.op(b"X", struct.pack("<I", len(data)), data)

    def integer(self, n: int) -> "Pickle":
        """The smallest integer opcode torch would use: BININT1, BININT2, BININT or LONG1."""
        if 0 <= n < 0x100:
            return self.op(b"K", bytes([n]))
        if 0 <= n < 0x10000:
            return self.op(b"M", struct.pack("<H", n))
        if -(1 << 31) <= n < (1 << 31):
            return self.op(b"J", struct.pack("<i", n))
        return self.op(b"\x8a", *long1(n))

    def binfloat(self, x: float) -> "Pickle":
        """BINFLOAT (big-endian double)."""
        return self.op(b"G", struct.pack(">d", x))

    def glob(self, module: str, name: str) -> "Pickle":
        """GLOBAL 'module name'."""
        return self.op(b"c", f"{module}\n{name}\n".encode())

    def put(self, index: int) -> "Pickle":
        return self.op(b"q", bytes([index])) if index < 0x100 else self.op(b"r", struct.pack("<I", index))

    def get(self, index: int) -> "Pickle":
        return self.op(b"h", bytes([index])) if index < 0x100 else self.op(b"j", struct.pack("<I", index))

    def value(self, v) -> "Pickle":
        """A Python value as opcodes: int (any size), bool, float, str, None, tuple or list."""
        if v is None:
            return self.op(b"N")
        if isinstance(v, bool):
            return self.op(b"\x88" if v else b"\x89")
        if isinstance(v, int):
            return self.integer(v)
        if isinstance(v, float):
            return self.binfloat(v)
        if isinstance(v, str):
            return self.unicode(v)
        if isinstance(v, tuple):
            if len(v) == 0:
                return self.op(b")")
            if len(v) <= 3:
                for item in v:
                    self.value(item)
                return self.op(bytes([0x84 + len(v)]))
            self.mark()
            for item in v:
                self.value(item)
            return self.op(b"t")
        if isinstance(v, list):
            self.op(b"]").mark()
            for item in v:
                self.value(item)
            return self.op(b"e")
        raise TypeError(f"no pickle form for {v!r}")

    def tensor(self, t: "TensorDecl") -> "Pickle":
        """`_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` as torch.save writes it,
        optionally wrapped in `_rebuild_parameter(tensor, False, OrderedDict())`."""
        if t.parameter:
            self.glob("torch._utils", "_rebuild_parameter")
        self.glob(*t.rebuild).mark()
        self.mark().unicode("storage").glob("torch", t.cls).unicode(t.storage).unicode(t.location).value(t.numel)
        self.op(b"t", b"Q")
        self.value(t.offset).value(t.size).value(t.stride)
        self.op(b"\x89").glob(*t.hooks).op(b")", b"R")
        self.op(b"t", b"R")
        if t.parameter:
            self.op(b"\x89").glob("collections", "OrderedDict").op(b")", b"R", b"\x87", b"R")
        return self

    def stop(self) -> bytes:
        """STOP; returns the pickle."""
        self.out += b"."
        return bytes(self.out)

    def data(self) -> bytes:
        """The opcodes so far (no STOP)."""
        return bytes(self.out)


class Pickle4(Pickle):
    """Protocol-4 forms (`torch.save(..., pickle_protocol=4)`): SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE."""

    def __init__(self):
        super().__init__(4)

    def unicode(self, text: str) -> "Pickle":
        data = text.encode()
        if len(data) >= 0x100:
            return super().unicode(text)
        return self.op(b"\x8c", bytes([len(data)]), data, b"\x94")

    def glob(self, module: str, name: str) -> "Pickle":
        return self.unicode(module).unicode(name).op(b"\x93", b"\x94")


def protocol4_state_dict(tensors: list[TensorDecl]) -> bytes:
    """A protocol-4 state dict with one FRAME around the body."""
    body = Pickle4()
    body.out.clear()
    body.op(b"}", b"\x94").mark()
    for t in tensors:
        body.unicode(t.key).tensor(t)
    body.op(b"u", b".")
    return b"\x80\x04\x95" + struct.pack("<Q", len(body.out)) + bytes(body.out)


def long1(n: int) -> tuple[bytes, bytes]:
    """LONG1 operands: the length byte and the little-endian two's complement bytes of `n`."""
    length = 1
    while not -(1 << (8 * length - 1)) <= n < (1 << (8 * length - 1)):
        length += 1
    return bytes([length]), (n % (1 << (8 * length))).to_bytes(length, "little")


@dataclass(frozen=True)
class TensorDecl:
    """One state-dict entry: the arguments of `_rebuild_tensor_v2` and the storage's persistent id."""

    key: str
    cls: str
    storage: str
    numel: object
    offset: object
    size: object
    stride: object
    location: str = "cpu"
    parameter: bool = False
    hooks: tuple[str, str] = ("collections", "OrderedDict")
    rebuild: tuple[str, str] = ("torch._utils", "_rebuild_tensor_v2")


def state_dict_pickle(tensors: list[TensorDecl], *, ordered: bool = False, proto: int = 2) -> bytes:
    """A state dict pickle: `{key: tensor, ...}` (an OrderedDict when `ordered`), built with one SETITEMS."""
    p = Pickle(proto)
    if ordered:
        p.glob("collections", "OrderedDict").op(b")", b"R")
    else:
        p.op(b"}")
    p.mark()
    for t in tensors:
        p.unicode(t.key).tensor(t)
    p.op(b"u")
    return p.stop()


# ---------------------------------------------------------------------------------------------------------------
# Zip writer
# ---------------------------------------------------------------------------------------------------------------

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
EOCD_SIG = 0x06054B50
ZIP64_EOCD_SIG = 0x06064B50
ZIP64_LOCATOR_SIG = 0x07064B50
DESCRIPTOR_SIG = 0x08074B50
DOS_DATE = 0x21  # 1980-01-01


@dataclass
class Member:
    """A zip member as written: `data` is stored as is; `crc` and `size` default to those of `data`."""

    name: str
    data: bytes
    method: int = 0
    crc: int | None = None
    size: int | None = None
    flags: int = 0x0800


@dataclass
class Layout:
    """Where build_zip put things, for attacks that patch the archive afterwards."""

    local: list[int] = field(default_factory=list)
    data: list[int] = field(default_factory=list)
    central: list[int] = field(default_factory=list)
    cd_offset: int = 0
    cd_size: int = 0
    eocd: int = 0
    zip64_eocd: int | None = None


def build_zip(
    members: list[Member], *, align: int = 64, descriptor: bool = False, zip64: bool = False, comment: bytes = b""
) -> tuple[bytes, Layout]:
    """A zip archive as torch.save writes one: stored members, data aligned to `align` bytes with a padding
    extra field, optional data descriptors (torch sets flag bit 3) and optional ZIP64 records."""
    out = bytearray()
    lay = Layout()
    rows = []
    for m in members:
        name = m.name.encode()
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.size is None else m.size
        csize = len(m.data)
        flags = m.flags | (0x8 if descriptor else 0)
        local_offset = len(out)
        extra = struct.pack("<HHQQ", 1, 16, size, csize) if zip64 else b""
        l_crc, l_csize, l_size = crc, csize, size
        if zip64:
            l_csize = l_size = 0xFFFFFFFF
        if descriptor:
            l_crc, l_csize, l_size = 0, 0, 0
        if align:
            base = local_offset + 30 + len(name) + len(extra)
            pad = (-(base + 4)) % align
            extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        out += struct.pack(
            "<IHHHHHIIIHH", LOCAL_SIG, 45 if zip64 else 20, flags, m.method, 0, DOS_DATE, l_crc, l_csize, l_size,
            len(name), len(extra),
        )
        out += name + extra
        lay.local.append(local_offset)
        lay.data.append(len(out))
        out += m.data
        if descriptor:
            if zip64:
                out += struct.pack("<IIQQ", DESCRIPTOR_SIG, crc, csize, size)
            else:
                out += struct.pack("<IIII", DESCRIPTOR_SIG, crc, csize, size)
        rows.append((m, name, flags, crc, csize, size, local_offset))
    lay.cd_offset = len(out)
    for m, name, flags, crc, csize, size, local_offset in rows:
        lay.central.append(len(out))
        c_csize, c_size, c_offset, extra = csize, size, local_offset, b""
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, csize, local_offset)
            c_csize = c_size = c_offset = 0xFFFFFFFF
        out += struct.pack(
            "<IHHHHHHIIIHHHHHII", CENTRAL_SIG, 0x031E, 45 if zip64 else 20, flags, m.method, 0, DOS_DATE, crc,
            c_csize, c_size, len(name), len(extra), 0, 0, 0, 0, c_offset,
        )
        out += name + extra
    lay.cd_size = len(out) - lay.cd_offset
    n = len(rows)
    if zip64:
        lay.zip64_eocd = len(out)
        out += struct.pack("<IQHHIIQQQQ", ZIP64_EOCD_SIG, 44, 45, 45, 0, 0, n, n, lay.cd_size, lay.cd_offset)
        out += struct.pack("<IIQI", ZIP64_LOCATOR_SIG, 0, lay.zip64_eocd, 1)
        lay.eocd = len(out)
        out += struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    else:
        lay.eocd = len(out)
        out += struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, n, n, lay.cd_size, lay.cd_offset, len(comment))
    out += comment
    return bytes(out), lay


def patch(buf: bytes, offset: int, fmt: str, *values) -> bytes:
    """`buf` with struct-packed `values` written at `offset`."""
    b = bytearray(buf)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def flip_bit(buf: bytes, offset: int, bit: int = 0) -> bytes:
    b = bytearray(buf)
    b[offset] ^= 1 << bit
    return bytes(b)


# ---------------------------------------------------------------------------------------------------------------
# Safetensors writer
# ---------------------------------------------------------------------------------------------------------------

ST_DTYPE = {"FloatStorage": "F32", "LongStorage": "I64", "DoubleStorage": "F64", "HalfStorage": "F16"}
ESIZE = {"FloatStorage": 4, "LongStorage": 8, "DoubleStorage": 8, "HalfStorage": 2, "IntStorage": 4,
         "BoolStorage": 1, "ByteStorage": 1, "ComplexFloatStorage": 8, "QInt8Storage": 1}


def safetensors(entries: list[tuple[str, str, list[int], bytes]], metadata: dict | None = None) -> bytes:
    """A safetensors file: (name, dtype, shape, data) entries laid out in order, header padded to 8 bytes."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = bytearray()
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    return safetensors_raw(json.dumps(header, separators=(",", ":")).encode(), bytes(data))


def safetensors_raw(header: bytes, data: bytes, length: int | None = None) -> bytes:
    """A safetensors file from header text and data; `length` overrides the declared header length."""
    header = header + b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def st_header(entries: list[tuple[str, str, list[int], list[int]]]) -> bytes:
    """Header JSON written by hand (allows duplicate names): (name, dtype, shape, data_offsets)."""
    parts = [f'"{n}":{{"dtype":"{d}","shape":{json.dumps(s)},"data_offsets":{json.dumps(o)}}}'
             for n, d, s, o in entries]
    return ("{" + ",".join(parts) + "}").encode()


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


class _FixtureUnpickler(pickle.Unpickler):
    """Reads the repo's own fixture pickles into TensorDecls; resolves only the torch rebuild names to inert
    local stand-ins (the fixtures are trusted, and nothing outside this whitelist can be resolved)."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_stub
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"fixture pickle uses {module}.{name}")

    def persistent_load(self, pid):
        return pid


def _rebuild_stub(pid, offset, size, stride, *_rest):
    _tag, cls, key, location, numel = pid
    return TensorDecl("", cls, key, numel, offset, tuple(size), tuple(stride), location)


@dataclass
class Ckpt:
    """A fixture checkpoint taken apart: config, tensor declarations, storages and the other zip members."""

    family: str
    config: dict
    config_text: str
    raw: bytes
    prefix: str
    tensors: list[TensorDecl]
    storages: dict[str, bytes]
    head: list[tuple[str, bytes]]
    tail: list[tuple[str, bytes]]

    @staticmethod
    def load(name: str, family: str, fixtures: Path) -> "Ckpt":
        d = fixtures / name
        raw = (d / "weights.pt").read_bytes()
        zf = zipfile.ZipFile(io.BytesIO(raw))
        names = zf.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        root = _FixtureUnpickler(io.BytesIO(zf.read(pkl))).load()
        tensors = [replace(t, key=k) for k, t in root.items()]
        storage_names = [n for n in names if n.startswith(prefix + "data/")]
        first, last = names.index(storage_names[0]), names.index(storage_names[-1])
        head = [(n[len(prefix):], zf.read(n)) for n in names[:first] if n != pkl]
        tail = [(n[len(prefix):], zf.read(n)) for n in names[last + 1:]]
        storages = {n[len(prefix) + 5:]: zf.read(n) for n in storage_names}
        text = (d / "config.json").read_text()
        return Ckpt(family, json.loads(text), text, raw, prefix, tensors, storages, head, tail)

    def tensor(self, key: str) -> TensorDecl:
        return next(t for t in self.tensors if t.key == key)

    def with_tensor(self, key: str, **changes) -> list[TensorDecl]:
        """The tensor list with `key`'s declaration changed."""
        return [replace(t, **changes) if t.key == key else t for t in self.tensors]

    def pickle(self, tensors: list[TensorDecl] | None = None, **kw) -> bytes:
        return state_dict_pickle(self.tensors if tensors is None else tensors, **kw)

    def members(self, pkl: bytes | None = None, storages: dict[str, bytes] | None = None,
                prefix: str | None = None) -> list[Member]:
        """The archive's members in torch.save's order: data.pkl, the small records, the storages, version."""
        prefix = self.prefix if prefix is None else prefix
        storages = self.storages if storages is None else storages
        out = [Member(prefix + "data.pkl", self.pickle() if pkl is None else pkl)]
        out += [Member(prefix + n, d) for n, d in self.head]
        out += [Member(f"{prefix}data/{k}", d) for k, d in storages.items()]
        out += [Member(prefix + n, d) for n, d in self.tail]
        return out

    def archive(self, pkl: bytes | None = None, storages: dict[str, bytes] | None = None, **zip_kw) -> bytes:
        """A torch.save-style archive (data descriptors, 64-byte alignment) around `pkl` and `storages`."""
        zip_kw.setdefault("descriptor", True)
        return build_zip(self.members(pkl, storages), **zip_kw)[0]

    def storage_with(self, key: str, index: int, fmt: str, value) -> dict[str, bytes]:
        """The storages with element `index` of tensor `key`'s storage replaced by struct-packed `value`."""
        t = self.tensor(key)
        size = struct.calcsize(fmt)
        data = bytearray(self.storages[t.storage])
        struct.pack_into(fmt, data, (t.offset + index) * size, value)
        return {**self.storages, t.storage: bytes(data)}

    def contiguous(self, t: TensorDecl, storages: dict[str, bytes] | None = None) -> bytes:
        """A tensor's elements in row-major order (the fixtures' views are contiguous: a slice)."""
        storages = self.storages if storages is None else storages
        es = ESIZE[t.cls]
        numel = 1
        for n in t.size:
            numel *= n
        return storages[t.storage][t.offset * es:(t.offset + numel) * es]

    def st_entries(self, storages: dict[str, bytes] | None = None) -> list[tuple[str, str, list[int], bytes]]:
        return [(t.key, ST_DTYPE[t.cls], list(t.size), self.contiguous(t, storages)) for t in self.tensors]

    def safetensors(self, storages: dict[str, bytes] | None = None) -> bytes:
        return safetensors(self.st_entries(storages))

    def preprocess(self) -> dict:
        """preprocess.json as `swm convert` writes it for this fixture."""
        imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        if self.family == "lewm":
            side = self.config["encoder"]["image_size"]
            return {"image_size": [side, side], **imagenet, "action": {"block": 1}}
        side = self.config["image_size"]
        a = self.config["action_dim"]
        return {"image_size": [side, side], **imagenet, "action": {"block": 1, "low": [-1.0] * a, "high": [1.0] * a}}

    def schema(self) -> dict:
        """schema.json as `swm convert` writes it for this fixture."""
        if self.family == "lewm":
            side = self.config["encoder"]["image_size"]
            obs = [{"name": "pixels", "kind": "image", "shape": [3, side, side]}]
            return {"schema_version": 1, "family": "lewm", "observations": obs,
                    "action_dim": self.config["action_encoder"]["input_dim"]}
        side = self.config["image_size"]
        enc = self.config["wm"]["encoding"]
        obs = [{"name": "pixels", "kind": "image", "shape": [3, side, side]}] if "pixels" in enc else []
        obs += [{"name": k, "kind": "state", "shape": [self.config["extra_dims"][k]]} for k in enc if k != "pixels"]
        return {"schema_version": 1, "family": "tdmpc2", "observations": obs, "action_dim": self.config["action_dim"]}

    def checkpoint(self, weights: bytes | None = None, config: dict | str | None = None) -> dict:
        """Files of a checkpoint directory: config.json + weights.pt."""
        return {"config.json": self.config_text if config is None else as_json(config),
                "weights.pt": self.raw if weights is None else weights}

    def artifact(self, weights: bytes | None = None, preprocess: dict | str | None = None,
                 schema: dict | str | None = None, config: dict | str | None = None) -> dict:
        """Files of a deployment artifact: config.json, model.safetensors, preprocess.json, schema.json."""
        return {
            "config.json": self.config_text if config is None else as_json(config),
            "model.safetensors": self.safetensors() if weights is None else weights,
            "preprocess.json": as_json(self.preprocess() if preprocess is None else preprocess),
            "schema.json": as_json(self.schema() if schema is None else schema),
        }

    def config_with(self, path: str, value) -> dict:
        """The config with the dotted field `path` set to `value`."""
        cfg = copy.deepcopy(self.config)
        node = cfg
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
        return cfg


def slug(text: str) -> str:
    """A case-name fragment: lower case, runs of other characters as one `-`."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def as_json(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A symbolic link (relative target)."""

    target: str


@dataclass(frozen=True)
class Dir:
    """An empty directory."""


@dataclass(frozen=True)
class Fifo:
    """A named pipe (reading it blocks until a writer comes: a reader must refuse it, not hang)."""


@dataclass(frozen=True)
class Sparse:
    """A file of `size` bytes: `head`, then a hole (f.truncate: no disk blocks)."""

    head: bytes
    size: int


class Corpus:
    """Collects cases and writes their files and cases.json."""

    def __init__(self, out: Path):
        self.out = out
        self.cases: list[dict] = []

    def add(self, name: str, cls: str, description: str, files: dict, command: list[str], outcome: str,
            expect: list[str] | str | None = None, one_of: list[str] | None = None,
            absent: list[str] | None = None, unchanged: bool = False, modes: dict[str, str] | None = None) -> None:
        assert outcome in ("ok", "error", "any"), outcome
        assert all(c["name"] != name for c in self.cases), f"duplicate case {name}"
        case_dir = self.out / name
        case_dir.mkdir(parents=True)
        for rel, content in files.items():
            write(case_dir / rel, content)
        case = {"name": name, "class": cls, "description": description, "command": command, "outcome": outcome}
        if expect:
            case["expect_substring"] = [expect] if isinstance(expect, str) else list(expect)
        if one_of:
            case["expect_one_of"] = list(one_of)
        if absent:
            case["expect_absent"] = list(absent)
        if unchanged:
            case["unchanged"] = tree_hashes(case_dir)
        if modes:
            case["expect_mode"] = modes
        self.cases.append(case)

    def write_index(self) -> None:
        (self.out / "cases.json").write_text(json.dumps({"version": 1, "cases": self.cases}, indent=1) + "\n")


def write(path: Path, content) -> None:
    """Materialises one entry of a case's `files`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Link):
        os.symlink(content.target, path)
    elif isinstance(content, Dir):
        path.mkdir(parents=True, exist_ok=True)
    elif isinstance(content, Fifo):
        os.mkfifo(path)
    elif isinstance(content, Sparse):
        with open(path, "wb") as f:
            f.write(content.head)
            f.truncate(content.size)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every regular file under `root` (symlinks not followed)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


INSPECT = ["inspect", "{case}"]


def convert(src: str = "{case}", out: str = "{tmp}/out") -> list[str]:
    return ["convert", src, "--out", out]


# ---------------------------------------------------------------------------------------------------------------
# Cases, by finding
# ---------------------------------------------------------------------------------------------------------------

LEWM_KEY = "encoder.embeddings.cls_token"  # [1, 1, 32], storage "0"
TD_KEY = "cnn.0.weight"  # [32, 3, 7, 7]


def valid_cases(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Well-formed inputs that must keep working (exit 0)."""
    modes = {"{tmp}/out/" + f: "644" for f in ("config.json", "model.safetensors", "preprocess.json", "schema.json")}
    for ck in (lw, td):
        f = ck.family
        c.add(f"valid-{f}-fixture-inspect", "valid", "the committed fixture, untouched", ck.checkpoint(), INSPECT, "ok")
        c.add(f"valid-{f}-fixture-convert", "valid", "convert the fixture into a fresh directory (files 0644)",
              ck.checkpoint(), convert(), "ok", unchanged=True, modes=modes)
        c.add(f"valid-{f}-reemitted", "valid", "the fixture re-emitted by this generator (plain dict pickle)",
              ck.checkpoint(ck.archive()), INSPECT, "ok")
        c.add(f"valid-{f}-artifact", "valid", "a deployment artifact built by this generator",
              ck.artifact(), INSPECT, "ok")
        c.add(f"valid-{f}-zip64", "valid", "ZIP64 records and extra fields (large-archive layout), no descriptors",
              ck.checkpoint(ck.archive(zip64=True, descriptor=False)), INSPECT, "ok")
        c.add(f"valid-{f}-plain-zip", "valid", "no data descriptors, no alignment padding",
              ck.checkpoint(ck.archive(descriptor=False, align=0)), INSPECT, "ok")
    c.add("valid-lewm-weights-file", "valid", "inspect the weights file itself (config.json beside it)",
          lw.checkpoint(), ["inspect", "{case}/weights.pt"], "ok")
    c.add("valid-lewm-ordered-parameters", "valid",
          "OrderedDict state dict whose tensors are wrapped in _rebuild_parameter",
          lw.checkpoint(lw.archive(lw.pickle([replace(t, parameter=True) for t in lw.tensors], ordered=True))),
          INSPECT, "ok")
    p = Pickle(2).op(b"}").mark().unicode("epoch").integer(3).unicode("state_dict").op(b"}").mark()
    for t in lw.tensors:
        p.unicode(t.key).tensor(t)
    nested = p.op(b"u", b"u").stop()
    c.add("valid-lewm-nested-state-dict-key", "valid", "Lightning-style {'state_dict': {...}} read with "
          "--state-dict-key state_dict", lw.checkpoint(lw.archive(nested)),
          ["inspect", "{case}", "--state-dict-key", "state_dict"], "ok")
    c.add("valid-lewm-model-prefix", "valid", "every key prefixed with `model.` (stripped automatically)",
          lw.checkpoint(lw.archive(lw.pickle([replace(t, key="model." + t.key) for t in lw.tensors]))),
          INSPECT, "ok")
    c.add("valid-tdmpc2-safetensors-checkpoint", "valid", "config.json + model.safetensors, no artifact files",
          {"config.json": td.config_text, "model.safetensors": td.safetensors()}, INSPECT, "ok")
    c.add("valid-lewm-protocol-4", "valid", "pickle protocol 4 (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE)",
          lw.checkpoint(lw.archive(protocol4_state_dict(lw.tensors))), INSPECT, "ok")
    shuffled = lw.st_entries()
    order = list(range(len(shuffled)))
    random.Random(3).shuffle(order)
    header = {}
    offsets = {}
    off = 0
    for n, d, s, b in shuffled:
        offsets[n] = [off, off + len(b)]
        off += len(b)
    for i in order:
        n, d, s, _ = shuffled[i]
        header[n] = {"dtype": d, "shape": s, "data_offsets": offsets[n]}
    body = safetensors_raw(json.dumps(header).encode(), b"".join(b for *_, b in shuffled))
    c.add("valid-lewm-artifact-shuffled-header", "valid", "safetensors header lists the tensors in another order "
          "than their data (allowed by the format)", lw.artifact(weights=body), INSPECT, "ok")
    c.add("valid-lewm-cuda-location", "valid", "storages saved from cuda:0 (the location string is not used)",
          lw.checkpoint(lw.archive(lw.pickle([replace(t, location="cuda:0") for t in lw.tensors]))), INSPECT, "ok")


def class1_shapes(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 1: declared shapes, strides, offsets and storage sizes that do not fit the data."""
    k = LEWM_KEY
    variants = [
        ("shape-2pow40", "shape [2^40] on a 32-element storage", dict(size=(1 << 40,), stride=(1,))),
        ("shape-cube-zero-stride", "shape [2^20, 2^20, 2^20] with zero strides (2^62 bytes materialised)",
         dict(size=(1 << 20,) * 3, stride=(0, 0, 0))),
        ("shape-overflow-u64", "shape [2^40, 2^40]: the product overflows u64",
         dict(size=(1 << 40, 1 << 40), stride=(1 << 40, 1))),
        ("shape-overflow-3x2pow32", "shape [2^32, 2^32, 2^32]", dict(size=(1 << 32,) * 3, stride=(0, 0, 0))),
        ("shape-i64-max", "shape [i64::MAX]", dict(size=((1 << 63) - 1,), stride=(1,))),
        ("shape-2pow62-bytes", "shape [2^31, 2^31] (2^62 elements)", dict(size=(1 << 31, 1 << 31), stride=(0, 0))),
        ("storage-numel-2pow40", "storage declares 2^40 elements, the member has 32", dict(numel=1 << 40)),
        ("storage-numel-i64-max", "storage declares i64::MAX elements (× 4 bytes overflows)",
         dict(numel=(1 << 63) - 1)),
        ("storage-numel-small", "storage declares 8 elements, the member holds 32", dict(numel=8)),
        ("view-exceeds-storage", "shape [1, 1, 64] on a 32-element storage",
         dict(size=(1, 1, 64), stride=(64, 64, 1))),
        ("stride-exceeds-storage", "stride 2^40 on a 32-element storage",
         dict(size=(2, 1, 16), stride=(1 << 40, 16, 1))),
        ("stride-overflow", "stride i64::MAX: offset arithmetic overflows",
         dict(size=(1, 2, 32), stride=(32, (1 << 63) - 1, 1))),
        ("offset-beyond-storage", "storage offset 1000 on a 32-element storage", dict(offset=1000)),
        ("offset-2pow62", "storage offset 2^62", dict(offset=1 << 62)),
        ("negative-dim", "size (-1, 1, 32)", dict(size=(-1, 1, 32))),
        ("negative-dim-large", "size (1, 1, -2^40)", dict(size=(1, 1, -(1 << 40)))),
        ("negative-stride", "stride (32, 32, -1)", dict(stride=(32, 32, -1))),
        ("negative-offset", "storage offset -5", dict(offset=-5)),
        ("ndim-1000", "1000 dimensions", dict(size=(1,) * 1000, stride=(1,) * 1000)),
        ("ndim-65", "65 dimensions", dict(size=(1,) * 65, stride=(1,) * 65)),
        ("size-stride-rank-mismatch", "size has 3 dims, stride 2", dict(stride=(32, 1))),
        ("size-float", "a float in the size tuple", dict(size=(1, 1, 32.0))),
        ("size-bigint", "a 2^200 LONG1 in the size tuple", dict(size=(1, 1, 1 << 200))),
        ("size-list", "the size is a list, not a tuple", dict(size=[1, 1, 32])),
        ("size-none", "the size is None", dict(size=None)),
        ("numel-negative", "the persistent id declares -1 elements", dict(numel=-1)),
    ]
    for name, desc, changes in variants:
        c.add(f"c1-lewm-{name}", "1", desc, lw.checkpoint(lw.archive(lw.pickle(lw.with_tensor(k, **changes)))),
              INSPECT, "error", expect="numel" if name == "numel-negative" else k)
    # Views that are small on disk but large in memory: the reader accepts them (under its 4 GiB per-tensor
    # limit), so swm must compare the table with the model before reading any data.
    c.add("c1-lewm-broadcast-1gib-known-key", "1",
          "cls_token declared [16384, 16384] with zero strides over its 32-element storage (1 GiB if "
          "materialised): a shape mismatch that must be caught before reading",
          lw.checkpoint(lw.archive(lw.pickle(lw.with_tensor(k, size=(1 << 14, 1 << 14), stride=(0, 0))))),
          INSPECT, "error", expect=k)
    junk = replace(lw.tensor(k), key="junk.weight", size=(1 << 14, 1 << 14), stride=(0, 0))
    c.add("c1-lewm-broadcast-1gib-unexpected-key", "1",
          "an extra tensor `junk.weight` of 1 GiB (zero strides over 32 floats): unexpected, rejected before reading",
          lw.checkpoint(lw.archive(lw.pickle(lw.tensors + [junk]))), INSPECT, "error", expect="junk.weight")
    c.add("c1-lewm-broadcast-1gib-convert", "1", "the 1 GiB broadcast view, through convert",
          lw.checkpoint(lw.archive(lw.pickle(lw.with_tensor(k, size=(1 << 14, 1 << 14), stride=(0, 0))))),
          convert(), "error", expect=k, unchanged=True)
    for name, desc, changes in [
        ("shape-2pow40", "shape [2^40, 3, 7, 7]", dict(size=(1 << 40, 3, 7, 7))),
        ("shape-overflow", "shape [2^40, 2^40, 7, 7]", dict(size=(1 << 40, 1 << 40, 7, 7))),
        ("storage-numel-huge", "storage declares 2^50 elements", dict(numel=1 << 50)),
        ("negative-dim", "size (32, 3, -7, 7)", dict(size=(32, 3, -7, 7))),
    ]:
        c.add(f"c1-tdmpc2-{name}", "1", desc, td.checkpoint(td.archive(td.pickle(td.with_tensor(TD_KEY, **changes)))),
              INSPECT, "error", expect=TD_KEY)
    c.add("c1-tdmpc2-shape-2pow40-convert", "1", "shape [2^40, 3, 7, 7] through convert",
          td.checkpoint(td.archive(td.pickle(td.with_tensor(TD_KEY, size=(1 << 40, 3, 7, 7))))),
          convert(), "error", expect=TD_KEY, unchanged=True)


def memo_bomb(steps: int) -> Pickle:
    """`steps` times: a pair of two references to the previous value (2^steps leaves if deep-copied). Leaves the
    stack empty; the last pair is memo entry 0."""
    p = Pickle(2).op(b"]").put(0).op(b"0")
    for _ in range(steps):
        p.get(0).get(0).op(b"\x86").put(0).op(b"0")
    return p


def class2_pickle(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 2: pickles that are small on disk but expensive to run, and malformed pickles."""
    k = LEWM_KEY

    def ck(pkl: bytes) -> dict:
        return lw.checkpoint(lw.archive(pkl))

    c.add("c2-memo-bomb-top", "2", "43 doublings of memo references (TUPLE2); the bomb is the top-level value",
          ck(memo_bomb(43).get(0).stop()), INSPECT, "error", expect="state dict")
    bomb_in_dict = memo_bomb(43).op(b"}").unicode("bomb").get(0).op(b"s")
    c.add("c2-memo-bomb-in-dict", "2", "the 43-step memo bomb as the only value of a dict (no tensors)",
          ck(bomb_in_dict.stop()), INSPECT, "error", expect="no tensors")
    beside = memo_bomb(43).op(b"}").mark()
    for t in lw.tensors:
        beside.unicode(t.key).tensor(t)
    beside.unicode("bomb").get(0).op(b"u")
    c.add("c2-memo-bomb-beside-tensors", "2", "the memo bomb as an extra non-tensor value beside the real "
          "tensors (torch would refuse the extra key; swm may ignore it): must stay cheap",
          ck(beside.stop()), INSPECT, "any")
    c.add("c2-memo-bomb-200", "2", "200 doublings (deeper than any depth budget)",
          ck(memo_bomb(200).get(0).stop()), INSPECT, "error", expect="max_depth")
    lst = Pickle(2).op(b"]").put(0).op(b"0")
    for _ in range(43):
        lst.op(b"]").mark().get(0).get(0).op(b"e").put(0).op(b"0")
    c.add("c2-memo-bomb-lists", "2", "43 doublings with lists (EMPTY_LIST MARK BINGET BINGET APPENDS)",
          ck(lst.get(0).stop()), INSPECT, "error", expect="state dict")
    dct = Pickle(2).op(b"}").put(0).op(b"0")
    for _ in range(43):
        dct.op(b"}").mark().unicode("a").get(0).unicode("b").get(0).op(b"u").put(0).op(b"0")
    c.add("c2-memo-bomb-dicts", "2", "43 doublings with dicts {a: prev, b: prev}",
          ck(dct.get(0).stop()), INSPECT, "error", expect="no tensors")
    c.add("c2-memo-bomb-long-binget", "2", "memo bomb through LONG_BINPUT / LONG_BINGET at index 2^32-1",
          ck(_long_memo_bomb(43)), INSPECT, "error", expect="state dict")
    c.add("c2-nested-tuples-1e6", "2", "10^6 nested tuples (EMPTY_TUPLE then TUPLE1 x 10^6)",
          ck(Pickle(2).op(b")", b"\x85" * 1_000_000).stop()), INSPECT, "error", expect="max_depth")
    c.add("c2-nested-marks-1e6", "2", "10^6 open MARKs closed by 10^6 TUPLEs",
          ck(Pickle(2).op(b"(" * 1_000_000, b"t" * 1_000_000).stop()), INSPECT, "error", expect="max_depth")
    nl = Pickle(2).op(b"]").put(0).op(b"0")
    nl.op(b"]\x68\x00a\x71\x000" * 1_000_000)
    c.add("c2-nested-lists-1e6", "2", "10^6 nested lists (EMPTY_LIST BINGET APPEND BINPUT)",
          ck(nl.get(0).stop()), INSPECT, "error", expect="max_depth")
    nd = Pickle(2).op(b"}").put(0).op(b"0")
    nd.op(b"}X\x01\x00\x00\x00k\x68\x00s\x71\x000" * 1_000_000)
    c.add("c2-nested-dicts-1e6", "2", "10^6 nested dicts {k: prev} as the top-level value",
          ck(nd.get(0).stop()), INSPECT, "error", expect="max_depth")
    nd_inner = Pickle(2).op(b"}").put(0).op(b"0")
    nd_inner.op(b"}X\x01\x00\x00\x00k\x68\x00s\x71\x000" * 1_000_000)
    nd_inner.op(b"}").unicode("x")
    c.add("c2-nested-dicts-1e6-in-state-dict", "2", "a state dict whose only value is 10^6 nested dicts",
          ck(nd_inner.get(0).op(b"s").stop()), INSPECT, "error", expect="max_depth")
    for name, desc, raw, expect in [
        ("binunicode-4gib", "BINUNICODE declaring 2^32-1 bytes, 5 present", b"X\xff\xff\xff\xffhello",
         "max_string_bytes"),
        ("binunicode8-2pow63", "BINUNICODE8 declaring 2^63 bytes", b"\x8d" + struct.pack("<Q", 1 << 63) + b"abc",
         "max_string_bytes"),
        ("binbytes8-2pow62", "BINBYTES8 declaring 2^62 bytes", b"\x8e" + struct.pack("<Q", 1 << 62) + b"abc",
         "max_string_bytes"),
        ("binbytes-4gib", "BINBYTES declaring 2^32-16 bytes", b"B\xf0\xff\xff\xffabc", "max_string_bytes"),
        ("long4-huge", "LONG4 declaring 2^31-1 bytes", b"\x8b\xff\xff\xff\x7f\x01\x02", "pickle"),
        ("long4-small", "LONG4 (not written by torch.save) holding 3 bytes", b"\x8b\x03\x00\x00\x00\x01\x02\x03",
         "pickle"),
    ]:
        c.add(f"c2-{name}", "2", desc, ck(Pickle(2).op(b"}").unicode("k").op(raw, b"s").stop()), INSPECT, "error",
              expect=expect)
    c.add("c2-string-17mib", "2", "a 17 MiB string value (above a 16 MiB string budget) as the only value",
          ck(Pickle(2).op(b"}").unicode("k").unicode("a" * (17 << 20)).op(b"s").stop()), INSPECT, "error",
          expect="max_string_bytes")
    real = lw.pickle()
    c.add("c2-empty-pickle", "2", "data.pkl is empty", ck(b""), INSPECT, "error", expect="pickle")
    c.add("c2-truncated-pickle", "2", "data.pkl cut in half", ck(real[: len(real) // 2]), INSPECT, "error",
          expect="pickle")
    c.add("c2-missing-stop", "2", "data.pkl without its final STOP", ck(real[:-1]), INSPECT, "error",
          expect="pickle")
    c.add("c2-bytes-after-stop", "2", "bytes after STOP", ck(real + b"N."), INSPECT, "error", expect="pickle")
    c.add("c2-unknown-opcode", "2", "opcode 0xff", ck(Pickle(2).op(b"\xff").stop()), INSPECT, "error",
          expect="pickle")
    c.add("c2-text-int-opcode", "2", "text-protocol INT opcode", ck(Pickle(2).op(b"I1\n").stop()), INSPECT,
          "error", expect="pickle")
    c.add("c2-stack-underflow", "2", "TUPLE3 on an empty stack", ck(Pickle(2).op(b"\x87").stop()), INSPECT,
          "error", expect="pickle")
    c.add("c2-setitems-without-mark", "2", "SETITEMS with no MARK", ck(Pickle(2).op(b"}u").stop()), INSPECT,
          "error", expect="pickle")
    c.add("c2-unset-memo", "2", "BINGET of a memo entry never set", ck(Pickle(2).op(b"}").get(7).stop()),
          INSPECT, "error", expect="pickle")
    c.add("c2-protocol-6", "2", "PROTO 6", ck(Pickle(6).op(b"}").stop()), INSPECT, "error", expect="pickle")
    c.add("c2-frame-past-end", "2", "FRAME longer than the data",
          ck(Pickle(4).op(b"\x95", struct.pack("<Q", 1 << 40), b"}").stop()), INSPECT, "error", expect="pickle")
    c.add("c2-stop-with-open-mark", "2", "STOP with a MARK open", ck(Pickle(2).op(b"}(").stop()), INSPECT,
          "error", expect="pickle")
    c.add("c2-stop-two-values", "2", "STOP with two values on the stack", ck(Pickle(2).op(b"}}").stop()),
          INSPECT, "error", expect="pickle")
    c.add("c2-stack-global-non-strings", "2", "STACK_GLOBAL on two ints",
          ck(Pickle(4).integer(1).integer(2).op(b"\x93").stop()), INSPECT, "error", expect="pickle")
    c.add("c2-self-referential-dict", "2", "a dict stored into itself",
          ck(Pickle(2).op(b"}").put(0).unicode("me").get(0).op(b"s").stop()), INSPECT, "error", expect="pickle")
    memo_many = Pickle(2).op(b"N")
    memo_many.op(b"".join(b"r" + struct.pack("<I", i) for i in range((1 << 20) + 1)))
    c.add("c2-memo-entries-1m", "2", "2^20 + 1 memo entries", ck(memo_many.op(b"0}").stop()), INSPECT, "error",
          expect="max_memo_entries")
    c.add("c2-values-4m", "2", "a top-level list of 4.2 million ints",
          ck(Pickle(2).op(b"](", b"K\x01" * 4_200_000, b"e").stop()), INSPECT, "error", expect="max_pickle_values")
    c.add("c2-top-level-list", "2", "the top level is a list of tensors, not a dict",
          ck(Pickle(2).op(b"](", *[Pickle(None).tensor(t).data() for t in lw.tensors], b"e").stop()),
          INSPECT, "error", expect="state dict")
    c.add("c2-int-key", "2", "a state dict with an int key", ck(
        Pickle(2).op(b"}").integer(1).tensor(lw.tensor(k)).op(b"s").stop()), INSPECT, "error", expect="state dict")
    dup = lw.tensors + [lw.tensor(k)]
    c.add("c2-duplicate-key", "2", f"`{k}` set twice in the state dict (Python keeps the last)",
          ck(lw.pickle(dup)), INSPECT, "error", expect=k)
    c.add("c2-nested-without-key", "2", "Lightning-style nesting read without --state-dict-key",
          ck(_nested(lw)), INSPECT, "error", expect="state_dict")
    c.add("c2-nested-wrong-key", "2", "--state-dict-key names a key that is absent",
          ck(_nested(lw)), ["inspect", "{case}", "--state-dict-key", "model"], "error", expect="`model`")
    c.add("c2-tdmpc2-memo-bomb", "2", "TD-MPC2 archive whose data.pkl is a memo bomb",
          td.checkpoint(td.archive(memo_bomb(43).get(0).stop())), INSPECT, "error", expect="state dict")
    c.add("c2-tdmpc2-nested-tuples-convert", "2", "10^6 nested tuples through convert",
          td.checkpoint(td.archive(Pickle(2).op(b")", b"\x85" * 1_000_000).stop())), convert(), "error",
          expect="max_depth", unchanged=True)


def _long_memo_bomb(steps: int) -> bytes:
    p = Pickle(2).op(b"]").put(0xFFFFFFFF).op(b"0")
    for _ in range(steps):
        p.get(0xFFFFFFFF).get(0xFFFFFFFF).op(b"\x86").put(0xFFFFFFFF).op(b"0")
    return p.get(0xFFFFFFFF).stop()


def _nested(ck: Ckpt) -> bytes:
    p = Pickle(2).op(b"}").mark().unicode("epoch").integer(3).unicode("state_dict").op(b"}").mark()
    for t in ck.tensors:
        p.unicode(t.key).tensor(t)
    return p.op(b"u", b"u").stop()


def class3_prefix(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 3: archives whose members are not all under the one `<prefix>/data.pkl`."""
    zeros = {k: bytes(len(v)) for k, v in lw.storages.items()}

    def ck(members: list[Member], **kw) -> dict:
        kw.setdefault("descriptor", True)
        return lw.checkpoint(build_zip(members, **kw)[0])

    shadow = lw.members(prefix="other/", storages=zeros)
    c.add("c3-second-data-pkl-after", "3", "a second archive `other/` (all-zero weights) after the real one",
          ck(lw.members() + shadow), INSPECT, "error", expect="data.pkl")
    c.add("c3-second-data-pkl-before", "3", "a second archive `other/` before the real one",
          ck(shadow + lw.members()), INSPECT, "error", expect="data.pkl")
    c.add("c3-second-data-pkl-convert", "3", "the two-archive zip through convert",
          ck(lw.members() + shadow), convert(), "error", expect="data.pkl", unchanged=True)
    only_pkl = [Member("other/data.pkl", lw.pickle())]
    c.add("c3-second-data-pkl-only", "3", "an extra `other/data.pkl` referring to the real storages",
          ck(lw.members() + only_pkl), INSPECT, "error", expect="data.pkl")
    c.add("c3-member-outside-prefix", "3", "an extra storage member `other/data/0`",
          ck(lw.members() + [Member("other/data/0", bytes(128))]), INSPECT, "error", expect="other/data/0")
    c.add("c3-root-member", "3", "an extra member `evil.txt` at the root",
          ck(lw.members() + [Member("evil.txt", b"hello")]), INSPECT, "error", expect="evil.txt")
    root = [replace(m, name=m.name[len("weights/"):]) for m in lw.members()]
    c.add("c3-data-pkl-at-root", "3", "every member at the root (`data.pkl` without a prefix)",
          ck(root), INSPECT, "error", expect="data.pkl")
    deep = [replace(m, name="a/" + m.name) for m in lw.members()]
    c.add("c3-data-pkl-two-levels", "3", "`a/weights/data.pkl`: a two-component prefix",
          ck(deep), INSPECT, "error", expect="data.pkl")
    c.add("c3-dotdot-data-pkl", "3", "an extra member `weights/../data.pkl`",
          ck(lw.members() + [Member("weights/../data.pkl", lw.pickle())]), INSPECT, "error", expect="data.pkl")
    members = lw.members()
    evil0 = Member("weights/data/0", bytes(128))
    c.add("c3-duplicate-storage-after", "3", "`weights/data/0` twice, the zeroed copy last",
          ck(members + [evil0]), INSPECT, "error", expect="weights/data/0")
    c.add("c3-duplicate-storage-before", "3", "`weights/data/0` twice, the zeroed copy first",
          ck([evil0] + members), INSPECT, "error", expect="weights/data/0")
    c.add("c3-duplicate-data-pkl", "3", "`weights/data.pkl` twice",
          ck(members + [Member("weights/data.pkl", lw.pickle())]), INSPECT, "error", expect="weights/data.pkl")
    c.add("c3-overlapping-members", "3", "a member whose central entry points inside another member's data",
          lw.checkpoint(_overlapping(lw)), INSPECT, "error", expect="overlap")
    c.add("c3-shared-local-header", "3", "two central entries pointing at the same local header",
          lw.checkpoint(_shared_header(lw)), INSPECT, "error", expect="weights/data/1")
    dropped = [m for m in members if m.name != "weights/data/5"]
    c.add("c3-missing-storage", "3", "storage member `weights/data/5` is absent", ck(dropped), INSPECT, "error",
          expect="weights/data/5")
    c.add("c3-no-data-pkl", "3", "no data.pkl at all", ck([m for m in members if not m.name.endswith("data.pkl")]),
          INSPECT, "error", expect="data.pkl")
    c.add("c3-storage-key-traversal", "3", "a storage key `../../etc/passwd`",
          lw.checkpoint(lw.archive(lw.pickle(lw.with_tensor(LEWM_KEY, storage="../../etc/passwd")))),
          INSPECT, "error", expect=LEWM_KEY)
    big = [replace(m, data=b"big") if m.name.endswith("byteorder") else m for m in members]
    c.add("c3-big-endian", "3", "byteorder says big", ck(big), INSPECT, "error", expect="byteorder")
    odd = [replace(m, data=b"middle-endian" * 2) if m.name.endswith("byteorder") else m for m in members]
    c.add("c3-bad-byteorder", "3", "byteorder holds 26 bytes of garbage", ck(odd), INSPECT, "error",
          expect="byteorder")
    short = [replace(m, data=b"litle") if m.name.endswith("byteorder") else m for m in members]
    c.add("c3-byteorder-misspelt", "3", "byteorder holds `litle`", ck(short), INSPECT, "error",
          expect=["byteorder", "litle"])
    tdm = td.members()
    c.add("c3-tdmpc2-second-data-pkl", "3", "TD-MPC2 with a second `other/data.pkl` archive (zeroed storages)",
          td.checkpoint(build_zip(tdm + td.members(prefix="other/", storages={k: bytes(len(v)) for k, v in
                                                                             td.storages.items()}),
                                  descriptor=True)[0]), INSPECT, "error", expect="data.pkl")


def _overlapping(ck: Ckpt) -> bytes:
    """An extra member `weights/extra` whose data embeds a complete local record of `weights/byteorder`; the
    central entry of byteorder points at that embedded copy (the two members overlap)."""
    members = ck.members()
    bo = next(m for m in members if m.name.endswith("byteorder"))
    inner, _ = build_zip([bo], align=0)
    inner_local = inner[: 30 + len(bo.name) + len(bo.data)]
    extra = Member("weights/extra", inner_local)
    rest = [m for m in members if m is not bo]
    buf, lay = build_zip(rest + [extra, bo], align=0)
    # Re-point byteorder's central entry (last) at the copy inside `weights/extra` (second to last).
    return patch(buf, lay.central[-1] + 42, "<I", lay.data[-2])


def _shared_header(ck: Ckpt) -> bytes:
    members = ck.members()
    i0 = next(i for i, m in enumerate(members) if m.name == "weights/data/0")
    i1 = next(i for i, m in enumerate(members) if m.name == "weights/data/1")
    buf, lay = build_zip(members, align=0)
    return patch(buf, lay.central[i1] + 42, "<I", lay.local[i0])


def class4_zip(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 4: CRC, truncation, central directory and ZIP64 lies, compressed members."""
    members = lw.members()
    buf, lay = build_zip(members, align=64)
    names = [m.name for m in members]
    pkl_i = names.index("weights/data.pkl")
    t = lw.tensor("predictor.pos_embedding")
    st_i = names.index(f"weights/data/{t.storage}")
    last_i = max(i for i, n in enumerate(names) if n.startswith("weights/data/"))

    def add(name: str, desc: str, data: bytes, expect=None, one_of=None, command=INSPECT, **kw) -> None:
        c.add(f"c4-{name}", "4", desc, lw.checkpoint(data), command, "error", expect=expect, one_of=one_of, **kw)

    # A bit flipped inside a key string of data.pkl: the pickle still parses (one key renamed).
    key_at = members[pkl_i].data.index(b"cls_token") + 3
    add("crc-data-pkl-key", "one bit flipped in a key string of data.pkl, CRC left as it was",
        flip_bit(buf, lay.data[pkl_i] + key_at, 0), expect=["CRC", "weights/data.pkl"])
    dbuf, dlay = build_zip(members, descriptor=True)
    bad_crc = zlib.crc32(members[pkl_i].data) ^ 1
    desc_at = dlay.data[pkl_i] + len(members[pkl_i].data) + 4
    add("crc-data-pkl-central", "torch layout (data descriptors): data.pkl's CRC changed in the central directory "
        "and the descriptor", patch(patch(dbuf, dlay.central[pkl_i] + 16, "<I", bad_crc), desc_at, "<I", bad_crc),
        expect=["CRC", "weights/data.pkl"])
    add("crc-storage-mantissa", "lowest mantissa bit of one float in a storage flipped (value still finite)",
        flip_bit(buf, lay.data[st_i] + 4, 0), expect=["CRC", f"weights/data/{t.storage}"])
    add("crc-storage-sign", "sign bit of one float in a storage flipped",
        flip_bit(buf, lay.data[st_i] + 3, 7), expect="CRC")
    add("crc-last-storage", "last byte of the last storage changed",
        flip_bit(buf, lay.data[last_i] + len(members[last_i].data) - 1, 3), expect="CRC")
    add("crc-storage-convert", "a flipped storage bit through convert (no artifact may be written)",
        flip_bit(buf, lay.data[st_i] + 4, 0), expect="CRC", command=convert(), unchanged=True)
    both = patch(buf, lay.central[st_i] + 16, "<I", zlib.crc32(members[st_i].data) ^ 0x10)
    both = patch(both, lay.local[st_i] + 14, "<I", zlib.crc32(members[st_i].data) ^ 0x10)
    add("crc-storage-both-headers", "local and central CRC agree with each other, not with the data", both,
        expect="CRC")
    bo_i = next(i for i, n in enumerate(names) if n.endswith("byteorder"))
    add("crc-byteorder", "byteorder data changed to `littlf`, CRC kept",
        patch(buf, lay.data[bo_i], "6s", b"littlf"), one_of=["CRC", "byteorder"])
    add("crc-local-only", "local-header CRC differs from the central directory",
        patch(buf, lay.local[st_i] + 14, "<I", 0xDEADBEEF), expect=f"weights/data/{t.storage}")
    tdbuf, tdlay = build_zip(td.members(), align=64)
    td_names = [m.name for m in td.members()]
    tdi = td_names.index(f"weights/data/{td.tensor(TD_KEY).storage}")
    c.add("c4-tdmpc2-crc-storage", "4", "TD-MPC2: one storage bit flipped", td.checkpoint(
        flip_bit(tdbuf, tdlay.data[tdi] + 8, 1)), INSPECT, "error", expect="CRC")
    # The real fixture bytes (torch.save's own layout) with a flipped storage bit.
    raw = lw.raw
    zf = zipfile.ZipFile(io.BytesIO(raw))
    info = zf.getinfo(f"weights/data/{t.storage}")
    nlen, elen = struct.unpack_from("<HH", raw, info.header_offset + 26)
    add("crc-fixture-bytes", "the committed fixture with one storage bit flipped in place",
        flip_bit(raw, info.header_offset + 30 + nlen + elen + 5, 2), expect="CRC")

    # Truncations.
    for name, cut in [("truncated-half", len(buf) // 2), ("truncated-90pct", len(buf) * 9 // 10),
                      ("truncated-last-byte", len(buf) - 1), ("truncated-22-bytes", 22),
                      ("truncated-no-eocd", lay.eocd), ("truncated-in-cd", lay.cd_offset + 10)]:
        add(name, f"archive cut to {cut} of {len(buf)} bytes", buf[:cut], one_of=["zip", "truncat", "end"])
    add("empty-file", "weights.pt is empty", b"", one_of=["zip", "empty", "short"])
    add("fixture-truncated", "the committed fixture cut at 60%", raw[: len(raw) * 6 // 10], expect="zip")

    # Central directory and end-record lies.
    n = len(members)
    add("cd-bad-signature", "first central entry signature corrupted", patch(buf, lay.central[0], "<I", 0x12345678),
        expect="zip")
    add("cd-offset-past-eof", "EOCD central-directory offset past the end of the file",
        patch(buf, lay.eocd + 16, "<I", len(buf) + 1000), expect="zip")
    add("cd-size-too-small", "EOCD central-directory size smaller than the entries",
        patch(buf, lay.eocd + 12, "<I", 46), expect="zip")
    add("cd-size-huge", "EOCD central-directory size 2^32-2", patch(buf, lay.eocd + 12, "<I", 0xFFFFFFFE),
        expect="zip")
    add("cd-count-too-large", "EOCD entry count larger than the directory",
        patch(patch(buf, lay.eocd + 8, "<H", n + 50), lay.eocd + 10, "<H", n + 50), expect="zip")
    add("cd-count-zero", "EOCD entry count 0", patch(patch(buf, lay.eocd + 8, "<H", 0), lay.eocd + 10, "<H", 0),
        one_of=["zip", "data.pkl"])
    add("cd-count-mismatch", "EOCD disk entry count differs from the total",
        patch(buf, lay.eocd + 8, "<H", n - 1), expect="zip")
    add("cd-name-length-overrun", "a central entry's name length runs past the directory",
        patch(buf, lay.central[-1] + 28, "<H", 0xFFFF), expect="zip")
    add("cd-extra-length-overrun", "a central entry's extra length runs past the directory",
        patch(buf, lay.central[3] + 30, "<H", 0xFFF0), expect="zip")
    add("cd-local-offset-past-eof", "a central entry's local header offset past the end of the file",
        patch(buf, lay.central[st_i] + 42, "<I", len(buf) + 4096), expect=f"weights/data/{t.storage}")
    add("cd-local-offset-into-cd", "a central entry's local header offset inside the central directory",
        patch(buf, lay.central[st_i] + 42, "<I", lay.cd_offset), expect=f"weights/data/{t.storage}")
    add("cd-size-larger-than-member", "central and local size of a storage 2^31 (data runs past the archive)",
        patch(patch(buf, lay.central[st_i] + 20, "<II", 1 << 31, 1 << 31), lay.local[st_i] + 18, "<II",
              1 << 31, 1 << 31), expect=f"weights/data/{t.storage}")
    add("local-bad-signature", "local header signature of a storage corrupted",
        patch(buf, lay.local[st_i], "<I", 0x04034B51), expect=f"weights/data/{t.storage}")
    add("local-name-differs", "local header name differs from the central directory",
        patch(buf, lay.local[st_i] + 30, "1s", b"X"), expect=f"weights/data/{t.storage}")
    add("stored-sizes-differ", "a stored member whose compressed and uncompressed sizes differ",
        patch(buf, lay.central[st_i] + 20, "<I", len(members[st_i].data) + 4), expect=f"weights/data/{t.storage}")
    add("eocd-comment-length-lie", "EOCD comment length larger than the file",
        patch(buf, lay.eocd + 20, "<H", 500), one_of=["zip", "end"])
    add("two-eocd", "a second, bogus EOCD record in the comment of the first",
        patch(buf, lay.eocd + 20, "<H", 22) + struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, 1, 1, 46, 0, 0),
        one_of=["zip", "data.pkl"])
    add("multi-disk", "EOCD says the directory is on disk 3", patch(buf, lay.eocd + 6, "<H", 3), expect="zip")
    add("encrypted-flag", "a storage member flagged as encrypted",
        patch(patch(buf, lay.central[st_i] + 8, "<H", 0x0801), lay.local[st_i] + 6, "<H", 0x0801),
        one_of=["encrypt", "zip"])

    # ZIP64 lies.
    z, zl = build_zip(members, zip64=True, descriptor=False)
    add("zip64-count-huge", "ZIP64 end record declares 2^60 entries",
        patch(patch(z, zl.zip64_eocd + 24, "<Q", 1 << 60), zl.zip64_eocd + 32, "<Q", 1 << 60), expect="zip")
    add("zip64-cd-size-huge", "ZIP64 end record declares a 2^62-byte central directory",
        patch(z, zl.zip64_eocd + 40, "<Q", 1 << 62), expect="zip")
    add("zip64-cd-offset-lie", "ZIP64 end record's directory offset points at data",
        patch(z, zl.zip64_eocd + 48, "<Q", 64), expect="zip")
    add("zip64-locator-past-eof", "ZIP64 locator points past the end of the file",
        patch(z, zl.eocd - 20 + 8, "<Q", len(z) * 4), expect="zip")
    add("zip64-record-size-lie", "ZIP64 end record's own size field is 2^40",
        patch(z, zl.zip64_eocd + 4, "<Q", 1 << 40), expect="zip")
    add("zip64-member-size-2pow62", "ZIP64 extra field gives a storage 2^62 bytes",
        patch(patch(z, zl.central[st_i] + 46 + len(names[st_i]) + 4, "<QQ", 1 << 62, 1 << 62),
              zl.local[st_i] + 30 + len(names[st_i]) + 4, "<QQ", 1 << 62, 1 << 62),
        expect=f"weights/data/{t.storage}")
    add("zip64-member-offset-lie", "ZIP64 extra field gives a storage's local header at offset 2^63",
        patch(z, zl.central[st_i] + 46 + len(names[st_i]) + 4 + 16, "<Q", 1 << 63),
        expect=f"weights/data/{t.storage}")
    add("zip64-extra-missing", "central entry saturated to 0xFFFFFFFF with its ZIP64 extra field renamed",
        patch(z, zl.central[st_i] + 46 + len(names[st_i]), "<H", 0x7777), expect=f"weights/data/{t.storage}")
    add("zip64-disagrees", "32-bit EOCD entry count disagrees with the ZIP64 record",
        patch(patch(z, zl.eocd + 8, "<H", 3), zl.eocd + 10, "<H", 3), expect="zip")

    # Compressed members (torch.save writes stored members only).
    def deflated(name: str, level: int = 6) -> list[Member]:
        out = []
        for m in members:
            if m.name == name:
                comp = zlib.compressobj(level, zlib.DEFLATED, -15)
                data = comp.compress(m.data) + comp.flush()
                out.append(Member(m.name, data, method=8, crc=zlib.crc32(m.data), size=len(m.data)))
            else:
                out.append(m)
        return out

    add("deflate-data-pkl", "data.pkl deflate-compressed", _zip_with_sizes(deflated("weights/data.pkl")),
        expect="weights/data.pkl")
    add("deflate-storage", "a storage deflate-compressed", _zip_with_sizes(deflated(f"weights/data/{t.storage}")),
        expect=f"weights/data/{t.storage}")
    add("bzip2-method", "a storage claiming compression method 12 (bzip2)",
        _zip_with_sizes([replace(m, method=12) if m.name == f"weights/data/{t.storage}" else m for m in members]),
        expect=f"weights/data/{t.storage}")
    add("deflate-bomb-1gib", "a member `weights/data/bomb` that inflates to 1 GiB of zeros (about 1 MB on disk)",
        _zip_with_sizes(members + [_deflate_bomb("weights/data/bomb", GIB)]), expect="weights/data/bomb")
    cl = lw.with_tensor(LEWM_KEY, storage="bomb", numel=GIB // 4, size=(1, 1, 32), stride=(32, 32, 1))
    add("deflate-bomb-1gib-storage", "cls_token's storage is a deflate bomb declaring 2^28 floats",
        _zip_with_sizes([Member("weights/data.pkl", lw.pickle(cl))] + members[1:]
                        + [_deflate_bomb("weights/data/bomb", GIB)]),
        one_of=["weights/data/bomb", LEWM_KEY])


def _zip_with_sizes(members: list[Member]) -> bytes:
    """A plain archive (no descriptors, no alignment) honouring each Member's recorded size and method."""
    return build_zip(members, align=0, descriptor=False)[0]


@functools.lru_cache(maxsize=None)
def _deflate_bomb(name: str, size: int) -> Member:
    """A deflated member of `size` zero bytes (about size / 1000 on disk), with its real CRC and size."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [comp.compress(chunk) for _ in range(size >> 20)]
    parts.append(comp.flush())
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(chunk, crc)
    return Member(name, b"".join(parts), method=8, crc=crc, size=size)


def class5_convert(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 5: `convert` must never write over its input."""
    for ck in (lw, td):
        f = ck.family
        files = {f"ckpt/{k}": v for k, v in ck.checkpoint().items()}
        c.add(f"c5-{f}-out-is-input", "5", "convert CKPT --out CKPT", files,
              convert("{case}/ckpt", "{case}/ckpt"), "error", expect="refusing",
              unchanged=True)
        c.add(f"c5-{f}-out-symlink-to-input", "5", "--out is a symlink to the checkpoint directory",
              {**files, "out": Link("ckpt")}, convert("{case}/ckpt", "{case}/out"), "error", expect="refusing",
          unchanged=True)
    files = {f"ckpt/{k}": v for k, v in lw.checkpoint().items()}
    c.add("c5-lewm-out-dot-path", "5", "--out spelled CKPT/../CKPT/.", files,
          convert("{case}/ckpt", "{case}/ckpt/../ckpt/."), "error", expect="refusing",
          unchanged=True)
    c.add("c5-lewm-weights-file-out-is-dir", "5", "convert CKPT/weights.pt --out CKPT", files,
          convert("{case}/ckpt/weights.pt", "{case}/ckpt"), "error", expect="refusing",
          unchanged=True)
    c.add("c5-lewm-out-is-input-file", "5", "--out names the input weights file", files,
          convert("{case}/ckpt", "{case}/ckpt/weights.pt"), "error", unchanged=True)
    c.add("c5-lewm-symlink-chain", "5", "--out is a symlink to a symlink to the checkpoint",
          {**files, "a": Link("ckpt"), "b": Link("a")}, convert("{case}/ckpt", "{case}/b"), "error", expect="refusing",
          unchanged=True)
    c.add("c5-lewm-out-config-symlink", "5", "--out is a fresh directory whose config.json is a symlink to the "
          "input's config.json (must not be written through)",
          {**files, "out/config.json": Link("../ckpt/config.json")}, convert("{case}/ckpt", "{case}/out"), "any",
          unchanged=True)
    c.add("c5-lewm-out-weights-symlink", "5", "--out holds model.safetensors -> the input's weights.pt",
          {**files, "out/model.safetensors": Link("../ckpt/weights.pt")}, convert("{case}/ckpt", "{case}/out"),
          "any", unchanged=True)
    art = {f"art/{k}": v for k, v in lw.artifact().items()}
    c.add("c5-lewm-artifact-out-is-input", "5", "convert ARTIFACT --out ARTIFACT", art,
          convert("{case}/art", "{case}/art"), "error", expect="refusing",
          unchanged=True)


def class6_config(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 6: config dims out of any sane range, negative, or of the wrong type."""
    lewm = [
        ("encoder.num_hidden_layers", 10**9), ("encoder.num_hidden_layers", 1 << 40),
        ("encoder.num_hidden_layers", (1 << 64) - 1), ("encoder.num_hidden_layers", -1),
        ("encoder.num_hidden_layers", 2.5), ("encoder.num_hidden_layers", "2"),
        ("encoder.hidden_size", 10**9), ("encoder.intermediate_size", 10**9),
        ("encoder.intermediate_size", 1 << 40), ("encoder.num_attention_heads", 1 << 40),
        ("encoder.image_size", 1 << 40), ("encoder.image_size", 10**9), ("encoder.image_size", 32.0),
        ("encoder.patch_size", 1 << 40), ("predictor.depth", 10**9), ("predictor.depth", 1 << 40),
        ("predictor.depth", -1), ("predictor.depth", 2.5), ("predictor.num_frames", 10**9),
        ("predictor.heads", 1 << 40), ("predictor.dim_head", 1 << 40), ("predictor.mlp_dim", 10**12),
        ("predictor.hidden_dim", 10**9), ("action_encoder.input_dim", 10**9),
        ("action_encoder.smoothed_dim", 1 << 40), ("action_encoder.mlp_scale", 10**9),
        ("projector.hidden_dim", 10**9), ("pred_proj.hidden_dim", 1 << 40),
    ]
    for path, value in lewm:
        leaf = path.split(".")[-1]
        tag = _value_tag(value)
        c.add(f"c6-lewm-{path.replace('.', '-').replace('_', '-')}-{tag}", "6", f"LeWM config {path} = {value!r}",
              lw.checkpoint(config=lw.config_with(path, value)), INSPECT, "error", expect=leaf)
    for path, value in [("predictor.depth", 10**9), ("encoder.num_hidden_layers", 10**9)]:
        c.add(f"c6-lewm-{path.split('.')[-1].replace('_', '-')}-1e9-convert", "6",
              f"LeWM config {path} = {value} through convert", lw.checkpoint(config=lw.config_with(path, value)),
              convert(), "error", expect=path.split(".")[-1], unchanged=True)
    td_cases = [
        ("wm.num_q", 10**9), ("wm.num_q", 1 << 40), ("wm.num_q", -1), ("wm.mlp_dim", 10**9),
        ("wm.num_bins", 10**9), ("action_dim", 10**9), ("image_size", 1 << 40), ("image_size", 10**9),
        ("image_size", -1), ("image_size", 40.5), ("wm.encoding.state", 10**9), ("extra_dims.state", 10**9),
        ("wm.enc_dim", 10**9), ("wm.simnorm_dim", 1 << 40),
    ]
    for path, value in td_cases:
        leaf = path.split(".")[-1]
        expect = "encoding" if path.startswith("wm.encoding") else leaf
        c.add(f"c6-tdmpc2-{path.replace('.', '-').replace('_', '-')}-{_value_tag(value)}", "6",
              f"TD-MPC2 config {path} = {value!r}", td.checkpoint(config=td.config_with(path, value)), INSPECT,
              "error", expect=expect)
    wrap = td.config_with("wm.encoding", {"state": 1 << 63, "pixels": 16, "goal": 1 << 63})
    c.add("c6-tdmpc2-latent-sum-overflow", "6", "wm.encoding widths 2^63 + 16 + 2^63 (the sum wraps to 16)",
          td.checkpoint(config=wrap), INSPECT, "error", expect="encoding")
    c.add("c6-tdmpc2-num-q-1e9-convert", "6", "wm.num_q = 10^9 through convert",
          td.checkpoint(config=td.config_with("wm.num_q", 10**9)), convert(), "error", expect="num_q",
          unchanged=True)
    c.add("c6-tdmpc2-vmin-out-of-range", "6", "wm.vmin = 1e999 (not an f64)",
          td.checkpoint(config=td.config_text.replace('"vmin": -6', '"vmin": -1e999')), INSPECT, "error",
          expect="vmin")
    deep = lw.config_text.rstrip().rstrip("}") + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    c.add("c6-lewm-config-nested-1e5", "6", "config.json with 10^5 nested arrays in an unknown field",
          lw.checkpoint(config=deep), INSPECT, "error", expect="config.json")


def _value_tag(value) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, float):
        return "float"
    if value < 0:
        return "negative"
    for tag, v in [("1e9", 10**9), ("1e12", 10**12), ("2pow40", 1 << 40), ("u64max", (1 << 64) - 1)]:
        if value == v:
            return tag
    return str(value)


def class7_inspect(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 7: inspect (and convert) must exit non-zero when the weights do not match the model."""
    k = LEWM_KEY
    wrong = lw.with_tensor(k, size=(1, 32, 1), stride=(32, 1, 1))
    c.add("c7-lewm-wrong-shape", "7", "cls_token declared [1, 32, 1] instead of [1, 1, 32]",
          lw.checkpoint(lw.archive(lw.pickle(wrong))), INSPECT, "error", expect=k)
    c.add("c7-lewm-wrong-shape-convert", "7", "the wrong-shape checkpoint through convert",
          lw.checkpoint(lw.archive(lw.pickle(wrong))), convert(), "error", expect=k, unchanged=True)
    c.add("c7-lewm-missing-tensor", "7", "cls_token absent",
          lw.checkpoint(lw.archive(lw.pickle([t for t in lw.tensors if t.key != k]))), INSPECT, "error", expect=k)
    junk = replace(lw.tensor(k), key="extra.weight")
    c.add("c7-lewm-unexpected-tensor", "7", "an extra tensor `extra.weight`",
          lw.checkpoint(lw.archive(lw.pickle(lw.tensors + [junk]))), INSPECT, "error", expect="extra.weight")
    nan = lw.storage_with("predictor.pos_embedding", 3, "<f", float("nan"))
    c.add("c7-lewm-nan", "7", "a NaN in predictor.pos_embedding", lw.checkpoint(lw.archive(storages=nan)),
          INSPECT, "error", expect="predictor.pos_embedding")
    counter = "projector.net.1.num_batches_tracked"
    c.add("c7-lewm-float-counter", "7", "num_batches_tracked stored as a float tensor",
          lw.checkpoint(lw.archive(lw.pickle(lw.with_tensor(counter, cls="DoubleStorage")))), INSPECT, "error",
          expect=counter)
    wrong_td = td.with_tensor("pi.2.bias", size=(4,), stride=(1,))
    c.add("c7-tdmpc2-wrong-shape", "7", "pi.2.bias declared [4] instead of [8]",
          td.checkpoint(td.archive(td.pickle(wrong_td))), INSPECT, "error", expect="pi.2.bias")
    inf = td.storage_with("dynamics.0.weight", 0, "<f", float("inf"))
    c.add("c7-tdmpc2-inf", "7", "an Inf in dynamics.0.weight", td.checkpoint(td.archive(storages=inf)), INSPECT,
          "error", expect="dynamics.0.weight")
    c.add("c7-tdmpc2-missing-tensor-convert", "7", "qs.2.2.bias absent, through convert",
          td.checkpoint(td.archive(td.pickle([t for t in td.tensors if t.key != "qs.2.2.bias"]))), convert(),
          "error", expect="qs.2.2.bias", unchanged=True)
    entries = lw.st_entries()
    entries = [(n, d, [1, 32, 1] if n == k else s, b) for n, d, s, b in entries]
    c.add("c7-lewm-artifact-wrong-shape", "7", "artifact whose safetensors cls_token is [1, 32, 1]",
          lw.artifact(weights=safetensors(entries)), INSPECT, "error", expect=k)


def class8_storages(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 8: storages of the wrong or an unknown type, and globals outside the torch rebuild functions."""
    k = LEWM_KEY

    def ck(tensors: list[TensorDecl], storages: dict | None = None) -> dict:
        return lw.checkpoint(lw.archive(lw.pickle(tensors), storages))

    c.add("c8-int-storage", "8", "cls_token stored as IntStorage (same bytes)",
          ck(lw.with_tensor(k, cls="IntStorage")), INSPECT, "error", expect=[k, "dtype"])
    c.add("c8-long-storage", "8", "cls_token stored as LongStorage (16 elements)",
          ck(lw.with_tensor(k, cls="LongStorage", numel=16, size=(1, 1, 16), stride=(16, 16, 1))), INSPECT,
          "error", expect=k)
    c.add("c8-byte-storage", "8", "cls_token stored as ByteStorage (128 elements)",
          ck(lw.with_tensor(k, cls="ByteStorage", numel=128, size=(1, 1, 128), stride=(128, 128, 1))), INSPECT,
          "error", expect=k)
    c.add("c8-bool-storage", "8", "cls_token stored as BoolStorage (bytes 0/1)",
          ck(lw.with_tensor(k, cls="BoolStorage", numel=128, size=(1, 1, 128), stride=(128, 128, 1)),
             {**lw.storages, "0": bytes([1, 0] * 64)}), INSPECT, "error", expect=k)
    c.add("c8-bool-storage-bad-bytes", "8", "a BoolStorage holding bytes other than 0/1",
          ck(lw.with_tensor(k, cls="BoolStorage", numel=128, size=(1, 1, 128), stride=(128, 128, 1))), INSPECT,
          "error", expect=k)
    for cls, numel in [("ComplexFloatStorage", 16), ("QInt8Storage", 128), ("UntypedStorage", 128),
                       ("ComplexDoubleStorage", 8), ("QUInt8Storage", 128)]:
        c.add(f"c8-{cls}", "8", f"cls_token stored as torch.{cls}",
              ck(lw.with_tensor(k, cls=cls, numel=numel, size=(numel,), stride=(1,))), INSPECT, "error",
              expect=[k, cls])
    c.add("c8-Float8Storage", "8", "a storage class with an underscore: torch.Float8_e4m3fnStorage",
          ck(lw.with_tensor(k, cls="Float8_e4m3fnStorage", numel=128, size=(128,), stride=(1,))), INSPECT,
          "error", expect="Float8_e4m3fnStorage")
    c.add("c8-int-storage-convert", "8", "IntStorage cls_token through convert",
          ck(lw.with_tensor(k, cls="IntStorage")), convert(), "error", expect=k, unchanged=True)
    c.add("c8-tdmpc2-int-storage", "8", "TD-MPC2 cnn.0.weight as IntStorage",
          td.checkpoint(td.archive(td.pickle(td.with_tensor(TD_KEY, cls="IntStorage")))), INSPECT, "error",
          expect=[TD_KEY, "dtype"])

    def top(p: Pickle) -> dict:
        return lw.checkpoint(lw.archive(p.stop()))

    for module, name in [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
                         ("subprocess", "Popen"), ("torch", "load"), ("builtins", "getattr"),
                         ("numpy.core.multiarray", "_reconstruct"), ("torch._utils", "_rebuild_tensor"),
                         ("torch.nn.modules.linear", "Linear")]:
        p = Pickle(2).glob(module, name).unicode("true").op(b"\x85", b"R")
        c.add(f"c8-global-{slug(module + '-' + name)}", "8",
              f"top level is REDUCE({module}.{name}, ('true',))", top(p), INSPECT, "error",
              expect=f"{module}.{name}")
    p = Pickle(4).unicode("os").unicode("system").op(b"\x93").unicode("true").op(b"\x85", b"R")
    c.add("c8-stack-global-os-system", "8", "STACK_GLOBAL os.system + REDUCE", top(p), INSPECT, "error",
          expect="os.system")
    evil = lw.with_tensor(k, hooks=("os", "system"))
    c.add("c8-global-in-tensor-args", "8", "cls_token's backward-hooks argument built from os.system",
          ck(evil), INSPECT, "error", expect="os.system")
    evil = lw.with_tensor(k, rebuild=("builtins", "eval"))
    c.add("c8-rebuild-is-eval", "8", "cls_token rebuilt by builtins.eval instead of _rebuild_tensor_v2",
          ck(evil), INSPECT, "error", expect="builtins.eval")
    p = Pickle(2).op(b"}").unicode(k).glob("os", "system").unicode("true").op(b"\x85", b"R", b"s")
    c.add("c8-global-as-state-value", "8", "a state-dict value REDUCE(os.system, ('true',))", top(p), INSPECT,
          "error", expect="os.system")
    p = Pickle(2).op(b"c__builtin__\nexec\n").unicode("true").op(b"\x85", b"R")
    c.add("c8-global-py2-builtin", "8", "__builtin__.exec", top(p), INSPECT, "error", expect="__builtin__.exec")
    p = Pickle(2).glob("collections", "OrderedDict").unicode("k").op(b"\x85", b"R")
    c.add("c8-ordereddict-with-args", "8", "OrderedDict called with arguments", top(p), INSPECT, "error")
    p = Pickle(2).op(b"}").unicode(k).glob("torch", "FloatStorage").op(b")", b"R", b"s")
    c.add("c8-reduce-storage-class", "8", "REDUCE on torch.FloatStorage", top(p), INSPECT, "error")
    p = Pickle(2).glob("builtins", "object").op(b")", b"\x81")
    c.add("c8-newobj-object", "8", "NEWOBJ builtins.object", top(p), INSPECT, "error", expect="builtins.object")
    p = Pickle(2).mark().unicode("true").op(b"ios\nsystem\n")
    c.add("c8-inst-opcode", "8", "INST os.system (text protocol)", top(p), INSPECT, "error",
          one_of=["pickle", "os.system"])
    p = Pickle(2).mark().glob("os", "system").unicode("true").op(b"o")
    c.add("c8-obj-opcode", "8", "OBJ with os.system", top(p), INSPECT, "error", expect="os.system")
    p = Pickle(2).op(b"\x82\x01")
    c.add("c8-ext1-opcode", "8", "EXT1 (extension registry)", top(p), INSPECT, "error", expect="pickle")
    c.add("c8-tdmpc2-global-os-system", "8", "TD-MPC2 archive whose pickle is REDUCE(os.system, ('true',))",
          td.checkpoint(td.archive(Pickle(2).glob("os", "system").unicode("true").op(b"\x85", b"R").stop())),
          convert(), "error", expect="os.system", unchanged=True)


def class9_artifacts(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 9: artifact and weight validation gaps."""
    pre = lw.preprocess()
    for name, change, expect in [
        ("mean-1e300", {"mean": [1e300, 0.456, 0.406]}, "mean"),
        ("mean-1e39", {"mean": [0.485, 1e39, 0.406]}, "mean"),
        ("mean-neg-1e300", {"mean": [0.485, 0.456, -1e300]}, "mean"),
        ("std-1e-45", {"std": [1e-45, 0.224, 0.225]}, "std"),
        ("std-1e-40", {"std": [0.229, 1e-40, 0.225]}, "std"),
        ("std-zero", {"std": [0.229, 0.224, 0.0]}, "std"),
        ("std-negative", {"std": [-0.229, 0.224, 0.225]}, "std"),
        ("std-1e300", {"std": [1e300, 0.224, 0.225]}, "std"),
    ]:
        c.add(f"c9-lewm-preprocess-{name}", "9", f"preprocess.json {change}", lw.artifact(preprocess={**pre, **change}),
              INSPECT, "error", expect=expect)
    c.add("c9-lewm-preprocess-mean-nan", "9", "preprocess.json mean holds a NaN token",
          lw.artifact(preprocess=as_json(pre).replace("0.485", "NaN", 1)), INSPECT, "error", expect="preprocess.json")
    for side in (10**9, 1 << 40):
        sch = lw.schema()
        sch["observations"][0]["shape"] = [3, side, side]
        c.add(f"c9-lewm-image-size-{_value_tag(side)}", "9",
              f"preprocess.json image_size [{side}, {side}] (schema agrees)",
              lw.artifact(preprocess={**pre, "image_size": [side, side]}, schema=sch), INSPECT, "error",
              expect="image_size")
    sch = lw.schema()
    sch["observations"] = [{"name": "state", "kind": "state", "shape": [4]}]
    c.add("c9-lewm-schema-no-pixels", "9", "LeWM schema with a state observation and no pixels",
          lw.artifact(schema=sch), INSPECT, "error", one_of=["observations", "pixel"])
    sch = lw.schema()
    sch["observations"] = []
    c.add("c9-lewm-schema-no-observations", "9", "LeWM schema with no observation at all",
          lw.artifact(schema=sch), INSPECT, "error", one_of=["observations", "pixel"])
    for prefix in ("projector", "pred_proj"):
        key = f"{prefix}.net.1.running_var"
        neg = lw.storage_with(key, 0, "<f", -1.0)
        c.add(f"c9-lewm-{prefix.replace('_', '-')}-running-var-negative", "9", f"{key}[0] = -1 in weights.pt",
              lw.checkpoint(lw.archive(storages=neg)), INSPECT, "error", expect="running_var")
    neg = lw.storage_with("projector.net.1.running_var", 5, "<f", -1e-3)
    c.add("c9-lewm-running-var-negative-convert", "9", "projector running_var[5] = -1e-3, through convert",
          lw.checkpoint(lw.archive(storages=neg)), convert(), "error", expect="running_var", unchanged=True)
    c.add("c9-lewm-artifact-running-var-negative", "9", "artifact (safetensors) with pred_proj running_var[3] = -2",
          lw.artifact(weights=lw.safetensors(lw.storage_with("pred_proj.net.1.running_var", 3, "<f", -2.0))),
          INSPECT, "error", expect="running_var")
    for dtype in ("F8_E4M3", "F8_E5M2"):
        entries = [(n, dtype if n == "projector.net.0.bias" else d, s,
                    bytes([0x38]) * 64 if n == "projector.net.0.bias" else b)
                   for n, d, s, b in lw.st_entries()]
        c.add(f"c9-lewm-artifact-{dtype.lower().replace('_', '-')}", "9",
              f"artifact whose projector.net.0.bias is {dtype}", lw.artifact(weights=safetensors(entries)), INSPECT,
              "error", one_of=[dtype, "dtype"])
    entries = [(n, "F8_E4M3" if d == "F32" else d, s, b[::4] if d == "F32" else b) for n, d, s, b in td.st_entries()]
    c.add("c9-tdmpc2-all-f8-checkpoint", "9", "TD-MPC2 checkpoint (config + model.safetensors) entirely F8_E4M3",
          {"config.json": td.config_text, "model.safetensors": safetensors(entries)}, INSPECT, "error",
          one_of=["F8", "dtype"])
    files = lw.artifact()
    files["schema.json"] = Dir()
    c.add("c9-lewm-schema-is-directory", "9", "schema.json is a directory", files, INSPECT, "error",
          expect="schema.json")
    files = lw.artifact()
    files["preprocess.json"] = Dir()
    c.add("c9-lewm-preprocess-is-directory", "9", "preprocess.json is a directory", files, INSPECT, "error",
          expect="preprocess.json")
    sch = lw.schema()
    sch["family"] = "tdmpc2"
    c.add("c9-lewm-schema-family-mismatch", "9", "schema family tdmpc2 over a LeWM config", lw.artifact(schema=sch),
          INSPECT, "error", expect="family")
    c.add("c9-lewm-schema-version-2", "9", "schema_version 2", lw.artifact(schema={**lw.schema(), "schema_version": 2}),
          INSPECT, "error", expect="schema_version")
    tpre = td.preprocess()
    for name, change, expect in [
        ("mean-1e300", {"mean": [1e300, 0.456, 0.406]}, "mean"),
        ("std-1e-45", {"std": [0.229, 0.224, 1e-45]}, "std"),
        ("low-not-below-high", {"action": {**tpre["action"], "low": [1.0] * 4}}, "action.low"),
        ("block-zero", {"action": {**tpre["action"], "block": 0}}, "action.block"),
    ]:
        c.add(f"c9-tdmpc2-preprocess-{name}", "9", f"TD-MPC2 preprocess.json {change}",
              td.artifact(preprocess={**tpre, **change}), INSPECT, "error", expect=expect)
    sch = td.schema()
    sch["observations"] = sch["observations"][1:]
    c.add("c9-tdmpc2-schema-drops-pixels", "9", "TD-MPC2 schema without the pixels its config encodes",
          td.artifact(schema=sch), INSPECT, "error", expect="observations")


def class10_messages(c: Corpus, lw: Ckpt, td: Ckpt) -> None:
    """Finding 10: safetensors structure, oversized files, and paths that are not what they seem."""
    entries = lw.st_entries()
    header_entries = []
    off = 0
    for n, d, s, b in entries:
        header_entries.append((n, d, s, [off, off + len(b)]))
        off += len(b)
    data = b"".join(b for *_, b in entries)
    art = lw.artifact

    def st(header: list, payload: bytes = data, length: int | None = None) -> dict:
        return art(weights=safetensors_raw(st_header(header), payload, length))

    first = header_entries[0]
    dup = header_entries + [first]
    c.add("c10-st-duplicate-name", "10", f"safetensors header lists `{first[0]}` twice (same offsets)", st(dup),
          INSPECT, "error", expect=["duplicate", first[0]], absent=["offset"])
    dup2 = header_entries[:1] + [(first[0], "F32", [1], [0, 4])] + header_entries[1:]
    c.add("c10-st-duplicate-name-other-offsets", "10", "a duplicate name with different offsets", st(dup2),
          INSPECT, "error", expect=["duplicate", first[0]], absent=["offset"])
    good = st_header(header_entries)
    good_len = len(good + b" " * (-len(good) % 8))
    c.add("c10-st-header-len-past-eof", "10", "header length larger than the file",
          st(header_entries, length=good_len + len(data) + 1000), INSPECT, "error", expect="header")
    c.add("c10-st-header-len-2pow63", "10", "header length 2^63", st(header_entries, length=1 << 63), INSPECT,
          "error", expect="header")
    c.add("c10-st-header-len-u64max", "10", "header length 2^64-1", st(header_entries, length=(1 << 64) - 1),
          INSPECT, "error", expect="header")
    c.add("c10-st-header-len-short", "10", "header length cuts the JSON in half",
          st(header_entries, length=good_len // 2), INSPECT, "error", one_of=["header", "EOF", "JSON"])
    c.add("c10-st-header-not-json", "10", "header is not JSON",
          art(weights=safetensors_raw(b"{this is not json" + b" " * 7, data)), INSPECT, "error", expect="header")
    c.add("c10-st-header-array", "10", "header is a JSON array",
          art(weights=safetensors_raw(b"[1,2,3]", b"")), INSPECT, "error", expect="header")
    c.add("c10-st-file-7-bytes", "10", "model.safetensors has 7 bytes", art(weights=b"\x10\x00\x00\x00\x00\x00\x00"),
          INSPECT, "error")
    c.add("c10-st-entry-no-dtype", "10", "an entry without dtype",
          art(weights=safetensors_raw(('{"' + first[0] + '":{"shape":[1],"data_offsets":[0,4]}}').encode(),
                                      b"\0" * 4)), INSPECT, "error", expect=first[0])
    ov = list(header_entries)
    n1, d1, s1, o1 = ov[1]
    ov[1] = (n1, d1, s1, [o1[0] - 4, o1[1] - 4])
    c.add("c10-st-overlap", "10", f"`{n1}` starts 4 bytes inside the previous tensor", st(ov), INSPECT, "error",
          expect="overlap")
    gap = [(n, d, s, [o[0] + 8, o[1] + 8]) if i >= 5 else (n, d, s, o)
           for i, (n, d, s, o) in enumerate(header_entries)]
    c.add("c10-st-gap", "10", "an 8-byte gap between two tensors", st(gap, data + bytes(8)), INSPECT, "error",
          one_of=["gap", "data region"])
    c.add("c10-st-trailing-bytes", "10", "16 bytes after the last tensor", st(header_entries, data + bytes(16)),
          INSPECT, "error", one_of=["trailing", "data region"])
    rev = [(n, d, s, [o[1], o[0]]) if i == 2 else (n, d, s, o) for i, (n, d, s, o) in enumerate(header_entries)]
    c.add("c10-st-offsets-reversed", "10", "an entry with data_offsets [end, begin]", st(rev), INSPECT, "error",
          expect=header_entries[2][0])
    past = header_entries[:-1] + [(header_entries[-1][0], header_entries[-1][1], header_entries[-1][2],
                                   [header_entries[-1][3][0], header_entries[-1][3][1] + 4096])]
    c.add("c10-st-offsets-past-data", "10", "the last entry ends 4096 bytes past the file", st(past), INSPECT,
          "error", expect=header_entries[-1][0])
    huge = header_entries + [("huge.weight", "F32", [1 << 40, 1 << 40], [off, off + 4])]
    c.add("c10-st-shape-overflow", "10", "an entry of shape [2^40, 2^40]", st(huge, data + bytes(4)), INSPECT,
          "error", expect="huge.weight")
    mis = [(n, d, [s[0] * 2] + s[1:] if i == 4 and s else s, o) for i, (n, d, s, o) in enumerate(header_entries)]
    c.add("c10-st-shape-vs-offsets", "10", "an entry whose shape needs twice its byte range", st(mis), INSPECT,
          "error", expect=header_entries[4][0])
    # 3 GiB sparse tails: the files are sparse (no disk blocks) and must not be read whole.
    body = lw.safetensors()
    c.add("c10-st-sparse-3gib-tail", "10", "a valid artifact's model.safetensors followed by a 3 GiB hole",
          {**art(), "model.safetensors": Sparse(body, len(body) + 3 * GIB)}, INSPECT, "error",
          one_of=["trailing", "data region"])
    junk = _st_with_sparse_tail(entries, "junk.weight", [3 * GIB // 4])
    c.add("c10-st-sparse-3gib-unexpected-tensor", "10",
          "a valid artifact plus a 3 GiB tensor `junk.weight` (a hole): unexpected, rejected before reading",
          {**art(), "model.safetensors": Sparse(junk, len(junk) + 3 * GIB)}, INSPECT, "error", expect="junk.weight")
    k = LEWM_KEY
    known = _st_with_sparse_tail([e for e in entries if e[0] != k], k, [1, 1, 3 * GIB // 4])
    c.add("c10-st-sparse-3gib-known-key", "10",
          f"`{k}` declared [1, 1, 3 GiB / 4] over a hole: a shape mismatch caught before reading",
          {**art(), "model.safetensors": Sparse(known, len(known) + 3 * GIB)}, INSPECT, "error", expect=k)
    c.add("c10-pt-sparse-3gib-tail", "10", "weights.pt followed by a 3 GiB hole (the EOCD is no longer at the end)",
          {"config.json": lw.config_text, "weights.pt": Sparse(lw.raw, len(lw.raw) + 3 * GIB)}, INSPECT, "error",
          expect="zip")
    # Paths.
    c.add("c10-config-is-directory", "10", "config.json is a directory",
          {"config.json": Dir(), "weights.pt": lw.raw}, INSPECT, "error", expect="directory",
          absent=["missing"])
    c.add("c10-config-symlink-loop", "10", "config.json is a symlink to itself",
          {"config.json": Link("config.json"), "weights.pt": lw.raw}, INSPECT, "error",
          one_of=["symbolic link", "symlink", "loop"], absent=["missing"])
    c.add("c10-config-symlink-loop-2", "10", "config.json -> a.json -> config.json",
          {"config.json": Link("a.json"), "a.json": Link("config.json"), "weights.pt": lw.raw}, INSPECT, "error",
          one_of=["symbolic link", "symlink", "loop"], absent=["missing"])
    c.add("c10-config-dangling-symlink", "10", "config.json is a dangling symlink",
          {"config.json": Link("nowhere.json"), "weights.pt": lw.raw}, INSPECT, "error", expect="config.json")
    c.add("c10-config-fifo", "10", "config.json is a named pipe (no writer: a plain read blocks forever)",
          {"config.json": Fifo(), "weights.pt": lw.raw}, INSPECT, "error", expect="config.json",
          absent=["directory"])
    c.add("c10-weights-fifo", "10", "weights.pt is a named pipe",
          {"config.json": lw.config_text, "weights.pt": Fifo()}, INSPECT, "error", expect="weights.pt",
          absent=["directory"])
    c.add("c10-safetensors-fifo", "10", "model.safetensors is a named pipe",
          {"config.json": lw.config_text, "model.safetensors": Fifo()}, INSPECT, "error", expect="model.safetensors",
          absent=["directory"])
    files = lw.artifact()
    files["schema.json"] = Fifo()
    c.add("c10-schema-fifo", "10", "an artifact whose schema.json is a named pipe", files, INSPECT, "error",
          expect="schema.json",
          absent=["directory"])
    c.add("c10-config-dev-zero", "10", "config.json is a symlink to /dev/zero (endless)",
          {"config.json": Link("/dev/zero"), "weights.pt": lw.raw}, INSPECT, "error", expect="config.json",
          absent=["directory"])
    c.add("c10-weights-dev-zero", "10", "weights.pt is a symlink to /dev/zero",
          {"config.json": lw.config_text, "weights.pt": Link("/dev/zero")}, INSPECT, "error", expect="weights.pt",
          absent=["directory"])
    c.add("c10-config-17mib", "10", "config.json padded with 17 MiB of spaces (past any config size bound)",
          lw.checkpoint(config=lw.config_text.rstrip() + " " * (17 << 20) + "\n"), INSPECT, "error",
          expect="config.json")
    files = lw.artifact()
    files["preprocess.json"] = files["preprocess.json"].rstrip() + " " * (17 << 20) + "\n"
    c.add("c10-preprocess-17mib", "10", "preprocess.json padded with 17 MiB of spaces", files, INSPECT, "error",
          expect="preprocess.json")
    c.add("c10-weights-is-directory", "10", "weights.pt is a directory",
          {"config.json": lw.config_text, "weights.pt": Dir()}, INSPECT, "error", expect="weights.pt")
    bom = "\ufeff"
    c.add("c10-lewm-config-bom", "10", "config.json starts with a UTF-8 BOM",
          lw.checkpoint(config=bom + lw.config_text), INSPECT, "ok")
    c.add("c10-tdmpc2-config-bom", "10", "TD-MPC2 config.json starts with a UTF-8 BOM",
          td.checkpoint(config=bom + td.config_text), INSPECT, "ok")
    files = lw.artifact()
    files["schema.json"] = bom + files["schema.json"]
    files["preprocess.json"] = bom + files["preprocess.json"]
    c.add("c10-lewm-artifact-json-bom", "10", "schema.json and preprocess.json start with a UTF-8 BOM", files,
          INSPECT, "any")
    jpeg = _jpeg_like()
    c.add("c10-inspect-photo-jpg", "10", "swm inspect photo.jpg (no config.json anywhere)", {"photo.jpg": jpeg},
          ["inspect", "{case}/photo.jpg"], "error",
          one_of=["not a weights file", "format"], absent=["config.json"])
    c.add("c10-inspect-photo-jpg-with-config", "10", "swm inspect photo.jpg beside a config.json",
          {"photo.jpg": jpeg, "config.json": lw.config_text}, ["inspect", "{case}/photo.jpg"], "error",
          one_of=["not a weights file", "format"], absent=["config.json"])
    c.add("c10-jpeg-as-weights-pt", "10", "JPEG bytes named weights.pt", lw.checkpoint(jpeg), INSPECT, "error",
          expect="zip")
    c.add("c10-jpeg-as-safetensors", "10", "JPEG bytes named model.safetensors",
          {"config.json": lw.config_text, "model.safetensors": jpeg}, INSPECT, "error", expect="header")
    legacy = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19." + bytes(64)
    c.add("c10-legacy-torch-format", "10", "a pre-1.6 torch.save file (raw pickle, not a zip)",
          lw.checkpoint(legacy), INSPECT, "error", expect="zip")
    c.add("c10-empty-directory", "10", "inspect an empty directory", {"keep": Dir()}, ["inspect", "{case}/keep"],
          "error", one_of=["config.json", "weights"])


def _st_with_sparse_tail(entries: list, name: str, shape: list[int]) -> bytes:
    """Header + data of `entries`, plus a header entry `name` of `shape` (F32) whose bytes are the file's hole."""
    header = {}
    off = 0
    for n, d, s, b in entries:
        header[n] = {"dtype": d, "shape": list(s), "data_offsets": [off, off + len(b)]}
        off += len(b)
    nbytes = 4
    for d in shape:
        nbytes *= d
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + nbytes]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(b for *_, b in entries)


def _jpeg_like() -> bytes:
    """The first bytes of a baseline JFIF file followed by filler: enough to look like a photo."""
    rng = random.Random(7)
    return (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + bytes(rng.randrange(256) for _ in range(4000)) + b"\xff\xd9")


def fuzz_cases(c: Corpus, lw: Ckpt, td: Ckpt, rng: random.Random) -> None:
    """Seeded random mutations of the fixtures: anything but a crash, a hang or unbounded memory."""
    for i in range(10):
        ck = lw if i % 2 == 0 else td
        buf = bytearray(ck.raw)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
        c.add(f"fuzz-raw-{ck.family}-{i:02d}", "fuzz", "random bit flips in the committed weights.pt",
              ck.checkpoint(bytes(buf)), INSPECT, "any")
    for i in range(4):
        ck = lw if i % 2 == 0 else td
        buf = bytearray(ck.raw)
        pos = rng.randrange(len(buf))
        if i < 2:
            del buf[pos:pos + rng.randint(1, 64)]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        c.add(f"fuzz-splice-{ck.family}-{i:02d}", "fuzz", "bytes deleted from / inserted into weights.pt",
              ck.checkpoint(bytes(buf)), INSPECT, "any")
    interesting = [0, 1, 0x7F, 0x80, 0xFF]
    for i in range(12):
        ck = lw if i % 3 else td
        pkl = bytearray(ck.pickle())
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(2, len(pkl) - 1)
            kind = rng.randrange(4)
            if kind == 0:
                pkl[pos] ^= 1 << rng.randrange(8)
            elif kind == 1:
                pkl[pos] = rng.choice(interesting)
            elif kind == 2:
                end = min(len(pkl) - 1, pos + rng.randint(1, 16))
                del pkl[pos:end]
            else:
                span = pkl[pos:pos + rng.randint(1, 32)]
                pkl[pos:pos] = span
        c.add(f"fuzz-pickle-{ck.family}-{i:02d}", "fuzz", "data.pkl mutated, re-wrapped with valid CRCs",
              ck.checkpoint(ck.archive(bytes(pkl))), INSPECT, "any")
    for i in range(3):
        ck = lw if i % 2 == 0 else td
        t = rng.choice(ck.tensors)
        storages = dict(ck.storages)
        data = bytearray(storages[t.storage])
        for _ in range(4):
            data[rng.randrange(len(data))] = rng.choice([0x7F, 0xFF, 0x80, 0x00])
        storages[t.storage] = bytes(data)
        c.add(f"fuzz-storage-{ck.family}-{i:02d}", "fuzz", f"bytes of `{t.key}` replaced, CRCs valid",
              ck.checkpoint(ck.archive(storages=storages)), INSPECT, "any")
    for i in range(5):
        ck = lw if i % 2 == 0 else td
        body = bytearray(ck.safetensors())
        n = struct.unpack_from("<Q", body)[0]
        for _ in range(rng.randint(1, 3)):
            pos = 8 + rng.randrange(n)
            body[pos] = ord(rng.choice("0123456789[]{},:\"-e"))
        c.add(f"fuzz-safetensors-{ck.family}-{i:02d}", "fuzz", "safetensors header bytes replaced",
              ck.artifact(weights=bytes(body)), INSPECT, "any")
    for i in range(3):
        ck = lw if i % 2 == 0 else td
        text = bytearray(ck.config_text.encode())
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(text))
            text[pos] = ord(rng.choice("0123456789-.e{}[]\",:x"))
        c.add(f"fuzz-config-{ck.family}-{i:02d}", "fuzz", "config.json bytes replaced",
              ck.checkpoint(config=text.decode("utf-8", "replace")), INSPECT, "any")


def generate(out: Path, seed: int = 10, fixtures: Path = FIXTURES) -> list[dict]:
    """Writes the corpus into `out` (which must not exist or be empty); returns the cases."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SystemExit(f"{out} is not empty")
    lw = Ckpt.load("lewm-tiny", "lewm", fixtures)
    td = Ckpt.load("tdmpc2-tiny", "tdmpc2", fixtures)
    corpus = Corpus(out)
    valid_cases(corpus, lw, td)
    class1_shapes(corpus, lw, td)
    class2_pickle(corpus, lw, td)
    class3_prefix(corpus, lw, td)
    class4_zip(corpus, lw, td)
    class5_convert(corpus, lw, td)
    class6_config(corpus, lw, td)
    class7_inspect(corpus, lw, td)
    class8_storages(corpus, lw, td)
    class9_artifacts(corpus, lw, td)
    class10_messages(corpus, lw, td)
    fuzz_cases(corpus, lw, td, random.Random(seed))
    corpus.write_index()
    return corpus.cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output directory (created; must be empty)")
    ap.add_argument("--seed", type=int, default=10, help="seed of the fuzz cases (default 10)")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES, help="directory holding lewm-tiny and tdmpc2-tiny")
    args = ap.parse_args()
    cases = generate(args.out, args.seed, args.fixtures)
    counts = collections.Counter(c["class"] for c in cases)
    order = sorted(counts, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    print(f"wrote {len(cases)} cases to {args.out}: " + ", ".join(f"{k}: {counts[k]}" for k in order))


if __name__ == "__main__":
    main()
