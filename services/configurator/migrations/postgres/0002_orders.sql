-- Orders the factory placed for each saved configuration (from factory.order.placed.v1).
alter table configurations add column orders bigint not null default 0;
