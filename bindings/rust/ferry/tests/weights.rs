//! Safetensors files written here (an 8-byte little-endian header length, a JSON header,
//! the data) read into a runtime on sim: every tensor's bytes arrive, a mismatch is one
//! error naming every difference, and a bad file fails open with its own status.

use ferry::{Backend, DType, LoadOptions, Runtime, Status, Weights};
use std::path::{Path, PathBuf};

const BLOCKS: usize = 4;

/// (name, dtype, shape, bytes) of a tensor to write.
type Entry = (String, &'static str, Vec<i64>, Vec<u8>);

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn f32_tensor(name: &str, shape: &[i64], seed: u32) -> Entry {
    let n: i64 = shape.iter().product();
    let values =
        (0..n as u32).map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 7.0);
    (name.to_string(), "F32", shape.to_vec(), f32_bytes(values))
}

/// A root tensor, an i64 one and BLOCKS blocks of two f32 tensors.
fn model() -> Vec<Entry> {
    let mut out = vec![
        f32_tensor("embed.weight", &[16, 32], 1),
        (
            "steps".to_string(),
            "I64",
            vec![3],
            [5i64, 6, 7].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    ];
    for b in 0..BLOCKS {
        out.push(f32_tensor(
            &format!("blocks.{b}.attn.weight"),
            &[32, 32],
            10 + b as u32,
        ));
        out.push(f32_tensor(
            &format!("blocks.{b}.attn.bias"),
            &[32],
            20 + b as u32,
        ));
    }
    out
}

/// The file's bytes, tensors laid out in name order, the header padded to 8 bytes.
fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, (name, dtype, shape, bytes)) in sorted.iter().enumerate() {
        let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            dims.join(","),
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend_from_slice(bytes);
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// A fresh folder under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ferry-rust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sim(budget: u64) -> ferry::RuntimeBuilder {
    Runtime::builder()
        .backend(Backend::Sim)
        .vram_budget(budget)
        .name("rust-weights")
}

fn bytes_of<'e>(entries: &'e [Entry], name: &str) -> &'e [u8] {
    &entries.iter().find(|e| e.0 == name).unwrap().3
}

fn expect_open_error(path: &Path, status: Status, named: &str) {
    let err = Weights::open(path).expect_err("a bad file must not open");
    assert_eq!(err.status(), status, "{err}");
    assert!(
        err.message().contains(named),
        "the message should name {named}: {err}"
    );
}

#[test]
fn weights_list_every_tensor_sorted_with_dtype_shape_and_file() {
    let dir = TempDir::new("list");
    let entries = model();
    let path = dir.write("model.safetensors", &encode(&entries));
    let weights = Weights::open(&path).unwrap();
    assert_eq!(weights.len(), entries.len());
    let names: Vec<&str> = weights.iter().map(|t| t.name.as_str()).collect();
    let mut want: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    want.sort();
    assert_eq!(names, want);
    let steps = weights.get("steps").unwrap();
    assert_eq!(
        (
            steps.dtype,
            steps.file_dtype.as_str(),
            &steps.shape[..],
            steps.bytes
        ),
        (DType::I64, "I64", &[3i64][..], 24)
    );
    assert_eq!(steps.file, path);
    assert!(weights.contains("blocks.2.attn.bias") && !weights.contains("blocks.9.attn.bias"));
    assert_eq!(weights.find(names[3]).unwrap(), 3);
    assert_eq!(
        weights.find("nope").unwrap_err().status(),
        Status::InvalidArgument
    );
    // A folder holding model.safetensors opens it.
    assert_eq!(Weights::open(&dir.0).unwrap().len(), entries.len());
}

#[test]
fn define_from_then_load_streams_every_byte_of_the_file() {
    let dir = TempDir::new("load");
    let entries = model();
    let path = dir.write("model.safetensors", &encode(&entries));
    let weights = Weights::open(&path).unwrap();
    let rt = sim(64 << 10).build().unwrap();
    let groups = rt
        .define_from(&weights, &["blocks."], 1, DType::Unknown)
        .unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        ["root", "blocks.0", "blocks.1", "blocks.2", "blocks.3"]
    );
    rt.plan().unwrap();
    let mut seen = Vec::new();
    let report = rt
        .load_with_progress(&weights, &LoadOptions::new().threads(2), |done, total| {
            seen.push((done, total))
        })
        .unwrap();
    let total: u64 = entries.iter().map(|e| e.3.len() as u64).sum();
    assert_eq!(report.tensors_read, entries.len() as u64);
    assert_eq!((report.bytes_read, report.tensors_on_disk), (total, 0));
    assert_eq!(seen.last(), Some(&(total, total)));
    drop(weights); // the runtime needs the weights no more
    for g in &groups {
        for (name, t) in &g.tensors {
            assert_eq!(rt.read(*t).unwrap(), bytes_of(&entries, name), "{name}");
        }
    }
    rt.seal().unwrap();
    for _pass in 0..2 {
        for g in &groups {
            let held = rt.acquire(g.group).unwrap();
            for (name, t) in &g.tensors {
                assert_eq!(
                    held.sim_device_bytes(*t).unwrap(),
                    bytes_of(&entries, name),
                    "{name}"
                );
            }
        }
    }
    let mut part = [0u8; 8];
    let (name, t) = &groups[1].tensors[0];
    rt.copy_out(*t, 4, &mut part).unwrap();
    assert_eq!(&part[..], &bytes_of(&entries, name)[4..12]);
}

#[test]
fn define_from_converts_f32_to_bf16_rounding_to_nearest_even() {
    let dir = TempDir::new("bf16");
    let values = [1.0f32, 1.003_906_3, 1.011_718_8, -3.3, 65504.0];
    let path = dir.write(
        "f.safetensors",
        &encode(&[("x".to_string(), "F32", vec![5], f32_bytes(values))]),
    );
    let weights = Weights::open(&path).unwrap();
    let rt = sim(1 << 20).build().unwrap();
    let groups = rt
        .define_from(&weights, &["blocks."], 1, DType::BF16)
        .unwrap();
    rt.plan().unwrap();
    let report = rt.load(&weights, &LoadOptions::new()).unwrap();
    assert_eq!(report.tensors_converted, 1);
    let want: Vec<u8> = values
        .iter()
        .flat_map(|v| {
            let bits = v.to_bits();
            let rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
            (rounded as u16).to_le_bytes()
        })
        .collect();
    assert_eq!(rt.read(groups[0].tensors[0].1).unwrap(), want);
}

#[test]
fn a_mismatch_names_every_missing_extra_and_misshapen_tensor_in_one_error() {
    let dir = TempDir::new("mismatch");
    let path = dir.write(
        "m.safetensors",
        &encode(&[
            f32_tensor("same", &[4, 4], 1),
            f32_tensor("wide", &[4, 8], 2),
            f32_tensor("extra", &[4], 3),
            ("ints".to_string(), "I32", vec![4, 4], vec![0; 64]),
        ]),
    );
    let weights = Weights::open(&path).unwrap();
    let rt = sim(1 << 20).build().unwrap();
    let g = rt.define_group("g").unwrap();
    let f32_4x4 = ferry::TensorOptions::new().dtype(DType::F32).shape(&[4, 4]);
    for name in ["same", "wide", "ints", "absent"] {
        rt.define_tensor_with(g, name, 64, &f32_4x4).unwrap();
    }
    rt.plan().unwrap();
    let err = rt.load(&weights, &LoadOptions::new()).unwrap_err();
    assert_eq!(err.status(), Status::WeightsMismatch, "{err}");
    for name in ["wide", "ints", "absent", "extra"] {
        assert!(
            err.message().contains(name),
            "{name} should be listed: {err}"
        );
    }
    assert!(!err.message().contains("'same'"), "{err}");
    assert_eq!(
        rt.phase().unwrap(),
        ferry::Phase::Planned,
        "matching failed before any read"
    );
}

#[test]
fn bad_files_fail_open_with_their_own_status_naming_the_file() {
    let dir = TempDir::new("bad");
    let good = encode(&model());
    let truncated = dir.write("truncated.safetensors", &good[..good.len() - 40]);
    expect_open_error(&truncated, Status::FileTruncated, "truncated.safetensors");
    let mut garbage = 16u64.to_le_bytes().to_vec();
    garbage.extend_from_slice(b"not json at all!");
    let garbage = dir.write("garbage.safetensors", &garbage);
    expect_open_error(&garbage, Status::FileFormat, "garbage.safetensors");
    let absent = dir.0.join("absent.safetensors");
    expect_open_error(&absent, Status::Io, "absent.safetensors");
    let index = r#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors"}}"#;
    let index = dir.write("model.safetensors.index.json", index.as_bytes());
    expect_open_error(&index, Status::Io, "model-00001-of-00002.safetensors");
}

#[test]
fn past_the_pinned_cap_tensors_stay_on_disk_and_are_read_from_the_file() {
    let dir = TempDir::new("disk");
    let mut entries = model();
    for b in BLOCKS..4 * BLOCKS {
        entries.push(f32_tensor(
            &format!("blocks.{b}.attn.weight"),
            &[32, 32],
            30 + b as u32,
        ));
    }
    let total: u64 = entries.iter().map(|e| e.3.len() as u64).sum();
    let path = dir.write("model.safetensors", &encode(&entries));
    let weights = Weights::open(&path).unwrap();
    let rt = sim(32 << 10)
        .pinned_cap_bytes(total / 4)
        .pageable_fallback(true)
        .build()
        .unwrap();
    let groups = rt
        .define_from(&weights, &["blocks."], 1, DType::Unknown)
        .unwrap();
    rt.plan().unwrap();
    let report = rt.load(&weights, &LoadOptions::new()).unwrap();
    assert!(report.tensors_on_disk > 0, "{report:?}");
    assert_eq!(report.bytes_read + report.bytes_on_disk, total);
    let stats = rt.stats().unwrap();
    assert!(
        stats.host_disk_bytes > 0 && stats.host_pinned_bytes <= total / 4,
        "{stats:?}"
    );
    drop(weights);
    rt.seal().unwrap();
    let on_disk = groups
        .iter()
        .flat_map(|g| &g.tensors)
        .filter(|(_, t)| rt.host_bytes(*t).map_err(|e| e.status()) == Err(Status::NotInMemory))
        .count();
    assert!(on_disk > 0, "tensors on the disk tier have no host bytes");
    for g in &groups {
        let held = rt.acquire(g.group).unwrap();
        for (name, t) in &g.tensors {
            assert_eq!(
                held.sim_device_bytes(*t).unwrap(),
                bytes_of(&entries, name),
                "{name}"
            );
        }
        drop(held);
        for (name, t) in &g.tensors {
            assert_eq!(rt.read(*t).unwrap(), bytes_of(&entries, name), "{name}");
        }
    }
    assert!(rt.stats().unwrap().bytes_disk_read > 0);
}

#[test]
fn define_from_agrees_with_the_library_s_own_define() {
    let dir = TempDir::new("agree");
    let mut entries = model();
    entries.push(f32_tensor("blocks.9.attn.weight", &[32, 32], 99)); // a gap: 4..8 absent
    let path = dir.write("model.safetensors", &encode(&entries));
    let weights = Weights::open(&path).unwrap();
    let mut stats = Vec::new();
    for by_crate in [true, false] {
        let rt = sim(1 << 20).build().unwrap();
        if by_crate {
            let groups = rt
                .define_from(&weights, &["blocks."], 2, DType::BF16)
                .unwrap();
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            assert_eq!(names, ["root", "blocks.0-1", "blocks.2-3", "blocks.9-9"]);
        } else {
            let prefix = std::ffi::CString::new("blocks.").unwrap();
            let prefixes = [prefix.as_ptr()];
            // Safety: a live runtime and open weights; one NUL-terminated prefix, alive for
            // the call.
            let status = unsafe {
                ferry::sys::ferry_weights_define(
                    rt.as_raw(),
                    weights.as_raw(),
                    prefixes.as_ptr(),
                    1,
                    2,
                    ferry::sys::FERRY_DTYPE_BF16,
                )
            };
            assert_eq!(status, ferry::sys::FERRY_OK);
        }
        rt.plan().unwrap();
        let s = rt.stats().unwrap();
        stats.push((
            s.groups,
            s.model_bytes,
            s.resident_groups,
            s.streamed_bytes_per_pass,
        ));
        rt.load(&weights, &LoadOptions::new()).unwrap();
    }
    assert_eq!(stats[0], stats[1]);
}
