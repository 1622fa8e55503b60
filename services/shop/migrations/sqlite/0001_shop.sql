create table products (code text primary key);
