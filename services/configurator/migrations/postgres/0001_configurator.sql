-- Every catalog version ever served: a saved configuration names the one it was made with.
create table catalogs (
    version bigint primary key,
    body text not null,
    created_at bigint not null
);

-- Saved configurations: the customer's picks, the complete configuration they were completed
-- to, and its price, as of the catalog version they were made with.
create table configurations (
    id text primary key,
    owner_id text,
    share_code text not null unique,
    catalog_version bigint not null,
    model text not null,
    picks text not null,
    options text not null,
    -- The model and options, sorted: equal for equal configurations (popularity).
    signature text not null,
    price bigint not null,
    currency text not null,
    created_at bigint not null
);
create index configurations_owner on configurations (owner_id, created_at);
create index configurations_signature on configurations (signature);
