//! The events the configurator publishes.

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::cache::Cache;
use motorpool_platform::db::Tx;
use motorpool_platform::events::{Envelope, EventHandler, EventSpec, HandlerError};
use serde::{Deserialize, Serialize};

pub const CONFIGURATION_SAVED: &str = "configurator.configuration.saved.v1";

pub const CATALOG_PUBLISHED: &str = "configurator.catalog.published.v1";

pub const SPECS: &[EventSpec] = &[
    EventSpec {
        kind: CONFIGURATION_SAVED,
        description: "A configuration was saved (by a signed-in user when userId is set).",
        example: r#"{"configId":"…","userId":"…","catalogVersion":1,"model":"tundra","options":["tundra","v6-3.0","red"],"price":{"amount":"58250.00","currency":"EUR"}}"#,
    },
    EventSpec {
        kind: CATALOG_PUBLISHED,
        description: "A new catalog version was published; configurations saved before keep their version and price.",
        example: r#"{"version":2,"models":["aurora","tundra","volt-s"],"options":40,"rules":26}"#,
    },
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogPublished {
    pub version: i64,
    pub models: Vec<String>,
    pub options: usize,
    pub rules: usize,
}

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

/// The factory's event this service counts orders from.
pub const FACTORY_ORDER_PLACED: &str = "factory.order.placed.v1";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderPlaced {
    config_id: String,
}

/// Counts the factory's orders per saved configuration, for the most ordered ones.
pub struct OrdersCounter {
    pub cache: Cache,
}

impl EventHandler for OrdersCounter {
    fn handle<'a>(&'a self, tx: &'a mut Tx, event: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            match event.data::<OrderPlaced>() {
                Ok(o) => crate::store::count_order(tx, &o.config_id).await?,
                // Retrying cannot fix a payload.
                Err(e) => tracing::warn!(event_id = %event.id, error = %e, "malformed order event; not counted"),
            }
            // The popular lists change: the next read counts again (a read racing this
            // commit may cache the old counts until the cache's TTL).
            if let Err(e) = self.cache.delete(crate::app::POPULAR_KEY).await {
                tracing::warn!(error = %e, "could not drop the cached popular configurations");
            }
            Ok(())
        }
        .boxed()
    }
}
