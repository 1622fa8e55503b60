-- Stock per SKU. `held` is the sum of the quantities of the SKU's rows in `holds`, kept in
-- the same transaction as every change to them; the checks make overselling impossible even
-- for a statement that forgot its condition.
create table stock (
    sku text primary key,
    quantity bigint not null check (quantity >= 0),
    held bigint not null default 0 check (held >= 0),
    updated_at bigint not null,
    constraint stock_not_oversold check (held <= quantity)
);

-- Live holds. An expired row still counts in `stock.held` until it is deleted (by the
-- sweeper, or by the next hold on its SKU that would otherwise be refused).
create table holds (
    id text primary key,
    owner text not null,
    sku text not null references stock (sku),
    quantity bigint not null check (quantity > 0),
    created_at bigint not null,
    expires_at bigint not null
);
create index holds_sku_expiry on holds (sku, expires_at);
create index holds_expiry on holds (expires_at);
create index holds_owner on holds (owner);

-- Units held per owner, against a cap that stops one cart from hoarding a part.
create table owner_holds (
    owner text primary key,
    held bigint not null check (held >= 0),
    cap bigint not null,
    constraint owner_holds_cap check (held <= cap)
);

-- Committed holds: what was sold, once. A retried commit finds its sale here.
create table sales (
    hold_id text primary key,
    owner text not null,
    sku text not null,
    quantity bigint not null,
    reference text not null,
    committed_at bigint not null
);
create index sales_sku on sales (sku, committed_at);
