//! Tracing subscriber set-up and log-safe helpers.
use sha2::{Digest, Sha256};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), text or JSON lines on stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
}

/// Key of [`redact`]; set once at start-up from the server key.
static REDACTION_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// Keys [`redact`] with a secret, so a logged hash of a small number (a chat id, a phone
/// number) cannot be reversed by trying every candidate. The first key set in a process wins.
pub fn set_redaction_key(key: [u8; 32]) {
    let _ = REDACTION_KEY.set(key);
}

/// A short stable hash of a recipient (chat id, phone) so logs can correlate without revealing
/// it: HMAC-SHA256 under the redaction key (plain SHA-256 before one is set).
pub fn redact(value: &str) -> String {
    let digest = match REDACTION_KEY.get() {
        Some(key) => hex::encode(crate::crypto::hmac_sha256(key, value.as_bytes())),
        None => hex::encode(Sha256::digest(value.as_bytes())),
    };
    format!("h:{}", &digest[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_is_keyed_once_a_key_is_set() {
        let plain = format!("h:{}", &hex::encode(Sha256::digest(b"5151"))[..12]);
        set_redaction_key([9; 32]);
        let keyed = redact("5151");
        assert_ne!(
            keyed, plain,
            "an unkeyed hash of a chat id can be brute-forced"
        );
        assert_eq!(keyed, redact("5151"), "stable, so logs still correlate");
        assert!(!keyed.contains("5151"));
    }
}
