-- Sample data for the demo's PostgreSQL: three databases, several tables, about 400 000 rows.
CREATE DATABASE shop;
CREATE DATABASE blog;
CREATE DATABASE telemetry;

\connect shop
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, country char(2), joined date);
CREATE TABLE products (id serial PRIMARY KEY, sku text UNIQUE, title text, price numeric(10,2), stock int);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers, placed timestamptz, status text);
CREATE TABLE order_items (order_id bigint REFERENCES orders, product int REFERENCES products, quantity int, price numeric(10,2));
INSERT INTO customers (name, email, country, joined)
  SELECT 'Customer ' || g, 'customer' || g || '@example.org', (ARRAY['DE','FR','NL','US','JP'])[1 + g % 5],
         date '2019-01-01' + (g % 2000) FROM generate_series(1, 20000) g;
INSERT INTO products (sku, title, price, stock)
  SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product number ' || g, round((g * 37 % 10000) / 100.0, 2), g % 250
  FROM generate_series(1, 2000) g;
INSERT INTO orders (customer, placed, status)
  SELECT 1 + g % 20000, timestamptz '2022-01-01' + g * interval '7 minutes',
         (ARRAY['paid','shipped','delivered','returned'])[1 + g % 4] FROM generate_series(1, 100000) g;
INSERT INTO order_items (order_id, product, quantity, price)
  SELECT 1 + g % 100000, 1 + g % 2000, 1 + g % 3, round((g * 13 % 5000) / 100.0, 2) FROM generate_series(1, 200000) g;

\connect blog
CREATE TABLE posts (id serial PRIMARY KEY, title text, body text, published timestamptz, tags text[]);
CREATE TABLE comments (id bigserial PRIMARY KEY, post int REFERENCES posts, author text, body text, written timestamptz);
INSERT INTO posts (title, body, published, tags)
  SELECT 'Post ' || g, repeat('Lorem ipsum dolor sit amet, post ' || g || '. ', 20),
         timestamptz '2020-01-01' + g * interval '1 day', ARRAY['home', 'lab', 't' || (g % 7)]
  FROM generate_series(1, 2000) g;
INSERT INTO comments (post, author, body, written)
  SELECT 1 + g % 2000, 'reader' || (g % 500), 'Comment ' || g || ' with some words', timestamptz '2020-01-02' + g * interval '1 hour'
  FROM generate_series(1, 30000) g;

\connect telemetry
CREATE TABLE sensors (id int PRIMARY KEY, room text, kind text);
CREATE TABLE readings (sensor int REFERENCES sensors, at timestamptz, value double precision, meta jsonb);
INSERT INTO sensors SELECT g, 'room ' || (g % 12), (ARRAY['temperature','humidity','power'])[1 + g % 3] FROM generate_series(1, 40) g;
INSERT INTO readings
  SELECT 1 + g % 40, timestamptz '2024-01-01' + g * interval '1 minute', sin(g / 100.0) * 10 + 20,
         jsonb_build_object('battery', 100 - g % 100, 'firmware', '1.' || (g % 9))
  FROM generate_series(1, 50000) g;
