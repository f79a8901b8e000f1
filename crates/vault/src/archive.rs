//! The log archive: database logs (PostgreSQL WAL segments) kept beside the snapshot store,
//! one object per segment, because logs do not deduplicate. Each object is zstd-compressed,
//! encrypted with the repository's master key, checksummed, and written create-if-absent so a
//! retried push is harmless.
//!
//! Object `logs/<stream>/<name>`, format version 1:
//!
//! ```text
//! "RSGL" 0x01                      header: magic, version (not secret; repeated inside)
//! nonce(16) ciphertext tag(16)     restic's cipher: AES-256-CTR + Poly1305-AES, the same
//!                                  construction and key layout as the snapshot store
//! plaintext = 0x01                 version again, so it is authenticated
//!             u16 len, "<stream>/<name>"   the object's own key: a segment renamed or moved
//!                                          to another stream or name is detected
//!             sha256(segment)      what a retried push compares
//!             u64 segment length
//!             zstd(segment)
//! ```
//!
//! The cipher cannot authenticate associated data (restic never needed it), hence the
//! version and the name inside the sealed plaintext.

use std::sync::Arc;

use aes256ctr_poly1305aes::aead::AeadInPlace;
use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::object::ObjectStore;
use crate::VaultError;

/// The repository master key material (restic's: 32 bytes encryption key, 16 + 16 bytes MAC).
#[derive(Clone)]
pub struct ArchiveKey(pub [u8; 64]);

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveKey(..)")
    }
}

/// Outcome of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pushed {
    Stored,
    /// The same segment was already there (a retry): nothing written.
    AlreadyPresent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub name: String,
    /// Stored (compressed, encrypted) size.
    pub size: u64,
}

const MAGIC: &[u8; 4] = b"RSGL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// zstd level: WAL is written once and read rarely, but pushing must keep up with
/// `archive_timeout`; level 3 is zstd's own default balance.
const ZSTD_LEVEL: i32 = 3;
/// The longest stream or segment name accepted (a file name, in practice).
const MAX_NAME: usize = 200;

/// The log archive of one repository. Objects live under `logs/<stream>/`.
#[derive(Clone)]
pub struct LogArchive {
    objects: Arc<dyn ObjectStore>,
    key: ArchiveKey,
}

/// The fields of an authenticated plaintext.
struct Parsed<'p> {
    checksum: [u8; 32],
    len: u64,
    compressed: &'p [u8],
}

/// The key as sealed inside an object: `<stream>/<name>`.
fn inner(key: &str) -> &str {
    key.strip_prefix("logs/").unwrap_or(key)
}

/// The sealed plaintext of a segment (see the module documentation).
fn plaintext(key: &str, checksum: &[u8; 32], len: u64, compressed: &[u8]) -> Vec<u8> {
    let name = inner(key).as_bytes();
    let name_len = u16::try_from(name.len()).expect("names are validated short");
    let mut out = Vec::with_capacity(1 + 2 + name.len() + 32 + 8 + compressed.len());
    out.push(VERSION);
    out.extend_from_slice(&name_len.to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(checksum);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(compressed);
    out
}

impl LogArchive {
    pub fn new(objects: Arc<dyn ObjectStore>, key: ArchiveKey) -> LogArchive {
        LogArchive { objects, key }
    }

    /// Where the archive's objects are, for messages.
    pub fn location(&self) -> String {
        self.objects.location()
    }

    /// Stores a segment. Pushing the same name again with the same content is a no-op;
    /// with different content it is refused ([`VaultError::Corrupt`]).
    pub fn push(&self, stream: &str, name: &str, data: &[u8]) -> Result<Pushed, VaultError> {
        let key = self.object_key(stream, name)?;
        let checksum: [u8; 32] = Sha256::digest(data).into();
        let compressed = zstd::encode_all(data, ZSTD_LEVEL).map_err(|e| VaultError::Store {
            location: self.location(),
            message: format!("cannot compress log segment {key}: {e}"),
        })?;
        let sealed = self.seal(&key, &plaintext(&key, &checksum, data.len() as u64, &compressed))?;
        if self.objects.put_if_absent(&key, &sealed)? {
            return Ok(Pushed::Stored);
        }
        // Something is there: a retry of this very push (the archiver retries after a crash
        // or a timeout), or a different segment under the same name, which must never be
        // overwritten. The stored checksum is authenticated: comparing it is enough.
        let existing = self
            .objects
            .get(&key)?
            .ok_or_else(|| self.corrupt(&key, "the object vanished while it was being written"))?;
        let plain = self.unseal(&key, &existing)?;
        if self.parse(&key, &plain)?.checksum == checksum {
            Ok(Pushed::AlreadyPresent)
        } else {
            Err(self.corrupt(&key, "a different segment with this name is already archived"))
        }
    }

    /// A segment's content, verified, or `None` if it is not archived.
    pub fn fetch(&self, stream: &str, name: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let key = self.object_key(stream, name)?;
        match self.objects.get(&key)? {
            None => Ok(None),
            Some(raw) => Ok(Some(self.open(&key, &raw)?.0)),
        }
    }

    /// The segments of a stream, sorted by name.
    pub fn list(&self, stream: &str) -> Result<Vec<SegmentInfo>, VaultError> {
        check_name("stream", stream, &self.location())?;
        let prefix = format!("logs/{stream}/");
        let mut segments: Vec<SegmentInfo> = self
            .objects
            .list(&prefix)?
            .into_iter()
            .filter_map(|(key, size)| {
                let name = key.strip_prefix(&prefix)?;
                // Anything else under the prefix (a store's temporary file, a deeper path)
                // is not a segment.
                valid_name(name).then(|| SegmentInfo {
                    name: name.to_string(),
                    size,
                })
            })
            .collect();
        segments.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(segments)
    }

    /// The streams that have segments, sorted.
    pub fn streams(&self) -> Result<Vec<String>, VaultError> {
        let mut streams: Vec<String> = self
            .objects
            .list("logs/")?
            .into_iter()
            .filter_map(|(key, _)| {
                let (stream, name) = key.strip_prefix("logs/")?.split_once('/')?;
                (valid_name(stream) && valid_name(name)).then(|| stream.to_string())
            })
            .collect();
        streams.sort();
        streams.dedup();
        Ok(streams)
    }

    /// The newest WAL segment of a stream (by name, which orders them) and when it arrived in
    /// this archive: the newest point this site can restore to from its logs.
    pub fn newest_segment(&self, stream: &str) -> Result<Option<(String, Option<i64>)>, VaultError> {
        let is_segment = |n: &str| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit());
        let Some(newest) = self
            .list(stream)?
            .into_iter()
            .map(|s| s.name)
            .filter(|n| is_segment(n))
            .max()
        else {
            return Ok(None);
        };
        let when = self.objects.modified(&format!("logs/{stream}/{newest}"))?;
        Ok(Some((newest, when)))
    }

    /// Copies to `target` the segments it lacks; returns how many were copied.
    ///
    /// Each segment is authenticated before it leaves (damage is not propagated) and fully
    /// verified where it arrived (read back from `target`, with `target`'s key). Objects
    /// are copied as they are when both archives share the master key, and re-sealed with
    /// `target`'s key otherwise (without decompressing). A copy that fails verification is
    /// removed again, so a later copy can replace it.
    pub fn copy_to(&self, target: &LogArchive, stream: &str) -> Result<usize, VaultError> {
        let present: std::collections::BTreeSet<String> = target.list(stream)?.into_iter().map(|s| s.name).collect();
        let same_key = self.key.0 == target.key.0;
        let mut copied = 0;
        for segment in self.list(stream)? {
            if present.contains(&segment.name) {
                continue;
            }
            let key = self.object_key(stream, &segment.name)?;
            let raw = self.objects.get(&key)?.ok_or_else(|| VaultError::NotFound {
                what: "log segment",
                name: key.clone(),
                location: self.location(),
            })?;
            let plain = self.unseal(&key, &raw)?;
            let checksum = self.parse(&key, &plain)?.checksum;
            let outgoing = if same_key { raw } else { target.seal(&key, &plain)? };
            let ours = target.objects.put_if_absent(&key, &outgoing)?;
            // Read back what the target holds (ours, or a concurrent writer's) and verify it.
            let arrived = target.objects.get(&key)?;
            let verified = match &arrived {
                None => Err(target.corrupt(&key, "the object is missing right after it was copied")),
                Some(bytes) => target.open(&key, bytes).and_then(|(_, arrived_checksum)| {
                    if arrived_checksum == checksum {
                        Ok(())
                    } else {
                        Err(target.corrupt(&key, "a different segment with this name is already archived"))
                    }
                }),
            };
            if let Err(e) = verified {
                if ours && arrived.as_deref() == Some(outgoing.as_slice()) {
                    let _ = target.objects.delete(&key);
                }
                return Err(e);
            }
            copied += 1;
        }
        Ok(copied)
    }

    fn object_key(&self, stream: &str, name: &str) -> Result<String, VaultError> {
        check_name("stream", stream, &self.location())?;
        check_name("segment", name, &self.location())?;
        Ok(format!("logs/{stream}/{name}"))
    }

    fn cipher(&self) -> Aes256CtrPoly1305Aes {
        Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&self.key.0))
    }

    /// Header, then `plain` encrypted and authenticated with a fresh nonce.
    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        let mut nonce = aes256ctr_poly1305aes::Nonce::default();
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher()
            .encrypt_in_place_detached(&nonce, &[], &mut out[HEADER_LEN + NONCE_LEN..])
            .map_err(|_| VaultError::Store {
                location: self.location(),
                message: format!("cannot encrypt log segment {key}"),
            })?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Checks the header and the MAC of the object stored at `key`; its plaintext.
    fn unseal(&self, key: &str, raw: &[u8]) -> Result<Vec<u8>, VaultError> {
        let corrupt = |reason: &str| self.corrupt(key, reason);
        if raw.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || &raw[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a log archive object (bad header)"));
        }
        if raw[MAGIC.len()] != VERSION {
            return Err(corrupt(&format!(
                "unsupported log archive format version {} (this resurgo reads version {VERSION})",
                raw[MAGIC.len()]
            )));
        }
        let nonce = aes256ctr_poly1305aes::Nonce::from_slice(&raw[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let tag_start = raw.len() - TAG_LEN;
        let tag = aes256ctr_poly1305aes::Tag::from_slice(&raw[tag_start..]);
        let mut plain = raw[HEADER_LEN + NONCE_LEN..tag_start].to_vec();
        self.cipher()
            .decrypt_in_place_detached(nonce, &[], &mut plain, tag)
            .map_err(|_| {
                corrupt("authentication failed: the object was altered, or it was sealed with another repository's key")
            })?;
        Ok(plain)
    }

    /// Reads the authenticated plaintext's fields, checking it belongs at `key`.
    fn parse<'p>(&self, key: &str, plain: &'p [u8]) -> Result<Parsed<'p>, VaultError> {
        // The content is authentic: a mismatch here is a bug or a moved object.
        let corrupt = |reason: &str| self.corrupt(key, reason);
        let mut rest = plain;
        let mut take = |n: usize| -> Result<&'p [u8], VaultError> {
            if rest.len() < n {
                return Err(corrupt("truncated content"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        if take(1)?[0] != VERSION {
            return Err(corrupt("the sealed format version does not match the header"));
        }
        let name_len = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
        let inner_key = take(name_len)?;
        if inner_key != inner(key).as_bytes() {
            return Err(corrupt(&format!(
                "the object holds segment `{}`, not this one: it was moved or renamed",
                String::from_utf8_lossy(inner_key)
            )));
        }
        let checksum: [u8; 32] = take(32)?.try_into().expect("32 bytes");
        let len = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
        Ok(Parsed {
            checksum,
            len,
            compressed: rest,
        })
    }

    /// Authenticates, decompresses and checks the object stored at `key`; the segment and
    /// its (verified) checksum.
    fn open(&self, key: &str, raw: &[u8]) -> Result<(Vec<u8>, [u8; 32]), VaultError> {
        let plain = self.unseal(key, raw)?;
        let parsed = self.parse(key, &plain)?;
        let corrupt = |reason: &str| self.corrupt(key, reason);
        let data = zstd::decode_all(parsed.compressed).map_err(|e| corrupt(&format!("cannot decompress: {e}")))?;
        if data.len() as u64 != parsed.len {
            return Err(corrupt(&format!(
                "length {} differs from the recorded {}",
                data.len(),
                parsed.len
            )));
        }
        if <[u8; 32]>::from(Sha256::digest(&data)) != parsed.checksum {
            return Err(corrupt("checksum mismatch"));
        }
        Ok((data, parsed.checksum))
    }

    fn corrupt(&self, key: &str, reason: &str) -> VaultError {
        VaultError::Corrupt {
            location: self.location(),
            object: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Stream and segment names are single path components of a safe alphabet (WAL names,
/// `.history`, `.partial`, `.backup`, dataset names).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_name(what: &str, name: &str, location: &str) -> Result<(), VaultError> {
    if valid_name(name) {
        return Ok(());
    }
    Err(VaultError::Store {
        location: location.to_string(),
        message: format!(
            "invalid log {what} name `{}`: use letters, digits, `.`, `_` and `-`, not starting with `.`",
            name.escape_debug()
        ),
    })
}

#[cfg(test)]
mod tests {
    //! Behaviour against a tiny in-memory store; `tests/archive.rs` runs the same over the
    //! real local store.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct MemStore(Mutex<BTreeMap<String, Vec<u8>>>);

    impl ObjectStore for MemStore {
        fn location(&self) -> String {
            "mem:".into()
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, VaultError> {
            let all = self.get(key)?.unwrap_or_default();
            Ok(all[offset as usize..(offset + len) as usize].to_vec())
        }
        fn put(&self, key: &str, data: &[u8]) -> Result<(), VaultError> {
            self.0.lock().unwrap().insert(key.into(), data.to_vec());
            Ok(())
        }
        fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool, VaultError> {
            let mut map = self.0.lock().unwrap();
            if map.contains_key(key) {
                return Ok(false);
            }
            map.insert(key.into(), data.to_vec());
            Ok(true)
        }
        fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, VaultError> {
            let map = self.0.lock().unwrap();
            Ok(map
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.len() as u64))
                .collect())
        }
        fn delete(&self, key: &str) -> Result<(), VaultError> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
    }

    fn key(seed: u8) -> ArchiveKey {
        ArchiveKey(std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8)))
    }

    fn archive(seed: u8) -> (Arc<MemStore>, LogArchive) {
        let store = Arc::new(MemStore::default());
        (store.clone(), LogArchive::new(store, key(seed)))
    }

    const SEG: &str = "000000010000000000000003";

    fn segment() -> Vec<u8> {
        (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect()
    }

    #[test]
    fn round_trip_compresses_and_encrypts() {
        let (store, a) = archive(1);
        let data = segment();
        assert_eq!(a.push("db", SEG, &data).unwrap(), Pushed::Stored);
        assert_eq!(a.fetch("db", SEG).unwrap().unwrap(), data);
        assert_eq!(a.fetch("db", "000000010000000000000004").unwrap(), None);
        let raw = store.get(&format!("logs/db/{SEG}")).unwrap().unwrap();
        assert!(raw.len() < data.len() / 10, "compressed: {} bytes", raw.len());
        assert!(!raw.windows(16).any(|w| w == &data[..16]), "plaintext leaked");
        let listed = a.list("db").unwrap();
        assert_eq!(
            listed,
            vec![SegmentInfo {
                name: SEG.into(),
                size: raw.len() as u64
            }]
        );
        assert_eq!(a.streams().unwrap(), vec!["db".to_string()]);
    }

    #[test]
    fn empty_segment_round_trips() {
        let (_, a) = archive(1);
        a.push("db", "00000002.history", b"").unwrap();
        assert_eq!(a.fetch("db", "00000002.history").unwrap().unwrap(), b"");
    }

    #[test]
    fn a_retried_push_is_harmless_and_a_different_one_refused() {
        let (_, a) = archive(1);
        let data = segment();
        assert_eq!(a.push("db", SEG, &data).unwrap(), Pushed::Stored);
        assert_eq!(a.push("db", SEG, &data).unwrap(), Pushed::AlreadyPresent);
        let err = a.push("db", SEG, b"other bytes").unwrap_err();
        assert!(
            matches!(&err, VaultError::Corrupt { object, reason, .. }
                if object == &format!("logs/db/{SEG}") && reason.contains("different segment")),
            "{err}"
        );
        assert_eq!(a.fetch("db", SEG).unwrap().unwrap(), data, "the first stays");
    }

    #[test]
    fn every_flipped_byte_is_detected_and_names_the_object() {
        let (store, a) = archive(1);
        a.push("db", SEG, b"some wal bytes").unwrap();
        let object = format!("logs/db/{SEG}");
        let raw = store.get(&object).unwrap().unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            store.put(&object, &bad).unwrap();
            let err = a.fetch("db", SEG).unwrap_err();
            assert!(
                matches!(&err, VaultError::Corrupt { object: o, .. } if o == &object),
                "byte {i}: {err}"
            );
            assert!(err.to_string().contains(&object), "{err}");
        }
    }

    #[test]
    fn a_moved_object_is_detected() {
        let (store, a) = archive(1);
        a.push("db", SEG, b"segment three").unwrap();
        let raw = store.get(&format!("logs/db/{SEG}")).unwrap().unwrap();
        store.put("logs/db/000000010000000000000004", &raw).unwrap();
        let err = a.fetch("db", "000000010000000000000004").unwrap_err();
        assert!(err.to_string().contains("moved or renamed"), "{err}");
    }

    #[test]
    fn a_wrong_key_is_an_error() {
        let (store, a) = archive(1);
        a.push("db", SEG, b"secret").unwrap();
        let other = LogArchive::new(store, key(2));
        let err = other.fetch("db", SEG).unwrap_err();
        assert!(err.to_string().contains("another repository's key"), "{err}");
    }

    #[test]
    fn bad_names_are_refused() {
        let (_, a) = archive(1);
        for (stream, name) in [
            ("db", "../x"),
            ("db", "a/b"),
            ("", SEG),
            ("db", ""),
            ("d b", SEG),
            ("db", ".hidden"),
        ] {
            assert!(a.push(stream, name, b"x").is_err(), "{stream:?} {name:?}");
        }
    }

    #[test]
    fn copy_copies_only_what_is_missing_with_either_key() {
        let (_, a) = archive(1);
        for i in 1..=3 {
            a.push("db", &format!("00000001000000000000000{i}"), &[i; 1000])
                .unwrap();
        }
        for target_key in [1, 2] {
            let (_, b) = archive(target_key);
            b.push("db", "000000010000000000000001", &[1; 1000]).unwrap();
            assert_eq!(a.copy_to(&b, "db").unwrap(), 2, "key {target_key}");
            assert_eq!(a.copy_to(&b, "db").unwrap(), 0);
            for i in 1..=3u8 {
                assert_eq!(
                    b.fetch("db", &format!("00000001000000000000000{i}")).unwrap().unwrap(),
                    vec![i; 1000]
                );
            }
        }
    }

    #[test]
    fn copy_never_overwrites_the_target() {
        let (_, a) = archive(1);
        let (_, b) = archive(1);
        a.push("db", SEG, b"ours").unwrap();
        b.push("db", SEG, b"theirs").unwrap();
        // The target already has the name: not copied, and not overwritten.
        assert_eq!(a.copy_to(&b, "db").unwrap(), 0);
        assert_eq!(b.fetch("db", SEG).unwrap().unwrap(), b"theirs");
    }
}
