//! A pickle *interpreter*: it reads the opcodes of Python's pickle protocols 0–5 that PyTorch
//! files use and builds a [`Value`] tree describing what Python would have done, without doing
//! any of it. Calls (`REDUCE`, `NEWOBJ`) become [`Value::Call`] nodes for the caller to
//! interpret; nothing is imported, constructed or executed.
//!
//! Even so, every `GLOBAL`/`STACK_GLOBAL` is checked against a small allowlist
//! ([`is_allowed_global`]): a pickle that names anything else (`os.system`, `builtins.eval`, a
//! model class…) was not written as plain weights, and refusing it early gives the user a clear
//! answer instead of a puzzling failure later. The refusal is a [`ForbiddenGlobal`] error.
//!
//! The input is untrusted: every read is bounds-checked, the value graph, stack and memo are
//! capped, and turning the graph into a tree is depth- and size-limited, so garbage, truncated
//! or hostile input yields an error, never a panic or an unbounded allocation.
//!
//! Pickle objects are shared and mutable (a dict may be memoised, then filled by `SETITEMS`),
//! so the interpreter works on an arena of nodes addressed by index and only converts the
//! result into an owned [`Value`] tree at `STOP`.
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::fmt;

/// What a pickle describes, as a tree. Shared objects in the pickle appear once per reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`, as pickle stores it: little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A `dict` or `collections.OrderedDict`, in insertion order. Python would let a repeated
    /// key overwrite the earlier entry; this keeps both (pickles of real dicts never repeat a
    /// key), so callers that need unique keys must check.
    Dict(Vec<(Value, Value)>),
    /// A reference to `module.name` (already checked against the allowlist).
    Global {
        module: String,
        name: String,
    },
    /// `callee(*args)` from `REDUCE`, or `callee.__new__(callee, *args)` from `NEWOBJ`.
    Call {
        callee: Box<Value>,
        args: Vec<Value>,
    },
    /// `object.__setstate__(state)` from `BUILD`.
    Build {
        object: Box<Value>,
        state: Box<Value>,
    },
    /// The argument of `BINPERSID`/`PERSID`, which torch uses to refer to tensor storages.
    PersistentId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Elements of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(items) | Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is the global `module.name`.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global { module: m, name: n } if m == module && n == name)
    }

    /// A short description of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) | Value::BigInt(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Dict(_) => "a dict",
            Value::Global { .. } => "a global",
            Value::Call { .. } => "a call",
            Value::Build { .. } => "a built object",
            Value::PersistentId(_) => "a persistent id",
        }
    }
}

/// The error for a pickle that names a global outside the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForbiddenGlobal {
    pub module: String,
    pub name: String,
}

impl fmt::Display for ForbiddenGlobal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its pickle asks to call {}.{}, which could run code; only tensors and dictionaries are allowed",
            self.module, self.name
        )
    }
}

impl std::error::Error for ForbiddenGlobal {}

/// Storage classes that `torch.save` names, one per element type.
pub const TORCH_STORAGE_TYPES: &[&str] = &[
    "FloatStorage",
    "DoubleStorage",
    "HalfStorage",
    "BFloat16Storage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
];

const TORCH_DTYPES: &[&str] = &[
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool", "float", "double", "half", "long", "int", "short",
];

const TORCH_REBUILDERS: &[&str] = &[
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
];

/// The globals a weights file may name: containers, tensor rebuilders, storage classes and
/// dtypes. Everything else is refused.
pub fn is_allowed_global(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => TORCH_REBUILDERS.contains(&name),
        "torch" => TORCH_STORAGE_TYPES.contains(&name) || TORCH_DTYPES.contains(&name),
        _ => false,
    }
}

// Limits for untrusted input. Real torch pickles need a few dozen nodes per tensor and nest a
// handful of levels deep; these leave room for checkpoints with ~100k tensors.
const MAX_NODES: usize = 1 << 22;
const MAX_STACK: usize = 1 << 22;
const MAX_DEPTH: usize = 200;

/// Parses one pickle from the start of `data`, returning its value and the number of bytes it
/// occupied (up to and including `STOP`), so that consecutive pickles can be read.
pub fn parse(data: &[u8]) -> Result<(Value, usize)> {
    let mut machine = Machine::new(data);
    let root = machine.run()?;
    // Sharing lets a tiny pickle describe an enormous tree; cap the tree's size relative to
    // the input so that materialising it cannot exhaust memory.
    let mut budget = Budget {
        nodes: MAX_NODES,
        bytes: data.len().saturating_mul(16).saturating_add(1 << 20),
    };
    let value = machine.materialise(root, 0, &mut budget)?;
    Ok((value, machine.input.pos))
}

type Id = usize;

/// A value in the arena; containers refer to their members by index so that memoised
/// references observe later mutations.
enum Node {
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Call { callee: Id, args: Vec<Id> },
    Build { object: Id, state: Id },
    PersistentId(Id),
}

struct Budget {
    nodes: usize,
    bytes: usize,
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.data.len() - self.pos;
        if n > left {
            bail!("pickle is truncated: {what} needs {n} bytes, {left} left");
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32_le(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A length field, which may not exceed what is left of the input.
    fn len_u64(&mut self, what: &str) -> Result<usize> {
        let n = u64::from_le_bytes(self.array(what)?);
        usize::try_from(n).map_err(|_| anyhow!("pickle {what} length {n} is impossibly large"))
    }

    /// A newline-terminated argument of the text (protocol 0) opcodes, without the newline.
    fn line(&mut self, what: &str) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            bail!("pickle is truncated: {what} has no newline");
        };
        let text =
            std::str::from_utf8(&rest[..end]).map_err(|_| anyhow!("pickle {what} is not text"))?;
        self.pos += end + 1;
        Ok(text)
    }
}

struct Machine<'a> {
    input: Input<'a>,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            input: Input { data, pos: 0 },
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    /// Executes opcodes until STOP and returns the node it leaves on top.
    fn run(&mut self) -> Result<Id> {
        loop {
            let at = self.input.pos;
            let op = self
                .input
                .u8("opcode")
                .map_err(|_| anyhow!("pickle is truncated: it ends at byte {at} without STOP"))?;
            if op == b'.' {
                return self
                    .pop()
                    .map_err(|_| anyhow!("pickle STOP with an empty stack"));
            }
            self.step(op).map_err(|e| annotate(e, op, at))?;
        }
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            0x80 => self.proto(),
            0x95 => self.input.len_u64("FRAME").map(drop),
            b'(' => {
                self.marks.push(self.stack.len());
                Ok(())
            }
            b'0' => self.pop().map(drop),
            b'1' => self.pop_mark().map(drop),
            b'2' => self.top().and_then(|id| self.push(id)),
            b'p' | b'q' | b'r' | 0x94 => self.put(op),
            b'g' | b'h' | b'j' => self.get(op),
            b'c' | 0x93 => self.global(op),
            b'i' => self.inst(),
            b'R' | 0x81 => self.call(),
            b'b' => self.build(),
            b'P' => {
                let pid = self.input.line("PERSID")?.to_owned();
                let pid = self.leaf(Value::Str(pid))?;
                self.push_node(Node::PersistentId(pid))
            }
            b'Q' => {
                let pid = self.pop()?;
                self.push_node(Node::PersistentId(pid))
            }
            _ => self.container_op(op),
        }
    }

    fn container_op(&mut self, op: u8) -> Result<()> {
        match op {
            b'}' => self.push_node(Node::Dict(Vec::new())),
            b']' => self.push_node(Node::List(Vec::new())),
            b')' => self.push_node(Node::Tuple(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs(&items)?;
                self.push_node(Node::Dict(pairs))
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push_node(Node::List(items))
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push_node(Node::Tuple(items))
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let items = self.pop_n(n)?;
                self.push_node(Node::Tuple(items))
            }
            b'a' => {
                let item = self.pop()?;
                self.extend_list(vec![item])
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_list(items)
            }
            b's' => {
                let items = self.pop_n(2)?;
                self.set_items(&items)
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(&items)
            }
            _ => self.scalar_op(op),
        }
    }

    fn scalar_op(&mut self, op: u8) -> Result<()> {
        let value = match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i64::from(i32::from_le_bytes(self.input.array("BININT")?))),
            b'K' => Value::Int(i64::from(self.input.u8("BININT1")?)),
            b'M' => Value::Int(i64::from(u16::from_le_bytes(self.input.array("BININT2")?))),
            0x8a => {
                let n = usize::from(self.input.u8("LONG1")?);
                long(self.input.take(n, "LONG1")?)
            }
            0x8b => {
                let n = i32::from_le_bytes(self.input.array("LONG4")?);
                let n = usize::try_from(n).map_err(|_| anyhow!("negative LONG4 length"))?;
                long(self.input.take(n, "LONG4")?)
            }
            b'I' => text_int(self.input.line("INT")?)?,
            b'L' => text_int(self.input.line("LONG")?.trim_end_matches('L'))?,
            b'F' => {
                let text = self.input.line("FLOAT")?;
                Value::Float(
                    text.trim()
                        .parse()
                        .map_err(|_| anyhow!("bad FLOAT {text:?}"))?,
                )
            }
            b'G' => Value::Float(f64::from_be_bytes(self.input.array("BINFLOAT")?)),
            _ => self.string_op(op)?,
        };
        let id = self.leaf(value)?;
        self.push(id)
    }

    fn string_op(&mut self, op: u8) -> Result<Value> {
        let (len, what, text) = match op {
            b'X' => (
                self.input.u32_le("BINUNICODE")? as usize,
                "BINUNICODE",
                true,
            ),
            0x8c => (
                usize::from(self.input.u8("SHORT_BINUNICODE")?),
                "SHORT_BINUNICODE",
                true,
            ),
            0x8d => (self.input.len_u64("BINUNICODE8")?, "BINUNICODE8", true),
            // Python 2 `str`; torch loads them as UTF-8 text.
            b'T' => {
                let n = i32::from_le_bytes(self.input.array("BINSTRING")?);
                let n = usize::try_from(n).map_err(|_| anyhow!("negative BINSTRING length"))?;
                (n, "BINSTRING", true)
            }
            b'U' => (
                usize::from(self.input.u8("SHORT_BINSTRING")?),
                "SHORT_BINSTRING",
                true,
            ),
            b'B' => (self.input.u32_le("BINBYTES")? as usize, "BINBYTES", false),
            b'C' => (
                usize::from(self.input.u8("SHORT_BINBYTES")?),
                "SHORT_BINBYTES",
                false,
            ),
            0x8e => (self.input.len_u64("BINBYTES8")?, "BINBYTES8", false),
            0x96 => (self.input.len_u64("BYTEARRAY8")?, "BYTEARRAY8", false),
            _ => bail!("unsupported pickle opcode"),
        };
        let bytes = self.input.take(len, what)?;
        if !text {
            return Ok(Value::Bytes(bytes.to_vec()));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| anyhow!("{what} is not valid UTF-8"))?;
        Ok(Value::Str(s.to_owned()))
    }

    fn proto(&mut self) -> Result<()> {
        let version = self.input.u8("PROTO")?;
        if version > 5 {
            bail!("pickle protocol {version} is newer than 5");
        }
        Ok(())
    }

    fn put(&mut self, op: u8) -> Result<()> {
        let index = match op {
            b'p' => text_index(self.input.line("PUT")?)?,
            b'q' => u32::from(self.input.u8("BINPUT")?),
            b'r' => self.input.u32_le("LONG_BINPUT")?,
            _ => u32::try_from(self.memo.len()).map_err(|_| anyhow!("memo is full"))?,
        };
        if self.memo.len() >= MAX_NODES {
            bail!("pickle memo holds more than {MAX_NODES} entries");
        }
        let id = self.top()?;
        self.memo.insert(index, id);
        Ok(())
    }

    fn get(&mut self, op: u8) -> Result<()> {
        let index = match op {
            b'g' => text_index(self.input.line("GET")?)?,
            b'h' => u32::from(self.input.u8("BINGET")?),
            _ => self.input.u32_le("LONG_BINGET")?,
        };
        let id = *self
            .memo
            .get(&index)
            .ok_or_else(|| anyhow!("memo entry {index} was never stored"))?;
        self.push(id)
    }

    fn global(&mut self, op: u8) -> Result<()> {
        let (module, name) = if op == b'c' {
            let module = self.input.line("GLOBAL module")?.to_owned();
            (module, self.input.line("GLOBAL name")?.to_owned())
        } else {
            let name = self.pop_str("STACK_GLOBAL name")?;
            (self.pop_str("STACK_GLOBAL module")?, name)
        };
        if !is_allowed_global(&module, &name) {
            return Err(ForbiddenGlobal { module, name }.into());
        }
        let id = self.leaf(Value::Global { module, name })?;
        self.push(id)
    }

    /// INST instantiates a class named inline; nothing torch writes uses it, but a hostile
    /// pickle might, so report the name it asks for rather than a bare "unsupported".
    fn inst(&mut self) -> Result<()> {
        let module = self.input.line("INST module")?.to_owned();
        let name = self.input.line("INST name")?.to_owned();
        if !is_allowed_global(&module, &name) {
            return Err(ForbiddenGlobal { module, name }.into());
        }
        bail!("unsupported pickle opcode INST")
    }

    /// REDUCE and NEWOBJ: record the call instead of making it.
    fn call(&mut self) -> Result<()> {
        let args = self.pop()?;
        let callee = self.pop()?;
        let Node::Tuple(args) = &self.nodes[args] else {
            bail!("call arguments are not a tuple");
        };
        let args = args.clone();
        // `OrderedDict()` is the one constructor that SETITEMS later fills; make it a dict
        // so that the filling has somewhere to go.
        let is_ordered_dict = matches!(&self.nodes[callee],
            Node::Leaf(g) if g.is_global("collections", "OrderedDict"));
        if is_ordered_dict && args.is_empty() {
            return self.push_node(Node::Dict(Vec::new()));
        }
        self.push_node(Node::Call { callee, args })
    }

    /// BUILD mutates the object in place, so memoised references to it see the new state.
    fn build(&mut self) -> Result<()> {
        let state = self.pop()?;
        let object = self.top()?;
        let moved = std::mem::replace(&mut self.nodes[object], Node::List(Vec::new()));
        let inner = self.push_arena(moved)?;
        self.nodes[object] = Node::Build {
            object: inner,
            state,
        };
        Ok(())
    }

    /// The container a mutation applies to: BUILD wraps objects, so look through it.
    fn target(&self, mut id: Id) -> Id {
        // A Build's object is a node that `build` created for it and that nothing else refers
        // to, so the chain only leads to older such nodes and terminates.
        while let Node::Build { object, .. } = &self.nodes[id] {
            id = *object;
        }
        id
    }

    fn extend_list(&mut self, items: Vec<Id>) -> Result<()> {
        let target = self.target(self.top()?);
        match &mut self.nodes[target] {
            Node::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => bail!("APPEND to something that is not a list"),
        }
    }

    fn set_items(&mut self, items: &[Id]) -> Result<()> {
        let new = pairs(items)?;
        let target = self.target(self.top()?);
        match &mut self.nodes[target] {
            Node::Dict(entries) => {
                entries.extend(new);
                Ok(())
            }
            _ => bail!("SETITEM on something that is not a dict"),
        }
    }

    fn pop_str(&mut self, what: &str) -> Result<String> {
        let id = self.pop()?;
        match &self.nodes[id] {
            Node::Leaf(Value::Str(s)) => Ok(s.clone()),
            _ => bail!("{what} is not a string"),
        }
    }

    fn leaf(&mut self, value: Value) -> Result<Id> {
        self.push_arena(Node::Leaf(value))
    }

    fn push_arena(&mut self, node: Node) -> Result<Id> {
        if self.nodes.len() >= MAX_NODES {
            bail!("pickle describes more than {MAX_NODES} objects");
        }
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn push_node(&mut self, node: Node) -> Result<()> {
        let id = self.push_arena(node)?;
        self.push(id)
    }

    fn push(&mut self, id: Id) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            bail!("pickle stack grows beyond {MAX_STACK} entries");
        }
        self.stack.push(id);
        Ok(())
    }

    /// Pops one item; items below the innermost MARK are out of reach, as in CPython.
    fn pop(&mut self) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("pickle stack underflow");
        }
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("pickle stack underflow"))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Id>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            bail!("pickle stack underflow");
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| anyhow!("no MARK to pop to"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn top(&self) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => bail!("pickle stack underflow"),
        }
    }

    fn materialise(&self, id: Id, depth: usize, budget: &mut Budget) -> Result<Value> {
        if depth > MAX_DEPTH {
            bail!("pickle nests deeper than {MAX_DEPTH} levels (or contains itself)");
        }
        if budget.nodes == 0 {
            bail!("pickle expands to more than {MAX_NODES} objects");
        }
        budget.nodes -= 1;
        let all = |ids: &[Id], budget: &mut Budget| -> Result<Vec<Value>> {
            ids.iter()
                .map(|&i| self.materialise(i, depth + 1, budget))
                .collect()
        };
        let boxed = |i: Id, budget: &mut Budget| -> Result<Box<Value>> {
            Ok(Box::new(self.materialise(i, depth + 1, budget)?))
        };
        Ok(match &self.nodes[id] {
            Node::Leaf(v) => {
                let size = match v {
                    Value::Str(s) => s.len(),
                    Value::Bytes(b) | Value::BigInt(b) => b.len(),
                    _ => 0,
                };
                budget.bytes = budget
                    .bytes
                    .checked_sub(size)
                    .ok_or_else(|| anyhow!("pickle expands to too many bytes"))?;
                v.clone()
            }
            Node::List(ids) => Value::List(all(ids, budget)?),
            Node::Tuple(ids) => Value::Tuple(all(ids, budget)?),
            Node::Dict(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for &(k, v) in entries {
                    out.push((
                        self.materialise(k, depth + 1, budget)?,
                        self.materialise(v, depth + 1, budget)?,
                    ));
                }
                Value::Dict(out)
            }
            Node::Call { callee, args } => Value::Call {
                callee: boxed(*callee, budget)?,
                args: all(args, budget)?,
            },
            Node::Build { object, state } => Value::Build {
                object: boxed(*object, budget)?,
                state: boxed(*state, budget)?,
            },
            Node::PersistentId(pid) => Value::PersistentId(boxed(*pid, budget)?),
        })
    }
}

fn pairs(items: &[Id]) -> Result<Vec<(Id, Id)>> {
    if !items.len().is_multiple_of(2) {
        bail!("odd number of items for a dict");
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

/// A LONG1/LONG4 payload: little-endian two's complement, empty meaning zero.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(bytes.to_vec());
    }
    let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut buf = [fill; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

/// INT/LONG text arguments; protocol 0 spells booleans as `I01`/`I00`.
fn text_int(text: &str) -> Result<Value> {
    match text {
        "01" => Ok(Value::Bool(true)),
        "00" => Ok(Value::Bool(false)),
        _ => text
            .trim()
            .parse()
            .map(Value::Int)
            .map_err(|_| anyhow!("integer {text:?} is not a 64-bit integer")),
    }
}

fn text_index(text: &str) -> Result<u32> {
    text.trim()
        .parse()
        .map_err(|_| anyhow!("memo index {text:?} is not a number"))
}

fn annotate(e: anyhow::Error, op: u8, at: usize) -> anyhow::Error {
    if e.is::<ForbiddenGlobal>() {
        return e;
    }
    anyhow!("{e} (in {} at byte {at})", opcode_name(op))
}

fn opcode_name(op: u8) -> String {
    const NAMES: &[(u8, &str)] = &[
        (b'(', "MARK"),
        (b'.', "STOP"),
        (b'0', "POP"),
        (b'1', "POP_MARK"),
        (b'2', "DUP"),
        (b'F', "FLOAT"),
        (b'I', "INT"),
        (b'J', "BININT"),
        (b'K', "BININT1"),
        (b'L', "LONG"),
        (b'M', "BININT2"),
        (b'N', "NONE"),
        (b'P', "PERSID"),
        (b'Q', "BINPERSID"),
        (b'R', "REDUCE"),
        (b'S', "STRING"),
        (b'T', "BINSTRING"),
        (b'U', "SHORT_BINSTRING"),
        (b'V', "UNICODE"),
        (b'X', "BINUNICODE"),
        (b'a', "APPEND"),
        (b'b', "BUILD"),
        (b'c', "GLOBAL"),
        (b'd', "DICT"),
        (b'}', "EMPTY_DICT"),
        (b'e', "APPENDS"),
        (b'g', "GET"),
        (b'h', "BINGET"),
        (b'i', "INST"),
        (b'j', "LONG_BINGET"),
        (b'l', "LIST"),
        (b']', "EMPTY_LIST"),
        (b'o', "OBJ"),
        (b'p', "PUT"),
        (b'q', "BINPUT"),
        (b'r', "LONG_BINPUT"),
        (b's', "SETITEM"),
        (b't', "TUPLE"),
        (b')', "EMPTY_TUPLE"),
        (b'u', "SETITEMS"),
        (b'G', "BINFLOAT"),
        (b'B', "BINBYTES"),
        (b'C', "SHORT_BINBYTES"),
        (0x80, "PROTO"),
        (0x81, "NEWOBJ"),
        (0x82, "EXT1"),
        (0x83, "EXT2"),
        (0x84, "EXT4"),
        (0x85, "TUPLE1"),
        (0x86, "TUPLE2"),
        (0x87, "TUPLE3"),
        (0x88, "NEWTRUE"),
        (0x89, "NEWFALSE"),
        (0x8a, "LONG1"),
        (0x8b, "LONG4"),
        (0x8c, "SHORT_BINUNICODE"),
        (0x8d, "BINUNICODE8"),
        (0x8e, "BINBYTES8"),
        (0x8f, "EMPTY_SET"),
        (0x90, "ADDITEMS"),
        (0x91, "FROZENSET"),
        (0x92, "NEWOBJ_EX"),
        (0x93, "STACK_GLOBAL"),
        (0x94, "MEMOIZE"),
        (0x95, "FRAME"),
        (0x96, "BYTEARRAY8"),
        (0x97, "NEXT_BUFFER"),
        (0x98, "READONLY_BUFFER"),
    ];
    match NAMES.iter().find(|&&(code, _)| code == op) {
        Some((_, name)) => name.to_string(),
        None => format!("0x{op:02x} (not a pickle opcode)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(data: &[u8]) -> Result<Value> {
        let (value, used) = parse(data)?;
        assert_eq!(used, data.len());
        Ok(value)
    }

    #[test]
    fn scalars_and_containers() {
        // pickle.dumps({"a": [1, -2, 300, 70000], "b": (None, True, 1.5, b"x")}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00eX\x01\x00\x00\x00bq\x03(N\x88G?\xf8\x00\x00\x00\x00\x00\x00C\x01xtq\x04u.";
        let value = parse_all(data).unwrap();
        let expected = Value::Dict(vec![
            (
                Value::Str("a".into()),
                Value::List(vec![
                    Value::Int(1),
                    Value::Int(-2),
                    Value::Int(300),
                    Value::Int(70000),
                ]),
            ),
            (
                Value::Str("b".into()),
                Value::Tuple(vec![
                    Value::None,
                    Value::Bool(true),
                    Value::Float(1.5),
                    Value::Bytes(b"x".to_vec()),
                ]),
            ),
        ]);
        assert_eq!(value, expected);
    }

    #[test]
    fn memoised_dict_sees_later_items() {
        // EMPTY_DICT, BINPUT 1, BINGET 1, TUPLE2 makes (d, d) while d is still empty; then
        // BINGET 1, 'k', 7, SETITEM fills d, POP drops it, and STOP returns the tuple, whose
        // members must both show the item.
        let data = b"\x80\x02}q\x01h\x01\x86q\x02h\x01X\x01\x00\x00\x00kK\x07s0.";
        let value = parse_all(data).unwrap();
        let d = Value::Dict(vec![(Value::Str("k".into()), Value::Int(7))]);
        assert_eq!(value, Value::Tuple(vec![d.clone(), d]));
    }

    #[test]
    fn long1_and_big_ints() {
        // LONG1 with 2 bytes (-1 → 0xffff), and the 10-byte torch magic number.
        let data = b"\x80\x02\x8a\x02\xff\xff.";
        assert_eq!(parse_all(data).unwrap(), Value::Int(-1));
        let magic = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        let Value::BigInt(bytes) = parse_all(magic).unwrap() else {
            panic!("expected a big int");
        };
        assert_eq!(bytes, b"l\xfc\x9cF\xf9 j\xa8P\x19");
    }

    #[test]
    fn ordered_dict_with_metadata() {
        // OrderedDict() filled by SETITEMS, then BUILD with {'_metadata': {}}.
        let data = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00kK\x01s}X\x09\x00\x00\x00_metadata}sb.";
        let value = parse_all(data).unwrap();
        let Value::Build { object, .. } = value else {
            panic!("expected BUILD, got {value:?}");
        };
        assert_eq!(
            *object,
            Value::Dict(vec![(Value::Str("k".into()), Value::Int(1))])
        );
    }

    #[test]
    fn stack_global_is_checked() {
        // protocol 4: SHORT_BINUNICODE 'os', SHORT_BINUNICODE 'system', STACK_GLOBAL
        let data = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02hi\x85R.";
        let err = parse(data).unwrap_err();
        let forbidden = err.downcast_ref::<ForbiddenGlobal>().unwrap();
        assert_eq!(forbidden.module, "os");
        assert_eq!(forbidden.name, "system");
        assert!(err.to_string().contains("os.system"));
    }

    #[test]
    fn inst_is_checked() {
        let err = parse(b"(ios\nsystem\n.").unwrap_err();
        assert!(err.to_string().contains("os.system"), "{err}");
    }

    #[test]
    fn self_reference_is_an_error() {
        // l = []; l.append(l)
        let data = b"\x80\x02]q\x00h\x00a.";
        let err = parse(data).unwrap_err();
        assert!(err.to_string().contains("deeper"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_inputs() {
        for data in [
            &b""[..],
            b"\x80",
            b"\x80\x02",
            b"\x80\x02X\xff\xff\xff\xffab",
            b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x80\x02h\x05.",
            b"\x80\x02a.",
            b"\x80\x02(K\x01u.",
            b"\x80\x09.",
            b"\xff\xff\xff",
        ] {
            assert!(parse(data).is_err(), "{data:?} parsed");
        }
    }

    /// Byte flips in the legacy fixture, whose pickles this parses one after another (in zip
    /// files a checksum stops most damage before the parser sees it).
    #[test]
    fn damaged_torch_pickles_never_panic() {
        use rand::{Rng, SeedableRng};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/torch/state_dict_legacy.pth");
        let original = std::fs::read(path).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..2000 {
            let mut data = original.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..2500.min(data.len()));
                data[at] = rng.gen();
            }
            let mut rest = &data[..];
            for _ in 0..5 {
                match parse(rest) {
                    Ok((_, used)) => rest = &rest[used..],
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn exponential_sharing_is_capped() {
        // x = []; repeat 40 times: x = (x, x). The graph has 41 nodes, the tree 2^41.
        let mut data = b"\x80\x02]".to_vec();
        for _ in 0..40 {
            data.extend_from_slice(b"q\x00h\x00\x86");
        }
        data.push(b'.');
        let err = parse(&data).unwrap_err();
        assert!(err.to_string().contains("expands"), "{err}");
    }
}
