//! Client-side encryption of everything a snapshot writes, and the keyed hash that names
//! blobs. One 32-byte master key (from `COLDSTART_ENCRYPTION_KEY`, a key file or a
//! Kubernetes Secret) derives two keys: one for XChaCha20-Poly1305 (random 192-bit nonces,
//! so random nonces never collide in practice) and one for the BLAKE3 keyed hash that
//! content-addresses blobs, so a blob's name reveals nothing about its content.
//!
//! Sealed layout: `CSK1` magic, one mode byte (0 plain, 1 XChaCha20-Poly1305), then for
//! mode 1 a 24-byte nonce and the ciphertext with its tag. The associated data binds each
//! sealed object to its role (pack, index, manifest), so one cannot be swapped for another.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

/// Environment variable holding the base64 master key.
pub const KEY_ENV: &str = "COLDSTART_ENCRYPTION_KEY";

const MAGIC: &[u8; 4] = b"CSK1";
const MODE_PLAIN: u8 = 0;
const MODE_XCHACHA: u8 = 1;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = MAGIC.len() + 1;

/// Why a key could not be loaded or a sealed object opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "failed to read the encryption key from {source_name}: expected 32 bytes in base64 (e.g. `head -c32 /dev/urandom | base64`), got {detail}"
    )]
    ParseKey { source_name: String, detail: String },
    #[error(
        "failed to decrypt {what}: wrong encryption key, or the object was tampered with; check COLDSTART_ENCRYPTION_KEY / --encryption-key-file"
    )]
    Decrypt { what: String },
    #[error(
        "failed to read {what}: it is not a coldstart object (bad header); the store may hold other data or the object is truncated"
    )]
    Header { what: String },
    #[error(
        "failed to read {what}: it is encrypted but no encryption key was given; set COLDSTART_ENCRYPTION_KEY or --encryption-key-file"
    )]
    KeyRequired { what: String },
}

/// What a sealed object is; bound into its encryption as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Pack,
    Index,
    Manifest,
    /// A planned stop's marker.
    Marker,
    /// A drill report.
    Report,
    /// A probe a writer seals, stores and opens again to prove the store and key work
    /// before it changes anything.
    Probe,
}

impl Role {
    fn aad(self) -> &'static [u8] {
        match self {
            Role::Pack => b"coldstart pack v1",
            Role::Index => b"coldstart index v1",
            Role::Manifest => b"coldstart manifest v1",
            Role::Marker => b"coldstart marker v1",
            Role::Report => b"coldstart report v1",
            Role::Probe => b"coldstart probe v1",
        }
    }
}

/// A blob's name: the keyed BLAKE3 hash of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(BlobId(out))
    }

    /// Its first 16 bytes (see [`ShortId`]).
    pub fn short(&self) -> ShortId {
        short_of(&self.0)
    }
}

/// The [`ShortId`] of a blob id as stored (32 bytes, e.g. one entry of a tree chunk).
pub fn short_of(id: &[u8]) -> ShortId {
    let mut out = [0u8; 16];
    out.copy_from_slice(&id[..16]);
    out
}

/// The first half of a [`BlobId`]: what a pass over every blob of a snapshot keeps per blob
/// to find it again (16 bytes against 32, and 4-byte aligned where a `u128` would pad a
/// 28-byte entry to 32). 128 bits of a keyed hash: two blobs of one store sharing a short
/// id is a 1-in-2^69 chance at a billion blobs, and nobody without the key can make one.
pub type ShortId = [u8; 16];

impl serde::Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        BlobId::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid blob id"))
    }
}

/// The keys of one store: encryption (absent when the store is plaintext) and blob naming.
#[derive(Clone)]
pub struct Keys {
    aead: Option<XChaCha20Poly1305>,
    id_key: [u8; 32],
    check: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("encrypted", &self.aead.is_some())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Keys derived from a 32-byte master key.
    pub fn from_master(master: &[u8; 32]) -> Self {
        let enc = blake3::derive_key("coldstart 2025 snapshot encryption key", master);
        let id_key = blake3::derive_key("coldstart 2025 blob id key", master);
        let check = blake3::derive_key("coldstart 2025 key check", master);
        Keys {
            aead: Some(XChaCha20Poly1305::new(&enc.into())),
            id_key,
            check: Some(hex::encode(&check[..16])),
        }
    }

    /// No encryption (only with `--allow-plaintext-secrets`, or when no Secret is stored).
    /// Blob ids are then a plain content hash.
    pub fn plaintext() -> Self {
        Keys {
            aead: None,
            id_key: blake3::derive_key("coldstart 2025 plaintext blob id key", b""),
            check: None,
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.aead.is_some()
    }

    /// A value that identifies the key without revealing it (stored in the store's config so
    /// a wrong key is named as such before anything is decrypted).
    pub fn key_check(&self) -> Option<&str> {
        self.check.as_deref()
    }

    /// The content address of a blob.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// Seal bytes for the store.
    pub fn seal(&self, role: Role, plaintext: &[u8]) -> Vec<u8> {
        match &self.aead {
            None => {
                let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len());
                out.extend_from_slice(MAGIC);
                out.push(MODE_PLAIN);
                out.extend_from_slice(plaintext);
                out
            }
            Some(aead) => {
                let mut nonce = [0u8; NONCE_LEN];
                rand::rng().fill_bytes(&mut nonce);
                let ct = aead
                    .encrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: plaintext,
                            aad: role.aad(),
                        },
                    )
                    // XChaCha20-Poly1305 only fails for messages over 256 GiB; packs are MiBs.
                    .unwrap_or_default();
                let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ct.len());
                out.extend_from_slice(MAGIC);
                out.push(MODE_XCHACHA);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
                out
            }
        }
    }

    /// Open a sealed object; `what` names it in errors.
    pub fn open(&self, role: Role, sealed: &[u8], what: &str) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < HEADER_LEN || &sealed[..MAGIC.len()] != MAGIC {
            return Err(CryptoError::Header {
                what: what.to_owned(),
            });
        }
        let body = &sealed[HEADER_LEN..];
        match (sealed[MAGIC.len()], &self.aead) {
            (MODE_PLAIN, None) => Ok(body.to_vec()),
            // A plaintext object in an encrypted store is refused: it could be planted.
            (MODE_PLAIN, Some(_)) => Err(CryptoError::Decrypt {
                what: what.to_owned(),
            }),
            (MODE_XCHACHA, None) => Err(CryptoError::KeyRequired {
                what: what.to_owned(),
            }),
            (MODE_XCHACHA, Some(aead)) => {
                if body.len() < NONCE_LEN {
                    return Err(CryptoError::Decrypt {
                        what: what.to_owned(),
                    });
                }
                let (nonce, ct) = body.split_at(NONCE_LEN);
                aead.decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: role.aad(),
                    },
                )
                .map_err(|_| CryptoError::Decrypt {
                    what: what.to_owned(),
                })
            }
            _ => Err(CryptoError::Header {
                what: what.to_owned(),
            }),
        }
    }
}

/// Parse a base64 master key; `source_name` says where it came from.
pub fn parse_key(text: &str, source_name: &str) -> Result<[u8; 32], CryptoError> {
    let err = |detail: String| CryptoError::ParseKey {
        source_name: source_name.to_owned(),
        detail,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| err(format!("invalid base64 ({e})")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| err(format!("{} bytes", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> Keys {
        Keys::from_master(&[b; 32])
    }

    #[test]
    fn sealed_data_opens_with_the_same_key_and_role() {
        let sealed = keys(1).seal(Role::Pack, b"hello");
        assert_eq!(keys(1).open(Role::Pack, &sealed, "p").unwrap(), b"hello");
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn a_wrong_key_a_flipped_bit_a_truncation_or_another_role_is_refused() {
        let sealed = keys(1).seal(Role::Pack, b"hello world");
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let cases: [(&str, &Keys, Role, &[u8]); 4] = [
            ("wrong key", &keys(2), Role::Pack, &sealed),
            ("flipped bit", &keys(1), Role::Pack, &flipped),
            (
                "truncated",
                &keys(1),
                Role::Pack,
                &sealed[..sealed.len() - 3],
            ),
            ("other role", &keys(1), Role::Manifest, &sealed),
        ];
        for (name, k, role, data) in cases {
            let err = k.open(role, data, "pack x").unwrap_err();
            assert!(matches!(err, CryptoError::Decrypt { .. }), "{name}: {err}");
        }
        assert!(
            CryptoError::Decrypt { what: "x".into() }
                .to_string()
                .contains("COLDSTART_ENCRYPTION_KEY")
        );
    }

    #[test]
    fn an_encrypted_store_refuses_plaintext_objects_and_needs_a_key() {
        let plain = Keys::plaintext().seal(Role::Manifest, b"{}");
        assert!(keys(1).open(Role::Manifest, &plain, "m").is_err());
        let sealed = keys(1).seal(Role::Manifest, b"{}");
        assert!(matches!(
            Keys::plaintext().open(Role::Manifest, &sealed, "m"),
            Err(CryptoError::KeyRequired { .. })
        ));
        assert!(matches!(
            keys(1).open(Role::Manifest, b"garbage", "m"),
            Err(CryptoError::Header { .. })
        ));
    }

    #[test]
    fn blob_ids_depend_on_the_key_so_they_reveal_nothing_about_content() {
        assert_eq!(keys(1).blob_id(b"a"), keys(1).blob_id(b"a"));
        assert_ne!(keys(1).blob_id(b"a"), keys(2).blob_id(b"a"));
        assert_ne!(keys(1).blob_id(b"a"), keys(1).blob_id(b"b"));
        let id = keys(1).blob_id(b"a");
        assert_eq!(BlobId::from_hex(&id.to_hex()), Some(id));
    }

    #[test]
    fn keys_parse_from_32_bytes_of_base64_only() {
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_key(&format!("{good}\n"), "env").unwrap(), [7u8; 32]);
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert!(
            parse_key(&short, "env")
                .unwrap_err()
                .to_string()
                .contains("16 bytes")
        );
        assert!(
            parse_key("!!!", "file k")
                .unwrap_err()
                .to_string()
                .contains("file k")
        );
    }
}
