//! The events the configurator publishes.

use motorpool_platform::events::EventSpec;
use serde::{Deserialize, Serialize};

pub const CONFIGURATION_SAVED: &str = "configurator.configuration.saved.v1";

pub const SPECS: &[EventSpec] = &[EventSpec {
    kind: CONFIGURATION_SAVED,
    description: "A configuration was saved (by a signed-in user when userId is set).",
    example: r#"{"configId":"…","userId":"…","catalogVersion":1,"model":"tundra","options":["tundra","v6-3.0","red"],"price":{"amount":"58250.00","currency":"EUR"}}"#,
}];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSaved {
    pub config_id: String,
    pub user_id: Option<String>,
    pub catalog_version: i64,
    pub model: String,
    pub options: Vec<String>,
    pub price: motorpool_platform::money::MoneyView,
}
