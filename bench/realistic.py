"""A home server's kind of databases, for the storage figures: what an application stack keeps in
PostgreSQL looks nothing like rows of random hex.

Five tables in database `bench`, sized so the plain dump holds about `rows` x 100 bytes:
- `states` (about 60 % of the dump): a home-automation history: entity names and state values that
  repeat, JSON attributes, two timestamps a row, a random context UUID (as such recorders keep);
- `events` (25 %): an application log: levels, services and message templates that repeat, with user
  names, paths, addresses and durations filled in, and a small JSON context;
- `orders` (8 %): a wide table of 24 columns (shop orders: amounts, currency, addresses from a short
  list of streets and cities, status, flags, mostly-empty notes);
- `documents` (5 %): notes and wiki pages, paragraphs of words from a vocabulary, tags, JSON metadata;
- `users`: accounts with JSON settings.
Random values come from setseed(), so two loads of the same size are alike. Each simulated day
(mutate) appends new states and events, purges the oldest states, edits a few documents, moves
recent orders on, and records logins on users spread over the whole table.
"""

from __future__ import annotations

from common import sql

WORDS = ("the backup server photo garden kitchen family holiday invoice recipe meeting project notes "
         "update weekly plan budget travel music movie book school doctor car insurance tax bank energy "
         "heating solar battery network router printer camera door light motion sensor temperature humidity "
         "water garage bicycle birthday dinner weekend morning evening report summary draft final review").split()
ENTITIES = ("sensor.living_room_temperature sensor.bedroom_humidity sensor.power_consumption "
            "sensor.solar_production light.kitchen light.hallway switch.coffee_machine binary_sensor.front_door "
            "binary_sensor.motion_garage climate.thermostat media_player.living_room sensor.outdoor_temperature "
            "sensor.energy_today device_tracker.phone weather.home sun.sun").split()


def _array(values) -> str:
    return "ARRAY[" + ",".join(f"'{value}'" for value in values) + "]"


def load(container: str, rows: int) -> None:
    states, events, orders = rows * 60 // 100, rows * 25 // 100, rows * 8 // 400
    documents, users = max(rows * 5 // 1500, 10), max(rows // 500, 10)
    sql(container, f"""
        SELECT setseed(0.42);
        CREATE TABLE users (id serial PRIMARY KEY, username text, email text, display_name text,
            created_at timestamptz, last_login timestamptz, is_admin boolean, settings jsonb);
        INSERT INTO users (username, email, display_name, created_at, last_login, is_admin, settings)
          SELECT n || g, n || g || '@example.org', initcap(n) || ' ' || initcap(s),
                 timestamptz '2020-01-01' + g * interval '37 minutes', now() - random() * interval '90 days',
                 g % 50 = 0,
                 jsonb_build_object('theme', (ARRAY['light','dark','auto'])[1 + g % 3], 'language',
                                    (ARRAY['en','de','fr','nl'])[1 + g % 4], 'notifications', g % 3 > 0,
                                    'timezone', 'Europe/Berlin')
          FROM generate_series(1, {users}) g,
               LATERAL (SELECT (ARRAY['anna','ben','clara','david','eva','felix','greta','hugo'])[1 + g % 8] n,
                               (ARRAY['muller','schmidt','weber','wagner','becker','hoffmann'])[1 + g % 6] s) names;
        CREATE TABLE states (state_id bigserial PRIMARY KEY, entity_id text, state text, attributes jsonb,
            last_changed timestamptz, last_updated timestamptz, context_id uuid);
        CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz, level text, service text, message text,
            context jsonb);
        CREATE TABLE orders (id serial PRIMARY KEY, customer_id int, placed_at timestamptz, paid_at timestamptz,
            shipped_at timestamptz, status text, currency text, subtotal numeric(10,2), tax numeric(10,2),
            shipping numeric(10,2), total numeric(10,2), payment_method text, first_name text, last_name text,
            street text, house_number int, postal_code text, city text, country text, phone text, gift boolean,
            newsletter boolean, coupon text, notes text);
        CREATE TABLE documents (id serial PRIMARY KEY, owner_id int, title text, body text, tags text[],
            created_at timestamptz, updated_at timestamptz, metadata jsonb);""")
    add_states(container, states, "timestamptz '2026-01-01'")
    add_events(container, events, "timestamptz '2026-01-01'")
    sql(container, f"""
        SELECT setseed(0.43);
        INSERT INTO orders (customer_id, placed_at, paid_at, shipped_at, status, currency, subtotal, tax, shipping,
            total, payment_method, first_name, last_name, street, house_number, postal_code, city, country, phone,
            gift, newsletter, coupon, notes)
          SELECT 1 + g % {users}, placed, placed + interval '5 minutes', placed + interval '2 days',
                 (ARRAY['delivered','delivered','delivered','shipped','paid','cancelled'])[1 + g % 6], 'EUR',
                 sub, round(sub * 0.19, 2), 4.90, round(sub * 1.19 + 4.90, 2),
                 (ARRAY['card','paypal','invoice','sepa'])[1 + g % 4],
                 (ARRAY['Anna','Ben','Clara','David','Eva','Felix'])[1 + g % 6],
                 (ARRAY['Müller','Schmidt','Weber','Wagner','Becker'])[1 + g % 5],
                 (ARRAY['Hauptstraße','Bahnhofstraße','Gartenweg','Schulstraße','Lindenallee'])[1 + g % 5],
                 1 + g % 120, lpad((10000 + g % 80000)::text, 5, '0'),
                 (ARRAY['Berlin','Hamburg','München','Köln','Leipzig'])[1 + g % 5], 'DE',
                 '+49 30 ' || (1000000 + g % 9000000), g % 20 = 0, g % 3 = 0,
                 CASE WHEN g % 10 = 0 THEN 'WELCOME10' END,
                 CASE WHEN g % 25 = 0 THEN 'Please leave the parcel with the neighbours.' END
          FROM generate_series(1, {orders}) g,
               LATERAL (SELECT timestamptz '2024-01-01' + g * interval '7 minutes' placed,
                               round((5 + random() * 200)::numeric, 2) sub) o;
        SELECT setseed(0.44);
        INSERT INTO documents (owner_id, title, body, tags, created_at, updated_at, metadata)
          SELECT 1 + g % {users}, initcap(w[1 + g % {len(WORDS)}]) || ' ' || w[1 + (g * 7) % {len(WORDS)}],
                 (SELECT string_agg(w[1 + ((random() * 1000)::int + i) % {len(WORDS)}], ' ')
                  FROM generate_series(1, 220 + g % 7) i),
                 ARRAY[w[1 + g % 20], w[1 + g % 13]],
                 timestamptz '2022-01-01' + g * interval '3 hours',
                 timestamptz '2022-01-01' + g * interval '5 hours',
                 jsonb_build_object('format', 'markdown', 'shared', g % 4 = 0, 'version', 1 + g % 9)
          FROM generate_series(1, {documents}) g, (SELECT {_array(WORDS)} w) words""")
    sql(container, "VACUUM ANALYZE")


def add_states(container: str, count: int, start: str) -> None:
    sql(container, f"""
        INSERT INTO states (entity_id, state, attributes, last_changed, last_updated, context_id)
          SELECT e, CASE WHEN e LIKE 'sensor.%' THEN round((15 + random() * 10)::numeric, 1)::text
                         WHEN e LIKE 'light.%' OR e LIKE 'switch.%' THEN (ARRAY['on','off'])[1 + (random() > 0.5)::int]
                         ELSE (ARRAY['home','away','idle','playing','closed','open'])[1 + g % 6] END,
                 jsonb_build_object('friendly_name', initcap(replace(split_part(e, '.', 2), '_', ' ')),
                                    'unit_of_measurement', CASE WHEN e LIKE 'sensor.%' THEN '°C' END,
                                    'device_class', split_part(e, '.', 1)),
                 {start} + g * interval '10 seconds', {start} + g * interval '10 seconds',
                 md5(random()::text)::uuid
          FROM generate_series(1, {count}) g, LATERAL (SELECT ({_array(ENTITIES)})[1 + g % {len(ENTITIES)}] e) x""")


def add_events(container: str, count: int, start: str) -> None:
    sql(container, f"""
        INSERT INTO events (at, level, service, message, context)
          SELECT {start} + g * interval '20 seconds',
                 (ARRAY['INFO','INFO','INFO','INFO','DEBUG','WARNING','ERROR'])[1 + g % 7],
                 (ARRAY['nextcloud','gitea','immich','vaultwarden','paperless','jellyfin'])[1 + g % 6],
                 format('%s %s for user %s from 192.168.1.%s in %s ms',
                        (ARRAY['GET','POST','PUT','DELETE','PROPFIND'])[1 + g % 5],
                        (ARRAY['/api/v1/files','/login','/remote.php/dav/files','/api/items','/thumbnail'])[1 + g % 5],
                        (ARRAY['anna','ben','clara','david'])[1 + g % 4], 2 + g % 40, (random() * 900)::int),
                 jsonb_build_object('request_id', substr(md5(g::text), 1, 12), 'status',
                                    (ARRAY[200,200,200,201,204,304,404,500])[1 + g % 8])
          FROM generate_series(1, {count}) g""")


def mutate(container: str, rows: int, day: int) -> None:
    """One simulated day: about 1 % of the dump new or changed."""
    states, events = rows * 60 // 100, rows * 25 // 100
    start = f"timestamptz '2026-06-01' + {day} * interval '1 day'"
    sql(container, f"SELECT setseed({day} / 1000.0)")
    add_states(container, states // 200, start)
    add_events(container, events // 200, start)
    sql(container, f"""
        SELECT setseed({day} / 1000.0 + 0.5);
        DELETE FROM states WHERE state_id IN (SELECT state_id FROM states ORDER BY state_id LIMIT {states // 200});
        UPDATE users SET last_login = now() - random() * interval '1 hour' WHERE random() < 0.2;
        UPDATE documents SET body = body || ' ' || title, updated_at = now(),
            metadata = jsonb_set(metadata, '{{version}}', to_jsonb((metadata->>'version')::int + 1))
          WHERE id IN (SELECT id FROM documents ORDER BY random() LIMIT greatest(1, {rows // 300_000}));
        UPDATE orders SET status = 'delivered'
          WHERE id IN (SELECT id FROM orders ORDER BY id DESC LIMIT greatest(1, {rows // 10_000}))""")
    sql(container, "VACUUM")  # frees the purged rows' space for tomorrow's, as autovacuum would
