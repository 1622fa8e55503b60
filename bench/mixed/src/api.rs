//! The public API at one gateway: JSON requests with an optional bearer token and
//! `Idempotency-Key`, answers as status + JSON, and money as minor units.

use std::time::Duration;

use serde_json::Value;

/// One gateway's base URL and the shared HTTP client.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

/// An answer: status, JSON body (`Null` when empty, a string when not JSON), and whether the
/// platform said it replayed a stored answer (`idempotent-replayed: true`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
    pub request_id: String,
}

impl Answer {
    /// The problem `code` of an error answer ("" when there is none).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// `"<status> <code>"`, how outcomes are named in the report.
    pub fn label(&self) -> String {
        let code = self.code();
        if code.is_empty() { self.status.to_string() } else { format!("{} {code}", self.status) }
    }

    /// A one-line description for error messages, with the request id to find it in logs.
    pub fn describe(&self) -> String {
        let mut body = self.body.to_string();
        body.truncate(300);
        format!("{}: {body} (x-request-id {})", self.label(), self.request_id)
    }
}

pub fn client(timeout: Duration, pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned() }
    }

    /// The WebSocket URL of `path` at this gateway.
    pub fn ws_url(&self, path: &str) -> String {
        let base = self.base.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1);
        format!("{base}{path}")
    }

    /// Sends one request; `Err` only for transport failures and timeouts.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.map_err(transport)?;
        let status = r.status().as_u16();
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let replayed = header("idempotent-replayed") == "true";
        let request_id = header("x-request-id");
        let bytes = r.bytes().await.map_err(transport)?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer { status, body, replayed, request_id })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Answer, String> {
        self.call(reqwest::Method::GET, path, token, None, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, key: Option<&str>, body: &Value) -> Result<Answer, String> {
        self.call(reqwest::Method::POST, path, token, key, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Answer, String> {
        self.call(reqwest::Method::PUT, path, token, None, Some(body)).await
    }

    /// A GET that must answer 200: its body.
    pub async fn get_ok(&self, path: &str, token: Option<&str>) -> Result<Value, String> {
        let a = self.get(path, token).await?;
        if a.status != 200 {
            return Err(format!("GET {path}: {}", a.describe()));
        }
        Ok(a.body)
    }
}

fn transport(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    // The innermost cause says what happened (connection refused, reset...).
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    format!("transport: {msg}")
}

/// Money `{"amount": "-12.34", ...}` in minor units (`None` when it is not money).
pub fn minor(money: &Value) -> Option<i64> {
    cents(money["amount"].as_str()?)
}

/// A decimal string such as `"12.34"` or `"-7.00"` in minor units.
pub fn cents(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (units, frac) = digits.split_once('.').unwrap_or((digits, "00"));
    if frac.len() != 2 {
        return None;
    }
    let v = units.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?;
    Some(if neg { -v } else { v })
}

/// Minor units as a decimal string: `1234` → `"12.34"`.
pub fn decimal(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", minor.abs() / 100, minor.abs() % 100)
}

/// The factory's SKU of a configuration option: `CAR-<CODE>` (as `motorpool_factory::domain::sku`).
pub fn car_sku(code: &str) -> String {
    let cleaned: String = code.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_uppercase() } else { '-' }).collect();
    format!("CAR-{cleaned}")
}

/// Today's date in UTC, `YYYY-MM-DD` (the factory's production dates are UTC days).
pub fn today_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    civil(i64::try_from(secs / 86_400).unwrap_or(0))
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips() {
        assert_eq!(cents("12.34"), Some(1234));
        assert_eq!(cents("-7.00"), Some(-700));
        assert_eq!(cents("0.05"), Some(5));
        assert_eq!(cents("12.3"), None);
        assert_eq!(decimal(1234), "12.34");
        assert_eq!(decimal(-5), "-0.05");
        assert_eq!(minor(&serde_json::json!({"amount": "58250.00", "currency": "EUR"})), Some(5_825_000));
    }

    #[test]
    fn skus_and_dates() {
        assert_eq!(car_sku("v6-3.0"), "CAR-V6-3.0");
        assert_eq!(car_sku("tundra"), "CAR-TUNDRA");
        assert_eq!(civil(0), "1970-01-01");
        assert_eq!(civil(19_723), "2024-01-01");
        assert_eq!(civil(20_513), "2026-03-01");
    }
}
