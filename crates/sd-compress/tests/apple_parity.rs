//! Chunking and palettizing Apple's tiny UNet give what Apple's tools give.

use sd_compress::{PalettizeOptions, chunk, palettize};
use sd_mil::package::{WriteOptions, read_package, write_package};
use sd_mil::{Model, TensorType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/apple-tiny/packages").join(rel)
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-packages").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn histogram(m: &Model) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for op in &m.program.main().unwrap().operations {
        *h.entry(op.op_type.clone()).or_insert(0) += 1;
    }
    h
}

fn signature(list: &[sd_mil::FeatureDescription]) -> BTreeMap<String, TensorType> {
    list.iter().map(|f| (f.name.clone(), f.tensor_type())).collect()
}

#[test]
fn chunks_match_apples_chunk_unet() {
    let whole = read_package(shared("split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage")).unwrap();
    let apple1 = read_package(shared("split_einsum_chunk/Stable_Diffusion_version_sd-tiny_unet_chunk1.mlpackage")).unwrap();
    let apple2 = read_package(shared("split_einsum_chunk/Stable_Diffusion_version_sd-tiny_unet_chunk2.mlpackage")).unwrap();
    let chunks = chunk(&whole).unwrap();
    assert_eq!(histogram(&chunks.first), histogram(&apple1));
    assert_eq!(histogram(&chunks.second), histogram(&apple2));
    assert_eq!(signature(&chunks.first.description.inputs), signature(&apple1.description.inputs));
    assert_eq!(signature(&chunks.first.description.outputs), signature(&apple1.description.outputs));
    assert_eq!(signature(&chunks.second.description.inputs), signature(&apple2.description.inputs));
    assert_eq!(signature(&chunks.second.description.outputs), signature(&apple2.description.outputs));
    let dir = out_dir("chunk");
    write_package(&chunks.first, dir.join("unet_chunk1.mlpackage"), WriteOptions::default()).unwrap();
    write_package(&chunks.second, dir.join("unet_chunk2.mlpackage"), WriteOptions::default()).unwrap();
}

#[test]
fn palettized_unet_matches_apple_6_bit_structure() {
    let mut m = read_package(shared("split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage")).unwrap();
    let apple = read_package(shared("split_einsum_q6/Stable_Diffusion_version_sd-tiny_unet.mlpackage")).unwrap();
    let report = palettize(&mut m.program, &PalettizeOptions::new(6)).unwrap();
    assert_eq!(histogram(&m), histogram(&apple));
    assert!(report.bytes_after * 2 < report.bytes_before, "{report:?}");
    let dir = out_dir("palettize");
    write_package(&m, dir.join("unet_q6.mlpackage"), WriteOptions::default()).unwrap();
    read_package(dir.join("unet_q6.mlpackage")).unwrap();
}
