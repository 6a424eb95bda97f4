//! Secrets at rest: AES-256-GCM with a key id in every ciphertext, and token hashing.
use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng as AeadRng},
};
use anyhow::{Context, anyhow, bail};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Encrypts and decrypts secrets; ciphertexts read `v1:<key id>:<base64(nonce ‖ ciphertext)>`.
///
/// The key id (first 8 hex chars of SHA-256 of the key) names the key that encrypted a value, so
/// after a rotation (`secret_key` replaced, the old one moved to `previous_secret_keys`) old
/// values still decrypt, and [`Cipher::is_current`] tells which ones to re-encrypt.
#[derive(Clone)]
pub struct Cipher {
    key_id: String,
    cipher: Aes256Gcm,
    /// Master key, only used to derive purpose-bound subkeys (JWT signing, webhook secrets).
    master: [u8; 32],
    /// Earlier keys, for decryption and for verifying what their subkeys signed.
    previous: Vec<Cipher>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Cipher {
    /// Builds a cipher from 32 raw key bytes.
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        if key.len() != 32 {
            bail!("secret key must be 32 bytes, got {}", key.len());
        }
        let key_id = hex::encode(Sha256::digest(key))[..8].to_owned();
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|e| anyhow!("bad key: {e}"))?;
        let mut master = [0u8; 32];
        master.copy_from_slice(key);
        Ok(Self {
            key_id,
            cipher,
            master,
            previous: Vec::new(),
        })
    }

    /// Adds earlier keys (base64), still accepted for decryption after a rotation.
    pub fn with_previous<'a>(
        mut self,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Self> {
        for key in keys {
            let old = Self::from_base64(key).context("a previous secret key is invalid")?;
            if old.key_id != self.key_id {
                self.previous.push(old);
            }
        }
        Ok(self)
    }

    /// The id of the key new values are encrypted with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether `stored` was encrypted with the current key (else it should be re-encrypted).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix("v1:")
            .and_then(|rest| rest.split(':').next())
            .is_some_and(|id| id == self.key_id)
    }

    /// The same purpose's subkeys of the previous keys (to accept what they signed).
    pub fn derive_previous(&self, purpose: &str) -> Vec<[u8; 32]> {
        self.previous.iter().map(|c| c.derive(purpose)).collect()
    }

    /// A 32-byte subkey for one purpose: HMAC-SHA256(master key, purpose). Different purposes
    /// give independent keys, so a leaked webhook secret says nothing about the JWT key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.master, purpose.as_bytes())
    }

    /// Builds a cipher from the base64 form used in settings and key files.
    pub fn from_base64(encoded: &str) -> anyhow::Result<Self> {
        let key = STANDARD
            .decode(encoded.trim())
            .context("secret key is not valid base64")?;
        Self::new(&key)
    }

    /// A new random key, base64-encoded.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    /// Encrypts `plaintext` with a fresh nonce.
    pub fn encrypt(&self, plaintext: &str) -> anyhow::Result<String> {
        let nonce = Aes256Gcm::generate_nonce(&mut AeadRng);
        let ct = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| anyhow!("encryption failed"))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("v1:{}:{}", self.key_id, STANDARD.encode(blob)))
    }

    /// Decrypts a value produced by [`Cipher::encrypt`].
    pub fn decrypt(&self, stored: &str) -> anyhow::Result<String> {
        let mut parts = stored.splitn(3, ':');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("unrecognised ciphertext format");
        };
        if key_id != self.key_id {
            return match self.previous.iter().find(|c| c.key_id == key_id) {
                Some(old) => old.decrypt(stored),
                None => bail!(
                    "secret was encrypted with key {key_id}, but the configured key is {} \
                     (add the old key to previous_secret_keys)",
                    self.key_id
                ),
            };
        }
        let blob = STANDARD.decode(body).context("ciphertext is not base64")?;
        if blob.len() < 12 {
            bail!("ciphertext too short");
        }
        let (nonce, ct) = blob.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| anyhow!("decryption failed (wrong key or tampered data)"))?;
        String::from_utf8(pt).context("secret is not UTF-8")
    }
}

/// SHA-256 hex of a bearer token: what is stored and looked up.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Equality that takes the same time wherever the inputs differ (for secrets from requests).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes as base64url without padding (`A-Za-z0-9_-`).
pub fn random_urlsafe(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new random token with a readable prefix, e.g. `prg_…` (32 random bytes, base64url).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let c = Cipher::from_base64(&Cipher::generate_key()).expect("key");
        let stored = c.encrypt("123:ABC").expect("encrypt");
        assert!(!stored.contains("123:ABC"));
        assert_eq!(c.decrypt(&stored).expect("decrypt"), "123:ABC");
        let mut tampered = stored.clone();
        tampered.pop();
        tampered.push(if stored.ends_with('A') { 'B' } else { 'A' });
        assert!(c.decrypt(&tampered).is_err());
        let other = Cipher::from_base64(&Cipher::generate_key()).expect("key");
        assert!(other.decrypt(&stored).is_err());
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old_key = Cipher::generate_key();
        let old = Cipher::from_base64(&old_key).expect("key");
        let stored = old.encrypt("bot-token").expect("encrypt");
        let new = Cipher::from_base64(&Cipher::generate_key())
            .expect("key")
            .with_previous([old_key.as_str()])
            .expect("previous");
        assert!(!new.is_current(&stored));
        assert_eq!(new.decrypt(&stored).expect("decrypt"), "bot-token");
        let again = new.encrypt("bot-token").expect("encrypt");
        assert!(new.is_current(&again));
        assert!(again.contains(new.key_id()));
        assert_eq!(new.derive_previous("p"), vec![old.derive("p")]);
    }
}
