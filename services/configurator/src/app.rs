//! The configurator's use cases: resolve what a customer typed into option codes, evaluate a
//! selection, save a configuration, serve the popular ones, and keep live sessions in the
//! cache so that any replica can continue them.

use std::sync::Arc;
use std::time::Duration;

use motorpool_platform::cache::Cache;
use motorpool_platform::clock::Clock;
use motorpool_platform::db::Db;
use motorpool_platform::events::Outbox;
use motorpool_platform::money::MoneyView;
use serde::{Deserialize, Serialize};

use crate::config::ConfiguratorConfig;
use crate::domain::{Because, Catalog, Configurator, Evaluation, MODEL_GROUP, Selection};
use crate::events;
use crate::store::{self, ConfigurationRow};

#[derive(Debug, thiserror::Error)]
pub enum ConfiguratorError {
    /// Values that name no option (or more than one), as `(field, message)`.
    #[error("unknown options")]
    Unresolved(Vec<(String, String)>),
    /// No valid configuration contains the picks.
    #[error("the configuration breaks the catalog's rules")]
    Invalid(Box<Because>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("cache: {0}")]
    Cache(String),
    #[error("{0}")]
    Internal(String),
}

impl From<motorpool_platform::cache::CacheError> for ConfiguratorError {
    fn from(e: motorpool_platform::cache::CacheError) -> Self {
        ConfiguratorError::Cache(e.to_string())
    }
}

/// One live configuration session, as kept in the cache between messages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub picks: Vec<String>,
}

/// A popular kind of configuration: how often it was saved and ordered, and its newest saved
/// instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Popular {
    pub saves: i64,
    pub orders: i64,
    pub config_id: String,
    pub model: String,
    pub options: Vec<String>,
    pub price: MoneyView,
    pub catalog_version: i64,
}

pub const POPULAR_KEY: &str = "configurator:popular";

/// The most ordered and the most saved configurations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PopularLists {
    pub most_ordered: Vec<Popular>,
    pub most_saved: Vec<Popular>,
}
/// How many popular configurations are served.
pub const POPULAR_LIMIT: i64 = 10;

pub struct App {
    pub db: Db,
    pub outbox: Outbox,
    pub cache: Cache,
    pub clock: Clock,
    pub cfg: ConfiguratorConfig,
    /// The current catalog, compiled; swapped whole when a newer version is published.
    pub engine: std::sync::RwLock<Arc<Configurator>>,
    /// Earlier catalog versions read back for configurations saved with them (they never change).
    pub past_catalogs: std::sync::Mutex<std::collections::HashMap<i64, Arc<Catalog>>>,
}

/// Why a catalog was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
    /// The version is not the one after the newest (someone published first).
    #[error("the next catalog version is {next}, not {given}")]
    Version { given: u32, next: u32 },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl App {
    /// Stores the catalog as its version (if new) and compiles the newest stored one.
    pub async fn load_catalog(db: &Db, seed: &Catalog, now: i64) -> anyhow::Result<Configurator> {
        let body = serde_json::to_string(seed)?;
        let mut tx = db.begin_write().await?;
        store::insert_catalog(&mut tx, i64::from(seed.version), &body, now).await?;
        tx.commit().await?;
        let latest = store::find_latest_catalog(db).await?.ok_or_else(|| anyhow::anyhow!("no catalog stored"))?;
        let catalog: Catalog = serde_json::from_str(&latest)?;
        Ok(Configurator::new(catalog)?)
    }

    /// The current catalog, compiled. One use case takes it once, so a catalog published
    /// meanwhile cannot mix two versions into one answer.
    pub fn engine(&self) -> Arc<Configurator> {
        self.engine.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Catalog `version` as it was published: the current one, or an earlier one from the store.
    pub async fn catalog_version(&self, version: i64) -> Result<Option<Arc<Catalog>>, ConfiguratorError> {
        let engine = self.engine();
        if i64::from(engine.catalog().version) == version {
            return Ok(Some(Arc::new(engine.catalog().clone())));
        }
        if let Some(c) = self.past_catalogs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&version) {
            return Ok(Some(c.clone()));
        }
        let Some(body) = store::find_catalog(&self.db, version).await? else { return Ok(None) };
        let catalog: Arc<Catalog> = Arc::new(serde_json::from_str(&body).map_err(|e| ConfiguratorError::Internal(e.to_string()))?);
        self.past_catalogs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(version, catalog.clone());
        Ok(Some(catalog))
    }

    fn install(&self, engine: Configurator) {
        *self.engine.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(engine);
    }

    /// Publishes `catalog` as the next version: validated and compiled first, stored (a
    /// concurrent publisher of the same version loses), announced, and served at once here;
    /// other replicas pick it up when they next look ([`Self::refresh_catalog`]).
    pub async fn publish_catalog(&self, catalog: Catalog) -> Result<Arc<Configurator>, PublishError> {
        let newest = store::latest_catalog_version(&self.db).await?.unwrap_or_default();
        let next = u32::try_from(newest + 1).map_err(|e| PublishError::Internal(e.to_string()))?;
        if catalog.version != next {
            return Err(PublishError::Version { given: catalog.version, next });
        }
        let engine = Configurator::new(catalog).map_err(|e| PublishError::Invalid(e.to_string()))?;
        if engine.option_id(&self.cfg.default_model).is_none() {
            return Err(PublishError::Invalid(format!(
                "the catalog has no model {:?} (configurator.default_model)",
                self.cfg.default_model
            )));
        }
        let c = engine.catalog();
        let body = serde_json::to_string(c).map_err(|e| PublishError::Internal(e.to_string()))?;
        let data = events::CatalogPublished {
            version: i64::from(c.version),
            models: c.options.iter().filter(|o| o.group == MODEL_GROUP).map(|o| o.code.clone()).collect(),
            options: c.options.len(),
            rules: c.rules.len(),
        };
        let mut tx = self.db.begin_write().await?;
        if !store::insert_catalog(&mut tx, data.version, &body, self.clock.now_ms()).await? {
            // Another publisher took this version first.
            return Err(PublishError::Version { given: c.version, next: next + 1 });
        }
        self.outbox.add(&mut tx, events::CATALOG_PUBLISHED, &data.version.to_string(), &data).await?;
        tx.commit().await?;
        self.outbox.wake();
        self.install(engine);
        Ok(self.engine())
    }

    /// Serves the newest stored catalog if it is newer than the one served (another replica
    /// published it). Whether it changed.
    pub async fn refresh_catalog(&self) -> anyhow::Result<bool> {
        let serving = i64::from(self.engine().catalog().version);
        if store::latest_catalog_version(&self.db).await?.is_none_or(|v| v <= serving) {
            return Ok(false);
        }
        let body = store::find_latest_catalog(&self.db).await?.ok_or_else(|| anyhow::anyhow!("no catalog stored"))?;
        let engine = Configurator::new(serde_json::from_str(&body)?)?;
        tracing::info!(version = engine.catalog().version, "serving a newer catalog");
        self.install(engine);
        Ok(true)
    }

    /// Looks for a newer catalog every `configurator.catalog_poll_ms`, until `shutdown`.
    pub async fn watch_catalog(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let period = Duration::from_millis(self.cfg.catalog_poll_ms);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            if let Err(e) = self.refresh_catalog().await {
                tracing::warn!(error = %e, "could not look for a newer catalog");
            }
        }
    }

    /// The option of `group` that `value` names: its code or its name (any case), else the
    /// one option whose name contains `value` as a whole word ("V6" → "3.0 V6 petrol").
    fn resolve_one(engine: &Configurator, group: &str, value: &str) -> Result<String, String> {
        let wanted = value.trim().to_lowercase();
        let members: Vec<_> = engine.catalog().options.iter().filter(|o| o.group == group).collect();
        if let Some(o) = members.iter().find(|o| o.code.to_lowercase() == wanted || o.name.to_lowercase() == wanted) {
            return Ok(o.code.clone());
        }
        let by_word: Vec<_> = members
            .iter()
            .filter(|o| o.name.to_lowercase().split(|c: char| !c.is_alphanumeric() && c != '.').any(|w| !w.is_empty() && w == wanted))
            .collect();
        match by_word.as_slice() {
            [o] => Ok(o.code.clone()),
            [] => Err(format!("no {group} option is called {value:?}; choose one of {}", codes(members.iter().copied()))),
            many => Err(format!("{value:?} could be any of {}; use the code", codes(many.iter().map(|o| **o)))),
        }
    }

    /// Turns the seed's fields into picks: `(group, value)` pairs, the model decided when absent.
    pub fn resolve(&self, model: Option<&str>, fields: &[(&str, &str, &str)]) -> Result<Vec<String>, ConfiguratorError> {
        let engine = self.engine();
        let mut picks = Vec::new();
        let mut errors = Vec::new();
        for (field, group, value) in fields {
            match Self::resolve_one(&engine, group, value) {
                Ok(code) if !picks.contains(&code) => picks.push(code),
                Ok(_) => {}
                Err(e) => errors.push(((*field).to_owned(), e)),
            }
        }
        let model = match model {
            Some(m) => match Self::resolve_one(&engine, MODEL_GROUP, m) {
                Ok(code) => Some(code),
                Err(e) => {
                    errors.push(("model".into(), e));
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(ConfiguratorError::Unresolved(errors));
        }
        let model = model.unwrap_or_else(|| self.fitting_model(&engine, &picks));
        picks.insert(0, model);
        Ok(picks)
    }

    /// The model for picks that name none: the configured default if they fit it, else the
    /// first model in catalog order they fit, else the default (which then explains why not).
    pub fn fitting_model(&self, engine: &Configurator, picks: &[String]) -> String {
        let fits = |model: &str| {
            let mut all = vec![model.to_owned()];
            all.extend(picks.iter().cloned());
            engine.selection(&all).map(|s| engine.evaluate(&s).is_consistent).unwrap_or(false)
        };
        if fits(&self.cfg.default_model) {
            return self.cfg.default_model.clone();
        }
        let models = engine.catalog().options.iter().filter(|o| o.group == MODEL_GROUP);
        models.map(|o| o.code.clone()).find(|m| fits(m)).unwrap_or_else(|| self.cfg.default_model.clone())
    }

    /// Codes to a selection; unknown codes are reported by field `options`.
    pub fn selection(engine: &Configurator, picks: &[String]) -> Result<Selection, ConfiguratorError> {
        engine.selection(picks).map_err(|e| ConfiguratorError::Unresolved(vec![("options".into(), e.to_string())]))
    }

    /// The picks evaluated on `engine` (one snapshot of the catalog).
    pub fn evaluate_on(engine: &Configurator, picks: &[String]) -> Result<Evaluation, ConfiguratorError> {
        Ok(engine.evaluate(&Self::selection(engine, picks)?))
    }

    pub fn evaluate(&self, picks: &[String]) -> Result<Evaluation, ConfiguratorError> {
        Self::evaluate_on(&self.engine(), picks)
    }

    /// Saves the picks completed to their cheapest valid configuration, for `owner` if signed in.
    pub async fn save(&self, picks: &[String], owner: Option<&str>) -> Result<ConfigurationRow, ConfiguratorError> {
        let engine = self.engine();
        let evaluation = Self::evaluate_on(&engine, picks)?;
        let Some(completion) = evaluation.cheapest else {
            return Err(ConfiguratorError::Invalid(Box::new(evaluation.conflict.unwrap_or_default())));
        };
        let catalog = engine.catalog();
        let model = completion
            .options
            .iter()
            .find(|code| catalog.options.iter().any(|o| o.code == **code && o.group == MODEL_GROUP))
            .cloned()
            .ok_or_else(|| ConfiguratorError::Internal("a complete configuration without a model".into()))?;
        let mut sorted = completion.options.clone();
        sorted.sort();
        let json = |v: &[String]| serde_json::to_string(v).map_err(|e| ConfiguratorError::Internal(e.to_string()));
        let row = ConfigurationRow {
            id: uuid::Uuid::now_v7().to_string(),
            owner_id: owner.map(str::to_owned),
            share_code: share_code(),
            catalog_version: i64::from(catalog.version),
            model: model.clone(),
            picks: json(picks)?,
            options: json(&completion.options)?,
            signature: sorted.join(","),
            price: completion.price.total,
            currency: completion.price.currency.clone(),
            created_at: self.clock.now_ms(),
        };
        let data = events::ConfigurationSaved {
            config_id: row.id.clone(),
            user_id: row.owner_id.clone(),
            catalog_version: row.catalog_version,
            model,
            options: completion.options,
            price: MoneyView::from_minor(row.price, &row.currency),
        };
        let mut tx = self.db.begin_write().await?;
        store::insert_configuration(&mut tx, &row).await?;
        self.outbox.add(&mut tx, events::CONFIGURATION_SAVED, &row.id, &data).await?;
        tx.commit().await?;
        self.outbox.wake();
        // The counts changed: the next read counts again.
        if let Err(e) = self.cache.delete(POPULAR_KEY).await {
            tracing::warn!(error = %e, "could not drop the cached popular configurations");
        }
        Ok(row)
    }

    /// The most ordered and most saved configurations, from the cache when it has them.
    pub async fn popular(&self) -> Result<PopularLists, ConfiguratorError> {
        match self.cache.get(POPULAR_KEY).await {
            Ok(Some(bytes)) => {
                if let Ok(lists) = serde_json::from_slice(&bytes) {
                    return Ok(lists);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cache unavailable; counting popular configurations"),
        }
        let lists = PopularLists { most_ordered: self.count_popular(true).await?, most_saved: self.count_popular(false).await? };
        let bytes = serde_json::to_vec(&lists).map_err(|e| ConfiguratorError::Internal(e.to_string()))?;
        if let Err(e) = self.cache.set(POPULAR_KEY, &bytes, Some(Duration::from_secs(self.cfg.popular_ttl_secs))).await {
            tracing::warn!(error = %e, "could not cache the popular configurations");
        }
        Ok(lists)
    }

    async fn count_popular(&self, by_orders: bool) -> Result<Vec<Popular>, ConfiguratorError> {
        let rows = store::most_popular(&self.db, by_orders, POPULAR_LIMIT).await?;
        Ok(rows
            .into_iter()
            .map(|(saves, orders, row)| Popular {
                saves,
                orders,
                config_id: row.id,
                model: row.model,
                options: serde_json::from_str(&row.options).unwrap_or_default(),
                price: MoneyView::from_minor(row.price, &row.currency),
                catalog_version: row.catalog_version,
            })
            .collect())
    }

    fn session_key(id: &str) -> String {
        format!("configurator:session:{id}")
    }

    /// A live session by id, if the cache still has it.
    pub async fn find_session(&self, id: &str) -> Result<Option<Session>, ConfiguratorError> {
        let Some(bytes) = self.cache.get(&Self::session_key(id)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    pub async fn store_session(&self, session: &Session) -> Result<(), ConfiguratorError> {
        let bytes = serde_json::to_vec(session).map_err(|e| ConfiguratorError::Internal(e.to_string()))?;
        self.cache.set(&Self::session_key(&session.id), &bytes, Some(Duration::from_secs(self.cfg.session_ttl_secs))).await?;
        Ok(())
    }
}

fn codes<'a>(options: impl Iterator<Item = &'a crate::domain::CatalogOption>) -> String {
    options.map(|o| o.code.as_str()).collect::<Vec<_>>().join(", ")
}

/// A short code that opens a read-only copy: 12 characters of an unambiguous alphabet.
fn share_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
    let mut rng = rand::rng();
    (0..12).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}
