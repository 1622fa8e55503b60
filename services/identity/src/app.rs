//! Identity's use cases: register, log in, refresh, log out, and the admin's changes to a
//! user. Each is one transaction with its event; handlers only translate HTTP to these calls.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use motorpool_platform::auth::{Claims, Role, disabled_key};
use motorpool_platform::cache::Cache;
use motorpool_platform::clock::Clock;
use motorpool_platform::db::{Db, is_unique_violation};
use motorpool_platform::events::Outbox;
use motorpool_platform::metrics::Metrics;
use motorpool_platform::problem::{Code, Problem};
use motorpool_platform::service::{ServiceContext, TokenSettings};

use crate::config::IdentityConfig;
use crate::domain::{Email, FullName, Password, hash_refresh_token, new_refresh_token};
use crate::events;
use crate::keys::SigningKeys;
use crate::store::{self, UserRow};

/// A freshly issued pair of tokens.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

pub struct Identity {
    pub db: Db,
    pub outbox: Outbox,
    pub keys: Arc<SigningKeys>,
    pub cache: Cache,
    pub clock: Clock,
    pub cfg: IdentityConfig,
    pub tokens: TokenSettings,
    pub metrics: Metrics,
    argon2: Argon2<'static>,
    /// Verified against when an email is unknown, so a login takes as long either way.
    dummy_hash: String,
}

fn blocking_failed(e: tokio::task::JoinError) -> Problem {
    Problem::internal(format_args!("password hashing task: {e}"))
}

impl Identity {
    /// Builds the use cases on the service's backends.
    pub async fn new(ctx: &ServiceContext, keys: Arc<SigningKeys>, cfg: IdentityConfig) -> anyhow::Result<Self> {
        let params = Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, cfg.argon2_parallelism, None)
            .map_err(|e| anyhow::anyhow!("identity.argon2_*: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let hasher = argon2.clone();
        let dummy_hash = tokio::task::spawn_blocking(move || hasher.hash_password(b"motorpool-dummy-password").map(|h| h.to_string()))
            .await?
            .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
        Ok(Self {
            db: ctx.db()?,
            outbox: ctx.outbox.clone(),
            keys,
            cache: ctx.cache.clone(),
            clock: ctx.clock.clone(),
            cfg,
            tokens: ctx.tokens.clone(),
            metrics: ctx.metrics.clone(),
            argon2,
            dummy_hash,
        })
    }

    async fn hash(&self, password: &Password) -> Result<String, Problem> {
        let argon2 = self.argon2.clone();
        let password = password.expose().to_owned();
        tokio::task::spawn_blocking(move || argon2.hash_password(password.as_bytes()).map(|h| h.to_string()))
            .await
            .map_err(blocking_failed)?
            .map_err(|e| Problem::internal(format_args!("hashing: {e}")))
    }

    async fn verify_password(&self, password: &str, hash: &str) -> Result<bool, Problem> {
        let argon2 = self.argon2.clone();
        let password = password.to_owned();
        let hash = hash.to_owned();
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| e.to_string())?;
            Ok::<bool, String>(argon2.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(blocking_failed)?
        .map_err(|e| Problem::internal(format_args!("stored hash: {e}")))
    }

    /// Creates an account with `role`; self-registration passes `Role::Customer`.
    pub async fn register(&self, email: Email, password: Password, name: FullName, role: Role) -> Result<UserRow, Problem> {
        let hash = self.hash(&password).await?;
        let now = self.clock.now_ms();
        let user = UserRow {
            id: uuid::Uuid::now_v7().to_string(),
            email: email.as_str().to_owned(),
            password_hash: hash,
            full_name: name.as_str().to_owned(),
            role,
            disabled_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin_write().await?;
        if let Err(e) = store::insert_user(&mut tx, &user).await {
            return Err(if is_unique_violation(&e) { Problem::new(Code::EmailTaken) } else { e.into() });
        }
        self.outbox.add(&mut tx, events::USER_REGISTERED, &user.id, &events::UserRegistered::from(&user)).await?;
        tx.commit().await?;
        self.outbox.wake();
        self.metrics.count("identity_users_registered_total", "Accounts created.", &[("role", role.as_str())], 1);
        Ok(user)
    }

    fn throttle_keys(email: &str, client: &str) -> (String, String) {
        (format!("identity:failed-login:account:{email}"), format!("identity:failed-login:client:{client}"))
    }

    /// Checks the password and issues tokens. Repeated failures lock the account and the
    /// client out for a while; unknown emails cost the same time as wrong passwords.
    pub async fn login(&self, email: &str, password: &str, client: &str) -> Result<TokenPair, Problem> {
        let email = email.trim().to_lowercase();
        let (account_key, client_key) = Self::throttle_keys(&email, client);
        let lockout = Duration::from_secs(self.cfg.lockout_secs);
        let account_failures = self.cache.counter(&account_key).await.unwrap_or(0);
        let client_failures = self.cache.counter(&client_key).await.unwrap_or(0);
        if account_failures >= self.cfg.max_failed_logins_per_account || client_failures >= self.cfg.max_failed_logins_per_client {
            self.metrics.count("identity_logins_total", "Login attempts.", &[("outcome", "throttled")], 1);
            return Err(Problem::new(Code::TooManyAttempts).retry_after(self.cfg.lockout_secs));
        }
        let user = store::find_user_by_email(&self.db, &email).await?;
        let hash = user.as_ref().map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let ok = self.verify_password(password, hash).await? && user.is_some();
        let Some(user) = user.filter(|_| ok) else {
            let _ = self.cache.incr(&account_key, lockout).await;
            let _ = self.cache.incr(&client_key, lockout).await;
            self.metrics.count("identity_logins_total", "Login attempts.", &[("outcome", "failed")], 1);
            return Err(Problem::new(Code::InvalidCredentials));
        };
        if user.disabled_at.is_some() {
            return Err(Problem::new(Code::AccountDisabled));
        }
        let _ = self.cache.delete(&account_key).await;
        let family = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_write().await?;
        let pair = self.issue(&mut tx, &user, &family).await?;
        tx.commit().await?;
        self.metrics.count("identity_logins_total", "Login attempts.", &[("outcome", "ok")], 1);
        Ok(pair)
    }

    async fn issue(&self, tx: &mut motorpool_platform::db::Tx, user: &UserRow, family: &str) -> Result<TokenPair, Problem> {
        let now = self.clock.now_ms();
        let now_s = now / 1000;
        let claims = Claims {
            iss: self.tokens.issuer.clone(),
            aud: self.tokens.audience.clone(),
            sub: user.id.clone(),
            email: user.email.clone(),
            role: user.role,
            iat: now_s,
            nbf: now_s,
            exp: now_s + self.cfg.access_ttl_secs as i64,
            jti: uuid::Uuid::now_v7().simple().to_string(),
        };
        let access_token = self.keys.sign(&claims).map_err(Problem::internal)?;
        let (refresh_token, hash) = new_refresh_token();
        let expires_at = now + (self.cfg.refresh_ttl_secs as i64) * 1000;
        store::insert_refresh_token(tx, &hash, family, &user.id, now, expires_at).await?;
        Ok(TokenPair { access_token, refresh_token, expires_in: self.cfg.access_ttl_secs, refresh_expires_in: self.cfg.refresh_ttl_secs })
    }

    /// Rotates a refresh token. A token presented a second time means it was stolen or
    /// replayed: its whole family is revoked and the caller must log in again.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, Problem> {
        let hash = hash_refresh_token(token);
        let now = self.clock.now_ms();
        let mut tx = self.db.begin_write().await?;
        let Some((family, user_id)) = store::use_refresh_token(&mut tx, &hash, now).await? else {
            let known = store::find_refresh_token(&mut tx, &hash).await?;
            return match known {
                Some((family, true)) => {
                    let revoked = store::revoke_family(&mut tx, &family, now).await?;
                    tx.commit().await?;
                    tracing::warn!(family = %family, revoked, "refresh token reused; family revoked");
                    self.metrics.count("identity_refresh_reuse_total", "Refresh tokens presented twice.", &[], 1);
                    Err(Problem::new(Code::RefreshTokenReused))
                }
                _ => Err(Problem::new(Code::InvalidRefreshToken)),
            };
        };
        let user = match store::find_user_in(&mut tx, &user_id).await? {
            Some(u) if u.disabled_at.is_none() => u,
            Some(_) => return Err(Problem::new(Code::AccountDisabled)),
            None => return Err(Problem::new(Code::InvalidRefreshToken)),
        };
        let pair = self.issue(&mut tx, &user, &family).await?;
        tx.commit().await?;
        Ok(pair)
    }

    /// Ends the session the refresh token belongs to. Unknown tokens are ignored: logging out
    /// twice is not an error.
    pub async fn logout(&self, token: &str) -> Result<(), Problem> {
        let hash = hash_refresh_token(token);
        let mut tx = self.db.begin_write().await?;
        if let Some((family, _)) = store::find_refresh_token(&mut tx, &hash).await? {
            store::revoke_family(&mut tx, &family, self.clock.now_ms()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An admin's change of role and/or disabled state. Disabling revokes every session and
    /// marks the user in the shared cache so gateways and services refuse their access
    /// tokens at once.
    pub async fn update_user(&self, id: &str, role: Option<Role>, disabled: Option<bool>) -> Result<UserRow, Problem> {
        let current = store::find_user(&self.db, id).await?.ok_or_else(|| Problem::not_found("user"))?;
        let now = self.clock.now_ms();
        let new_role = role.unwrap_or(current.role);
        let disabled_at = match disabled {
            Some(true) => current.disabled_at.or(Some(now)),
            Some(false) => None,
            None => current.disabled_at,
        };
        let mut tx = self.db.begin_write().await?;
        let before = store::update_user(&mut tx, id, new_role, disabled_at, now).await?.ok_or_else(|| Problem::not_found("user"))?;
        if before.role != new_role {
            let event = events::UserRoleChanged { user_id: id.to_owned(), role: new_role, previous_role: before.role };
            self.outbox.add(&mut tx, events::USER_ROLE_CHANGED, id, &event).await?;
        }
        let was_disabled = before.disabled_at.is_some();
        let is_disabled = disabled_at.is_some();
        if is_disabled && !was_disabled {
            store::revoke_user_tokens(&mut tx, id, now).await?;
            self.outbox.add(&mut tx, events::USER_DISABLED, id, &events::UserStatus { user_id: id.to_owned() }).await?;
        } else if was_disabled && !is_disabled {
            self.outbox.add(&mut tx, events::USER_ENABLED, id, &events::UserStatus { user_id: id.to_owned() }).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        if is_disabled {
            // Long enough for every access token issued before the change to expire.
            let ttl = Duration::from_secs(self.cfg.access_ttl_secs + 120);
            self.cache.set(&disabled_key(id), b"1", Some(ttl)).await.map_err(Problem::internal)?;
        } else if was_disabled {
            self.cache.delete(&disabled_key(id)).await.map_err(Problem::internal)?;
        }
        store::find_user(&self.db, id).await?.ok_or_else(|| Problem::not_found("user"))
    }

    /// Creates the configured first admin if that email has no account yet.
    pub async fn ensure_admin(&self, email: &str, password: &str) -> anyhow::Result<()> {
        self.ensure_user(email, password, "Administrator", Role::Admin).await
    }

    /// Creates an account with `role` unless the email is taken (demo data, first admin).
    pub async fn ensure_user(&self, email: &str, password: &str, full_name: &str, role: Role) -> anyhow::Result<()> {
        let email = Email::parse(email).map_err(|e| anyhow::anyhow!("admin email: {}", e.message))?;
        if store::find_user_by_email(&self.db, email.as_str()).await?.is_some() {
            return Ok(());
        }
        let password = Password::parse(password, Some(&email)).map_err(|e| anyhow::anyhow!("admin password: {}", e.message))?;
        let name = FullName::parse(full_name).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        match self.register(email, password, name, role).await {
            Ok(_) => Ok(()),
            Err(p) if p.code == Code::EmailTaken => Ok(()),
            Err(p) => Err(anyhow::anyhow!("creating {}: {p}", role.as_str())),
        }
    }
}
