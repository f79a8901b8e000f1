//! temp bench
#[test]
fn bench() {
    use sha2::Digest;
    let data = vec![0u8; 16 << 20];
    let mut mixed = data.clone();
    for i in (0..mixed.len()).step_by(7) {
        mixed[i] = (i % 251) as u8;
    }
    let t = std::time::Instant::now();
    let _ = sha2::Sha256::digest(&data);
    eprintln!("sha256 16MiB: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let c = zstd::encode_all(&data[..], 3).unwrap();
    eprintln!("zstd3 zeros: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let _ = zstd::decode_all(&c[..]).unwrap();
    eprintln!("unzstd zeros: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let c = zstd::encode_all(&mixed[..], 3).unwrap();
    eprintln!("zstd3 mixed: {:?} -> {}", t.elapsed(), c.len());
    let t = std::time::Instant::now();
    let c = zstd::encode_all(&mixed[..], 1).unwrap();
    eprintln!("zstd1 mixed: {:?} -> {}", t.elapsed(), c.len());
}
