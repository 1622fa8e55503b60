-- pgbench custom script for bench/inventory.sh, the database's own ceiling for one inventory
-- op - a one-unit hold and its release - run against the inventory service's own database.
-- The two statements are the service's PostgreSQL fast paths, copied from
-- services/inventory/src/store.rs (hold_one_statement, release_one_statement) with each bind
-- parameter replaced by a pgbench variable or expression, cast to the type sqlx binds it as.
-- Keep them in step with store.rs. Each is one autocommit statement, as in the service.
--
-- Run it with -M prepared only (variables are then sent as parameters, as sqlx sends them;
-- pgbench replaces a colon followed by a name even inside a string literal, so no literal
-- here holds one). Variables given with -D
--   skus      SKUs BENCH-0001, BENCH-0002, ... to spread over (1 = one hot SKU)
--   now       ms since the epoch, for the timestamps (nothing compares them)
--   created, low, released   the events' envelopes (JSON of the service's shape and size)
-- Owner and hold id are per client, as each of the benchmark's gRPC clients holds for one
-- cart; pgbench runs a client's transactions one after another, so the release always finds
-- the hold its own transaction just made. Event ids come from gen_random_uuid().
\set i random(1, :skus)
\set r random(1, 1000000000000000)
\set q 1
\set expires :now + 900000
\set cap 100
\set threshold 5
WITH s AS (
  UPDATE stock SET held = held + :q::bigint, updated_at = :now::bigint
  WHERE sku = 'BENCH-' || lpad(:i::text, 4, '0') AND quantity - held >= :q::bigint
  RETURNING quantity, held),
o AS (
  INSERT INTO owner_holds (owner, held, cap) SELECT 'pg-cart-' || :client_id::text, :q::bigint, :cap::bigint FROM s
  ON CONFLICT (owner) DO UPDATE SET held = owner_holds.held + excluded.held, cap = excluded.cap),
h AS (
  INSERT INTO holds (id, owner, sku, quantity, created_at, expires_at)
  SELECT 'pg-' || :client_id::text || '-' || :r::text, 'pg-cart-' || :client_id::text, 'BENCH-' || lpad(:i::text, 4, '0'), :q::bigint, :now::bigint, :expires::bigint FROM s),
e AS (
  INSERT INTO outbox (id, subject, payload, created_at)
  SELECT gen_random_uuid()::text, 'bench.inventory.hold.created.v1',
    :created::bytea,
    :now::bigint FROM s),
l AS (
  INSERT INTO outbox (id, subject, payload, created_at)
  SELECT gen_random_uuid()::text, 'bench.inventory.stock.low.v1',
    convert_to(jsonb_set(jsonb_set(jsonb_set(convert_from(:low::bytea, 'UTF8')::jsonb,
      '{data,quantity}', to_jsonb(s.quantity)), '{data,held}', to_jsonb(s.held)), '{data,available}', to_jsonb(s.quantity - s.held))::text, 'UTF8'),
    :now::bigint
  FROM s WHERE s.quantity - s.held < :threshold::bigint AND s.quantity - s.held + :q::bigint >= :threshold::bigint)
SELECT quantity, held FROM s;
WITH d AS (
  DELETE FROM holds WHERE id = 'pg-' || :client_id::text || '-' || :r::text AND owner = 'pg-cart-' || :client_id::text RETURNING sku, quantity),
s AS (
  UPDATE stock SET held = stock.held - d.quantity, updated_at = :now::bigint FROM d WHERE stock.sku = d.sku RETURNING d.quantity),
o AS (
  UPDATE owner_holds SET held = owner_holds.held - s.quantity FROM s WHERE owner_holds.owner = 'pg-cart-' || :client_id::text),
e AS (
  INSERT INTO outbox (id, subject, payload, created_at)
  SELECT gen_random_uuid()::text, 'bench.inventory.hold.released.v1',
    convert_to(jsonb_set(jsonb_set(convert_from(:released::bytea, 'UTF8')::jsonb,
      '{data,sku}', to_jsonb(d.sku)), '{data,quantity}', to_jsonb(d.quantity))::text, 'UTF8'),
    :now::bigint FROM d)
SELECT COUNT(*) FROM d;
