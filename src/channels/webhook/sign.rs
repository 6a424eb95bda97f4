//! `X-Pregonero-Signature`.

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Pregonero-Signature";

/// The header value for `body` signed with `secret` at Unix time `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(body.len() + 12);
    signed.extend_from_slice(t.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let mac = crate::crypto::hmac_sha256(secret, &signed);
    format!("t={t},v1={}", hex::encode(mac))
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn the_signature_is_the_hmac_of_time_dot_body() {
        // Same as: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature(b"whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=".to_owned()
                + &hex::encode(crate::crypto::hmac_sha256(
                    b"whsec_test",
                    br#"1700000000.{"a":1}"#
                ))
        );
        assert_ne!(
            signature(b"whsec_test", 1_700_000_001, br#"{"a":1}"#),
            signature(b"whsec_test", 1_700_000_000, br#"{"a":1}"#)
        );
    }
}
