//! What the gateway serves itself: the web pages, the merged API documentation and the
//! admin's overview of every service's health.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use motorpool_platform::auth::Admin;
use motorpool_platform::problem::Problem;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::proxy::Gateway;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The embedded pages by URL path; `/` serves `/index.html`.
pub fn asset_table() -> HashMap<&'static str, &'static [u8]> {
    let mut table: HashMap<&'static str, &'static [u8]> = assets::ASSETS.iter().copied().collect();
    if let Some(index) = table.get("/index.html").copied() {
        table.insert("/", index);
    }
    table
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ if path == "/" => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

pub async fn serve_asset(req: Request) -> Response {
    let path = req.uri().path();
    let Some(body) = asset_table().get(path).copied() else {
        return Problem::not_found("page").into_response();
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// The merged document, cached for a while.
#[derive(Default)]
pub struct DocsCache(Mutex<Option<(Instant, Value)>>);

async fn fetch_json(gw: &Gateway, addr: &str, path: &str) -> Result<(StatusCode, Value), String> {
    let uri = format!("http://{addr}{path}").parse::<axum::http::Uri>().map_err(|e| e.to_string())?;
    let req = axum::http::Request::get(uri).body(axum::body::Body::empty()).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(2), gw.client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).map_err(|e| e.to_string())?))
}

/// Every service's OpenAPI document merged into one, fetched from live replicas.
pub async fn merged_openapi(State((gw, cache)): State<(Arc<Gateway>, Arc<DocsCache>)>) -> Response {
    let mut guard = cache.0.lock().await;
    if let Some((at, doc)) = guard.as_ref()
        && at.elapsed() < Duration::from_secs(gw.cfg.docs_cache_secs)
    {
        return Json(doc.clone()).into_response();
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Motorpool API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Every Motorpool service behind one gateway. Errors are application/problem+json with a stable `code`."},
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "tags": []
    });
    let mut complete = true;
    for service in crate::table::services() {
        let addrs = gw.discovery.resolve(service).await.unwrap_or_default();
        let Some(addr) = addrs.first() else {
            complete = false;
            continue;
        };
        match fetch_json(&gw, addr, "/openapi.json").await {
            Ok((_, part)) => merge(&mut doc, &part),
            Err(e) => {
                complete = false;
                tracing::warn!(service, error = %e, "cannot fetch API document");
            }
        }
    }
    if complete {
        *guard = Some((Instant::now(), doc.clone()));
    }
    Json(doc).into_response()
}

fn merge(into: &mut Value, part: &Value) {
    for section in ["paths"] {
        if let (Some(dst), Some(src)) = (into[section].as_object_mut(), part[section].as_object()) {
            for (k, v) in src {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
    if let (Some(dst), Some(src)) = (into["components"]["schemas"].as_object_mut(), part["components"]["schemas"].as_object()) {
        for (k, v) in src {
            dst.insert(k.clone(), v.clone());
        }
    }
    if let (Some(dst), Some(src)) = (into["tags"].as_array_mut(), part["tags"].as_array()) {
        dst.extend(src.iter().cloned());
    }
}

/// Every routed service's replicas and their readiness (admin).
pub async fn overview(State(gw): State<Arc<Gateway>>, _admin: Admin) -> Json<Value> {
    let mut services = Vec::new();
    for service in crate::table::services() {
        let addrs = gw.discovery.resolve(service).await.unwrap_or_default();
        let mut instances = Vec::new();
        for addr in &addrs {
            let (ready, checks) = match fetch_json(&gw, addr, "/ready").await {
                Ok((status, body)) => (status == StatusCode::OK, body["checks"].clone()),
                Err(e) => (false, json!({"error": e})),
            };
            instances.push(json!({"address": addr, "ready": ready, "ejected": !gw.balancer.is_live(addr), "checks": checks}));
        }
        services.push(
            json!({"service": service, "instances": instances, "ready": !addrs.is_empty() && instances.iter().all(|i| i["ready"] == true)}),
        );
    }
    Json(json!({"services": services}))
}
