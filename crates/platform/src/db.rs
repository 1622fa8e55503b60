//! Storage: one database per service, SQLite files by default or PostgreSQL databases.
//!
//! Services write one SQL text for both engines through sqlx's `Any` driver (`$1` placeholders,
//! `RETURNING`, `ON CONFLICT` all work on both). The few real dialect differences live here,
//! named: how a write transaction starts and how a database comes into existence. Ids are TEXT
//! (UUIDv7), timestamps BIGINT milliseconds, money BIGINT minor units, on both engines.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::config::{InfraConfig, StorageBackend};

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A service's database handle. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    name: String,
}

/// The migrations of one schema, for both dialects, as `(file name, SQL)` pairs in order.
/// File names start with their version number: `0001_init.sql`.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static [(&'static str, &'static str)],
    pub postgres: &'static [(&'static str, &'static str)],
}

/// Tables the platform itself keeps in every service database (outbox, inbox, idempotency).
pub const PLATFORM_MIGRATIONS: Migrations = Migrations {
    sqlite: &[("0001_platform.sql", include_str!("../migrations/sqlite/0001_platform.sql"))],
    postgres: &[("0001_platform.sql", include_str!("../migrations/postgres/0001_platform.sql"))],
};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("bad migration file name {0}: it must start with a version number")]
    MigrationName(String),
}

impl Db {
    /// Opens (creating if needed) the database of `service`.
    pub async fn connect(service: &str, infra: &InfraConfig) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        match infra.storage.backend {
            StorageBackend::Sqlite => {
                std::fs::create_dir_all(&infra.data_dir).map_err(|e| DbError::DataDir(infra.data_dir.display().to_string(), e))?;
                let path = infra.data_dir.join(format!("{service}.sqlite"));
                Self::open_sqlite_file(&path, infra.storage.max_connections).await
            }
            StorageBackend::Postgres => {
                let name = format!("{}_{}", infra.storage.database_prefix, service).replace('-', "_");
                ensure_postgres_database(&infra.storage.postgres_url, &name).await?;
                let url = format!("{}/{}", infra.storage.postgres_url.trim_end_matches('/'), name);
                let options = AnyConnectOptions::from_str(&url)?.log_statements(tracing::log::LevelFilter::Trace);
                // No ping before every checkout: it is a round trip per query, about a tenth of
                // a one-statement hold's cost. A connection the server dropped fails its next
                // query instead, and the pool discards it; idle connections are retired before
                // a server or proxy timeout is likely to have cut them.
                let pool = AnyPoolOptions::new()
                    .max_connections(infra.storage.max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire(false)
                    .idle_timeout(Duration::from_secs(300))
                    .connect_with(options)
                    .await?;
                Ok(Self { pool, dialect: Dialect::Postgres, name })
            }
        }
    }

    /// Opens a SQLite file in WAL mode with a busy timeout, so concurrent writers queue
    /// instead of failing.
    pub async fn open_sqlite_file(path: &std::path::Path, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options = AnyConnectOptions::from_str(&url)?.log_statements(tracing::log::LevelFilter::Trace);
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, dialect: Dialect::Sqlite, name: path.display().to_string() })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two transactions that read then write cannot deadlock on the
    /// lock upgrade; the busy timeout queues them instead. PostgreSQL needs nothing special.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }

    /// What to add to the `FROM` list of an autocommit `UPDATE` (or the `USING` list of a
    /// `DELETE`) so that its commit does not wait for the write-ahead log to reach disk:
    /// PostgreSQL's `synchronous_commit = off`, set for that statement's own transaction, in one
    /// round trip where `SET LOCAL` needs a transaction of four. `None` on SQLite, which needs
    /// nothing. Only for bookkeeping that a crash may lose because it is redone, such as
    /// marking outbox rows published: a row whose mark is lost is published again, and the bus
    /// (within its de-duplication window) or every consumer's inbox drops the duplicate.
    pub fn relaxed_commit(&self) -> Option<&'static str> {
        match self.dialect {
            Dialect::Postgres => Some("(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed_commit"),
            Dialect::Sqlite => None,
        }
    }

    /// A subquery listing the elements of a JSON array bound at `param` (such as `$1`), each
    /// cast to `sql_type` (`bigint`, `text`): `x IN (<this>)` takes a list of any length with
    /// one statement text. Lists spliced in as `$2, $3, …` make a new statement for every
    /// length, which the driver prepares again and keeps in its per-connection cache, pushing
    /// out the statements every request uses.
    pub fn json_array_elements(&self, param: &str, sql_type: &str) -> String {
        match self.dialect {
            Dialect::Postgres => format!("SELECT value::{sql_type} FROM json_array_elements_text({param}::json)"),
            Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
        }
    }

    /// Applies the platform's tables and then the service's own migrations, each set with its
    /// own bookkeeping table so their version numbers never collide.
    pub async fn migrate(&self, service: &Migrations) -> Result<(), DbError> {
        let mut platform = migrator(&PLATFORM_MIGRATIONS, self.dialect)?;
        platform.dangerous_set_table_name("_platform_migrations");
        platform.run(&self.pool).await?;
        migrator(service, self.dialect)?.run(&self.pool).await?;
        Ok(())
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn migrator(set: &Migrations, dialect: Dialect) -> Result<Migrator, DbError> {
    let files = match dialect {
        Dialect::Sqlite => set.sqlite,
        Dialect::Postgres => set.postgres,
    };
    let mut migrations = Vec::with_capacity(files.len());
    for (name, sql) in files {
        let version: i64 = name.split('_').next().and_then(|v| v.parse().ok()).ok_or_else(|| DbError::MigrationName((*name).to_owned()))?;
        let description = name.trim_end_matches(".sql").split_once('_').map_or(*name, |(_, d)| d);
        migrations.push(Migration::new(
            version,
            Cow::Owned(description.replace('_', " ")),
            MigrationType::Simple,
            sqlx::AssertSqlSafe(*sql).into_sql_str(),
            false,
        ));
    }
    Ok(Migrator::with_migrations(migrations))
}

use sqlx::SqlSafeStr;

/// Creates the PostgreSQL database `name` on the server at `server_url` if it is missing.
/// Two processes racing to create it is fine: the loser sees `duplicate_database`.
pub async fn ensure_postgres_database(server_url: &str, name: &str) -> Result<(), DbError> {
    let admin_url = format!("{}/postgres", server_url.trim_end_matches('/'));
    let options = AnyConnectOptions::from_str(&admin_url)?.log_statements(tracing::log::LevelFilter::Trace);
    let mut conn = options.connect().await?;
    let exists: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1").bind(name).fetch_optional(&mut conn).await?;
    if exists.is_none() {
        let quoted = name.replace('"', "\"\"");
        let create = format!("CREATE DATABASE \"{quoted}\"");
        if let Err(e) = conn.execute(sqlx::AssertSqlSafe(create)).await {
            let duplicate = e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "42P04" || c == "23505");
            if !duplicate {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Drops a PostgreSQL database, ending its sessions first (used by test cleanup).
pub async fn drop_postgres_database(server_url: &str, name: &str) -> Result<(), DbError> {
    sqlx::any::install_default_drivers();
    let admin_url = format!("{}/postgres", server_url.trim_end_matches('/'));
    let mut conn = AnyConnectOptions::from_str(&admin_url)?.connect().await?;
    let quoted = name.replace('"', "\"\"");
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{quoted}\" WITH (FORCE)"))).await?;
    Ok(())
}

/// True when a database error is a unique-constraint violation: the one place that turns
/// "already exists" races into a 409 instead of a 500.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

/// True when a database error says the database could not be reached or dropped the session
/// (a restart, a failover, a full pool, a lock wait past SQLite's busy timeout) rather than
/// that the statement was wrong: the request may succeed if sent again a moment later.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Database(d) => d.code().is_some_and(|code| match code.parse::<u32>() {
            // SQLite's (extended) result codes: the primary code is the low byte; 5 busy, 6
            // locked (SQLITE_BUSY_SNAPSHOT is 517, for example).
            Ok(sqlite) if code.len() < 5 => matches!(sqlite & 0xff, 5 | 6),
            // PostgreSQL's five-character SQLSTATEs: class 08 connection exceptions, 57P01-57P03
            // shutting down or starting up, 53300 too many connections.
            _ => code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300"),
        }),
        _ => false,
    }
}
