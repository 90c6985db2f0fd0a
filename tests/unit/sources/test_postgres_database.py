"""One database out of a pg_dumpall file: its part, the roles it needs, renamed when asked."""

import io

import pytest

from runner.restoring import RestoreError
from runner.sources.postgres.database import connect_line, connected_to, named_roles, renamed, write_database

# The shape of pg_dumpall 17.12's output (tools image), trimmed: a global part with roles, then one part
# per database, each a pg_dump --create with its own \restrict key.
DUMP = r'''--
-- PostgreSQL database cluster dump
--

\restrict K0

SET default_transaction_read_only = off;

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:salt$stored:server';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE reporter;
ALTER ROLE reporter WITH NOSUPERUSER INHERIT NOLOGIN;
CREATE ROLE "Odd ""Role""";
CREATE ROLE unused;
ALTER ROLE app SET search_path TO 'public';

\unrestrict K0

--
-- Database "template1" dump
--

\connect template1

--
-- Database "notes" dump
--

\restrict K1
CREATE DATABASE notes WITH TEMPLATE = template0 ENCODING = 'UTF8';
ALTER DATABASE notes OWNER TO postgres;
\unrestrict K1
\connect notes
\restrict K1
CREATE TABLE public.note (id integer, body text);
ALTER TABLE public.note OWNER TO unused;
COPY public.note (id, body) FROM stdin;
1	x
-- Database "shop" dump
\.

\unrestrict K1

--
-- Database "shop" dump
--

\restrict K2
CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8';
ALTER DATABASE shop OWNER TO app;
\unrestrict K2
\connect shop
\restrict K2
COMMENT ON DATABASE shop IS 'the shop';
ALTER DATABASE shop SET work_mem TO '8MB';
ALTER ROLE reporter IN DATABASE shop SET statement_timeout TO '5s';
\unrestrict K2
\connect shop
\restrict K2
CREATE TABLE public.customers (id integer NOT NULL, name text);
ALTER TABLE public.customers OWNER TO app;
COPY public.customers (id, name) FROM stdin;
1	GRANT ALL ON DATABASE shop TO unused;
2	ALTER DATABASE shop OWNER TO "Odd ""Role""";
\.
ALTER TABLE ONLY public.customers
    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);
GRANT CONNECT ON DATABASE shop TO reporter, "Odd ""Role""";
GRANT SELECT ON TABLE public.customers TO reporter;
REVOKE ALL ON TABLE public.customers FROM PUBLIC;
\unrestrict K2

--
-- Database "postgres" dump
--

\connect postgres

--
-- PostgreSQL database cluster dump complete
--
'''


@pytest.fixture
def dump(tmp_path):
    path = tmp_path / "pg_dumpall.sql"
    path.write_text(DUMP)
    return path


def part(dump, name, **options):
    out = io.BytesIO()
    roles = write_database(dump, name, out, **options)
    return roles, out.getvalue().decode()


def section(name):
    start = DUMP.index(f'-- Database "{name}" dump\n--\n')
    return DUMP[start:DUMP.index("-- Database", start + 1)]


def without_role_blocks(text):
    lines, kept, inside = text.splitlines(keepends=True), [], False
    for line in lines:
        if line.startswith("-- a role from the dump's global part"):
            continue
        if line.startswith("DO $role"):
            inside = True
        if not inside:
            kept.append(line)
        if line.startswith("END IF; END $role"):
            inside = False
    return "".join(kept)


def test_the_part_of_one_database_is_written_as_it_is_with_the_roles_it_names(dump):
    roles, text = part(dump, "shop")
    assert roles == ["app", "reporter", 'Odd "Role"']  # as they are first named; not unused, named only in data
    assert without_role_blocks(text) == section("shop")  # COPY data, \restrict keys and all, byte for byte
    assert "notes" not in text and "CREATE ROLE unused" not in text


def test_each_role_comes_with_its_lines_before_it_is_first_named_and_only_where_missing(dump):
    _, text = part(dump, "shop")
    block = text[text.index("DO $role$"):text.index("ALTER DATABASE shop OWNER TO app;")]
    assert block == ("DO $role$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app') THEN\n"
                     "CREATE ROLE app;\n"
                     "ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:salt$stored:server';\n"
                     "ALTER ROLE app SET search_path TO 'public';\n"
                     "END IF; END $role$;\n")
    assert text.index("rolname = 'reporter'") < text.index("ALTER ROLE reporter IN DATABASE shop")
    assert "rolname = 'Odd \"Role\"'" in text and 'CREATE ROLE "Odd ""Role""";' in text


def test_roles_the_server_has_are_left_out_and_the_others_created_as_the_dump_has_them(dump):
    roles, text = part(dump, "shop", skip_roles={"app", "postgres"}, guarded=False)
    assert roles == ["reporter", 'Odd "Role"'] and "CREATE ROLE app" not in text and "DO $" not in text
    # unguarded: a failing statement is not quoted back in a PL/pgSQL context line (it may hold a password hash)
    assert text.index("CREATE ROLE reporter;\nALTER ROLE reporter WITH NOSUPERUSER INHERIT NOLOGIN;\n") \
        < text.index("ALTER ROLE reporter IN DATABASE shop")


def test_under_a_new_name_only_the_lines_naming_the_database_change(dump):
    _, text = part(dump, "shop", new_name="shop's copy", skip_roles={"app", "reporter", 'Odd "Role"'})
    original = section("shop").splitlines()
    changed = [(old, new) for old, new in zip(original, text.splitlines(), strict=True) if old != new]
    assert changed == [
        ('-- Database "shop" dump', '-- Database "shop\'s copy" dump'),
        ("CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8';",
         "CREATE DATABASE \"shop's copy\" WITH TEMPLATE = template0 ENCODING = 'UTF8';"),
        ("ALTER DATABASE shop OWNER TO app;", "ALTER DATABASE \"shop's copy\" OWNER TO app;"),
        ("\\connect shop", "\\connect -reuse-previous=on \"dbname='shop\\'s copy'\""),
        ("COMMENT ON DATABASE shop IS 'the shop';", "COMMENT ON DATABASE \"shop's copy\" IS 'the shop';"),
        ("ALTER DATABASE shop SET work_mem TO '8MB';", "ALTER DATABASE \"shop's copy\" SET work_mem TO '8MB';"),
        ("ALTER ROLE reporter IN DATABASE shop SET statement_timeout TO '5s';",
         "ALTER ROLE reporter IN DATABASE \"shop's copy\" SET statement_timeout TO '5s';"),
        ("\\connect shop", "\\connect -reuse-previous=on \"dbname='shop\\'s copy'\""),
        ('GRANT CONNECT ON DATABASE shop TO reporter, "Odd ""Role""";',
         'GRANT CONNECT ON DATABASE "shop\'s copy" TO reporter, "Odd ""Role""";'),
    ]  # and not the COPY rows that look like statements


def test_a_database_the_dump_lacks_is_named_with_those_it_has(dump):
    with pytest.raises(RestoreError, match=r"the dump has no database 'shops' \(it has: notes, shop\)"):
        part(dump, "shops")


@pytest.mark.parametrize("argument, name", [
    (b"shop", "shop"), (b"\"dbname='My Db'\"", "My Db"), (b'"dbname=my-db"', "my-db"),
    (b"\"dbname='it\\'s'\"", "it's"), (b'"dbname=\'say ""hi""\'"', 'say "hi"'),
])
def test_connect_arguments_in_the_forms_pg_dump_writes(argument, name):
    assert connected_to(argument) == name


@pytest.mark.parametrize("name", ["shop", "My Db", "it's", 'say "hi"', "back\\slash"])
def test_a_connect_line_names_its_database_as_it_reads_back(name):
    line = connect_line(name)
    assert connected_to(line.removeprefix(b"\\connect -reuse-previous=on ")) == name
    assert renamed(b"\\connect shop", "shop", name) == line


def test_roles_are_read_from_where_statements_name_them_only():
    assert named_roles(b"ALTER TABLE public.t OWNER TO app;") == ["app"]
    assert named_roles(b"ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO x;") \
        == ["app", "x"]
    assert named_roles(b"REVOKE ALL ON TABLE public.app FROM PUBLIC;") == ["PUBLIC"]  # not the table
    assert named_roles(b"ALTER TABLE public.p ATTACH PARTITION public.q FOR VALUES FROM (1) TO (5);") == []
    assert named_roles(b"CREATE TABLE public.app (id integer);") == []
