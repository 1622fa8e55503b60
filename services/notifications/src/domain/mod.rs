//! Notifications' rules, free of I/O: channels and preferences, what a user-facing event is,
//! webhook URLs, signatures and which addresses a webhook may reach, the retry schedule, and
//! how untrusted text is made safe to show. Values of these types are valid by construction.

pub mod address;
pub mod preferences;
pub mod retry;
pub mod text;
pub mod webhook;

pub use preferences::{Channel, ChannelSet, EventSelector};

/// The user an event is about, when it is user-facing: by convention its `data` carries a
/// string `userId`. Anything else (or an implausible id) is not for a person.
pub fn user_facing(data: &serde_json::Value) -> Option<&str> {
    data.get("userId").and_then(serde_json::Value::as_str).map(str::trim).filter(|id| !id.is_empty() && id.len() <= 128)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_events_with_a_string_user_id_are_user_facing() {
        assert_eq!(user_facing(&json!({"userId": "u-1", "x": 1})), Some("u-1"));
        assert_eq!(user_facing(&json!({"userId": 7})), None);
        assert_eq!(user_facing(&json!({"userId": "  "})), None);
        assert_eq!(user_facing(&json!({"user": "u-1"})), None);
        assert_eq!(user_facing(&json!({"userId": "x".repeat(200)})), None);
        assert_eq!(user_facing(&json!("u-1")), None);
    }
}
