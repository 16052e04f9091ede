//! The tensors of a TorchScript archive (`torch.jit.save`; OpenAI's CLIP
//! releases such as `RN50.pt`), read without executing any TorchScript.
//!
//! The archive is a zip: `<name>/data.pkl` pickles the module tree (each
//! module an object whose state is a dict of attributes: submodules,
//! tensors, flags), tensors point at storages in `<name>/data/<key>`, and
//! `<name>/code/` holds each module class's declaration, whose
//! `__parameters__` and `__buffers__` lists say which tensor attributes
//! belong to `state_dict()`. The result is the names and tensors
//! `torch.jit.load(path).state_dict()` gives.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};
use std::path::Path;

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{Device, Tensor};

type Result<T> = std::result::Result<T, String>;

/// Whether a zip checkpoint is a TorchScript archive (it has code or
/// constants, which `torch.save` archives do not).
pub fn is_torchscript(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let Ok(zip) = zip::ZipArchive::new(std::io::BufReader::new(file)) else { return false };
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    names.iter().any(|n| {
        let inner = n.split_once('/').map(|(_, rest)| rest).unwrap_or(n);
        inner.starts_with("code/") || inner == "constants.pkl"
    })
}

/// Every parameter and buffer, under its `state_dict()` name, on the CPU.
pub fn read_torchscript(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| format!("not a zip archive: {e}"))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let data_pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or("the archive has no data.pkl")?
        .clone();
    let prefix = data_pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    let declared = declarations(&mut zip, &names, &prefix);

    let mut pickle = Vec::new();
    zip.by_name(&data_pkl).map_err(|e| e.to_string())?.read_to_end(&mut pickle).map_err(|e| e.to_string())?;
    let mut stack = Stack::empty();
    stack.read_loop(&mut std::io::BufReader::new(&pickle[..])).map_err(|e| format!("data.pkl: {e}"))?;
    let root = stack.finalize().map_err(|e| format!("data.pkl: {e}"))?;

    let mut infos = Vec::new();
    walk(root, "", &declared, &prefix, &mut infos)?;
    if infos.is_empty() {
        return Err("the TorchScript archive holds no parameters".into());
    }
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(infos.len());
    for info in infos {
        let tensor = read_tensor(&mut zip, &info, &mut storages)?;
        tensors.push((info.name, tensor));
    }
    Ok(tensors)
}

/// Which attributes of each class are parameters or buffers, from the
/// class declarations in `code/` (`module.path.Class` -> names).
fn declarations<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, names: &[String], prefix: &str) -> HashMap<String, HashSet<String>> {
    let mut out = HashMap::new();
    let code = format!("{prefix}code/");
    for name in names.iter().filter(|n| n.starts_with(&code) && n.ends_with(".py")) {
        let module = name[code.len()..name.len() - 3].replace('/', ".");
        let mut text = String::new();
        if zip.by_name(name).ok().and_then(|mut f| f.read_to_string(&mut text).ok()).is_none() {
            continue;
        }
        let mut class: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("class ") {
                let cls = rest.split(['(', ':']).next().unwrap_or("").trim().to_string();
                class = Some(format!("{module}.{cls}"));
                out.entry(format!("{module}.{cls}")).or_insert_with(HashSet::new);
                continue;
            }
            let trimmed = line.trim_start();
            for key in ["__parameters__", "__buffers__"] {
                if let (Some(cls), Some(list)) = (&class, trimmed.strip_prefix(key)) {
                    let entry = out.entry(cls.clone()).or_insert_with(HashSet::new);
                    entry.extend(list.split('"').skip(1).step_by(2).map(String::from));
                }
            }
        }
    }
    out
}

/// A module object: `Build { Reduce { Class }, Dict(attributes) }` ->
/// (`module.path.Class`, attributes).
fn as_module(obj: Object) -> Option<(String, Vec<(Object, Object)>)> {
    let Object::Build { callable, args } = obj else { return None };
    let (Object::Reduce { callable, .. }, Object::Dict(attrs)) = (*callable, *args) else { return None };
    let Object::Class { module_name, class_name } = *callable else { return None };
    module_name.starts_with("__torch__").then(|| (format!("{module_name}.{class_name}"), attrs))
}

fn walk(obj: Object, prefix: &str, declared: &HashMap<String, HashSet<String>>, archive: &str, out: &mut Vec<TensorInfo>) -> Result<()> {
    let Some((class, attrs)) = as_module(obj) else { return Ok(()) };
    let state = declared.get(&class);
    for (key, value) in attrs {
        let Object::Unicode(name) = key else { continue };
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let is_tensor = matches!(&value, Object::Reduce { .. });
        if is_tensor {
            // Without the class's declaration every tensor attribute is kept.
            if state.is_some_and(|s| !s.contains(&name)) {
                continue;
            }
            let dir = std::path::PathBuf::from(format!("{archive}data"));
            match value.into_tensor_info(Object::Unicode(full.clone()), &dir) {
                Ok(Some(info)) => out.push(info),
                Ok(None) => {}
                Err(e) => return Err(format!("{full}: {e}")),
            }
        } else {
            walk(value, &full, declared, archive, out)?;
        }
    }
    Ok(())
}

/// The tensor `info` describes, its storage read from the archive once
/// (tensors may share one). The storage's size is checked against what the
/// pickle claims before anything is allocated from either.
fn read_tensor<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, info: &TensorInfo, storages: &mut HashMap<String, Vec<u8>>) -> Result<Tensor> {
    if !storages.contains_key(&info.path) {
        let mut entry = zip.by_name(&info.path).map_err(|e| format!("{}: storage {}: {e}", info.name, info.path))?;
        let claimed = info
            .storage_size
            .checked_mul(info.dtype.size_in_bytes())
            .ok_or_else(|| format!("{}: storage {} claims an impossible size", info.name, info.path))?;
        if entry.size() != claimed as u64 {
            return Err(format!(
                "{}: storage {} holds {} bytes, its tensors claim {claimed}",
                info.name,
                info.path,
                entry.size()
            ));
        }
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(claimed).map_err(|_| format!("{}: storage {} ({claimed} bytes) does not fit in memory", info.name, info.path))?;
        (&mut entry).take(claimed as u64).read_to_end(&mut bytes).map_err(|e| format!("{}: storage {}: {e}", info.name, info.path))?;
        if bytes.len() != claimed {
            return Err(format!("{}: storage {} is truncated", info.name, info.path));
        }
        storages.insert(info.path.clone(), bytes);
    }
    materialise(info, &storages[&info.path])
}

/// How many times a view may repeat its storage's bytes (stride 0, as
/// `expand` makes): generous for real checkpoints, and a bound on what a
/// few bytes of a hostile file can make this process allocate.
const MAX_VIEW_REPEAT: usize = 16;

/// The tensor a (possibly strided) view of a storage describes, copied out.
/// Every element the view reaches is checked to lie inside the storage, and
/// the copy's size is bounded, before anything is allocated.
fn materialise(info: &TensorInfo, storage: &[u8]) -> Result<Tensor> {
    let elem = info.dtype.size_in_bytes();
    let dims = info.layout.dims().to_vec();
    let strides = info.layout.stride().to_vec();
    let offset_bytes = info.layout.start_offset();
    let bad = |what: &str| format!("{}: {what} (shape {dims:?}, strides {strides:?}, storage {} bytes)", info.name, storage.len());
    if elem == 0 || offset_bytes % elem != 0 || strides.len() != dims.len() {
        return Err(bad("malformed tensor layout"));
    }
    let start = offset_bytes / elem;
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| bad("the shape overflows"))?;
    let bytes_wanted = count.checked_mul(elem).ok_or_else(|| bad("the shape overflows"))?;
    if count == 0 {
        return Tensor::from_raw_buffer(&[], info.dtype, &dims, &Device::Cpu).map_err(|e| format!("{}: {e}", info.name));
    }
    // The farthest element the view reaches, in elements of the storage.
    let last = dims
        .iter()
        .zip(&strides)
        .try_fold(start, |acc, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x)))
        .ok_or_else(|| bad("the view overflows"))?;
    let end_bytes = last.checked_add(1).and_then(|n| n.checked_mul(elem)).ok_or_else(|| bad("the view overflows"))?;
    if end_bytes > storage.len() {
        return Err(bad("the view reaches past its storage"));
    }
    if info.layout.is_contiguous() {
        let chunk = &storage[offset_bytes..offset_bytes + bytes_wanted];
        return Tensor::from_raw_buffer(chunk, info.dtype, &dims, &Device::Cpu).map_err(|e| format!("{}: {e}", info.name));
    }
    if bytes_wanted > storage.len().saturating_mul(MAX_VIEW_REPEAT).max(1 << 20) {
        return Err(bad("the view repeats its storage more than a checkpoint would"));
    }
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(bytes_wanted).map_err(|_| bad("the tensor does not fit in memory"))?;
    let mut index = vec![0usize; dims.len()];
    for _ in 0..count {
        // In bounds: every index is below its dim, so the offset is <= `last`.
        let at = (start + index.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()) * elem;
        bytes.extend_from_slice(&storage[at..at + elem]);
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Tensor::from_raw_buffer(&bytes, info.dtype, &dims, &Device::Cpu).map_err(|e| format!("{}: {e}", info.name))
}

/// The tensors of a `torch.save` zip archive (PyTorch >= 1.6), read here
/// rather than by candle's reader, which allocates what a tensor's header
/// claims before checking it against the file. The archive is read at
/// offset 0: the zip crate's guess of where an archive starts is wrong for
/// archives with zip64 records whose first central directory entry is
/// exactly 76 bytes long (an inner folder name of 21 characters, as
/// `torch.save` names it after the file: `blip2_pretrained_vitL.pth`).
/// `key` picks an entry of a dict checkpoint (`model`).
pub fn read_torch_save(path: &Path, key: Option<&str>) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let config = zip::read::Config { archive_offset: zip::read::ArchiveOffset::Known(0) };
    let mut zip = zip::ZipArchive::with_config(config, std::io::BufReader::new(file)).map_err(|e| format!("not a zip archive: {e}"))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let data_pkl = names.iter().filter(|n| n.ends_with("data.pkl")).min_by_key(|n| n.len()).ok_or("the archive has no data.pkl")?.clone();
    let dir = std::path::PathBuf::from(data_pkl.strip_suffix(".pkl").unwrap_or("data"));
    let mut pickle = Vec::new();
    zip.by_name(&data_pkl).map_err(|e| e.to_string())?.read_to_end(&mut pickle).map_err(|e| e.to_string())?;
    let mut stack = Stack::empty();
    stack.read_loop(&mut std::io::BufReader::new(&pickle[..])).map_err(|e| format!("data.pkl: {e}"))?;
    let mut obj = stack.finalize().map_err(|e| format!("data.pkl: {e}"))?;
    if let Some(key) = key {
        let Object::Dict(entries) = obj else { return Err(format!("key {key} not found")) };
        obj = entries.into_iter().find(|(k, _)| *k == Object::Unicode(key.to_owned())).map(|(_, v)| v).ok_or_else(|| format!("key {key} not found"))?;
    }
    let Object::Dict(entries) = obj else { return Ok(Vec::new()) };
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::new();
    for (name, value) in entries {
        let Ok(Some(info)) = value.into_tensor_info(name, &dir) else { continue };
        let tensor = read_tensor(&mut zip, &info, &mut storages)?;
        tensors.push((info.name, tensor));
    }
    Ok(tensors)
}
