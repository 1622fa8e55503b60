//! The events identity publishes. Payloads are versioned: a shipped version never changes
//! meaning; a new meaning gets a new `vN`.

use motorpool_platform::auth::Role;
use motorpool_platform::events::EventSpec;
use serde::{Deserialize, Serialize};

use crate::store::UserRow;

pub const USER_REGISTERED: &str = "identity.user.registered.v1";
pub const USER_ROLE_CHANGED: &str = "identity.user.role_changed.v1";
pub const USER_DISABLED: &str = "identity.user.disabled.v1";
pub const USER_ENABLED: &str = "identity.user.enabled.v1";

pub const SPECS: &[EventSpec] = &[
    EventSpec {
        kind: USER_REGISTERED,
        description: "An account was created (self-registration or by an admin).",
        example: r#"{"userId":"0192f0c1-7c4e-7b7a-9d6e-2f1a3b4c5d6e","email":"ann@example.com","fullName":"Ann Lee","role":"customer"}"#,
    },
    EventSpec {
        kind: USER_ROLE_CHANGED,
        description: "An admin changed a user's role.",
        example: r#"{"userId":"0192f0c1-7c4e-7b7a-9d6e-2f1a3b4c5d6e","role":"mechanic","previousRole":"customer"}"#,
    },
    EventSpec {
        kind: USER_DISABLED,
        description: "An admin disabled a user; their sessions are revoked.",
        example: r#"{"userId":"0192f0c1-7c4e-7b7a-9d6e-2f1a3b4c5d6e"}"#,
    },
    EventSpec {
        kind: USER_ENABLED,
        description: "An admin enabled a disabled user again.",
        example: r#"{"userId":"0192f0c1-7c4e-7b7a-9d6e-2f1a3b4c5d6e"}"#,
    },
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    pub user_id: String,
    pub email: String,
    pub full_name: String,
    pub role: Role,
}

impl From<&UserRow> for UserRegistered {
    fn from(u: &UserRow) -> Self {
        Self { user_id: u.id.clone(), email: u.email.clone(), full_name: u.full_name.clone(), role: u.role }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserRoleChanged {
    pub user_id: String,
    pub role: Role,
    pub previous_role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    pub user_id: String,
}
