-- The parts catalog. `models` is '|'-delimited ('|VW Golf|Audi A3|') so one LIKE finds a
-- model; `search` is the lowercased text the search words are matched against.
create table products (
    code text primary key,
    name text not null,
    description text not null,
    category text not null,
    price_minor bigint not null check (price_minor > 0),
    currency text not null,
    models text not null,
    search text not null
);
create index products_category on products (category, code);

-- One cart per user. `busy_until` is a short lease that serialises changes to one cart across
-- replicas (a change talks to inventory between reading and writing the cart);
-- `checkout_order_id` freezes the cart while a checkout of it runs.
create table carts (
    id text primary key,
    user_id text not null unique,
    busy_until bigint not null default 0,
    checkout_order_id text,
    created_at bigint not null,
    updated_at bigint not null
);

-- A cart line exists only with a hold behind it.
create table cart_lines (
    cart_id text not null references carts (id),
    product_code text not null references products (code),
    quantity bigint not null check (quantity > 0),
    hold_id text not null,
    hold_expires_at bigint not null,
    added_at bigint not null,
    primary key (cart_id, product_code)
);

-- Requests to change a cart, by the client's request id: pending while inventory answers,
-- then confirmed or rejected. A repeated request id gets the stored outcome.
create table cart_requests (
    cart_id text not null references carts (id),
    request_id text not null,
    action text not null,
    product_code text,
    quantity bigint,
    status text not null,
    reason text,
    available bigint,
    created_at bigint not null,
    resolved_at bigint,
    primary key (cart_id, request_id)
);
create index cart_requests_pending on cart_requests (cart_id, status);
create index cart_requests_age on cart_requests (created_at);

-- Holds to give back to inventory, written in the transaction that dropped them from a
-- cart, so removing a line never waits on inventory and no release is forgotten.
create table hold_releases (
    hold_id text primary key,
    owner text not null,
    attempts bigint not null default 0,
    next_at bigint not null,
    created_at bigint not null
);
create index hold_releases_due on hold_releases (next_at);

create table orders (
    id text primary key,
    user_id text not null,
    cart_id text not null,
    status text not null,
    total_minor bigint not null,
    currency text not null,
    charge_id text,
    failure text,
    idempotency_scope text not null,
    idempotency_key text not null,
    created_at bigint not null,
    updated_at bigint not null,
    unique (idempotency_scope, idempotency_key)
);
create index orders_user on orders (user_id, id);
create index orders_pending on orders (status, updated_at);

create table order_lines (
    order_id text not null references orders (id),
    product_code text not null,
    name text not null,
    quantity bigint not null,
    unit_price_minor bigint not null,
    hold_id text not null,
    primary key (order_id, product_code)
);
