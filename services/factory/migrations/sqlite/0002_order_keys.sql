-- The Idempotency-Key a placing request carried, per user, written with its order: a retry
-- that finds its key finds its order, whatever became of the first request's answer (a
-- dropped connection, an error after the commit).
create table order_keys (
    user_id text not null,
    idempotency_key text not null,
    order_id text not null,
    primary key (user_id, idempotency_key)
);
