//! A restricted pickle machine for the `data.pkl` that `torch.save` writes.
//!
//! It executes nothing: globals resolve to inert tokens from a whitelist, and "calling" one builds an inert
//! value (an empty dict for `OrderedDict()`, a tensor description for `_rebuild_tensor_v2`). Values are
//! reference counted, so memo gets are O(1) without copies. Every container records its nesting depth at
//! construction; a list or dict cannot be modified once it is stored in another container, so recorded depths
//! stay exact and no cycle can be built. Nothing walks values recursively, and dropping a value is iterative.
//!
//! Supported opcodes (protocols 2 to 5, binary forms): PROTO FRAME STOP MARK POP POP_MARK DUP EMPTY_DICT
//! EMPTY_LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 DICT LIST APPEND APPENDS SETITEM SETITEMS BUILD REDUCE
//! NEWOBJ GLOBAL STACK_GLOBAL BINPERSID BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET BININT BININT1 BININT2
//! LONG1 BINFLOAT NONE NEWTRUE NEWFALSE BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES
//! BINBYTES8. Anything else (text-protocol opcodes, INST/OBJ, extension registry, sets, out-of-band buffers,
//! Python 2 strings) is rejected.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use crate::{Limits, Result, WeightsError};

/// A whitelisted global. Resolving one executes nothing.
#[derive(Debug, Clone)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch.<Name>Storage`; whether its dtype is supported is decided when a tensor uses it.
    StorageClass(Rc<str>),
}

/// A tensor storage named by a persistent id `('storage', class, key, location, numel)`.
#[derive(Debug)]
pub(crate) struct Storage {
    pub class: Rc<str>,
    pub key: Rc<str>,
    pub numel: u64,
}

/// What `_rebuild_tensor_v2` was given, checked as far as possible without knowing the state-dict key.
#[derive(Debug)]
pub(crate) struct TensorSpec {
    pub storage: Rc<Storage>,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

/// A problem with a tensor's arguments, reported with the state-dict key once that is known.
#[derive(Debug, Clone)]
pub(crate) enum TensorProblem {
    Invalid(String),
    TooManyDims(u64),
}

pub(crate) struct Tuple {
    items: Vec<Value>,
    depth: u32,
}

pub(crate) struct List {
    items: RefCell<Vec<Value>>,
    depth: Cell<u32>,
    frozen: Cell<bool>,
}

pub(crate) struct Dict {
    items: RefCell<Vec<(Value, Value)>>,
    depth: Cell<u32>,
    frozen: Cell<bool>,
}

impl Dict {
    /// The (key, value) pairs in insertion order.
    pub(crate) fn items(&self) -> std::cell::Ref<'_, Vec<(Value, Value)>> {
        self.items.borrow()
    }
}

/// A pickle value.
#[derive(Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64 (its value is not kept).
    BigInt,
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Tuple>),
    List(Rc<List>),
    Dict(Rc<Dict>),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<std::result::Result<TensorSpec, TensorProblem>>),
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(t) => t.depth,
            Value::List(l) => l.depth.get(),
            Value::Dict(d) => d.depth.get(),
            Value::Tensor(_) | Value::Storage(_) => 1,
            _ => 0,
        }
    }

    /// A short, non-recursive description for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

impl fmt::Debug for Value {
    // Never recursive: a memo bomb must not be printable into gigabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bytes(b) => write!(f, "bytes(len {})", b.len()),
            Value::Str(s) => write!(f, "{:?}", s.chars().take(64).collect::<String>()),
            Value::Tuple(t) => write!(f, "tuple(len {})", t.items.len()),
            Value::List(l) => write!(f, "list(len {})", l.items.borrow().len()),
            Value::Dict(d) => write!(f, "dict(len {})", d.items.borrow().len()),
            other => f.write_str(other.kind()),
        }
    }
}

/// Drops nested values without recursion: containers whose last reference goes away hand their children to
/// a work list instead of dropping them in place.
fn drop_iteratively(mut pending: Vec<Value>) {
    while let Some(value) = pending.pop() {
        match value {
            Value::Tuple(rc) => {
                if let Ok(mut tuple) = Rc::try_unwrap(rc) {
                    pending.append(&mut tuple.items);
                }
            }
            Value::List(rc) => {
                if let Ok(list) = Rc::try_unwrap(rc) {
                    pending.append(&mut list.items.take());
                }
            }
            Value::Dict(rc) => {
                if let Ok(dict) = Rc::try_unwrap(rc) {
                    for (k, v) in dict.items.take() {
                        pending.push(k);
                        pending.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Drop for Tuple {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(&mut self.items));
    }
}

impl Drop for List {
    fn drop(&mut self) {
        drop_iteratively(self.items.take());
    }
}

impl Drop for Dict {
    fn drop(&mut self) {
        let items = self.items.take();
        let mut flat = Vec::with_capacity(items.len().saturating_mul(2));
        for (k, v) in items {
            flat.push(k);
            flat.push(v);
        }
        drop_iteratively(flat);
    }
}

/// Items of a tuple value, if it is one.
pub(crate) fn tuple_items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Tuple(t) => Some(&t.items),
        _ => None,
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op: u8,
    op_offset: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    values: u64,
    limits: &'a Limits,
    /// The state-dict key most recently pushed, for error messages.
    key: Option<Rc<str>>,
}

/// Runs `data` and returns the unpickled value.
pub(crate) fn unpickle(data: &[u8], limits: &Limits) -> Result<Value> {
    let mut m = Machine {
        data,
        pos: 0,
        op: 0,
        op_offset: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        values: 0,
        limits,
        key: None,
    };
    let result = m.run();
    // Tear down the machine's references first so shared values are freed by the iterative drop.
    drop_iteratively(std::mem::take(&mut m.stack));
    drop_iteratively(m.memo.drain().map(|(_, v)| v).collect());
    result
}

impl Machine<'_> {
    fn err(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Pickle { opcode: self.op, offset: self.op_offset as u64, reason: reason.into() }
    }

    fn take(&mut self, n: u64) -> Result<&[u8]> {
        let available = (self.data.len() - self.pos) as u64;
        if n > available {
            return Err(self.err(format!("truncated: needs {n} bytes, {available} left")));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn string_len_ok(&self, n: u64) -> Result<()> {
        if n > self.limits.max_string_bytes {
            return Err(WeightsError::limit(
                format!("pickle string at offset {}", self.op_offset),
                "max_string_bytes",
                n,
                self.limits.max_string_bytes,
            ));
        }
        Ok(())
    }

    fn text(&mut self, n: u64) -> Result<Value> {
        self.string_len_ok(n)?;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(Rc::from(s))),
            Err(_) => Err(self.err("string is not valid UTF-8")),
        }
    }

    fn bytes(&mut self, n: u64) -> Result<Value> {
        self.string_len_ok(n)?;
        Ok(Value::Bytes(Rc::from(self.take(n)?)))
    }

    /// A newline-terminated line of GLOBAL, at most `max_string_bytes` long.
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let window = rest.len().min(usize::try_from(self.limits.max_string_bytes).unwrap_or(usize::MAX));
        let Some(n) = rest[..window].iter().position(|&b| b == b'\n') else {
            return Err(self.err("GLOBAL argument has no newline within the limits"));
        };
        let line = std::str::from_utf8(&rest[..n]).map_err(|_| self.err("GLOBAL argument is not UTF-8"))?.to_string();
        self.pos += n + 1;
        Ok(line)
    }

    fn push(&mut self, value: Value) -> Result<()> {
        self.values += 1;
        if self.values > self.limits.max_pickle_values {
            return Err(WeightsError::limit(
                "pickle values",
                "max_pickle_values",
                self.values,
                self.limits.max_pickle_values,
            ));
        }
        if let Value::Str(s) = &value {
            if self.at_key_position() {
                self.key = Some(s.clone());
            }
        }
        self.stack.push(value);
        Ok(())
    }

    /// Whether a value pushed now would be a key of the dict below (for error messages only).
    fn at_key_position(&self) -> bool {
        if matches!(self.stack.last(), Some(Value::Dict(_))) {
            return true;
        }
        match self.marks.last() {
            Some(&m) if m >= 1 => {
                matches!(self.stack.get(m - 1), Some(Value::Dict(_))) && (self.stack.len() - m).is_multiple_of(2)
            }
            _ => false,
        }
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<&Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK on the stack"))?;
        Ok(self.stack.split_off(m))
    }

    fn depth_ok(&self, depth: u32) -> Result<()> {
        if depth > self.limits.max_depth {
            return Err(WeightsError::limit(
                format!("pickle nesting at offset {}", self.op_offset),
                "max_depth",
                depth.into(),
                self.limits.max_depth.into(),
            ));
        }
        Ok(())
    }

    /// Marks `child` as stored in a container (freezing lists and dicts) and returns its depth.
    fn adopt(child: &Value) -> u32 {
        match child {
            Value::List(l) => l.frozen.set(true),
            Value::Dict(d) => d.frozen.set(true),
            _ => {}
        }
        child.depth()
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<Value> {
        let depth = items.iter().map(Self::adopt).max().unwrap_or(0).saturating_add(1);
        self.depth_ok(depth)?;
        Ok(Value::Tuple(Rc::new(Tuple { items, depth })))
    }

    fn new_list(&mut self, items: Vec<Value>) -> Result<Value> {
        let depth = items.iter().map(Self::adopt).max().unwrap_or(0).saturating_add(1);
        self.depth_ok(depth)?;
        Ok(Value::List(Rc::new(List { items: RefCell::new(items), depth: Cell::new(depth), frozen: Cell::new(false) })))
    }

    fn new_dict(&mut self, items: Vec<Value>) -> Result<Value> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let depth = items.iter().map(Self::adopt).max().unwrap_or(0).saturating_add(1);
        self.depth_ok(depth)?;
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(Value::Dict(Rc::new(Dict { items: RefCell::new(pairs), depth: Cell::new(depth), frozen: Cell::new(false) })))
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        let Value::List(list) = self.top()?.clone() else {
            return Err(self.err(format!("APPEND to a {}", self.top()?.kind())));
        };
        if list.frozen.get() {
            return Err(self.err("list modified after being stored in another container"));
        }
        let mut depth = list.depth.get();
        for item in &items {
            if matches!(item, Value::List(l) if Rc::ptr_eq(l, &list)) {
                return Err(self.err("self-referential list"));
            }
            depth = depth.max(Self::adopt(item).saturating_add(1));
        }
        self.depth_ok(depth)?;
        list.depth.set(depth);
        list.items.borrow_mut().extend(items);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        let Value::Dict(dict) = self.top()?.clone() else {
            return Err(self.err(format!("SETITEM on a {}", self.top()?.kind())));
        };
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for SETITEMS"));
        }
        if dict.frozen.get() {
            return Err(self.err("dict modified after being stored in another container"));
        }
        let mut depth = dict.depth.get();
        for item in &items {
            if matches!(item, Value::Dict(d) if Rc::ptr_eq(d, &dict)) {
                return Err(self.err("self-referential dict"));
            }
            depth = depth.max(Self::adopt(item).saturating_add(1));
        }
        self.depth_ok(depth)?;
        dict.depth.set(depth);
        let mut pairs = dict.items.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<()> {
        let value = self.top()?.clone();
        if !self.memo.contains_key(&index) && self.memo.len() >= self.limits.max_memo_entries {
            return Err(WeightsError::limit(
                "pickle memo entries",
                "max_memo_entries",
                self.memo.len() as u64 + 1,
                self.limits.max_memo_entries as u64,
            ));
        }
        if let Some(old) = self.memo.insert(index, value) {
            drop_iteratively(vec![old]);
        }
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<()> {
        let value = self.memo.get(&index).cloned().ok_or_else(|| self.err(format!("memo entry {index} is unset")))?;
        self.push(value)
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Value> {
        let global = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch", class)
                if class.len() > "Storage".len()
                    && class.ends_with("Storage")
                    && class.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Global::StorageClass(Rc::from(class))
            }
            _ => {
                return Err(WeightsError::DisallowedGlobal {
                    module: module.chars().take(200).collect(),
                    name: name.chars().take(200).collect(),
                    offset: self.op_offset as u64,
                    key: self.key.as_deref().map(str::to_string),
                })
            }
        };
        Ok(Value::Global(global))
    }

    fn call(&mut self, callable: Value, args: Value) -> Result<Value> {
        let Some(items) = tuple_items(&args) else {
            return Err(self.err(format!("arguments are a {}, not a tuple", args.kind())));
        };
        let Value::Global(global) = callable else {
            return Err(self.err(format!("a {} is not callable", callable.kind())));
        };
        match global {
            Global::OrderedDict if items.is_empty() => self.new_dict(Vec::new()),
            Global::OrderedDict => Err(self.err("OrderedDict called with arguments")),
            Global::RebuildTensorV2 => {
                let spec = tensor_spec(items, self.limits);
                Ok(Value::Tensor(Rc::new(spec)))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let expected = if matches!(global, Global::RebuildParameter) { 3 } else { 4 };
                match items.first() {
                    Some(tensor @ Value::Tensor(_)) if items.len() == expected => Ok(tensor.clone()),
                    _ => Err(self.err("_rebuild_parameter expects (tensor, requires_grad, hooks[, state])")),
                }
            }
            Global::StorageClass(class) => Err(self.err(format!("storage class torch.{class} cannot be called"))),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        let bad = |m: &Self, why: &str| {
            m.err(format!("persistent id {why}; expected ('storage', class, key, location, numel)"))
        };
        let Some(items) = tuple_items(&pid) else { return Err(bad(self, "is not a tuple")) };
        let [Value::Str(tag), class, Value::Str(key), Value::Str(_location), numel] = items else {
            return Err(bad(self, "has the wrong shape"));
        };
        if &**tag != "storage" {
            return Err(bad(self, "is not a storage"));
        }
        let Value::Global(Global::StorageClass(class)) = class else {
            return Err(bad(self, "has no storage class"));
        };
        let numel = match numel {
            Value::Int(n) if *n >= 0 => *n as u64,
            _ => return Err(bad(self, "has a numel that is not a non-negative integer")),
        };
        Ok(Value::Storage(Rc::new(Storage { class: class.clone(), key: key.clone(), numel })))
    }

    fn run(&mut self) -> Result<Value> {
        if self.data.len() as u64 > self.limits.max_pickle_bytes {
            return Err(WeightsError::limit(
                "data.pkl bytes",
                "max_pickle_bytes",
                self.data.len() as u64,
                self.limits.max_pickle_bytes,
            ));
        }
        loop {
            self.op_offset = self.pos;
            self.op = 0;
            let op = self.u8().map_err(|_| self.err("truncated: the pickle ends without STOP"))?;
            self.op = op;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("unsupported protocol {proto}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint; the frame must lie inside the data.
                    let n = self.u64()?;
                    if n > (self.data.len() - self.pos) as u64 {
                        return Err(self.err("frame is longer than the remaining data"));
                    }
                }
                b'.' => {
                    if self.pos != self.data.len() {
                        return Err(self.err("bytes after STOP"));
                    }
                    if !self.marks.is_empty() || self.stack.len() != 1 {
                        return Err(self.err("STOP with a MARK open or more than one value on the stack"));
                    }
                    return self.pop();
                }
                b'(' => {
                    if self.marks.len() as u64 >= u64::from(self.limits.max_depth) {
                        return Err(WeightsError::limit(
                            format!("open MARKs at offset {}", self.op_offset),
                            "max_depth",
                            self.marks.len() as u64 + 1,
                            self.limits.max_depth.into(),
                        ));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    if self.stack.len() > self.floor() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    let items = self.pop_mark()?;
                    drop_iteratively(items);
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.push(top)?;
                }
                b'}' => {
                    let v = self.new_dict(Vec::new())?;
                    self.push(v)?;
                }
                b']' => {
                    let v = self.new_list(Vec::new())?;
                    self.push(v)?;
                }
                b')' => {
                    let v = self.tuple(Vec::new())?;
                    self.push(v)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.tuple(items)?;
                    self.push(v)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < self.floor() + n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.tuple(items)?;
                    self.push(v)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.new_dict(items)?;
                    self.push(v)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.new_list(items)?;
                    self.push(v)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'b' => {
                    // BUILD sets attributes (e.g. a state dict's `_metadata`): the state is ignored.
                    let state = self.pop()?;
                    self.top()?;
                    drop_iteratively(vec![state]);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only OrderedDict with no arguments.
                    let args = self.pop()?;
                    let class = self.pop()?;
                    if !matches!(class, Value::Global(Global::OrderedDict)) {
                        return Err(self.err(format!("NEWOBJ of a {}", class.kind())));
                    }
                    let v = self.call(class, args)?;
                    self.push(v)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.global(&module, &name)?;
                    self.push(v)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let v = self.global(&module, &name)?;
                    self.push(v)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo index overflow"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v.into()))?;
                }
                0x8a => {
                    let n = self.u8()?;
                    let bytes = self.take(n.into())?;
                    let v = long1(bytes);
                    self.push(v)?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    self.push(Value::Float(v))?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'X' => {
                    let n = self.u32()?;
                    let v = self.text(n.into())?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = self.u8()?;
                    let v = self.text(n.into())?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.text(n)?;
                    self.push(v)?;
                }
                b'B' => {
                    let n = self.u32()?;
                    let v = self.bytes(n.into())?;
                    self.push(v)?;
                }
                b'C' => {
                    let n = self.u8()?;
                    let v = self.bytes(n.into())?;
                    self.push(v)?;
                }
                0x8e => {
                    let n = self.u64()?;
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                _ => return Err(WeightsError::UnknownOpcode { opcode: op, offset: self.op_offset as u64 }),
            }
        }
    }
}

/// Decodes LONG1's little-endian two's complement bytes.
fn long1(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xFF } else { 0 };
    if bytes.len() > 8 {
        // Fits only if the extra high bytes are pure sign extension of byte 7.
        let sign_ok = bytes[8..].iter().all(|&b| b == fill) && (bytes[7] & 0x80 != 0) == negative;
        if !sign_ok {
            return Value::BigInt;
        }
    }
    let mut buf = [fill; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    Value::Int(i64::from_le_bytes(buf))
}

/// Checks `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
fn tensor_spec(args: &[Value], limits: &Limits) -> std::result::Result<TensorSpec, TensorProblem> {
    let invalid = |s: String| TensorProblem::Invalid(s);
    if !(6..=7).contains(&args.len()) {
        return Err(invalid(format!("_rebuild_tensor_v2 takes 6 or 7 arguments, got {}", args.len())));
    }
    let Value::Storage(storage) = &args[0] else {
        return Err(invalid(format!("storage argument is a {}", args[0].kind())));
    };
    let offset = match &args[1] {
        Value::Int(i) if *i >= 0 => *i as u64,
        other => return Err(invalid(format!("storage offset {other:?} is not a non-negative integer"))),
    };
    let dims = |value: &Value, what: &str| -> std::result::Result<Vec<u64>, TensorProblem> {
        let Some(items) = tuple_items(value) else {
            return Err(invalid(format!("{what} is a {}, not a tuple", value.kind())));
        };
        if items.len() > limits.max_ndim {
            return Err(TensorProblem::TooManyDims(items.len() as u64));
        }
        items
            .iter()
            .map(|item| match item {
                Value::Int(i) if *i >= 0 => Ok(*i as u64),
                Value::Int(i) => Err(invalid(format!("negative {what} entry {i}"))),
                other => Err(invalid(format!("{what} entry {other:?} is not an integer"))),
            })
            .collect()
    };
    let size = dims(&args[2], "size")?;
    let stride = dims(&args[3], "stride")?;
    if size.len() != stride.len() {
        return Err(invalid(format!("size has {} dimensions, stride {}", size.len(), stride.len())));
    }
    Ok(TensorSpec { storage: storage.clone(), offset, size, stride })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_decodes_sign_and_width() {
        assert!(matches!(long1(&[]), Value::Int(0)));
        assert!(matches!(long1(&[0xff]), Value::Int(-1)));
        assert!(matches!(long1(&[0x00, 0x01]), Value::Int(256)));
        assert!(matches!(long1(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), Value::Int(i64::MAX)));
        assert!(matches!(long1(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]), Value::Int(i64::MAX)));
        assert!(matches!(long1(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]), Value::BigInt));
        assert!(matches!(long1(&[0, 0, 0, 0, 0, 0, 0, 0x80]), Value::Int(i64::MIN)));
    }

    #[test]
    fn deep_drop_is_iterative() {
        // Build a 1e6-deep tuple chain directly (bypassing the depth limit) and drop it.
        let mut v = Value::None;
        for _ in 0..1_000_000 {
            v = Value::Tuple(Rc::new(Tuple { items: vec![v], depth: 0 }));
        }
        drop(v);
    }

    #[test]
    fn frozen_list_cannot_grow_a_hidden_chain() {
        // ] q0 ] q1 h0 h1 a : list1 appended into list0 after list0 was... fine; then
        // ( h1 t : list1 stored in a tuple, then h1 h0 a would append into a frozen list.
        let data = b"\x80\x02]q\x00]q\x01h\x00h\x01a(h\x01tq\x02h\x01h\x00a.";
        let err = unpickle(data, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("modified after being stored"), "{err}");
    }
}
