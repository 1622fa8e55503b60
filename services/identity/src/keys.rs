//! Token signing keys: Ed25519 keys created on first start and kept in identity's database.
//! The newest unretired key signs; after a rotation the old key stays published long enough
//! for every token it signed to expire, so nobody is logged out. Replicas reload the set
//! periodically, so a rotation on one reaches all.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use motorpool_platform::auth::{AuthError, Claims, KeySource, PublicKey};
use motorpool_platform::clock::Clock;
use motorpool_platform::db::Db;
use rand::RngCore;

/// The fixed PKCS#8 prefix of an Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

struct Current {
    kid: String,
    key: EncodingKey,
}

struct KeySet {
    current: Current,
    public: Vec<PublicKey>,
}

pub struct SigningKeys {
    db: Db,
    clock: Clock,
    /// How long a retired key stays published: the access-token lifetime plus margin.
    publish_retired_for: Duration,
    set: RwLock<KeySet>,
}

fn encoding_key(seed: &[u8]) -> EncodingKey {
    let mut der = Vec::with_capacity(48);
    der.extend_from_slice(&PKCS8_ED25519_PREFIX);
    der.extend_from_slice(seed);
    EncodingKey::from_ed_der(&der)
}

fn public_x(seed: &[u8; 32]) -> String {
    let signing = ed25519_dalek::SigningKey::from_bytes(seed);
    URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes())
}

impl SigningKeys {
    /// Loads the key set, creating the first key if there is none.
    pub async fn load_or_create(db: Db, clock: Clock, publish_retired_for: Duration) -> anyhow::Result<Arc<Self>> {
        let set = match read_set(&db, &clock, publish_retired_for).await? {
            Some(set) => set,
            None => {
                insert_new_key(&db, &clock).await?;
                read_set(&db, &clock, publish_retired_for).await?.ok_or_else(|| anyhow::anyhow!("no signing key after creating one"))?
            }
        };
        Ok(Arc::new(Self { db, clock, publish_retired_for, set: RwLock::new(set) }))
    }

    pub async fn reload(&self) -> anyhow::Result<()> {
        if let Some(set) = read_set(&self.db, &self.clock, self.publish_retired_for).await? {
            *self.set.write().unwrap_or_else(|p| p.into_inner()) = set;
        }
        Ok(())
    }

    /// Makes a new key current and retires the others; returns the new `kid`.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        let kid = insert_new_key(&self.db, &self.clock).await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid <> $2 AND retired_at IS NULL")
            .bind(self.clock.now_ms())
            .bind(&kid)
            .execute(self.db.pool())
            .await?;
        self.reload().await?;
        Ok(kid)
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(set.current.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &set.current.key)?)
    }

    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).public.clone()
    }

    pub fn current_kid(&self) -> String {
        self.set.read().unwrap_or_else(|p| p.into_inner()).current.kid.clone()
    }
}

async fn insert_new_key(db: &Db, clock: &Clock) -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let kid = uuid::Uuid::now_v7().simple().to_string();
    sqlx::query("INSERT INTO signing_keys (kid, secret, public_x, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&kid)
        .bind(seed.to_vec())
        .bind(public_x(&seed))
        .bind(clock.now_ms())
        .execute(db.pool())
        .await?;
    Ok(kid)
}

async fn read_set(db: &Db, clock: &Clock, publish_retired_for: Duration) -> anyhow::Result<Option<KeySet>> {
    let cutoff = clock.now_ms() - publish_retired_for.as_millis() as i64;
    let rows: Vec<(String, Vec<u8>, String, Option<i64>)> = sqlx::query_as(
        "SELECT kid, secret, public_x, retired_at FROM signing_keys \
         WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid DESC",
    )
    .bind(cutoff)
    .fetch_all(db.pool())
    .await?;
    let Some((kid, secret, _, _)) = rows.iter().find(|r| r.3.is_none()) else { return Ok(None) };
    let current = Current { kid: kid.clone(), key: encoding_key(secret) };
    let public = rows.iter().map(|(kid, _, x, _)| PublicKey { kid: kid.clone(), x: x.clone() }).collect();
    Ok(Some(KeySet { current, public }))
}

/// Identity verifies its own tokens with its own keys, without a network hop.
pub struct LocalKeys(pub Arc<SigningKeys>);

#[async_trait]
impl KeySource for LocalKeys {
    async fn keys(&self) -> Result<Vec<PublicKey>, AuthError> {
        self.0.reload().await.map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        Ok(self.0.public_keys())
    }
}
