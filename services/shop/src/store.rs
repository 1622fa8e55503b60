//! All of the shop's SQL.

use motorpool_platform::db::{Db, Dialect, Tx};

use crate::domain::catalog::{self, Part};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProductRow {
    pub code: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    pub models: String,
}

impl ProductRow {
    pub fn model_list(&self) -> Vec<String> {
        self.models.split('|').filter(|m| !m.is_empty()).map(str::to_owned).collect()
    }
}

const PRODUCT_COLUMNS: &str = "code, name, description, category, price_minor, currency, models";

/// Inserts the catalog's parts that are missing (every replica may run this at start).
pub async fn seed_catalog(db: &Db, parts: &[Part], currency: &str) -> Result<u64, sqlx::Error> {
    let have: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM products").fetch_one(db.pool()).await?;
    if have as usize >= parts.len() {
        return Ok(0);
    }
    let mut tx = db.begin_write().await?;
    let mut added = 0;
    for p in parts {
        added += sqlx::query(
            "INSERT INTO products (code, name, description, category, price_minor, currency, models, search) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (code) DO NOTHING",
        )
        .bind(&p.code)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.category)
        .bind(p.price_minor)
        .bind(currency)
        .bind(catalog::models_column(&p.models))
        .bind(catalog::search_column(p))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(added)
}

/// Creates or replaces a product; `true` when it is new.
pub async fn put_product(db: &Db, p: &ProductRow, search: &str) -> Result<bool, sqlx::Error> {
    let existed = find_product(db, &p.code).await?.is_some();
    sqlx::query(
        "INSERT INTO products (code, name, description, category, price_minor, currency, models, search) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (code) DO UPDATE SET name = excluded.name, \
         description = excluded.description, category = excluded.category, price_minor = excluded.price_minor, \
         currency = excluded.currency, models = excluded.models, search = excluded.search",
    )
    .bind(&p.code)
    .bind(&p.name)
    .bind(&p.description)
    .bind(&p.category)
    .bind(p.price_minor)
    .bind(&p.currency)
    .bind(&p.models)
    .bind(search)
    .execute(db.pool())
    .await?;
    Ok(!existed)
}

/// A page of products, by code after `cursor`, where every word occurs in the product's text,
/// of `model` and `category` when given.
pub async fn search(
    db: &Db,
    words: &[String],
    model: Option<&str>,
    category: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<ProductRow>, sqlx::Error> {
    let mut sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE code > $1");
    let mut n = 1;
    for _ in words {
        n += 1;
        sql.push_str(&format!(" AND search LIKE '%' || ${n} || '%' ESCAPE '\\'"));
    }
    if model.is_some() {
        n += 1;
        sql.push_str(&format!(" AND models LIKE '%|' || ${n} || '|%'"));
    }
    if category.is_some() {
        n += 1;
        sql.push_str(&format!(" AND category = ${n}"));
    }
    n += 1;
    sql.push_str(&format!(" ORDER BY code LIMIT ${n}"));
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(cursor.unwrap_or(""));
    for w in words {
        q = q.bind(w);
    }
    if let Some(m) = model {
        q = q.bind(m);
    }
    if let Some(c) = category {
        q = q.bind(c);
    }
    q.bind(limit).fetch_all(db.pool()).await
}

pub async fn find_product(db: &Db, code: &str) -> Result<Option<ProductRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE code = $1")))
        .bind(code)
        .fetch_optional(db.pool())
        .await
}

pub async fn categories(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT category FROM products ORDER BY category").fetch_all(db.pool()).await
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CartRow {
    pub id: String,
    pub user_id: String,
    pub checkout_order_id: Option<String>,
    pub updated_at: i64,
}

/// The user's cart, created on first use.
pub async fn ensure_cart(db: &Db, user_id: &str, now: i64) -> Result<CartRow, sqlx::Error> {
    if let Some(c) = find_cart(db, user_id).await? {
        return Ok(c);
    }
    sqlx::query("INSERT INTO carts (id, user_id, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (user_id) DO NOTHING")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(user_id)
        .bind(now)
        .execute(db.pool())
        .await?;
    find_cart(db, user_id).await?.ok_or(sqlx::Error::RowNotFound)
}

pub async fn find_cart(db: &Db, user_id: &str) -> Result<Option<CartRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, user_id, checkout_order_id, updated_at FROM carts WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db.pool())
        .await
}

/// Takes the change lease of the user's cart until `until` if nobody holds it; the cart, or
/// `None` when it is leased (or does not exist yet).
pub async fn lease_cart(db: &Db, user_id: &str, now: i64, until: i64) -> Result<Option<CartRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE carts SET busy_until = $1 WHERE user_id = $2 AND busy_until <= $3 RETURNING id, user_id, checkout_order_id, updated_at",
    )
    .bind(until)
    .bind(user_id)
    .bind(now)
    .fetch_optional(db.pool())
    .await
}

/// Gives the lease back and records the change time.
pub async fn end_lease(db: &Db, cart_id: &str, until: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE carts SET busy_until = 0, updated_at = $1 WHERE id = $2 AND busy_until = $3")
        .bind(now)
        .bind(cart_id)
        .bind(until)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A product's columns followed by the cart line's quantity and hold id.
type ProductWithLine = (String, String, String, String, i64, String, String, Option<i64>, Option<String>);

/// A product with the cart's line of it, if any: (product, line quantity and hold id).
pub async fn product_and_line(db: &Db, cart_id: &str, code: &str) -> Result<Option<(ProductRow, Option<(i64, String)>)>, sqlx::Error> {
    let row: Option<ProductWithLine> = sqlx::query_as(
        "SELECT p.code, p.name, p.description, p.category, p.price_minor, p.currency, p.models, l.quantity, l.hold_id \
         FROM products p LEFT JOIN cart_lines l ON l.cart_id = $1 AND l.product_code = p.code WHERE p.code = $2",
    )
    .bind(cart_id)
    .bind(code)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(code, name, description, category, price_minor, currency, models, q, hold)| {
        (ProductRow { code, name, description, category, price_minor, currency, models }, q.zip(hold))
    }))
}

async fn touch_cart(tx: &mut Tx, cart_id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE carts SET updated_at = $1 WHERE id = $2").bind(now).bind(cart_id).execute(&mut **tx).await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LineRow {
    pub product_code: String,
    pub name: String,
    pub quantity: i64,
    pub price_minor: i64,
    pub currency: String,
    pub hold_id: String,
    pub hold_expires_at: i64,
}

const LINE_SELECT: &str = "SELECT l.product_code, p.name, l.quantity, p.price_minor, p.currency, l.hold_id, l.hold_expires_at \
     FROM cart_lines l JOIN products p ON p.code = l.product_code";

pub async fn lines(db: &Db, cart_id: &str) -> Result<Vec<LineRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{LINE_SELECT} WHERE l.cart_id = $1 ORDER BY l.added_at, l.product_code")))
        .bind(cart_id)
        .fetch_all(db.pool())
        .await
}

pub async fn line(db: &Db, cart_id: &str, code: &str) -> Result<Option<LineRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{LINE_SELECT} WHERE l.cart_id = $1 AND l.product_code = $2")))
        .bind(cart_id)
        .bind(code)
        .fetch_optional(db.pool())
        .await
}

/// Creates or replaces a line with the hold behind it.
pub async fn put_line(
    conn: &mut sqlx::AnyConnection,
    cart_id: &str,
    code: &str,
    quantity: i64,
    hold_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cart_lines (cart_id, product_code, quantity, hold_id, hold_expires_at, added_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (cart_id, product_code) DO UPDATE SET quantity = excluded.quantity, hold_id = excluded.hold_id, \
         hold_expires_at = excluded.hold_expires_at",
    )
    .bind(cart_id)
    .bind(code)
    .bind(quantity)
    .bind(hold_id)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a line; its hold id when there was one.
pub async fn delete_line(tx: &mut Tx, cart_id: &str, code: &str) -> Result<Option<String>, sqlx::Error> {
    let hold: Option<String> = sqlx::query_scalar("DELETE FROM cart_lines WHERE cart_id = $1 AND product_code = $2 RETURNING hold_id")
        .bind(cart_id)
        .bind(code)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(hold)
}

/// What [`view_for_add`] saw: the cart, whether another change holds its lease, the product
/// (none when the code is unknown) and the cart's line of it.
#[derive(Debug, Clone)]
pub struct AddView {
    pub cart: CartRow,
    pub busy: bool,
    pub product: Option<ProductRow>,
    pub line: Option<(i64, String)>,
}

type AddViewRow = (
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

const ADD_VIEW_COLUMNS: &str = "c.id, c.user_id, c.checkout_order_id, c.updated_at, c.busy_until, \
     p.code, p.name, p.description, p.category, p.price_minor, p.currency, p.models, l.quantity, l.hold_id";

fn add_view(row: AddViewRow, now: i64) -> AddView {
    let (id, user_id, checkout_order_id, updated_at, busy_until, code, name, description, category, price, currency, models, q, hold) = row;
    let product = match (code, name, description, category, price, currency, models) {
        (Some(code), Some(name), Some(description), Some(category), Some(price_minor), Some(currency), Some(models)) => {
            Some(ProductRow { code, name, description, category, price_minor, currency, models })
        }
        _ => None,
    };
    AddView { cart: CartRow { id, user_id, checkout_order_id, updated_at }, busy: busy_until > now, product, line: q.zip(hold) }
}

/// The user's cart, the product and the cart's line of it, in one read (`None`: no cart yet).
pub async fn view_for_add(db: &Db, user_id: &str, code: &str, now: i64) -> Result<Option<AddView>, sqlx::Error> {
    let row: Option<AddViewRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ADD_VIEW_COLUMNS} FROM carts c LEFT JOIN products p ON p.code = $2 \
         LEFT JOIN cart_lines l ON l.cart_id = c.id AND l.product_code = $2 WHERE c.user_id = $1"
    )))
    .bind(user_id)
    .bind(code)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|row| add_view(row, now)))
}

/// [`view_for_add`] of many (user, product code) pairs in one read, on PostgreSQL.
pub async fn views_for_add(db: &Db, wanted: &[(String, String)], now: i64) -> Result<Vec<Option<AddView>>, sqlx::Error> {
    let input: Vec<_> = wanted.iter().enumerate().map(|(n, (user, code))| serde_json::json!({"n": n, "u": user, "c": code})).collect();
    // The item's index goes last: the view's columns keep their places.
    let sql = format!(
        "SELECT {ADD_VIEW_COLUMNS}, r.n FROM json_to_recordset($1::json) AS r(n bigint, u text, c text) \
         JOIN carts c ON c.user_id = r.u LEFT JOIN products p ON p.code = r.c \
         LEFT JOIN cart_lines l ON l.cart_id = c.id AND l.product_code = r.c"
    );
    let mut out = vec![None; wanted.len()];
    for row in sqlx::query(sqlx::AssertSqlSafe(sql)).bind(json_text(&input)?).fetch_all(db.pool()).await? {
        let n: i64 = sqlx::Row::try_get(&row, 14)?;
        let view: AddViewRow = sqlx::FromRow::from_row(&row)?;
        if let Some(slot) = usize::try_from(n).ok().and_then(|n| out.get_mut(n)) {
            *slot = Some(add_view(view, now));
        }
    }
    Ok(out)
}

/// A JSON document as the text a statement takes it in.
fn json_text(value: &impl serde::Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// A line [`insert_new_line`] writes if its cart is idle and still lacks the product.
#[derive(Debug, Clone)]
pub struct NewLine {
    pub cart_id: String,
    pub code: String,
    pub quantity: i64,
    pub hold_id: String,
    pub expires_at: i64,
}

/// Writes a new line with its hold if the cart has no line of the product, is not frozen by a
/// checkout and no leased change is running on it; `false` (nothing written) otherwise.
///
/// On PostgreSQL this is one statement. Its update of the cart row locks the row, so it either
/// sees a lease taken before it (and writes nothing) or makes a lease taken after it wait until
/// the line is visible to the lease holder.
pub async fn insert_new_line(db: &Db, l: &NewLine, now: i64) -> Result<bool, sqlx::Error> {
    const CART_IDLE: &str = "UPDATE carts SET updated_at = $6 WHERE id = $1 AND busy_until <= $6 AND checkout_order_id IS NULL";
    const INSERT: &str = "INSERT INTO cart_lines (cart_id, product_code, quantity, hold_id, hold_expires_at, added_at)";
    // Every statement below takes the same six parameters.
    let line = |sql: String| {
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&l.cart_id).bind(&l.code).bind(l.quantity).bind(&l.hold_id).bind(l.expires_at).bind(now)
    };
    if db.dialect() == Dialect::Postgres {
        let row = line(format!(
            "WITH c AS ({CART_IDLE} RETURNING id), \
             i AS ({INSERT} SELECT c.id, $2, $3, $4, $5, $6 FROM c ON CONFLICT (cart_id, product_code) DO NOTHING RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM i)"
        ))
        .fetch_one(db.pool())
        .await?;
        return sqlx::Row::try_get::<bool, _>(&row, 0);
    }
    let mut tx = db.begin_write().await?;
    let idle = line(CART_IDLE.to_owned()).execute(&mut *tx).await?.rows_affected() == 1;
    let written = idle
        && line(format!("{INSERT} VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cart_id, product_code) DO NOTHING"))
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if written {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(written)
}

/// [`insert_new_line`] of many lines of distinct carts in one statement, on PostgreSQL: for
/// each, whether it was written.
///
/// The carts are locked in the order of their ids before any is changed, so two such
/// statements (of two replicas, say) wait for each other rather than deadlock; a lease taken
/// meanwhile is seen exactly as by the one-line statement. A line is written only with its
/// product, so no line can fail the statement for the others.
pub async fn insert_new_lines(db: &Db, lines: &[NewLine], now: i64) -> Result<Vec<bool>, sqlx::Error> {
    let input: Vec<_> = lines
        .iter()
        .map(|l| serde_json::json!({"cart": l.cart_id, "code": l.code, "q": l.quantity, "hold": l.hold_id, "exp": l.expires_at}))
        .collect();
    let written: Vec<String> = sqlx::query_scalar(
        "WITH r AS (SELECT * FROM json_to_recordset($1::json) AS r(cart text, code text, q bigint, hold text, exp bigint)), \
         k AS (SELECT id FROM carts WHERE id IN (SELECT cart FROM r) AND busy_until <= $2 AND checkout_order_id IS NULL \
               ORDER BY id FOR UPDATE), \
         c AS (UPDATE carts SET updated_at = $2 FROM k WHERE carts.id = k.id RETURNING carts.id), \
         i AS (INSERT INTO cart_lines (cart_id, product_code, quantity, hold_id, hold_expires_at, added_at) \
               SELECT r.cart, r.code, r.q, r.hold, r.exp, $2 FROM r JOIN c ON c.id = r.cart JOIN products p ON p.code = r.code \
               ON CONFLICT (cart_id, product_code) DO NOTHING RETURNING hold_id) \
         SELECT hold_id FROM i",
    )
    .bind(json_text(&input)?)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    Ok(lines.iter().map(|l| written.contains(&l.hold_id)).collect())
}

/// What [`remove_line`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The line is gone and its hold queued for release.
    Removed {
        cart: CartRow,
        hold_id: String,
    },
    NotInCart(CartRow),
    Frozen(CartRow),
    /// A leased change is running on the cart: try again shortly.
    Busy,
    NoCart,
}

/// Removes the product's line from the user's cart and queues its hold for release, unless a
/// checkout froze the cart or a leased change is running on it; one statement on PostgreSQL.
pub async fn remove_line(db: &Db, user_id: &str, code: &str, now: i64) -> Result<Removal, sqlx::Error> {
    if db.dialect() == Dialect::Postgres {
        // `c` locks the cart row (waiting for a lease being taken and re-checking it); `s` is
        // the row as the statement found it, to tell a frozen or busy cart from no cart.
        let row: Option<RemovalRow> = sqlx::query_as(
            "WITH c AS (UPDATE carts SET updated_at = $3 WHERE user_id = $1 AND busy_until <= $3 AND checkout_order_id IS NULL \
                        RETURNING id), \
             d AS (DELETE FROM cart_lines l USING c WHERE l.cart_id = c.id AND l.product_code = $2 RETURNING l.cart_id, l.hold_id), \
             q AS (INSERT INTO hold_releases (hold_id, owner, next_at, created_at) SELECT hold_id, 'cart:' || cart_id, $3, $3 FROM d \
                   ON CONFLICT (hold_id) DO NOTHING) \
             SELECT s.id, s.user_id, s.checkout_order_id, s.updated_at, s.busy_until, EXISTS (SELECT 1 FROM c), (SELECT hold_id FROM d) \
             FROM carts s WHERE s.user_id = $1",
        )
        .bind(user_id)
        .bind(code)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
        return Ok(row.map_or(Removal::NoCart, |row| removal(row, now)));
    }
    let mut tx = db.begin_write().await?;
    let row: Option<(String, String, Option<String>, i64, i64)> =
        sqlx::query_as("SELECT id, user_id, checkout_order_id, updated_at, busy_until FROM carts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((id, user_id, checkout_order_id, updated_at, busy_until)) = row else {
        return Ok(Removal::NoCart);
    };
    let cart = CartRow { id, user_id, checkout_order_id, updated_at };
    if cart.checkout_order_id.is_some() {
        return Ok(Removal::Frozen(cart));
    }
    if busy_until > now {
        return Ok(Removal::Busy);
    }
    let Some(hold_id) = delete_line(&mut tx, &cart.id, code).await? else {
        return Ok(Removal::NotInCart(cart));
    };
    queue_release(&mut tx, &hold_id, &format!("cart:{}", cart.id), now).await?;
    touch_cart(&mut tx, &cart.id, now).await?;
    tx.commit().await?;
    Ok(Removal::Removed { cart: CartRow { updated_at: now, ..cart }, hold_id })
}

/// What the removal statements give per item: the cart as found, whether the statement
/// changed it, and the hold of the line it deleted.
type RemovalRow = (String, String, Option<String>, i64, i64, bool, Option<String>);

fn removal(row: RemovalRow, now: i64) -> Removal {
    let (id, user_id, checkout_order_id, updated_at, _busy_until, changed, hold) = row;
    let cart = CartRow { id, user_id, checkout_order_id, updated_at };
    match (changed, hold) {
        (true, Some(hold_id)) => Removal::Removed { cart: CartRow { updated_at: now, ..cart }, hold_id },
        (true, None) => Removal::NotInCart(cart),
        // Frozen or leased as the statement found it, or changed by another statement meanwhile.
        (false, _) if cart.checkout_order_id.is_some() => Removal::Frozen(cart),
        (false, _) => Removal::Busy,
    }
}

/// [`remove_line`] for many (user, product code) pairs of distinct users in one statement, on
/// PostgreSQL; the carts are locked in the order of their ids, as by [`insert_new_lines`].
pub async fn remove_lines(db: &Db, wanted: &[(String, String)], now: i64) -> Result<Vec<Removal>, sqlx::Error> {
    let input: Vec<_> = wanted.iter().enumerate().map(|(n, (user, code))| serde_json::json!({"n": n, "u": user, "c": code})).collect();
    let rows = sqlx::query(
        "WITH r AS (SELECT * FROM json_to_recordset($1::json) AS r(n bigint, u text, c text)), \
         k AS (SELECT id FROM carts WHERE user_id IN (SELECT u FROM r) AND busy_until <= $2 AND checkout_order_id IS NULL \
               ORDER BY id FOR UPDATE), \
         c AS (UPDATE carts SET updated_at = $2 FROM k WHERE carts.id = k.id RETURNING carts.id, carts.user_id), \
         d AS (DELETE FROM cart_lines l USING c, r WHERE l.cart_id = c.id AND r.u = c.user_id AND l.product_code = r.c \
               RETURNING l.cart_id, l.product_code, l.hold_id), \
         q AS (INSERT INTO hold_releases (hold_id, owner, next_at, created_at) SELECT hold_id, 'cart:' || cart_id, $2, $2 FROM d \
               ON CONFLICT (hold_id) DO NOTHING) \
         SELECT s.id, s.user_id, s.checkout_order_id, s.updated_at, s.busy_until, c.id IS NOT NULL, d.hold_id, r.n \
         FROM r JOIN carts s ON s.user_id = r.u LEFT JOIN c ON c.id = s.id LEFT JOIN d ON d.cart_id = s.id AND d.product_code = r.c",
    )
    .bind(json_text(&input)?)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut out = vec![Removal::NoCart; wanted.len()];
    for row in rows {
        // The item's index is last, after the removal's columns.
        let n: i64 = sqlx::Row::try_get(&row, 7)?;
        let found: RemovalRow = sqlx::FromRow::from_row(&row)?;
        if let Some(slot) = usize::try_from(n).ok().and_then(|n| out.get_mut(n)) {
            *slot = removal(found, now);
        }
    }
    Ok(out)
}

/// Deletes the lines backed by these holds (an order took them, or they are gone).
pub async fn delete_lines_with_holds(tx: &mut Tx, cart_id: &str, hold_ids: &[String], now: i64) -> Result<(), sqlx::Error> {
    for h in hold_ids {
        sqlx::query("DELETE FROM cart_lines WHERE cart_id = $1 AND hold_id = $2").bind(cart_id).bind(h).execute(&mut **tx).await?;
    }
    touch_cart(tx, cart_id, now).await
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RequestRow {
    pub request_id: String,
    pub action: String,
    pub product_code: Option<String>,
    pub quantity: Option<i64>,
    pub status: String,
    pub reason: Option<String>,
    pub available: Option<i64>,
    pub created_at: i64,
}

const REQUEST_COLUMNS: &str = "request_id, action, product_code, quantity, status, reason, available, created_at";

/// Records a pending request; false when the cart already has one with this id.
pub async fn insert_request(
    db: &Db,
    cart_id: &str,
    request_id: &str,
    action: &str,
    code: Option<&str>,
    quantity: Option<i64>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO cart_requests (cart_id, request_id, action, product_code, quantity, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6) ON CONFLICT (cart_id, request_id) DO NOTHING",
    )
    .bind(cart_id)
    .bind(request_id)
    .bind(action)
    .bind(code)
    .bind(quantity)
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn find_request(db: &Db, cart_id: &str, request_id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {REQUEST_COLUMNS} FROM cart_requests WHERE cart_id = $1 AND request_id = $2")))
        .bind(cart_id)
        .bind(request_id)
        .fetch_optional(db.pool())
        .await
}

pub async fn pending_requests(db: &Db, cart_id: &str) -> Result<Vec<RequestRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM cart_requests WHERE cart_id = $1 AND status = 'pending' ORDER BY created_at, request_id LIMIT 100"
    )))
    .bind(cart_id)
    .fetch_all(db.pool())
    .await
}

/// Settles a request.
pub async fn resolve_request(
    db: &Db,
    cart_id: &str,
    request_id: &str,
    status: &str,
    reason: Option<&str>,
    available: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE cart_requests SET status = $1, reason = $2, available = $3, resolved_at = $4 WHERE cart_id = $5 AND request_id = $6",
    )
    .bind(status)
    .bind(reason)
    .bind(available)
    .bind(now)
    .bind(cart_id)
    .bind(request_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Settles requests left pending by a crash (their outcome is unknown: the client reads the
/// cart).
pub async fn expire_pending_requests(db: &Db, before: i64, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE cart_requests SET status = 'rejected', reason = 'interrupted', resolved_at = $1 WHERE status = 'pending' AND created_at < $2")
        .bind(now)
        .bind(before)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// Forgets settled requests older than `before`, and pending ones abandoned by a crash.
pub async fn prune_requests(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM cart_requests WHERE created_at < $1").bind(before).execute(db.pool()).await?.rows_affected())
}

/// Queues a hold to be given back to inventory.
pub async fn queue_release(tx: &mut Tx, hold_id: &str, owner: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO hold_releases (hold_id, owner, next_at, created_at) VALUES ($1, $2, $3, $3) ON CONFLICT (hold_id) DO NOTHING")
        .bind(hold_id)
        .bind(owner)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Up to `limit` due releases: (hold id, owner, attempts).
pub async fn due_releases(db: &Db, now: i64, limit: i64) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT hold_id, owner, attempts FROM hold_releases WHERE next_at <= $1 ORDER BY next_at, hold_id LIMIT $2")
        .bind(now)
        .bind(limit)
        .fetch_all(db.pool())
        .await
}

/// Forgets releases inventory has done.
pub async fn releases_done(db: &Db, hold_ids: &[String]) -> Result<(), sqlx::Error> {
    if hold_ids.is_empty() {
        return Ok(());
    }
    // A lost delete only sends a release again, which inventory ignores: no flush to wait for.
    let using = db.relaxed_commit().map(|r| format!(" USING {r}")).unwrap_or_default();
    let sql = format!("DELETE FROM hold_releases{using} WHERE hold_id IN ({})", db.json_array_elements("$1", "text"));
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(json_text(&hold_ids)?).execute(db.pool()).await?;
    Ok(())
}

pub async fn release_later(db: &Db, hold_id: &str, next_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE hold_releases SET attempts = attempts + 1, next_at = $1 WHERE hold_id = $2")
        .bind(next_at)
        .bind(hold_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub cart_id: String,
    pub status: String,
    pub total_minor: i64,
    pub currency: String,
    pub charge_id: Option<String>,
    pub failure: Option<String>,
    pub idempotency_scope: String,
    pub idempotency_key: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const ORDER_COLUMNS: &str =
    "id, user_id, cart_id, status, total_minor, currency, charge_id, failure, idempotency_scope, idempotency_key, created_at, updated_at";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderLineRow {
    pub product_code: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub hold_id: String,
}

/// Records a new order and freezes its cart; false when the cart is already checking out.
pub async fn insert_order(tx: &mut Tx, o: &OrderRow, lines: &[OrderLineRow]) -> Result<bool, sqlx::Error> {
    let frozen = sqlx::query("UPDATE carts SET checkout_order_id = $1 WHERE id = $2 AND checkout_order_id IS NULL")
        .bind(&o.id)
        .bind(&o.cart_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if frozen != 1 {
        return Ok(false);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO orders ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )))
    .bind(&o.id)
    .bind(&o.user_id)
    .bind(&o.cart_id)
    .bind(&o.status)
    .bind(o.total_minor)
    .bind(&o.currency)
    .bind(&o.charge_id)
    .bind(&o.failure)
    .bind(&o.idempotency_scope)
    .bind(&o.idempotency_key)
    .bind(o.created_at)
    .bind(o.updated_at)
    .execute(&mut **tx)
    .await?;
    for l in lines {
        sqlx::query(
            "INSERT INTO order_lines (order_id, product_code, name, quantity, unit_price_minor, hold_id) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&o.id)
        .bind(&l.product_code)
        .bind(&l.name)
        .bind(l.quantity)
        .bind(l.unit_price_minor)
        .bind(&l.hold_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

pub async fn find_order(db: &Db, id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn order_by_key(db: &Db, scope: &str, key: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE idempotency_scope = $1 AND idempotency_key = $2")))
        .bind(scope)
        .bind(key)
        .fetch_optional(db.pool())
        .await
}

pub async fn order_lines(db: &Db, order_id: &str) -> Result<Vec<OrderLineRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT product_code, name, quantity, unit_price_minor, hold_id FROM order_lines WHERE order_id = $1 ORDER BY product_code",
    )
    .bind(order_id)
    .fetch_all(db.pool())
    .await
}

/// The user's orders, newest first, after `cursor` (an order id).
pub async fn list_orders(db: &Db, user_id: &str, cursor: Option<&str>, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
    match cursor {
        Some(c) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            )))
            .bind(user_id)
            .bind(c)
            .bind(limit)
            .fetch_all(db.pool())
            .await
        }
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2")))
                .bind(user_id)
                .bind(limit)
                .fetch_all(db.pool())
                .await
        }
    }
}

pub async fn set_charge(db: &Db, order_id: &str, charge_id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET charge_id = $1, updated_at = $2 WHERE id = $3")
        .bind(charge_id)
        .bind(now)
        .bind(order_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Ends a pending order (placed or failed) and unfreezes its cart; false when it had already
/// ended (another replica finished it).
pub async fn finish_order(tx: &mut Tx, o: &OrderRow, status: &str, failure: Option<&str>, now: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("UPDATE orders SET status = $1, failure = $2, updated_at = $3 WHERE id = $4 AND status = 'pending'")
        .bind(status)
        .bind(failure)
        .bind(now)
        .bind(&o.id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n != 1 {
        return Ok(false);
    }
    sqlx::query("UPDATE carts SET checkout_order_id = NULL, updated_at = $1 WHERE id = $2 AND checkout_order_id = $3")
        .bind(now)
        .bind(&o.cart_id)
        .bind(&o.id)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Pending orders nobody has touched since `before` (a checkout interrupted by a crash or an
/// outage), oldest first.
pub async fn stale_orders(db: &Db, before: i64, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'pending' AND updated_at < $1 ORDER BY updated_at LIMIT $2"
    )))
    .bind(before)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Claims a stale order for re-driving; only one replica wins.
pub async fn claim_order(db: &Db, o: &OrderRow, now: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("UPDATE orders SET updated_at = $1 WHERE id = $2 AND status = 'pending' AND updated_at = $3")
        .bind(now)
        .bind(&o.id)
        .bind(o.updated_at)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(n == 1)
}
