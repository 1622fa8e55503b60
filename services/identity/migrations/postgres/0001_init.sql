create table users (
    id text primary key,
    email text not null unique,
    password_hash text not null,
    full_name text not null,
    role text not null,
    disabled_at bigint,
    created_at bigint not null,
    updated_at bigint not null
);

-- Ed25519 signing keys. The newest unretired key signs; retired keys stay published until
-- every token they signed has expired.
create table signing_keys (
    kid text primary key,
    secret bytea not null,
    public_x text not null,
    created_at bigint not null,
    retired_at bigint
);

-- Refresh tokens are stored as SHA-256 hashes. All tokens rotated from one login share a
-- family; presenting a used token revokes the family.
create table refresh_tokens (
    token_hash text primary key,
    family_id text not null,
    user_id text not null references users (id),
    created_at bigint not null,
    expires_at bigint not null,
    used_at bigint,
    revoked_at bigint
);
create index refresh_tokens_family on refresh_tokens (family_id);
create index refresh_tokens_user on refresh_tokens (user_id);
