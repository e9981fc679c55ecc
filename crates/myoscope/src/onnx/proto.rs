//! The ONNX protobuf messages we write, encoded by hand in the protobuf wire format.
//!
//! Only what an inference graph needs: `ModelProto`, `GraphProto`, `NodeProto`,
//! `AttributeProto`, `TensorProto`, `ValueInfoProto` (with its `TypeProto` and
//! `TensorShapeProto`). Field numbers are those of `onnx/onnx.proto` (proto2 syntax, so
//! repeated numbers are written unpacked, one tag per element, as the reference serializer
//! does). Fields are written in field-number order, so our bytes equal those of the Python
//! `onnx.helper` for the same model (`tests/fixtures/onnx_tiny.onnx`, made by
//! `scripts/onnx_oracle.py`).
//!
//! Wire format: every field is a key `(field_number << 3) | wire_type` as a varint, then its
//! value: a varint (type 0) for integers and enums, 4 little-endian bytes (type 5) for a
//! float, or a varint length followed by the bytes (type 2) for strings, bytes and nested
//! messages.

const VARINT: u32 = 0;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

/// Appends one protobuf field at a time to a byte buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Base-128 varint: 7 bits per byte, least significant group first, high bit = more.
    /// Negative numbers are their 64-bit two's complement (always 10 bytes), as protobuf
    /// writes `int64` and `int32`.
    pub fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        self.raw_varint(u64::from(field << 3 | wire_type));
    }

    pub fn int(&mut self, field: u32, v: i64) {
        self.key(field, VARINT);
        self.raw_varint(v as u64);
    }

    pub fn float(&mut self, field: u32, v: f32) {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, LENGTH_DELIMITED);
        self.raw_varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub fn string(&mut self, field: u32, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    /// A nested message: encoded on its own first, since its length prefixes it.
    pub fn message(&mut self, field: u32, m: &impl Message) {
        let mut inner = Encoder::new();
        m.encode(&mut inner);
        self.bytes(field, &inner.buf);
    }

    /// A string field that proto2 leaves absent when empty (as the reference does).
    fn opt_string(&mut self, field: u32, v: &str) {
        if !v.is_empty() {
            self.string(field, v);
        }
    }
}

/// A message that can write its fields.
pub trait Message {
    fn encode(&self, e: &mut Encoder);

    fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode(&mut e);
        e.buf
    }
}

/// `TensorProto.DataType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum DataType {
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
}

impl DataType {
    pub fn size(self) -> usize {
        match self {
            DataType::Float | DataType::Int32 => 4,
            DataType::Uint8 | DataType::Int8 => 1,
            DataType::Int64 => 8,
        }
    }
}

/// A constant tensor (an initializer or a tensor attribute), its data little-endian in
/// `raw_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorProto {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: DataType,
    pub raw_data: Vec<u8>,
}

impl TensorProto {
    /// The values of a float initializer (the graph rewrites read and rescale weights).
    pub fn floats(&self) -> anyhow::Result<Vec<f32>> {
        if self.data_type != DataType::Float {
            anyhow::bail!("initializer '{}' is not float", self.name);
        }
        Ok(self
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Replaces a float initializer's values (same shape).
    pub fn set_floats(&mut self, data: &[f32]) {
        self.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    }

    pub fn float(name: &str, dims: &[i64], data: &[f32]) -> Self {
        Self::from_le(
            name,
            dims,
            DataType::Float,
            data.iter().flat_map(|v| v.to_le_bytes()),
        )
    }

    pub fn int64(name: &str, dims: &[i64], data: &[i64]) -> Self {
        Self::from_le(
            name,
            dims,
            DataType::Int64,
            data.iter().flat_map(|v| v.to_le_bytes()),
        )
    }

    pub fn int8(name: &str, dims: &[i64], data: &[i8]) -> Self {
        Self::from_le(name, dims, DataType::Int8, data.iter().map(|&v| v as u8))
    }

    pub fn uint8(name: &str, dims: &[i64], data: &[u8]) -> Self {
        Self::from_le(name, dims, DataType::Uint8, data.iter().copied())
    }

    pub fn int32(name: &str, dims: &[i64], data: &[i32]) -> Self {
        Self::from_le(
            name,
            dims,
            DataType::Int32,
            data.iter().flat_map(|v| v.to_le_bytes()),
        )
    }

    fn from_le(
        name: &str,
        dims: &[i64],
        data_type: DataType,
        bytes: impl Iterator<Item = u8>,
    ) -> Self {
        Self {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type,
            raw_data: bytes.collect(),
        }
    }

    pub fn element_count(&self) -> i64 {
        self.dims.iter().product()
    }
}

impl Message for TensorProto {
    fn encode(&self, e: &mut Encoder) {
        for &d in &self.dims {
            e.int(1, d);
        }
        e.int(2, self.data_type as i64);
        e.opt_string(8, &self.name);
        e.bytes(9, &self.raw_data);
    }
}

/// `AttributeProto` with the value kinds our operators use.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(String),
    Tensor(TensorProto),
    Ints(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
}

impl Attribute {
    pub fn int(name: &str, v: i64) -> Self {
        Self {
            name: name.into(),
            value: AttrValue::Int(v),
        }
    }

    pub fn ints(name: &str, v: &[i64]) -> Self {
        Self {
            name: name.into(),
            value: AttrValue::Ints(v.to_vec()),
        }
    }

    pub fn float(name: &str, v: f32) -> Self {
        Self {
            name: name.into(),
            value: AttrValue::Float(v),
        }
    }

    pub fn string(name: &str, v: &str) -> Self {
        Self {
            name: name.into(),
            value: AttrValue::String(v.into()),
        }
    }
}

impl Message for Attribute {
    fn encode(&self, e: &mut Encoder) {
        e.string(1, &self.name);
        // `AttributeProto.AttributeType`: FLOAT 1, INT 2, STRING 3, TENSOR 4, INTS 7.
        let kind = match &self.value {
            AttrValue::Float(v) => {
                e.float(2, *v);
                1
            }
            AttrValue::Int(v) => {
                e.int(3, *v);
                2
            }
            AttrValue::String(v) => {
                e.string(4, v);
                3
            }
            AttrValue::Tensor(t) => {
                e.message(5, t);
                4
            }
            AttrValue::Ints(v) => {
                for &x in v {
                    e.int(8, x);
                }
                7
            }
        };
        e.int(20, kind);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub name: String,
    pub op_type: String,
    pub attributes: Vec<Attribute>,
    /// Empty for the default ONNX domain.
    pub domain: String,
}

impl Node {
    fn attribute(&self, name: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    pub fn int_attribute(&self, name: &str) -> Option<i64> {
        match self.attribute(name)? {
            AttrValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn float_attribute(&self, name: &str) -> Option<f32> {
        match self.attribute(name)? {
            AttrValue::Float(v) => Some(*v),
            _ => None,
        }
    }
}

impl Message for Node {
    fn encode(&self, e: &mut Encoder) {
        for i in &self.inputs {
            e.string(1, i);
        }
        for o in &self.outputs {
            e.string(2, o);
        }
        e.opt_string(3, &self.name);
        e.string(4, &self.op_type);
        for a in &self.attributes {
            e.message(5, a);
        }
        e.opt_string(7, &self.domain);
    }
}

/// One axis of a tensor type: a fixed size or a named symbolic one (the batch).
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

struct DimProto<'a>(&'a Dim);

impl Message for DimProto<'_> {
    fn encode(&self, e: &mut Encoder) {
        match self.0 {
            Dim::Fixed(v) => e.int(1, *v),
            Dim::Symbolic(s) => e.string(2, s),
        }
    }
}

struct ShapeProto<'a>(&'a [Dim]);

impl Message for ShapeProto<'_> {
    fn encode(&self, e: &mut Encoder) {
        for d in self.0 {
            e.message(1, &DimProto(d));
        }
    }
}

struct TensorTypeProto<'a>(DataType, &'a [Dim]);

impl Message for TensorTypeProto<'_> {
    fn encode(&self, e: &mut Encoder) {
        e.int(1, self.0 as i64);
        // No dimensions: the shape is left unknown (never a scalar in our graphs).
        if !self.1.is_empty() {
            e.message(2, &ShapeProto(self.1));
        }
    }
}

struct TypeProto<'a>(DataType, &'a [Dim]);

impl Message for TypeProto<'_> {
    fn encode(&self, e: &mut Encoder) {
        e.message(1, &TensorTypeProto(self.0, self.1));
    }
}

/// A graph input or output: name, element type and shape (empty: unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: DataType,
    pub shape: Vec<Dim>,
}

impl Message for ValueInfo {
    fn encode(&self, e: &mut Encoder) {
        e.string(1, &self.name);
        e.message(2, &TypeProto(self.elem_type, &self.shape));
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub name: String,
    pub initializers: Vec<TensorProto>,
    pub doc_string: String,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

impl Graph {
    /// For each tensor name, the indices of the nodes that read it.
    pub fn consumers(&self) -> std::collections::HashMap<&str, Vec<usize>> {
        let mut readers: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        for (i, n) in self.nodes.iter().enumerate() {
            for x in &n.inputs {
                readers.entry(x.as_str()).or_default().push(i);
            }
        }
        readers
    }
}

impl Message for Graph {
    fn encode(&self, e: &mut Encoder) {
        for n in &self.nodes {
            e.message(1, n);
        }
        e.string(2, &self.name);
        for t in &self.initializers {
            e.message(5, t);
        }
        e.opt_string(10, &self.doc_string);
        for i in &self.inputs {
            e.message(11, i);
        }
        for o in &self.outputs {
            e.message(12, o);
        }
    }
}

struct OpsetId(i64);

impl Message for OpsetId {
    fn encode(&self, e: &mut Encoder) {
        // The default domain "", written explicitly as `onnx.helper.make_opsetid` does.
        e.string(1, "");
        e.int(2, self.0);
    }
}

struct MetadataEntry<'a>(&'a str, &'a str);

impl Message for MetadataEntry<'_> {
    fn encode(&self, e: &mut Encoder) {
        e.string(1, self.0);
        e.string(2, self.1);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub doc_string: String,
    pub graph: Graph,
    pub opset: i64,
    pub metadata: Vec<(String, String)>,
}

impl Message for Model {
    fn encode(&self, e: &mut Encoder) {
        e.int(1, self.ir_version);
        e.opt_string(2, &self.producer_name);
        e.opt_string(3, &self.producer_version);
        e.opt_string(6, &self.doc_string);
        e.message(7, &self.graph);
        e.message(8, &OpsetId(self.opset));
        for (k, v) in &self.metadata {
            e.message(14, &MetadataEntry(k, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut e = Encoder::new();
        e.raw_varint(v);
        e.buf
    }

    #[test]
    fn varints_are_base_128_little_endian() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(1), [1]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        // The protobuf documentation's example.
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX).len(), 10);
    }

    #[test]
    fn negative_ints_are_ten_byte_twos_complement() {
        let mut e = Encoder::new();
        e.int(1, -1);
        assert_eq!(
            e.buf,
            [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn keys_carry_field_number_and_wire_type() {
        let mut e = Encoder::new();
        e.int(1, 150);
        assert_eq!(e.buf, [0x08, 0x96, 0x01]);
        let mut e = Encoder::new();
        e.string(2, "testing");
        assert_eq!(
            e.buf,
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        let mut e = Encoder::new();
        e.float(2, 1.0);
        assert_eq!(e.buf, [0x15, 0x00, 0x00, 0x80, 0x3f]);
        // Field 20 needs a two-byte key: (20 << 3) | 0 = 160.
        let mut e = Encoder::new();
        e.int(20, 7);
        assert_eq!(e.buf, [0xa0, 0x01, 0x07]);
    }

    #[test]
    fn nested_messages_are_length_prefixed() {
        let t = TensorProto::int64("s", &[2], &[-1, 3]);
        let mut e = Encoder::new();
        e.message(5, &t);
        let inner = t.to_bytes();
        assert_eq!(e.buf[0], 5 << 3 | 2);
        assert_eq!(e.buf[1] as usize, inner.len());
        assert_eq!(&e.buf[2..], &inner[..]);
        // dims=2, data_type=INT64, name "s", 16 raw bytes.
        assert_eq!(&inner[..6], &[0x08, 0x02, 0x10, 0x07, 0x42, 0x01]);
        assert_eq!(inner[6..9], [b's', 0x4a, 16]);
        assert_eq!(&inner[9..17], &(-1i64).to_le_bytes());
    }

    #[test]
    fn ints_attribute_is_unpacked_with_its_type() {
        let a = Attribute::ints("pads", &[1, 2]);
        assert_eq!(
            a.to_bytes(),
            [0x0a, 4, b'p', b'a', b'd', b's', 0x40, 1, 0x40, 2, 0xa0, 0x01, 7]
        );
    }

    /// The same model as `scripts/onnx_oracle.py` builds with `onnx.helper`: identical bytes.
    #[test]
    fn matches_the_onnx_reference_serializer_byte_for_byte() {
        let expected = include_bytes!("../../tests/fixtures/onnx_tiny.onnx");
        let w: Vec<f32> = (0..18 * 3).map(|i| i as f32 * 0.1 - 2.0).collect();
        let node = |op: &str, ins: &[&str], out: &str, name: &str, attributes| Node {
            inputs: ins.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.into()],
            name: name.into(),
            op_type: op.into(),
            attributes,
            domain: String::new(),
        };
        let batch = |rest: &[i64]| {
            let mut d = vec![Dim::Symbolic("batch".into())];
            d.extend(rest.iter().map(|&v| Dim::Fixed(v)));
            d
        };
        let model = Model {
            ir_version: 8,
            producer_name: "myoscope".into(),
            producer_version: "0.1.0".into(),
            doc_string: String::new(),
            graph: Graph {
                nodes: vec![
                    node(
                        "Conv",
                        &["x", "w"],
                        "y",
                        "conv",
                        vec![
                            Attribute::int("group", 1),
                            Attribute::ints("kernel_shape", &[3, 3]),
                            Attribute::ints("pads", &[1, 1, 1, 1]),
                            Attribute::ints("strides", &[1, 1]),
                        ],
                    ),
                    node(
                        "LeakyRelu",
                        &["y"],
                        "r",
                        "act",
                        vec![Attribute::float("alpha", 0.1)],
                    ),
                    node("Reshape", &["r", "shape"], "flat", "flatten", vec![]),
                    node(
                        "Softmax",
                        &["flat"],
                        "p",
                        "softmax",
                        vec![Attribute::int("axis", -1)],
                    ),
                ],
                name: "tiny".into(),
                initializers: vec![
                    TensorProto::float("w", &[3, 2, 3, 3], &w),
                    TensorProto::int64("shape", &[2], &[-1, 48]),
                ],
                doc_string: "a tiny test model".into(),
                inputs: vec![ValueInfo {
                    name: "x".into(),
                    elem_type: DataType::Float,
                    shape: batch(&[2, 4, 4]),
                }],
                outputs: vec![ValueInfo {
                    name: "p".into(),
                    elem_type: DataType::Float,
                    shape: batch(&[48]),
                }],
            },
            opset: 17,
            metadata: vec![("classes".into(), "a\nb".into())],
        };
        assert_eq!(model.to_bytes(), expected.to_vec());
    }
}
