//! Per-signature cost of checking Ed25519 token signatures on this machine, three ways:
//! alone (`VerifyingKey::verify`, what a lone check costs), `ed25519_dalek::verify_batch`
//! (one `A` term per signature), and `motorpool_platform::auth::verify_one_key` (the gateway's
//! batches: one `A` term per key). Messages are the size of a token's signed part (~300 bytes).
//! Each figure is the best of `ROUNDS` rounds; ratios are against "alone" in the same run.
//!
//!   cargo run --release -p motorpool-sigcheck [-- SIGNATURES ROUNDS]

use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};

fn best_of(rounds: usize, signatures: usize, mut run: impl FnMut() -> usize) -> f64 {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let ok = run();
            let took = started.elapsed();
            assert_eq!(ok, signatures, "every signature is genuine");
            took.as_secs_f64() * 1e6 / signatures as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("SIGNATURES ROUNDS: numbers"));
    let n = args.next().unwrap_or(4096);
    let rounds = args.next().unwrap_or(5);
    let signer = SigningKey::from_bytes(&[7; 32]);
    let key = signer.verifying_key();
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!(
                "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.{{\"iss\":\"motorpool\",\"aud\":\"motorpool-api\",\"sub\":\"user-{i:08}\",\"email\":\"user-{i}@example.com\",\"role\":\"customer\",\"iat\":1790000000,\"nbf\":1790000000,\"exp\":1790000900,\"jti\":\"{i:032x}\"}}"
            )
            .into_bytes()
        })
        .collect();
    let signatures: Vec<Signature> = messages.iter().map(|m| signer.sign(m)).collect();

    let alone = best_of(rounds, n, || messages.iter().zip(&signatures).filter(|(m, s)| key.verify(m, s).is_ok()).count());
    println!("{n} signatures, best of {rounds} rounds, µs per signature (ratio to alone)");
    println!("{:<28} {alone:>7.2}  (1.00)", "alone");
    for size in [2, 4, 8, 16, 32, 64] {
        let chunks = n / size * size;
        let dalek = best_of(rounds, chunks, || {
            messages[..chunks]
                .chunks(size)
                .zip(signatures[..chunks].chunks(size))
                .filter(|(m, s)| {
                    let m: Vec<&[u8]> = m.iter().map(Vec::as_slice).collect();
                    ed25519_dalek::verify_batch(&m, s, &vec![key; size]).is_ok()
                })
                .count()
                * size
        });
        let one_key = best_of(rounds, chunks, || {
            messages[..chunks]
                .chunks(size)
                .zip(signatures[..chunks].chunks(size))
                .filter(|(m, s)| motorpool_platform::auth::verify_one_key(&key, m.iter().map(Vec::as_slice).zip(s.iter())))
                .count()
                * size
        });
        println!("{:<28} {dalek:>7.2}  ({:.2})", format!("verify_batch of {size}"), dalek / alone);
        println!("{:<28} {one_key:>7.2}  ({:.2})", format!("one-key batch of {size}"), one_key / alone);
    }
}
