//! Webhooks: what a registrable URL is, the shared secret, and the signature that lets a
//! receiver check that a delivery came from us and was not replayed long after.
//!
//! `Motorpool-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the
//! timestamp is signed with the body, so a receiver that refuses old timestamps also refuses
//! replays, and `v1` leaves room for another scheme next to it during a rotation.

use hmac::{Hmac, Mac};
use motorpool_platform::problem::FieldError;
use rand::RngCore;
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "motorpool-signature";
pub const EVENT_HEADER: &str = "motorpool-event";
pub const DELIVERY_HEADER: &str = "motorpool-delivery";

/// At most this many webhooks per user.
pub const MAX_PER_USER: i64 = 10;

const URL_MAX: usize = 2048;

/// A URL a webhook may be registered with: http or https, a host, no credentials.
/// (Where the host resolves to is checked separately, at registration and again at delivery.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: String,
    host: String,
    port: u16,
}

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let raw = raw.trim();
        let bad = |m: &str| FieldError { field: "url".into(), message: m.into() };
        if raw.is_empty() || raw.len() > URL_MAX {
            return Err(bad("must be an http or https URL of at most 2048 characters"));
        }
        if raw.contains('#') || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces or a fragment"));
        }
        let uri: http::Uri = raw.parse().map_err(|_| bad("is not a valid URL"))?;
        let default_port = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(bad("must use http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("must name a host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not contain credentials"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("must name a host"));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        if port == 0 {
            return Err(bad("must not use port 0"));
        }
        Ok(Self { url: uri.to_string(), host, port })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A new signing secret: 32 random bytes, hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The `Motorpool-Signature` value for `body` sent at `timestamp` (Unix seconds). (HMAC
/// accepts keys of any length; the error exists only in the generic key API.)
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("t={timestamp},v1={}", hex(&mac.finalize().into_bytes())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_with_a_host_and_no_credentials() {
        let u = WebhookUrl::parse(" https://Hooks.Example.com/motorpool?x=1 ").unwrap();
        assert_eq!((u.host(), u.port()), ("hooks.example.com", 443));
        assert_eq!(u.as_str(), "https://Hooks.Example.com/motorpool?x=1");
        let u = WebhookUrl::parse("http://[::1]:8080/hook").unwrap();
        assert_eq!((u.host(), u.port()), ("::1", 8080));
        for bad in [
            "",
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com",
            "example.com/hook",
            "http://user:pw@example.com/",
            "http://example.com/a b",
            "http://example.com/#frag",
            "http://example.com:0/",
            "javascript:alert(1)",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad:?}");
        }
        assert!(WebhookUrl::parse(&format!("https://example.com/{}", "a".repeat(2100))).is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Reference value from `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret`.
        assert_eq!(
            signature("secret", 1_700_000_000, br#"{"a":1}"#).unwrap(),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert_ne!(signature("secret", 1_700_000_001, br#"{"a":1}"#).unwrap(), signature("secret", 1_700_000_000, br#"{"a":1}"#).unwrap());
    }

    #[test]
    fn secrets_are_random_64_hex_digits() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
