-- Events this service has committed but not yet seen acknowledged by the bus.
create table outbox (
    seq bigint generated always as identity primary key,
    id text not null unique,
    subject text not null,
    payload bytea not null,
    created_at bigint not null,
    published_at bigint
);
create index outbox_unpublished on outbox (seq) where published_at is null;

-- Events a consumer of this service has applied, so a redelivery has no second effect.
create table inbox (
    consumer text not null,
    event_id text not null,
    handled_at bigint not null,
    primary key (consumer, event_id)
);

-- Responses of unsafe requests, replayed when the same Idempotency-Key comes again.
create table idempotency_keys (
    scope text not null,
    key text not null,
    request_hash text not null,
    status bigint,
    response bytea,
    created_at bigint not null,
    primary key (scope, key)
);
