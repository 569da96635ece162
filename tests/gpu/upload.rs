//! `swm::device::Uploader`: uploads on a stream of their own, handed to the engine's stream with a CUDA event.

use std::time::{Duration, Instant};

use swm::device::{UploadKind, Uploader, MAX_BUFFERS};

use super::gpu;

/// Bytes and f32 values arrive intact, in order, when the consumer's stream waits for them — also when the
/// uploads come from another thread while the consumer reads, and buffers are reused hundreds of times.
#[test]
#[ignore = "needs a CUDA device"]
fn uploads_from_another_thread_arrive_intact_on_the_consumer_stream() {
    let (_gpu, device) = gpu();
    let mut uploader = Uploader::new(&device).unwrap();
    let values = [1.5f32, -2.0, 3.25];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let up = uploader.upload(UploadKind::F32, &bytes).unwrap();
    assert_eq!(up.len(), 3);
    assert_eq!(up.tensor(&device).unwrap().to_vec1::<f32>().unwrap(), values);
    drop(up);
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let producer = std::thread::spawn(move || {
        for i in 0..300u32 {
            let frame: Vec<u8> = (0..4096u32).map(|j| ((i * 7 + j) % 251) as u8).collect();
            tx.send((i, uploader.upload(UploadKind::U8, &frame).unwrap())).unwrap();
        }
    });
    for (i, up) in rx {
        let got = up.tensor(&device).unwrap().to_vec1::<u8>().unwrap();
        assert!(got.iter().enumerate().all(|(j, v)| *v == ((i * 7 + j as u32) % 251) as u8), "upload {i} corrupted");
    }
    producer.join().unwrap();
}

/// The host never waits for the consumer's GPU work: with the engine's stream stalled, an upload and the
/// consumer's wait both return at once; the data is there when the stall ends. A pool whose every buffer is held
/// refuses the next upload with a typed error.
#[test]
#[ignore = "needs a CUDA device"]
fn uploads_do_not_wait_for_a_busy_consumer_stream_and_a_full_pool_is_an_error() {
    let (_gpu, device) = gpu();
    let mut uploader = Uploader::new(&device).unwrap();
    let warm = uploader.upload(UploadKind::U8, &[1u8; 64]).unwrap();
    warm.tensor(&device).unwrap().to_vec1::<u8>().unwrap();
    drop(warm);
    swm::ops::fault::gpu_delay(&device, Duration::from_millis(80)).unwrap();
    let start = Instant::now();
    let up = uploader.upload(UploadKind::U8, &[9u8; 1 << 16]).unwrap();
    let t = up.tensor(&device).unwrap();
    assert!(start.elapsed() < Duration::from_millis(20), "the host waited {:?}", start.elapsed());
    let sum: u64 = t.to_dtype(candle_core::DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as u64;
    assert_eq!(sum, 9 << 16);
    assert!(start.elapsed() >= Duration::from_millis(70), "the read did not wait for the stall");
    let held: Vec<_> = (0..MAX_BUFFERS - 1).map(|_| uploader.upload(UploadKind::U8, &[0u8; 16]).unwrap()).collect();
    let err = uploader.upload(UploadKind::U8, &[0u8; 16]).unwrap_err();
    assert!(err.to_string().contains("held"), "{err}");
    drop(held);
    drop(up);
    uploader.upload(UploadKind::F32, &[0u8; 12]).unwrap();
    assert!(uploader.upload(UploadKind::F32, &[0u8; 7]).is_err(), "7 bytes are not f32 values");
}
