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
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::grpc::Peers;
use crate::metrics::{Counter, Metrics};
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

/// Slots of each in-process memo (about 0.7 MiB each once used).
const MEMO_SLOTS: usize = 16_384;

/// A memo of fixed size, direct-mapped: a key's slot is picked by its hash and an entry
/// replaces whatever held its slot before. A lookup is one hash and a shared read lock, an
/// insert one exclusive lock, with none of a general cache's admission and recency bookkeeping
/// (which took a tenth of the gateway's CPU when every request brought a token it had not
/// seen). Lookups of one hot entry (a client reusing its token) never wait on each other.
/// The slots are allocated at the first insert: a process that never sees a token pays nothing.
struct Memo<V> {
    slots: std::sync::OnceLock<Box<[Slot<V>]>>,
    mask: usize,
    ttl: Duration,
    hasher: FastHash,
}

type Slot<V> = RwLock<Option<MemoEntry<V>>>;

struct MemoEntry<V> {
    key: Box<str>,
    value: V,
    until: Instant,
}

impl<V: Clone> Memo<V> {
    /// `slots`: a power of two.
    fn new(slots: usize, ttl: Duration) -> Self {
        assert!(slots.is_power_of_two());
        Self { slots: std::sync::OnceLock::new(), mask: slots - 1, ttl, hasher: FastHash::default() }
    }

    fn slot(&self, key: &str) -> Option<&Slot<V>> {
        Some(&self.slots.get()?[self.index(key)])
    }

    fn index(&self, key: &str) -> usize {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key) as usize & self.mask
    }

    fn get(&self, key: &str) -> Option<V> {
        match self.slot(key)?.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            Some(e) if *e.key == *key && e.until > Instant::now() => Some(e.value.clone()),
            _ => None,
        }
    }

    fn insert(&self, key: &str, value: V) {
        let slots = self.slots.get_or_init(|| (0..=self.mask).map(|_| RwLock::new(None)).collect());
        let entry = MemoEntry { key: key.into(), value, until: Instant::now() + self.ttl };
        let old = slots[self.index(key)].write().unwrap_or_else(std::sync::PoisonError::into_inner).replace(entry);
        drop(old);
    }

    fn invalidate(&self, key: &str) {
        if let Some(slot) = self.slot(key) {
            let mut slot = slot.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.as_ref().is_some_and(|e| *e.key == *key) {
                *slot = None;
            }
        }
    }

    fn clear(&self) {
        for slot in self.slots.get().into_iter().flatten() {
            *slot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }
}

/// Hashing for the in-process memos. Their keys are user ids and signatures of tokens that
/// verified, so nobody can fill them with chosen keys; lookups of unknown keys add nothing.
type FastHash = foldhash::fast::RandomState;

/// A token that verified: its whole text (a memo hit must be the same token, not just the same
/// signature on another payload) and its claims.
struct Verified {
    token: Box<str>,
    claims: Claims,
}

/// The header fields that decide how a token is checked.
#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

struct Inner {
    issuer: String,
    audience: String,
    source: Arc<dyn KeySource>,
    /// Signing keys by `kid`, parsed once (a point decompression) rather than per token.
    keys: RwLock<HashMap<String, VerifyingKey>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    cache: Cache,
    enabled_memo: Memo<()>,
    /// Tokens whose signature and claims checked out, by their signature part.
    verified: Memo<Arc<Verified>>,
    /// Signature checks of tokens that arrive together, verified as one batch.
    batcher: std::sync::OnceLock<Batcher>,
    batch_counters: BatchCounters,
    /// `kid`s that were still unknown after a refetch: refused without another one.
    unknown_kids: moka::sync::Cache<String, ()>,
}

/// Verifies access tokens. Cloning shares the key cache.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

impl Verifier {
    pub fn new(issuer: &str, audience: &str, source: Arc<dyn KeySource>, cache: Cache, metrics: &Metrics) -> Self {
        Self(Arc::new(Inner {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            source,
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            batcher: std::sync::OnceLock::new(),
            batch_counters: BatchCounters {
                batches: metrics.counter("auth_signature_batches_total", "Batches of token signatures verified together", &[]),
                signatures: metrics.counter("auth_signatures_batched_total", "Token signatures verified in batches of more than one", &[]),
            },
            cache,
            enabled_memo: Memo::new(MEMO_SLOTS, ENABLED_MEMO),
            verified: Memo::new(MEMO_SLOTS, VERIFIED_MEMO),
            unknown_kids: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(30)).build(),
        }))
    }

    fn key(&self, kid: &str) -> Option<VerifyingKey> {
        self.0.keys.read().unwrap_or_else(|p| p.into_inner()).get(kid).copied()
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
            let bad = |why: &str| AuthError::KeysUnavailable(format!("key {}: {why}", k.kid));
            let bytes = URL_SAFE_NO_PAD.decode(&k.x).map_err(|_| bad("not base64url"))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("not 32 bytes"))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 point"))?;
            // A small-order key would verify signatures nobody made; batches cannot tell.
            if key.is_weak() {
                return Err(bad("a weak (small-order) key"));
            }
            map.insert(k.kid.clone(), key);
        }
        *self.0.keys.write().unwrap_or_else(|p| p.into_inner()) = map;
        // A key that left the set must stop vouching for tokens at once.
        self.0.verified.clear();
        *last = Some(Instant::now());
        Ok(())
    }

    /// Checks the token's form, algorithm, signature, issuer, audience, expiry and not-before,
    /// then whether the user has been disabled since the token was issued.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let invalid = |why: &str| AuthError::Invalid(why.to_owned());
        let (message, signature) = token.rsplit_once('.').ok_or_else(|| invalid("not a JWT"))?;
        let (header, payload) = message.split_once('.').ok_or_else(|| invalid("not a JWT"))?;
        if payload.contains('.') {
            return Err(invalid("not a JWT"));
        }
        if let Some(seen) = self.0.verified.get(signature)
            && *seen.token == *token
        {
            if let Err(e) = self.check_times(&seen.claims) {
                self.0.verified.invalidate(signature);
                return Err(e);
            }
            self.check_enabled(&seen.claims.sub).await?;
            return Ok(seen.claims.clone());
        }
        let header: TokenHeader = decode_part(header).ok_or_else(|| invalid("malformed header"))?;
        if header.alg != "EdDSA" {
            return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| invalid("the token names no key (kid)"))?;
        let key = match self.key(&kid) {
            Some(k) => k,
            None if self.0.unknown_kids.contains_key(&kid) => return Err(invalid("unknown signing key")),
            None => {
                self.refresh(&kid).await?;
                match self.key(&kid) {
                    Some(k) => k,
                    None => {
                        self.0.unknown_kids.insert(kid, ());
                        return Err(invalid("unknown signing key"));
                    }
                }
            }
        };
        let signature: [u8; 64] =
            URL_SAFE_NO_PAD.decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| invalid("malformed signature"))?;
        if !self.signature_checks(key, message, Signature::from_bytes(&signature)).await {
            return Err(invalid("bad signature"));
        }
        let claims: Claims = decode_part(payload).ok_or_else(|| invalid("malformed claims"))?;
        if claims.iss != self.0.issuer {
            return Err(invalid("wrong issuer"));
        }
        if claims.aud != self.0.audience {
            return Err(invalid("wrong audience"));
        }
        self.check_times(&claims)?;
        let signature = &token[message.len() + 1..];
        self.0.verified.insert(signature, Arc::new(Verified { token: token.into(), claims: claims.clone() }));
        self.check_enabled(&claims.sub).await?;
        Ok(claims)
    }

    /// Checks one signature through the batcher, which verifies the checks that queue
    /// together as one batch (a check that arrives alone is verified alone).
    async fn signature_checks(&self, key: VerifyingKey, message: &str, signature: Signature) -> bool {
        let inner = &self.0;
        inner.batcher.get_or_init(|| Batcher::start(inner.batch_counters.clone())).check(key, message, signature).await
    }

    /// `exp` and `nbf` against the clock, with `LEEWAY_SECS` either way.
    fn check_times(&self, claims: &Claims) -> Result<(), AuthError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if claims.exp + LEEWAY_SECS < now {
            return Err(AuthError::Invalid("expired".into()));
        }
        if claims.nbf - LEEWAY_SECS > now {
            return Err(AuthError::Invalid("not valid yet (nbf)".into()));
        }
        Ok(())
    }

    async fn check_enabled(&self, user_id: &str) -> Result<(), AuthError> {
        if self.0.enabled_memo.get(user_id).is_some() {
            return Ok(());
        }
        match self.0.cache.get(&disabled_key(user_id)).await {
            Ok(Some(_)) => Err(AuthError::Disabled),
            Ok(None) => {
                self.0.enabled_memo.insert(user_id, ());
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

/// The most signatures verified in one batch: about 0.35 ms of work at a time. 64 would
/// save 6 % per signature but hold a worker twice as long; in the HAProxy comparison 32 did
/// no worse (1.03x the requests at 0.98x the p99 of 64, within the noise).
const MAX_BATCH: usize = 32;

/// One signature check: the same equation as a batch's (cofactorless; `s` must be canonical).
/// Weak keys are refused when keys load, and a memo hit compares the whole token text, so the
/// stricter check's extra decompression of `R` would buy nothing here.
fn check_one(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    use ed25519_dalek::Verifier as _;
    key.verify(message, signature).is_ok()
}

struct Check {
    key: VerifyingKey,
    message: Box<[u8]>,
    signature: Signature,
    done: tokio::sync::oneshot::Sender<bool>,
}

/// Verifies Ed25519 signatures in batches: a batch of tokens signed with one key costs a
/// third as much per signature as checking each alone (one multi-scalar multiplication for all
/// of them, see [`verify_one_key`]). Every check goes through one task: it takes the first
/// check queued, lets the tasks that are ready now run (they queue theirs), then verifies
/// whatever has queued. Alone, a check waits only for that one turn of the scheduler; under
/// load, checks queue while a batch runs and go together in the next. A batch that fails is
/// checked one by one, so one bad token never fails the others.
struct Batcher {
    queue: tokio::sync::mpsc::UnboundedSender<Check>,
}

#[derive(Clone)]
struct BatchCounters {
    batches: Counter,
    signatures: Counter,
}

impl Batcher {
    fn start(counters: BatchCounters) -> Self {
        let (queue, mut checks) = tokio::sync::mpsc::unbounded_channel::<Check>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while checks.recv_many(&mut batch, MAX_BATCH).await > 0 {
                if batch.len() < MAX_BATCH {
                    tokio::task::yield_now().await;
                    while batch.len() < MAX_BATCH
                        && let Ok(check) = checks.try_recv()
                    {
                        batch.push(check);
                    }
                }
                let verdicts = verify_together(&batch, &counters);
                for (check, ok) in batch.drain(..).zip(verdicts) {
                    let _ = check.done.send(ok);
                }
            }
        });
        Self { queue }
    }

    async fn check(&self, key: VerifyingKey, message: &str, signature: Signature) -> bool {
        let (done, verdict) = tokio::sync::oneshot::channel();
        let check = Check { key, message: message.as_bytes().into(), signature, done };
        // The batcher gone (its runtime shutting down) before or while it held this check
        // is no verdict: check here rather than refuse a genuine token.
        if self.queue.send(check).is_err() {
            return check_one(&key, message.as_bytes(), &signature);
        }
        verdict.await.unwrap_or_else(|_| check_one(&key, message.as_bytes(), &signature))
    }
}

/// The verdict on each check of `batch`: the checks of each key go as one batch, a lone one
/// or a batch that failed are checked one by one.
fn verify_together(batch: &[Check], counters: &BatchCounters) -> Vec<bool> {
    let mut verdicts = vec![false; batch.len()];
    let mut keys: Vec<VerifyingKey> = Vec::new();
    for check in batch {
        if !keys.contains(&check.key) {
            keys.push(check.key);
        }
    }
    for key in &keys {
        let group: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].key == *key).collect();
        if group.len() > 1 {
            counters.batches.add(1);
            counters.signatures.add(group.len() as u64);
            if verify_one_key(key, group.iter().map(|&i| (&*batch[i].message, &batch[i].signature))) {
                for i in group {
                    verdicts[i] = true;
                }
                continue;
            }
        }
        for i in group {
            verdicts[i] = check_one(key, &batch[i].message, &batch[i].signature);
        }
    }
    verdicts
}

/// Whether every one of `signed` (messages and their signatures, made with `key`) is valid,
/// in one multi-scalar multiplication (public for `bench/sigcheck`). A valid signature `(R, s)` of message `M` satisfies `[s]B = R + [k]A` with
/// `k = SHA-512(R ‖ A ‖ M)`; with a random 128-bit `z` for each, the batch checks
///
/// ```text
/// −[Σ z·s]B + Σ [z]R + [Σ z·k]A = 0
/// ```
///
/// which fails unless every signature is valid, but with probability 2⁻¹²⁸ (the `z` are
/// unknown to whoever made the tokens). One key means one `A` term for the whole batch, where
/// `ed25519_dalek::verify_batch` has one per signature: about 40 % less work per signature.
/// Like [`check_one`] (and `verify_batch`) the equation is cofactorless; `s` must be canonical.
/// The two can disagree only on a signature whose `R` has a small-order component and still
/// satisfies the equation with `R` hashed as sent: only the key's holder (identity) can make
/// one, since changing `R` of a genuine signature changes its challenge `k`.
pub fn verify_one_key<'a>(key: &VerifyingKey, signed: impl IntoIterator<Item = (&'a [u8], &'a Signature)>) -> bool {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use sha2::{Digest, Sha512};
    let (mut scalars, mut points) = (Vec::with_capacity(MAX_BATCH + 2), Vec::with_capacity(MAX_BATCH + 2));
    let (mut b_coefficient, mut a_coefficient) = (Scalar::ZERO, Scalar::ZERO);
    for (message, signature) in signed {
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes())) else { return false };
        let Some(r) = CompressedEdwardsY(*signature.r_bytes()).decompress() else { return false };
        let hash = Sha512::new().chain_update(signature.r_bytes()).chain_update(key.as_bytes()).chain_update(message);
        let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
        let z = Scalar::from(rand::random::<u128>());
        b_coefficient += z * s;
        a_coefficient += z * k;
        scalars.push(z);
        points.push(r);
    }
    scalars.extend([-b_coefficient, a_coefficient]);
    points.extend([curve25519_dalek::constants::ED25519_BASEPOINT_POINT, key.to_edwards()]);
    curve25519_dalek::EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// One base64url part of a token, decoded as JSON.
fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
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
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

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
        Verifier::new("motorpool", "motorpool-api", Arc::new(OneKey), Cache::memory(), &Metrics::new("test"))
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_and_a_forged_one_is_not() {
        let v = verifier();
        let good = token(&claims(600));
        assert_eq!(v.verify(&good).await.unwrap().sub, "u1");
        let signature = good.rsplit_once('.').unwrap().1;
        assert!(v.0.verified.get(signature).is_some(), "remembered after its signature checked out");
        assert_eq!(v.verify(&good).await.unwrap().sub, "u1", "and accepted from memory");

        // Same header and signature, another payload: a different text, so checked afresh.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut admin = claims(600);
        admin.role = Role::Admin;
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap());
        let forged = parts.join(".");
        assert!(matches!(v.verify(&forged).await, Err(AuthError::Invalid(why)) if why == "bad signature"));
        assert_eq!(
            v.0.verified.get(signature).map(|seen| seen.token.to_string()),
            Some(good.clone()),
            "the memo still holds the good one only"
        );
    }

    #[tokio::test]
    async fn a_remembered_token_still_expires() {
        let v = verifier();
        let expired = claims(-60);
        let text = token(&expired);
        // As if it had been verified while it was still valid.
        let signature = text.rsplit_once('.').unwrap().1.to_owned();
        v.0.verified.insert(&signature, Arc::new(Verified { token: text.as_str().into(), claims: expired }));
        assert!(matches!(v.verify(&text).await, Err(AuthError::Invalid(why)) if why == "expired"));
        assert!(v.0.verified.get(&signature).is_none(), "forgotten once expired");
    }

    /// A token whose parts are re-encoded from `header` and `claims` and signed with the test key.
    fn signed(header: &serde_json::Value, claims: &serde_json::Value) -> String {
        use ed25519_dalek::Signer;
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        );
        let signature = ed25519_dalek::SigningKey::from_bytes(&SEED).sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    #[tokio::test]
    async fn every_rule_of_a_token_is_checked_with_a_reason() {
        let v = verifier();
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
        let good = serde_json::to_value(claims(600)).unwrap();
        assert_eq!(v.verify(&signed(&header, &good)).await.unwrap().sub, "u1", "our own signing agrees with jsonwebtoken's");
        assert_eq!(v.verify(&token(&claims(600))).await.unwrap().sub, "u1");

        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let with = |field: &str, value: serde_json::Value| {
            let mut c = good.clone();
            c[field] = value;
            c
        };
        let mut no_sub = good.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        let cases = [
            (signed(&serde_json::json!({"alg": "none", "kid": "k1"}), &good), "algorithm \"none\" is not accepted"),
            (signed(&serde_json::json!({"alg": "HS256", "kid": "k1"}), &good), "algorithm \"HS256\" is not accepted"),
            (signed(&serde_json::json!({"alg": "EdDSA"}), &good), "the token names no key (kid)"),
            (signed(&serde_json::json!({"alg": "EdDSA", "kid": "k9"}), &good), "unknown signing key"),
            (signed(&header, &with("iss", "someone-else".into())), "wrong issuer"),
            (signed(&header, &with("aud", "other-api".into())), "wrong audience"),
            (signed(&header, &with("aud", serde_json::json!(["motorpool-api"]))), "malformed claims"),
            (signed(&header, &no_sub), "malformed claims"),
            (signed(&header, &with("exp", (now - 6).into())), "expired"),
            (signed(&header, &with("nbf", (now + 60).into())), "not valid yet (nbf)"),
            (format!("{}.extra", signed(&header, &good)), "not a JWT"),
            ("no-dots-at-all".to_owned(), "not a JWT"),
            (format!("{}.AAAA", signed(&header, &good).rsplit_once('.').unwrap().0), "malformed signature"),
        ];
        for (text, why) in cases {
            match v.verify(&text).await {
                Err(AuthError::Invalid(got)) => assert_eq!(got, why, "{text}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        // Within the leeway both ways.
        let edge = with("exp", (now - 4).into());
        assert!(v.verify(&signed(&header, &edge)).await.is_ok(), "exp 4 s ago is within the 5 s leeway");
    }

    #[tokio::test]
    async fn checks_that_queue_together_go_as_one_batch_and_a_bad_one_fails_alone() {
        use ed25519_dalek::Signer;
        let signer = ed25519_dalek::SigningKey::from_bytes(&SEED);
        let key = signer.verifying_key();
        let metrics = Metrics::new("test");
        let counters = BatchCounters {
            batches: metrics.counter("auth_signature_batches_total", "", &[]),
            signatures: metrics.counter("auth_signatures_batched_total", "", &[]),
        };
        let batcher = Batcher::start(counters.clone());
        let messages: Vec<String> = (0..10).map(|i| format!("header.claims-{i}")).collect();
        // Every check is queued before the batcher runs (one thread): they form one batch.
        let checks = messages.iter().enumerate().map(|(i, m)| {
            let signature = if i == 7 { signer.sign(b"header.claims-of-another-token") } else { signer.sign(m.as_bytes()) };
            batcher.check(key, m, signature)
        });
        let verdicts = futures::future::join_all(checks).await;
        let expected: Vec<bool> = (0..10).map(|i| i != 7).collect();
        assert_eq!(verdicts, expected);
        assert_eq!((counters.batches.get(), counters.signatures.get()), (1, 10), "one batch of ten");

        let good: Vec<Signature> = messages.iter().map(|m| signer.sign(m.as_bytes())).collect();
        let verdicts = futures::future::join_all(messages.iter().zip(&good).map(|(m, s)| batcher.check(key, m, *s))).await;
        assert_eq!(verdicts, vec![true; 10]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_verifications_of_many_tokens_accept_exactly_the_genuine_ones() {
        let v = verifier();
        let mut tasks = Vec::new();
        for i in 0..300 {
            let mut c = claims(600);
            c.sub = format!("u{i}");
            let mut text = token(&c);
            if i % 50 == 3 {
                // Another user's claims under this token's signature.
                let mut other = c.clone();
                other.sub = "someone-else".into();
                let mut parts: Vec<String> = text.split('.').map(str::to_owned).collect();
                parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
                text = parts.join(".");
            }
            let v = v.clone();
            tasks.push(tokio::spawn(async move { (i, v.verify(&text).await.map(|c| c.sub)) }));
        }
        for t in tasks {
            let (i, got) = t.await.unwrap();
            if i % 50 == 3 {
                assert!(matches!(got, Err(AuthError::Invalid(ref why)) if why == "bad signature"), "{i}: {got:?}");
            } else {
                assert_eq!(got.unwrap(), format!("u{i}"));
            }
        }
    }

    #[test]
    fn a_memo_answers_only_its_own_key_until_its_time_and_a_newer_key_takes_the_slot() {
        let memo: Memo<u32> = Memo::new(1, Duration::from_millis(200));
        assert_eq!(memo.get("a"), None, "empty (and not allocated yet)");
        memo.insert("a", 1);
        assert_eq!((memo.get("a"), memo.get("b")), (Some(1), None));
        memo.invalidate("b");
        assert_eq!(memo.get("a"), Some(1), "invalidating another key leaves the slot");
        memo.insert("b", 2);
        assert_eq!((memo.get("a"), memo.get("b")), (None, Some(2)), "one slot: b replaced a");
        memo.invalidate("b");
        assert_eq!(memo.get("b"), None);
        memo.insert("c", 3);
        memo.clear();
        assert_eq!(memo.get("c"), None, "cleared");
        memo.insert("d", 4);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(memo.get("d"), None, "expired");

        let wide: Memo<u32> = Memo::new(MEMO_SLOTS, Duration::from_secs(60));
        for i in 0..100 {
            wide.insert(&format!("key-{i}"), i);
        }
        let kept = (0..100).filter(|i| wide.get(&format!("key-{i}")) == Some(*i)).count();
        // About 0.3 collisions expected; eleven would be far beyond chance.
        assert!(kept >= 90, "100 keys in {MEMO_SLOTS} slots: few collisions ({kept} kept)");
        assert!((0..100).all(|i| wide.get(&format!("key-{i}")).is_none_or(|v| v == i)), "never another key's value");
    }

    #[tokio::test]
    async fn a_check_dropped_while_it_waits_for_its_batch_leaves_the_others_their_verdicts() {
        use ed25519_dalek::Signer;
        let v = verifier();
        let signer = ed25519_dalek::SigningKey::from_bytes(&SEED);
        let key = signer.verifying_key();
        let (good, bad) = (signer.sign(b"a.b"), signer.sign(b"a.c"));
        // One thread: both are queued before the batcher runs; the first one's request is
        // dropped while it waits.
        let mut dropped = Box::pin(v.signature_checks(key, "a.b", good));
        assert!(futures::poll!(&mut dropped).is_pending(), "waiting for its batch");
        let kept = v.signature_checks(key, "a.b", bad);
        drop(dropped);
        assert!(!kept.await, "a signature of another message is refused");
        assert!(v.signature_checks(key, "a.b", good).await, "the batcher goes on");
    }

    /// ℓ, the order of the group Ed25519 signatures work in, little-endian.
    const GROUP_ORDER: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0x10,
    ];

    /// Signatures of `messages`, with the ones at `bad` spoilt in turn by each way a signature
    /// can be wrong.
    fn spoilt(signer: &ed25519_dalek::SigningKey, messages: &[Vec<u8>], bad: &[usize], how: usize) -> Vec<Signature> {
        use ed25519_dalek::Signer;
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut bytes = signer.sign(m).to_bytes();
                if bad.contains(&i) {
                    match how % 5 {
                        // Another message's signature.
                        0 => bytes = signer.sign(b"something else").to_bytes(),
                        // A bit of R flipped (often no point at all).
                        1 => bytes[(i * 7) % 32] ^= 1 << (i % 8),
                        // A bit of s flipped, s still canonical.
                        2 => bytes[32 + (i * 5) % 28] ^= 1 << (i % 8),
                        // s + l: the same value mod l, not canonical.
                        3 => {
                            let s = curve25519_dalek::scalar::Scalar::from_bytes_mod_order(bytes[32..].try_into().unwrap());
                            let mut wide = [0u64; 4];
                            let l = GROUP_ORDER;
                            let mut carry = 0u128;
                            for (w, (a, b)) in s.to_bytes().chunks(8).zip(l.chunks(8)).enumerate() {
                                let sum = u128::from(u64::from_le_bytes(a.try_into().unwrap()))
                                    + u128::from(u64::from_le_bytes(b.try_into().unwrap()))
                                    + carry;
                                wide[w] = sum as u64;
                                carry = sum >> 64;
                            }
                            for (w, chunk) in bytes[32..].chunks_mut(8).enumerate() {
                                chunk.copy_from_slice(&wide[w].to_le_bytes());
                            }
                        }
                        // Another key's signature.
                        _ => bytes = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).sign(m).to_bytes(),
                    }
                }
                Signature::from_bytes(&bytes)
            })
            .collect()
    }

    #[test]
    fn a_one_key_batch_agrees_with_checking_each_signature_alone() {
        assert_eq!(curve25519_dalek::scalar::Scalar::from_bytes_mod_order(GROUP_ORDER), curve25519_dalek::scalar::Scalar::ZERO);
        let signer = ed25519_dalek::SigningKey::from_bytes(&SEED);
        let key = signer.verifying_key();
        for (round, size) in [2usize, 3, 8, 17, 64].into_iter().enumerate() {
            let messages: Vec<Vec<u8>> = (0..size).map(|i| format!("header.claims-{round}-{i}").into_bytes()).collect();
            for how in 0..5 {
                for bad in [vec![], vec![0], vec![size / 2], vec![0, size - 1]] {
                    let signatures = spoilt(&signer, &messages, &bad, how);
                    let checks: Vec<Check> = messages
                        .iter()
                        .zip(&signatures)
                        .map(|(m, s)| Check { key, message: m.clone().into(), signature: *s, done: tokio::sync::oneshot::channel().0 })
                        .collect();
                    let alone: Vec<bool> = checks.iter().map(|c| check_one(&key, &c.message, &c.signature)).collect();
                    assert_eq!(alone.iter().filter(|ok| !**ok).count(), bad.len(), "size {size}, spoilt {how}: the bad ones fail alone");
                    assert_eq!(
                        verify_one_key(&key, checks.iter().map(|c| (&*c.message, &c.signature))),
                        alone.iter().all(|ok| *ok),
                        "size {size}, spoilt {how} at {bad:?}"
                    );
                    let counters = BatchCounters {
                        batches: Metrics::new("t").counter("b", "", &[]),
                        signatures: Metrics::new("t").counter("s", "", &[]),
                    };
                    assert_eq!(verify_together(&checks, &counters), alone, "size {size}, spoilt {how} at {bad:?}: each verdict");
                }
            }
        }
    }
}
