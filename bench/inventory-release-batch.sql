-- The batch release of bench/inventory.sh's batched ceiling: the service's
-- release_many_one_statement (services/inventory/src/store.rs) with its one bind parameter, the
-- JSON list of (hold, owner, event id, event), built here from the b holds the script run made
-- (ids pg-CLIENT-R-K). Keep it in step with store.rs. Variables as in
-- inventory-hold.sql, plus b (the batch size), which bench/inventory.sh fills in.
WITH r AS (
  SELECT * FROM json_to_recordset((
    SELECT json_agg(json_build_object(
      'id', 'pg-' || :client_id::text || '-' || :r::text || '-' || g::text,
      'owner', 'pg-cart-' || :client_id::text,
      'event_id', gen_random_uuid()::text,
      'payload', convert_from(:released::bytea, 'UTF8')::json))::text
    FROM generate_series(1, :b::int) g)::json) AS r(id text, owner text, event_id text, payload jsonb)),
d AS (
  DELETE FROM holds h USING r WHERE h.id = r.id AND h.owner = r.owner
  RETURNING h.id, h.owner, h.sku, h.quantity, r.event_id, r.payload),
ls AS MATERIALIZED (
  SELECT sku FROM stock WHERE sku IN (SELECT sku FROM d) ORDER BY sku FOR UPDATE),
s AS (
  UPDATE stock SET held = stock.held - x.q, updated_at = :now::bigint
  FROM (SELECT sku, sum(quantity) AS q FROM d GROUP BY sku) x
  WHERE stock.sku = x.sku AND stock.sku IN (SELECT sku FROM ls) RETURNING stock.sku),
lo AS MATERIALIZED (
  SELECT owner FROM owner_holds WHERE owner IN (SELECT owner FROM d) AND (SELECT count(*) FROM s) >= 0
  ORDER BY owner FOR UPDATE),
o AS (
  UPDATE owner_holds SET held = owner_holds.held - y.q
  FROM (SELECT owner, sum(quantity) AS q FROM d GROUP BY owner) y
  WHERE owner_holds.owner = y.owner AND owner_holds.owner IN (SELECT owner FROM lo)),
e AS (
  INSERT INTO outbox (id, subject, payload, created_at)
  SELECT d.event_id, 'bench.inventory.hold.released.v1', convert_to(jsonb_set(jsonb_set(d.payload,
      '{data,sku}', to_jsonb(d.sku)), '{data,quantity}', to_jsonb(d.quantity))::text, 'UTF8'), :now::bigint FROM d)
SELECT id FROM d;
