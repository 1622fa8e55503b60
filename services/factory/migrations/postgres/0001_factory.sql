-- New-car orders. `step` is where the placing saga stands (hold, deposit, book, done), so a
-- crash resumes it; `next_at` is when the scheduler next moves the order on.
create table orders (
    id text primary key,
    user_id text not null,
    config_id text not null,
    model text not null,
    -- JSON [[sku, quantity], ...]: the bill of materials.
    bom text not null,
    -- JSON [hold id, ...] once inventory holds the parts.
    holds text,
    price bigint not null,
    currency text not null,
    deposit bigint not null,
    charge_id text,
    status text not null,
    step text not null,
    plant text,
    production_day bigint,
    next_at bigint,
    failure text,
    created_at bigint not null,
    updated_at bigint not null
);
create index orders_next on orders (next_at);
create index orders_step on orders (step, updated_at);
create index orders_user on orders (user_id, created_at);

-- Every status an order went through, in order.
create table order_timeline (
    order_id text not null,
    seq bigint not null,
    status text not null,
    at bigint not null,
    note text,
    primary key (order_id, seq)
);

-- Production slots: orders booked per plant and day (day = days since 1970-01-01, UTC).
create table slots (
    plant text not null,
    day bigint not null,
    booked bigint not null,
    primary key (plant, day)
);
