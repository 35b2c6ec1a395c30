//! Node identity: the ed25519 key a worker signs its receipts with.
//!
//! Keys live in the node's state folder, reached through a `cap-std` directory handle, in files
//! readable only by their owner (mode 0600). A key is never printed or logged: its `Debug` shows the
//! public half only.

use std::io::Write;

use cap_std::fs::{Dir, OpenOptions};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

/// What can go wrong loading or creating a key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("key file {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {0} is not a 32-byte ed25519 secret key")]
    Malformed(String),
    #[error("no randomness available to create a key: {0}")]
    Random(String),
    #[error("key file {0} does not exist")]
    Missing(String),
    #[error("key file {0} already exists; refusing to overwrite a key")]
    Exists(String),
}

/// A signing identity. Its `Debug` output never includes the secret.
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public_id())
    }
}

const PREFIX: &str = "ed25519:";

impl Identity {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A key derived from a seed: for tests and reproducible fixtures only.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Loads `file` from `dir`, or creates it (mode 0600) if it does not exist.
    pub fn load_or_create(dir: &Dir, file: &str) -> Result<Self, IdentityError> {
        match Self::load(dir, file) {
            Err(IdentityError::Missing(_)) => Self::create_new(dir, file),
            other => other,
        }
    }

    /// Loads the key in `file`; [`IdentityError::Missing`] if there is none.
    pub fn load(dir: &Dir, file: &str) -> Result<Self, IdentityError> {
        match dir.read(file) {
            Ok(bytes) => {
                let seed: [u8; 32] = hex::decode(String::from_utf8_lossy(&bytes).trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| IdentityError::Malformed(file.to_string()))?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(IdentityError::Missing(file.to_string()))
            }
            Err(source) => Err(IdentityError::Io {
                file: file.to_string(),
                source,
            }),
        }
    }

    /// Creates a fresh key in `file` (mode 0600); [`IdentityError::Exists`] if there is one
    /// already, which is never overwritten.
    pub fn create_new(dir: &Dir, file: &str) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            file: file.to_string(),
            source,
        };
        let identity = Self::generate()?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use cap_std::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = dir.open_with(file, &options).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists(file.to_string())
            } else {
                io(e)
            }
        })?;
        f.write_all(hex::encode(identity.key.to_bytes()).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        Ok(identity)
    }

    /// `ed25519:<hex public key>`: how receipts and peers name this identity.
    pub fn public_id(&self) -> String {
        public_id_of(&self.key.verifying_key())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The 32-byte secret seed. The node derives its libp2p network key from it, so a peer id
    /// and the key that signs that peer's receipts are one identity and a worker cannot sign as
    /// another. Never print or log it.
    pub fn secret_seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Signs `message` and returns the signature in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
}

fn public_id_of(key: &VerifyingKey) -> String {
    format!("{PREFIX}{}", hex::encode(key.to_bytes()))
}

/// A signature that does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signer {0:?} is not an ed25519 public key")]
    BadSigner(String),
    #[error("signature is not 64 bytes of hex")]
    BadEncoding,
    #[error("signature does not verify")]
    Invalid,
}

/// Checks a hex signature by `signer` (`ed25519:<hex>`) over `message`.
pub fn verify_signature(
    signer: &str,
    message: &[u8],
    signature: &str,
) -> Result<(), SignatureError> {
    let key_bytes: [u8; 32] = signer
        .strip_prefix(PREFIX)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SignatureError::BadSigner(signer.chars().take(80).collect()))?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| SignatureError::BadSigner(signer.chars().take(80).collect()))?;
    let sig_bytes: [u8; 64] = hex::decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::BadEncoding)?;
    key.verify(message, &ed25519_dalek::Signature::from_bytes(&sig_bytes))
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_reloads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        let a = Identity::load_or_create(&dir, "worker.key").unwrap();
        let b = Identity::load_or_create(&dir, "worker.key").unwrap();
        assert_eq!(a.public_id(), b.public_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join("worker.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let secret = std::fs::read_to_string(tmp.path().join("worker.key")).unwrap();
        assert!(!format!("{a:?}").contains(secret.trim()));
    }

    #[test]
    fn create_new_never_overwrites_and_load_never_creates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        assert!(matches!(
            Identity::load(&dir, "publisher.key"),
            Err(IdentityError::Missing(_))
        ));
        let a = Identity::create_new(&dir, "publisher.key").unwrap();
        assert!(matches!(
            Identity::create_new(&dir, "publisher.key"),
            Err(IdentityError::Exists(_))
        ));
        assert_eq!(
            Identity::load(&dir, "publisher.key").unwrap().public_id(),
            a.public_id()
        );
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let id = Identity::from_seed([7; 32]);
        let sig = id.sign(b"receipt");
        assert_eq!(verify_signature(&id.public_id(), b"receipt", &sig), Ok(()));
        assert_eq!(
            verify_signature(&id.public_id(), b"receipT", &sig),
            Err(SignatureError::Invalid)
        );
        let other = Identity::from_seed([8; 32]);
        assert_eq!(
            verify_signature(&other.public_id(), b"receipt", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature(&id.public_id(), b"receipt", "zz"),
            Err(SignatureError::BadEncoding)
        );
        assert!(matches!(
            verify_signature("rsa:00", b"x", &sig),
            Err(SignatureError::BadSigner(_))
        ));
    }
}
