-- Accounts of the double-entry ledger. User accounts (wallet, held) keep their balance in
-- step with their entries inside each posting transaction, and the database refuses a
-- balance below min_balance. System accounts (card_clearing, revenue) are not tracked: their
-- balance is the sum of their entries, so no posting ever waits on one hot system row.
create table accounts (
    id text primary key,
    kind text not null,
    owner_id text not null,
    currency text not null,
    tracked boolean not null,
    balance bigint not null default 0,
    min_balance bigint not null default 0,
    created_at bigint not null,
    check (not tracked or balance >= min_balance)
);

create table transactions (
    id text primary key,
    kind text not null,
    user_id text not null,
    charge_id text,
    reference text not null,
    description text not null,
    created_at bigint not null
);
create index transactions_user on transactions (user_id, id);

-- Every transaction's entries sum to zero.
create table entries (
    id bigint generated always as identity primary key,
    transaction_id text not null references transactions (id),
    account_id text not null references accounts (id),
    amount bigint not null,
    created_at bigint not null
);
create index entries_account on entries (account_id);
create index entries_transaction on entries (transaction_id);

-- A payment from a wallet: authorised (held), then captured (in part or whole) or voided;
-- captured money can be refunded, never beyond what was captured.
create table charges (
    id text primary key,
    user_id text not null,
    currency text not null,
    authorized bigint not null,
    captured bigint not null default 0,
    refunded bigint not null default 0,
    status text not null,
    reference text not null,
    description text not null,
    created_at bigint not null,
    updated_at bigint not null,
    check (authorized > 0),
    check (captured >= 0 and captured <= authorized),
    check (refunded >= 0 and refunded <= captured)
);
create index charges_user on charges (user_id, id);

create table refunds (
    id text primary key,
    charge_id text not null references charges (id),
    amount bigint not null,
    reason text not null,
    created_at bigint not null
);

-- Names and emails for invoices, from identity's events.
create table customers (
    user_id text primary key,
    email text not null,
    full_name text not null
);
