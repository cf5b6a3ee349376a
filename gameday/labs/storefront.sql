-- The storefront's schema and the canary tables: the same in both labs.
CREATE TABLE IF NOT EXISTS products (
    id serial PRIMARY KEY,
    name text NOT NULL,
    price_cents integer NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY,
    product_id integer NOT NULL REFERENCES products(id),
    quantity integer NOT NULL CHECK (quantity > 0),
    region text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- One row per acknowledged canary write: seq is the canary's strictly increasing number.
CREATE TABLE IF NOT EXISTS gameday_canary (
    seq bigint PRIMARY KEY,
    writer integer NOT NULL DEFAULT 0,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    server inet DEFAULT inet_server_addr()
);
-- The storefront's own canary (POST /canary/{seq}): the application canary, apart from the
-- database canary's table above. acks counts the requests that carried the number.
CREATE TABLE IF NOT EXISTS storefront_canary (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    writer text NOT NULL DEFAULT '',
    region text NOT NULL,
    acks integer NOT NULL DEFAULT 1,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO products (name, price_cents)
SELECT * FROM (VALUES ('umbrella', 1999), ('rain boots', 4999), ('flashlight', 1299)) AS v(name, price)
WHERE NOT EXISTS (SELECT 1 FROM products);
