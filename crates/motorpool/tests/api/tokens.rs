//! Forged and broken access tokens are refused with 401, at the gateway and at the service.
//! The tests mint tokens with identity's real signing key (read from its database), so each
//! case differs from a valid token in exactly the property under test.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;

const PKCS8_ED25519_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

fn ed_key(seed: &[u8]) -> EncodingKey {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    EncodingKey::from_ed_der(&der)
}

fn sign(kid: &str, seed: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &ed_key(seed)).unwrap()
}

fn claims(sub: &str, email: &str, offset_iat: i64, ttl: i64, aud: &str, iss: &str) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + offset_iat;
    json!({"iss": iss, "aud": aud, "sub": sub, "email": email, "role": "customer",
           "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid::Uuid::now_v7().simple().to_string()})
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let app = spawn().await;
    let (email, access, _) = app.customer("forge").await;
    let me: Value = app.get_auth("/api/auth/me", &access).await.json().await.unwrap();
    let sub = me["id"].as_str().unwrap().to_owned();

    let db = motorpool_platform::db::Db::connect("identity", &app.tp.cfg.infra()).await.unwrap();
    let (kid, seed): (String, Vec<u8>) =
        sqlx::query_as("SELECT kid, secret FROM signing_keys WHERE retired_at IS NULL").fetch_one(db.pool()).await.unwrap();
    let public_x: (String,) =
        sqlx::query_as("SELECT public_x FROM signing_keys WHERE kid = $1").bind(&kid).fetch_one(db.pool()).await.unwrap();
    db.close().await;
    let (iss, aud) = ("motorpool", "motorpool-api");

    // Control: a token minted this way with correct claims is accepted, so every refusal
    // below is due to the one property changed.
    let good = sign(&kid, &seed, &claims(&sub, &email, 0, 600, aud, iss));
    for base in [app.gw.clone(), app.tp.url("identity")] {
        let r = app.http.get(format!("{base}/api/auth/me")).bearer_auth(&good).send().await.unwrap();
        assert_eq!(r.status(), 200, "control token at {base}");
    }

    let mut bad: Vec<(&str, String)> = Vec::new();
    // Tampered signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    sig[0] ^= 0x01;
    parts[2] = URL_SAFE_NO_PAD.encode(sig);
    bad.push(("bad signature", parts.join(".")));
    // Tampered claims under the original signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({"role": "admin"})).unwrap());
    bad.push(("tampered claims", parts.join(".")));
    // alg: none.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&sub, &email, 0, 600, aud, iss)).unwrap());
    bad.push(("alg none", format!("{header}.{body}.")));
    // HS256 "signed" with the public key, raw and as its base64 text.
    let public_raw = URL_SAFE_NO_PAD.decode(&public_x.0).unwrap();
    for secret in [public_raw.as_slice(), public_x.0.as_bytes()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        bad.push((
            "hs256 with public key",
            jsonwebtoken::encode(&h, &claims(&sub, &email, 0, 600, aud, iss), &EncodingKey::from_secret(secret)).unwrap(),
        ));
    }
    // Expired an hour ago.
    bad.push(("expired", sign(&kid, &seed, &claims(&sub, &email, -7200, 3600, aud, iss))));
    // Not valid yet.
    bad.push(("not yet valid", sign(&kid, &seed, &claims(&sub, &email, 3600, 600, aud, iss))));
    // Wrong audience, wrong issuer.
    bad.push(("wrong audience", sign(&kid, &seed, &claims(&sub, &email, 0, 600, "someone-else", iss))));
    bad.push(("wrong issuer", sign(&kid, &seed, &claims(&sub, &email, 0, 600, aud, "evil"))));
    // Unknown kid, signed by a key identity never made.
    bad.push(("unknown kid", sign("no-such-key", &[7u8; 32], &claims(&sub, &email, 0, 600, aud, iss))));
    // A real kid with another key's signature.
    bad.push(("foreign key", sign(&kid, &[9u8; 32], &claims(&sub, &email, 0, 600, aud, iss))));
    // Not a JWT at all.
    bad.push(("garbage", "abc.def".to_owned()));

    for (case, token) in &bad {
        for base in [app.gw.clone(), app.tp.url("identity")] {
            let r = app.http.get(format!("{base}/api/auth/me")).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 401, "{case} at {base}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], "invalid_token", "{case} at {base}: {body}");
        }
    }
    // No token at all.
    let r = app.http.get(format!("{}/api/auth/me", app.gw)).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    app.cleanup().await;
}
