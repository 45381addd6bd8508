//! Connection ids shaped like API Gateway's: 16 characters of standard base64 (11 random
//! bytes) ending in `=`, e.g. `L0SM9cOFvHcCIhw=`.
//!
//! The trailing `=` (and a possible `+` or `/`) matters: the SDK percent-encodes the id in the
//! request path (`/@connections/L0SM9cOFvHcCIhw%3D`), so using such ids locally proves that
//! every side decodes it.

use dlab_core::ids::ConnectionId;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A fresh random id.
pub fn new_connection_id() -> ConnectionId {
    let random = uuid::Uuid::new_v4();
    ConnectionId::new(base64(&random.as_bytes()[..11]))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn ids_look_like_api_gateway_ids() {
        let a = new_connection_id();
        let b = new_connection_id();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 16);
        assert!(a.as_str().ends_with('='));
        assert!(!a.as_str()[..15].contains('='));
    }
}
