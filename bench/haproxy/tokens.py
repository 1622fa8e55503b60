#!/usr/bin/env python3
"""Access tokens for bench/haproxy.sh.

    tokens.py OUT_DIR ACCESS_TOKEN IDENTITY_SQLITE N N_RS ES256_KEY RS256_KEY

ACCESS_TOKEN is a real token identity issued at login (EdDSA). Writes, one token per line:

  one.eddsa            that token as issued
  one.es256, one.rs256 its header and payload unchanged except `alg` (and so its signature),
                       signed with ES256_KEY / RS256_KEY (PEM private keys)
  many.eddsa           N tokens with the same claims as the real one but each for another
                       user (`sub`, `email`, `jti` differ), signed with identity's current
                       signing key read from IDENTITY_SQLITE (table signing_keys), exactly as
                       identity would sign them
  many.es256           the same N payloads signed with ES256_KEY
  many.rs256           the first N_RS of them signed with RS256_KEY (RSA signing is slow)
  bad.<alg>.expired    an expired token (exp and nbf an hour back), correctly signed
  bad.<alg>.tampered   the real payload with another `sub`, the original signature kept
  bad.none             the real payload with `alg: none` and no signature

Needs the `cryptography` package (Debian: python3-cryptography; pip install cryptography).
"""

import base64
import json
import multiprocessing
import os
import sqlite3
import sys
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def signer(alg, key):
    if alg == "EdDSA":
        return key.sign
    if alg == "ES256":

        def es(msg):
            r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        return es
    if alg == "RS256":
        return lambda msg: key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(alg)


def sign(header: dict, payload: dict, alg: str, sig) -> str:
    h = dict(header, alg=alg)
    signing_input = b64(compact(h)) + "." + b64(compact(payload))
    return signing_input + "." + b64(sig(signing_input.encode()))


def sign_chunk(job):
    """Signs payloads in a worker process: (alg, key: Ed25519 seed or PEM path, header, payloads)."""
    alg, key, header, payloads = job
    if alg == "EdDSA":
        k = ed25519.Ed25519PrivateKey.from_private_bytes(key)
    else:
        with open(key, "rb") as f:
            k = serialization.load_pem_private_key(f.read(), None)
    s = signer(alg, k)
    return [sign(header, p, alg, s) for p in payloads]


def write(path, tokens):
    with open(path, "w") as f:
        for t in tokens:
            f.write(t)
            f.write("\n")


def main():
    out, real, db, n, n_rs, es_path, rs_path = sys.argv[1:8]
    n, n_rs = int(n), int(n_rs)
    header_b64, payload_b64, _ = real.split(".")
    header = json.loads(unb64(header_b64))
    payload = json.loads(unb64(payload_b64))
    assert header["alg"] == "EdDSA", header

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    kid, secret, public_x = con.execute(
        "SELECT kid, secret, public_x FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    con.close()
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(secret))
    raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert b64(raw) == public_x and kid == header["kid"], "identity's signing key does not match the token"
    with open(es_path, "rb") as f:
        es = serialization.load_pem_private_key(f.read(), None)
    with open(rs_path, "rb") as f:
        rs = serialization.load_pem_private_key(f.read(), None)
    sig = {"EdDSA": signer("EdDSA", ed), "ES256": signer("ES256", es), "RS256": signer("RS256", rs)}
    # The real token must come out byte for byte the same when re-signed here (Ed25519 is
    # deterministic): proof that the minted tokens are what identity would issue.
    assert sign(header, payload, "EdDSA", sig["EdDSA"]) == real, "re-signing the real token changed it"

    write(os.path.join(out, "one.eddsa"), [real])
    write(os.path.join(out, "one.es256"), [sign(header, payload, "ES256", sig["ES256"])])
    write(os.path.join(out, "one.rs256"), [sign(header, payload, "RS256", sig["RS256"])])

    def user(i):
        p = dict(payload)
        p["sub"] = str(uuid.UUID(int=(0xB0 << 120) | i))
        p["email"] = f"bench{i:07d}@example.com"
        p["jti"] = uuid.uuid4().hex
        return p

    payloads = [user(i) for i in range(n)]
    keys = {"EdDSA": bytes(secret), "ES256": es_path, "RS256": rs_path}
    workers = os.cpu_count() or 1
    with multiprocessing.Pool(workers) as pool:
        for alg, name, count in (("EdDSA", "eddsa", n), ("ES256", "es256", n), ("RS256", "rs256", n_rs)):
            step = -(-count // workers)
            jobs = [(alg, keys[alg], header, payloads[i : i + step]) for i in range(0, count, step)]
            write(os.path.join(out, f"many.{name}"), (t for chunk in pool.map(sign_chunk, jobs) for t in chunk))

    expired = dict(payload, iat=payload["iat"] - 7200, nbf=payload["nbf"] - 7200, exp=payload["iat"] - 3600)
    tampered = dict(payload, sub=str(uuid.UUID(int=1)))
    for alg, name in (("EdDSA", "eddsa"), ("ES256", "es256"), ("RS256", "rs256")):
        write(os.path.join(out, f"bad.{name}.expired"), [sign(header, expired, alg, sig[alg])])
        good = sign(header, payload, alg, sig[alg])
        write(os.path.join(out, f"bad.{name}.tampered"), [b64(compact(dict(header, alg=alg))) + "." + b64(compact(tampered)) + "." + good.split(".")[2]])
    write(os.path.join(out, "bad.none"), [b64(compact(dict(header, alg="none"))) + "." + payload_b64 + "."])


if __name__ == "__main__":
    main()
