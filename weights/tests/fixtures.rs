//! The real `torch.save` outputs committed in the main repository's test fixtures.

mod common;

use std::collections::HashSet;

use common::{f32_values, fixture};
use swm_weights::{Dtype, Limits, TorchFile};

fn read_fixture(name: &str) -> (TorchFile, Vec<swm_weights::Tensor>) {
    let file = TorchFile::open(fixture(name), None, &Limits::default()).unwrap();
    let all = file.read_all().unwrap();
    assert_eq!(file.prefix(), "weights/");
    assert_eq!(all.len(), file.tensors().len());
    let names: HashSet<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), all.len(), "keys are unique");
    for t in &all {
        assert_eq!(t.data.len(), t.info.nbytes(), "{}", t.info.name);
        assert!(t.info.shape.len() <= 4 && t.info.numel() <= 1 << 20, "{}: {:?}", t.info.name, t.info.shape);
        if t.info.dtype == Dtype::F32 {
            assert!(f32_values(&t.data).iter().all(|v| v.is_finite()), "{} has non-finite values", t.info.name);
        }
    }
    (file, all)
}

fn get<'a>(all: &'a [swm_weights::Tensor], name: &str) -> &'a swm_weights::Tensor {
    all.iter().find(|t| t.info.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
}

#[test]
fn lewm_tiny() {
    // Checked against Python's pickletools on data.pkl: a plain dict of 91 tensors (89 float32, the two
    // BatchNorm num_batches_tracked counters int64), every tensor on its own storage.
    let (file, all) = read_fixture("lewm-tiny");
    assert_eq!(all.len(), 91);
    let longs: Vec<&str> = file.tensors().iter().filter(|t| t.dtype == Dtype::I64).map(|t| t.name.as_str()).collect();
    assert_eq!(longs, ["projector.net.1.num_batches_tracked", "pred_proj.net.1.num_batches_tracked"]);
    assert!(file.tensors().iter().all(|t| t.dtype == Dtype::F32 || t.dtype == Dtype::I64));
    let cls = get(&all, "encoder.embeddings.cls_token");
    assert_eq!(cls.info.shape, vec![1, 1, 32]);
    assert_eq!(f32_values(&cls.data)[0], -0.005779359_f32);
    let patch = get(&all, "encoder.embeddings.patch_embeddings.projection.weight");
    assert_eq!(patch.info.shape, vec![32, 3, 8, 8]);
    assert_eq!(f32_values(&patch.data)[0], -0.054604057_f32);
    assert_eq!(get(&all, "pred_proj.net.3.bias").info.shape, vec![32]);
    assert_eq!(get(&all, "projector.net.1.num_batches_tracked").data, 0i64.to_le_bytes().to_vec());
}

#[test]
fn tdmpc2_tiny() {
    // An OrderedDict of 119 float32 tensors with the `_metadata` BUILD state (ignored).
    let (file, all) = read_fixture("tdmpc2-tiny");
    assert_eq!(all.len(), 119);
    assert!(file.tensors().iter().all(|t| t.dtype == Dtype::F32));
    assert_eq!(file.tensors()[0].name, "scale.value");
    assert_eq!(f32_values(&get(&all, "scale.value").data), vec![10.0]);
    let conv = get(&all, "cnn.0.weight");
    assert_eq!(conv.info.shape, vec![32, 3, 7, 7]);
    assert!((f32_values(&conv.data)[0] - -0.056_909_5_f32).abs() < 1e-8, "{}", f32_values(&conv.data)[0]);
    assert_eq!(f32_values(&get(&all, "cnn.0.bias").data)[0], -0.10719235_f32);
    assert_eq!(get(&all, "target_qs.2.2.bias").info.shape, vec![21]);
    // Single reads agree with read_all.
    assert_eq!(&file.read("cnn.0.weight").unwrap(), conv);
}
