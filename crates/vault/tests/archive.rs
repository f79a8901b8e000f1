//! The log archive over real repositories on local disk: what PostgreSQL's archiving relies
//! on (idempotent pushes, verified fetches) and what replication relies on (copies between
//! repositories with different master keys).

use std::path::Path;

use resurgo_vault::archive::Pushed;
use resurgo_vault::{RepoConfig, Repository, S3Credentials, VaultError};

const SEG: &str = "000000010000000000000003";

fn repository(root: &Path, name: &str) -> Repository {
    Repository::init(&RepoConfig {
        url: format!("file://{}", root.join(name).display()),
        password: format!("{name} password"),
        s3: S3Credentials::default(),
    })
    .unwrap()
}

/// 16 MiB like a WAL segment: some records, then zeros.
fn segment(seed: u8) -> Vec<u8> {
    let mut data = vec![0u8; 16 << 20];
    for (i, b) in data.iter_mut().take(300_000).enumerate() {
        *b = (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8;
    }
    data
}

#[test]
fn segments_round_trip_compressed_and_retries_are_harmless() {
    let root = tempfile::tempdir().unwrap();
    let repo = repository(root.path(), "a");
    let archive = repo.archive();
    let data = segment(7);
    assert_eq!(archive.push("shop", SEG, &data).unwrap(), Pushed::Stored);
    assert_eq!(archive.push("shop", SEG, &data).unwrap(), Pushed::AlreadyPresent);
    let err = archive.push("shop", SEG, &segment(8)).unwrap_err();
    assert!(matches!(err, VaultError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("a different segment with this name is already archived"),
        "{err}"
    );

    assert_eq!(archive.fetch("shop", SEG).unwrap().unwrap(), data);
    assert_eq!(archive.fetch("shop", "000000010000000000000004").unwrap(), None);
    let listed = archive.list("shop").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].size < 1 << 20, "stored {} bytes", listed[0].size);
    assert_eq!(archive.streams().unwrap(), vec!["shop".to_string()]);

    // The object on disk is under logs/<stream>/<name> and holds no plaintext.
    let raw = std::fs::read(root.path().join("a/logs/shop").join(SEG)).unwrap();
    assert!(!raw.windows(64).any(|w| w == &data[1000..1064]));
}

#[test]
fn a_flipped_byte_on_disk_is_detected_naming_the_object() {
    let root = tempfile::tempdir().unwrap();
    let repo = repository(root.path(), "a");
    let archive = repo.archive();
    archive.push("shop", SEG, &segment(3)).unwrap();
    let path = root.path().join("a/logs/shop").join(SEG);
    let good = std::fs::read(&path).unwrap();
    for at in [0, 5, 30, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let err = archive.fetch("shop", SEG).unwrap_err();
        assert!(
            err.to_string().contains(&format!("logs/shop/{SEG}")),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn another_repositorys_key_opens_nothing() {
    let root = tempfile::tempdir().unwrap();
    let a = repository(root.path(), "a");
    let b = repository(root.path(), "b");
    a.archive().push("shop", SEG, b"wal").unwrap();
    // A's object, read with B's key.
    let from = root.path().join("a/logs/shop").join(SEG);
    let to = root.path().join("b/logs/shop");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(&from, to.join(SEG)).unwrap();
    let err = b.archive().fetch("shop", SEG).unwrap_err();
    assert!(err.to_string().contains("another repository's key"), "{err}");
}

#[test]
fn copies_reach_a_repository_with_another_key_verified() {
    let root = tempfile::tempdir().unwrap();
    let a = repository(root.path(), "a");
    let b = repository(root.path(), "b");
    let names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "00000002.history",
    ];
    for (i, name) in names.iter().enumerate() {
        a.archive().push("shop", name, &segment(i as u8 + 1)).unwrap();
    }
    b.archive().push("shop", names[0], &segment(1)).unwrap();
    assert_eq!(a.archive().copy_to(&b.archive(), "shop").unwrap(), 2);
    assert_eq!(
        a.archive().copy_to(&b.archive(), "shop").unwrap(),
        0,
        "only what is missing"
    );
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            b.archive().fetch("shop", name).unwrap().unwrap(),
            segment(i as u8 + 1),
            "{name}"
        );
    }
    // Re-sealed for B: A's key does not open B's copy.
    let (in_a, in_b) = (
        root.path().join("a/logs/shop").join(names[1]),
        root.path().join("b/logs/shop").join(names[1]),
    );
    std::fs::copy(&in_b, &in_a).unwrap();
    let err = a.archive().fetch("shop", names[1]).unwrap_err();
    assert!(err.to_string().contains("another repository's key"), "{err}");
}

#[test]
fn a_damaged_segment_is_not_replicated() {
    let root = tempfile::tempdir().unwrap();
    let a = repository(root.path(), "a");
    let b = repository(root.path(), "b");
    a.archive().push("shop", SEG, &segment(5)).unwrap();
    let path = root.path().join("a/logs/shop").join(SEG);
    let mut raw = std::fs::read(&path).unwrap();
    let at = raw.len() / 2;
    raw[at] ^= 1;
    std::fs::write(&path, raw).unwrap();
    let err = a.archive().copy_to(&b.archive(), "shop").unwrap_err();
    assert!(err.to_string().contains(SEG), "{err}");
    assert!(b.archive().list("shop").unwrap().is_empty());
}
