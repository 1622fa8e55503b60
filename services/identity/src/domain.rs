//! Identity's rules, free of I/O: what a valid email, password and name are, and how
//! refresh tokens are made and stored. Values of these types are valid by construction.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use motorpool_platform::problem::FieldError;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A normalised (trimmed, lower-case) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let bad = |m: &str| FieldError { field: "email".into(), message: m.into() };
        if email.len() > 254 {
            return Err(bad("must be at most 254 characters"));
        }
        let (local, domain) = email.split_once('@').ok_or_else(|| bad("must contain @"))?;
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(bad("is not a valid email address"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-')) {
            return Err(bad("must have a domain like example.com"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy. Its text is never logged or shown.
pub struct Password(String);

pub const PASSWORD_MIN: usize = 10;
/// Hashing cost grows with length, so an upper bound stops a cheap denial of service.
pub const PASSWORD_MAX: usize = 128;

impl Password {
    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, FieldError> {
        let bad = |m: String| FieldError { field: "password".into(), message: m };
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN {
            return Err(bad(format!("must be at least {PASSWORD_MIN} characters")));
        }
        if chars > PASSWORD_MAX {
            return Err(bad(format!("must be at most {PASSWORD_MAX} characters")));
        }
        if email.is_some_and(|e| raw.trim().eq_ignore_ascii_case(e.as_str())) {
            return Err(bad("must not be the email address".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A person's display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        let bad = |m: &str| FieldError { field: "fullName".into(), message: m.into() };
        if name.is_empty() {
            return Err(bad("must not be empty"));
        }
        if name.chars().count() > 100 {
            return Err(bad("must be at most 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(bad("must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new opaque refresh token (256 random bits) and the hash under which it is stored.
pub fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// Only hashes are stored, so a database leak does not hand out sessions.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@example.com", "ann@example", "ann@@example.com", "a n@example.com", "ann@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn password_policy() {
        let email = Email::parse("ann@example.com").unwrap();
        assert!(Password::parse("short", None).is_err());
        assert!(Password::parse(&"x".repeat(129), None).is_err());
        assert!(Password::parse("ANN@example.com", Some(&email)).is_err());
        assert!(Password::parse("correct horse battery", Some(&email)).is_ok());
        assert_eq!(format!("{:?}", Password::parse("correct horse battery", None).unwrap()), "Password(***)");
    }

    #[test]
    fn refresh_tokens_are_random_and_hash_stably() {
        let (a, ha) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(hash_refresh_token(&a), ha);
        assert_eq!(ha.len(), 64);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(FullName::parse("  Ann Lee ").unwrap().as_str(), "Ann Lee");
        assert!(FullName::parse("   ").is_err());
        assert!(FullName::parse(&"a".repeat(101)).is_err());
    }
}
