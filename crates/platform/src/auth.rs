//! Access-token verification: EdDSA JWTs issued by identity, checked against identity's
//! public keys (fetched over gRPC, cached, refetched when a token names an unknown `kid`),
//! plus the extractor handlers use to learn who is calling and with which role.
//!
//! Only `EdDSA` is accepted, so `alg: none` and HS256 tokens "signed" with the public key are
//! refused before any key is touched.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::grpc::Peers;
use crate::problem::{Code, Problem};

/// The roles of the platform. Self-registration gives `customer`; the others are granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Driver,
    Mechanic,
    FleetManager,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Customer, Role::Driver, Role::Mechanic, Role::FleetManager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Driver => "driver",
            Role::Mechanic => "mechanic",
            Role::FleetManager => "fleet_manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The claims of a Motorpool access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub email: String,
    pub role: Role,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

/// A verification key as identity publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    /// Ed25519 public key, base64url without padding.
    pub x: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the account is disabled")]
    Disabled,
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => Problem::new(Code::Unauthorized).detail("send an access token as `Authorization: Bearer <token>`"),
            AuthError::Invalid(why) => Problem::new(Code::InvalidToken).detail(why),
            AuthError::Disabled => Problem::new(Code::AccountDisabled),
            AuthError::KeysUnavailable(why) => {
                tracing::warn!(error = %why, "cannot verify tokens: signing keys unavailable");
                Problem::new(Code::PeerUnavailable)
            }
        }
    }
}

/// Where verification keys come from.
#[async_trait]
pub trait KeySource: Send + Sync {
    async fn keys(&self) -> Result<Vec<PublicKey>, AuthError>;
}

/// Keys from identity over gRPC, found through discovery.
pub struct IdentityKeys(pub Peers);

#[async_trait]
impl KeySource for IdentityKeys {
    async fn keys(&self) -> Result<Vec<PublicKey>, AuthError> {
        use motorpool_proto::identity::v1::{GetSigningKeysRequest, identity_client::IdentityClient};
        let reply = self
            .0
            .call("identity", crate::grpc::Retry::Safe, GetSigningKeysRequest {}, |ch, r| async move {
                IdentityClient::new(ch).get_signing_keys(r).await
            })
            .await
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        Ok(reply.keys.into_iter().map(|k| PublicKey { kid: k.kid, x: k.x }).collect())
    }
}

/// The cache key identity sets while a user is disabled.
pub fn disabled_key(user_id: &str) -> String {
    format!("identity:disabled:{user_id}")
}

/// Unknown `kid`s trigger a refetch at most this often, so junk tokens cannot flood identity;
/// a request that needs a refetch sooner waits for the next slot instead of failing.
const REFRESH_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// How long "this user is not disabled" is remembered locally.
const ENABLED_MEMO: Duration = Duration::from_secs(1);
/// How long a token whose signature checked out is remembered (by its whole text), so the
/// requests of one session do not each pay for an Ed25519 verification; expiry is still
/// checked on every use, and a change of the key set forgets them all.
const VERIFIED_MEMO: Duration = Duration::from_secs(30);
/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 5;

struct Inner {
    issuer: String,
    audience: String,
    source: Arc<dyn KeySource>,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    cache: Cache,
    enabled_memo: moka::sync::Cache<String, ()>,
    /// Tokens whose signature and claims checked out, with those claims.
    verified: moka::sync::Cache<String, Claims>,
    /// `kid`s that were still unknown after a refetch: refused without another one.
    unknown_kids: moka::sync::Cache<String, ()>,
}

/// Verifies access tokens. Cloning shares the key cache.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

impl Verifier {
    pub fn new(issuer: &str, audience: &str, source: Arc<dyn KeySource>, cache: Cache) -> Self {
        Self(Arc::new(Inner {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            source,
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            cache,
            enabled_memo: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ENABLED_MEMO).build(),
            verified: moka::sync::Cache::builder().max_capacity(20_000).time_to_live(VERIFIED_MEMO).build(),
            unknown_kids: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(30)).build(),
        }))
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.0.keys.read().unwrap_or_else(|p| p.into_inner()).get(kid).cloned()
    }

    /// Refetches the key set because `kid` is unknown. Concurrent callers coalesce on the
    /// lock: whoever gets it second finds the key already there.
    async fn refresh(&self, kid: &str) -> Result<(), AuthError> {
        let mut last = self.0.last_fetch.lock().await;
        if self.key(kid).is_some() {
            return Ok(());
        }
        if let Some(t) = *last
            && t.elapsed() < REFRESH_MIN_INTERVAL
        {
            tokio::time::sleep(REFRESH_MIN_INTERVAL - t.elapsed()).await;
        }
        let keys = self.0.source.keys().await?;
        let mut map = HashMap::new();
        for k in keys {
            let key = DecodingKey::from_ed_components(&k.x).map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
            map.insert(k.kid, key);
        }
        *self.0.keys.write().unwrap_or_else(|p| p.into_inner()) = map;
        // A key that left the set must stop vouching for tokens at once.
        self.0.verified.invalidate_all();
        *last = Some(Instant::now());
        Ok(())
    }

    /// Checks signature, algorithm, issuer, audience, expiry and not-before, then whether the
    /// user has been disabled since the token was issued.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if let Some(claims) = self.0.verified.get(token) {
            if claims.exp + LEEWAY_SECS >= time::OffsetDateTime::now_utc().unix_timestamp() {
                self.check_enabled(&claims.sub).await?;
                return Ok(claims);
            }
            self.0.verified.invalidate(token);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| AuthError::Invalid("the token names no key (kid)".into()))?;
        let key = match self.key(&kid) {
            Some(k) => k,
            None if self.0.unknown_kids.contains_key(&kid) => return Err(AuthError::Invalid("unknown signing key".into())),
            None => {
                self.refresh(&kid).await?;
                match self.key(&kid) {
                    Some(k) => k,
                    None => {
                        self.0.unknown_kids.insert(kid, ());
                        return Err(AuthError::Invalid("unknown signing key".into()));
                    }
                }
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.0.issuer]);
        validation.set_audience(&[&self.0.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS as u64;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        self.0.verified.insert(token.to_owned(), claims.clone());
        self.check_enabled(&claims.sub).await?;
        Ok(claims)
    }

    async fn check_enabled(&self, user_id: &str) -> Result<(), AuthError> {
        if self.0.enabled_memo.contains_key(user_id) {
            return Ok(());
        }
        match self.0.cache.get(&disabled_key(user_id)).await {
            Ok(Some(_)) => Err(AuthError::Disabled),
            Ok(None) => {
                self.0.enabled_memo.insert(user_id.to_owned(), ());
                Ok(())
            }
            // Refusing every request while the cache is out would turn a cache outage into a
            // platform outage; a disabled user is still stopped at the next refresh.
            Err(e) => {
                tracing::warn!(error = %e, "cannot check disabled users; allowing");
                Ok(())
            }
        }
    }

    /// Forgets that a user was seen enabled (identity calls this when it disables one).
    pub fn forget(&self, user_id: &str) {
        self.0.enabled_memo.invalidate(user_id);
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The authenticated caller of a request. Extracting it refuses the request with 401 when
/// there is no valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub email: String,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Problem::new(Code::Forbidden)
                .detail(format!("requires role {}", roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or "))))
        }
    }

    /// 404 unless the caller owns the object or is an admin: a stranger learns nothing.
    pub fn require_owner(&self, owner_id: &str, what: &str) -> Result<(), Problem> {
        if self.user_id == owner_id || self.is_admin() { Ok(()) } else { Err(Problem::not_found(what)) }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or(AuthError::Missing)?;
        let claims = Verifier::from_ref(state).verify(token).await?;
        Ok(Caller { user_id: claims.sub, email: claims.email, role: claims.role })
    }
}

/// An admin caller; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S> FromRequestParts<S> for Admin
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(&[Role::Admin])?;
        Ok(Admin(caller))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const SEED: [u8; 32] = [7; 32];

    struct OneKey;

    #[async_trait]
    impl KeySource for OneKey {
        async fn keys(&self) -> Result<Vec<PublicKey>, AuthError> {
            let public = ed25519_dalek::SigningKey::from_bytes(&SEED).verifying_key().to_bytes();
            Ok(vec![PublicKey { kid: "k1".into(), x: URL_SAFE_NO_PAD.encode(public) }])
        }
    }

    fn token(claims: &Claims) -> String {
        let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend_from_slice(&SEED);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der)).unwrap()
    }

    fn claims(exp_in: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            iss: "motorpool".into(),
            aud: "motorpool-api".into(),
            sub: "u1".into(),
            email: "u1@example.com".into(),
            role: Role::Customer,
            iat: now,
            nbf: now,
            exp: now + exp_in,
            jti: "j1".into(),
        }
    }

    fn verifier() -> Verifier {
        Verifier::new("motorpool", "motorpool-api", Arc::new(OneKey), Cache::memory())
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_and_a_forged_one_is_not() {
        let v = verifier();
        let good = token(&claims(600));
        assert_eq!(v.verify(&good).await.unwrap().sub, "u1");
        assert!(v.0.verified.contains_key(&good), "remembered after its signature checked out");
        assert_eq!(v.verify(&good).await.unwrap().sub, "u1", "and accepted from memory");

        // Same header and signature, another payload: a different text, so checked afresh.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut admin = claims(600);
        admin.role = Role::Admin;
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap());
        let forged = parts.join(".");
        assert!(v.verify(&forged).await.is_err());
        assert!(!v.0.verified.contains_key(&forged));
    }

    #[tokio::test]
    async fn a_remembered_token_still_expires() {
        let v = verifier();
        let expired = claims(-60);
        let text = token(&expired);
        // As if it had been verified while it was still valid.
        v.0.verified.insert(text.clone(), expired);
        assert!(matches!(v.verify(&text).await, Err(AuthError::Invalid(_))));
        assert!(!v.0.verified.contains_key(&text), "forgotten once expired");
    }
}
