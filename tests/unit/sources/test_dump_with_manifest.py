"""images/tools/bin/dump-with-manifest, run with this Python as the tools image runs it."""

import importlib.machinery
import json
import subprocess
import sys
import types

from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "images" / "tools" / "bin" / "dump-with-manifest"

DUMP = r'''--
-- PostgreSQL database cluster dump
--
CREATE ROLE postgres;
\connect template1
\connect shop
COPY public.customers (id, name) FROM stdin;
1	alice
2	bob
\.
COPY public.empty (x) FROM stdin;
\.
\connect -reuse-previous=on "dbname='it''s'"
COPY "Weird"."Table" (a) FROM stdin;
x
\.
\connect "quoted ""db"""
COPY public.t (a) FROM stdin;
1
\.
'''


def run(tmp_path, dump: str, exit_code: int = 0):
    source = tmp_path / "dump.sql"
    source.write_text(dump)
    manifest = tmp_path / "manifest.json"
    command = ["sh", "-c", f"cat {source}; exit {exit_code}"]
    result = subprocess.run([sys.executable, str(SCRIPT), "--manifest", str(manifest), "--", *command],
                            capture_output=True)
    return result, manifest


def test_output_passes_through_unchanged_and_manifest_counts_rows(tmp_path):
    result, manifest = run(tmp_path, DUMP)
    assert result.returncode == 0
    assert result.stdout == DUMP.encode()
    document = json.loads(manifest.read_text())
    assert document["dump_bytes"] == len(DUMP.encode())
    databases = document["databases"]
    assert databases["shop"]["public.customers"]["rows"] == 2
    assert databases["shop"]["public.empty"]["rows"] == 0
    assert databases["it's"]['"Weird"."Table"']["rows"] == 1
    assert databases['quoted "db"']["public.t"]["rows"] == 1


def test_checksum_follows_the_content(tmp_path):
    _, first = run(_dir(tmp_path, "a"), DUMP)
    _, again = run(_dir(tmp_path, "b"), DUMP)
    changed = DUMP.replace("2\tbob", "2\tbobby")
    _, third = run(_dir(tmp_path, "c"), changed)
    def checksum(path):
        return json.loads(path.read_text())["databases"]["shop"]["public.customers"]["checksum"]
    assert checksum(first) == checksum(again) != checksum(third)


def test_blocks_of_any_size_give_the_same_manifest():
    """The dump arrives in blocks that cut lines, and COPY terminators, anywhere."""
    loader = importlib.machinery.SourceFileLoader("dump_with_manifest", str(SCRIPT))
    module = types.ModuleType(loader.name)
    loader.exec_module(module)
    data = DUMP.encode() * 3

    def manifest(size):
        built = module.Manifest()
        for start in range(0, len(data), size):
            built.feed(data[start:start + size])
        assert built.complete
        return built.document()

    whole = manifest(len(data))
    assert whole["databases"]["shop"]["public.customers"]["rows"] == 6
    for size in (1, 2, 3, 5, 7, 64):
        assert manifest(size) == whole, size


def _dir(tmp_path, name):
    path = tmp_path / name
    path.mkdir()
    return path


def test_failed_dump_keeps_its_exit_code_and_writes_no_manifest(tmp_path):
    result, manifest = run(tmp_path, DUMP, exit_code=3)
    assert result.returncode == 3
    assert not manifest.exists()
    assert b"no manifest written" in result.stderr


def test_dump_ending_inside_a_copy_block_is_truncated(tmp_path):
    result, manifest = run(tmp_path, "\\connect db\nCOPY public.t (a) FROM stdin;\n1\n")
    assert result.returncode == 1 and b"truncated" in result.stderr
    assert not manifest.exists()


# A SQL_ASCII or LATIN1 server: names and rows that are not UTF-8 (0xe9 is 'é' in LATIN1).
LEGACY_DUMP = (b'\\connect -reuse-previous=on "dbname=\'caf\xe9\'"\n'
               b'COPY public."r\xe9sum\xe9" (id, label) FROM stdin;\n1\tna\xefve\n2\t\xff\xfe\n\\.\n'
               b'\\connect "caf\xc3\xa9 utf8"\n'
               b'COPY public."caf\xc3\xa9" (a) FROM stdin;\n1\n\\.\n')


def test_names_that_are_not_utf8_are_recorded_with_their_bytes_escaped(tmp_path):
    source = tmp_path / "dump.sql"
    source.write_bytes(LEGACY_DUMP)
    manifest = tmp_path / "manifest.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--manifest", str(manifest), "--", "cat", str(source)],
                            capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == LEGACY_DUMP  # the dump passes byte for byte
    databases = json.loads(manifest.read_text(encoding="ascii"))["databases"]
    assert set(databases) == {"caf\\xe9", "café utf8"}
    assert databases["caf\\xe9"]['public."r\\xe9sum\\xe9"']["rows"] == 2
    assert databases["café utf8"]['public."café"']["rows"] == 1  # valid UTF-8 names are kept as they are


def test_names_that_are_not_utf8_come_out_the_same_in_blocks_of_any_size():
    loader = importlib.machinery.SourceFileLoader("dump_with_manifest", str(SCRIPT))
    module = types.ModuleType(loader.name)
    loader.exec_module(module)

    def manifest(size):
        built = module.Manifest()
        for start in range(0, len(LEGACY_DUMP), size):
            built.feed(LEGACY_DUMP[start:start + size])
        return built.document()

    assert all(manifest(size) == manifest(len(LEGACY_DUMP)) for size in (1, 2, 3, 7))


def test_format_3_checksums_are_xxh3_128_and_format_2_sha256_of_the_copy_data(tmp_path):
    import hashlib

    import xxhash

    rows = b"1\talice\n2\tbob\n"
    _, newest = run(_dir(tmp_path, "new"), DUMP)
    source = _dir(tmp_path, "old") / "dump.sql"
    source.write_text(DUMP)
    older = tmp_path / "old" / "manifest.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--format", "2", "--manifest", str(older), "--",
                             "cat", str(source)], capture_output=True)
    assert result.returncode == 0 and result.stdout == DUMP.encode()
    new, old = json.loads(newest.read_text()), json.loads(older.read_text())
    assert (new["format"], old["format"]) == (3, 2)
    assert new["databases"]["shop"]["public.customers"] == {"rows": 2, "checksum": xxhash.xxh3_128(rows).hexdigest()}
    assert old["databases"]["shop"]["public.customers"] == {"rows": 2,
                                                            "checksum": hashlib.sha256(rows).hexdigest()[:32]}


def test_an_unknown_format_is_refused_before_the_dump_runs(tmp_path):
    marker = tmp_path / "ran"
    result = subprocess.run([sys.executable, str(SCRIPT), "--format", "9", "--manifest", str(tmp_path / "m.json"),
                             "--", "touch", str(marker)], capture_output=True)
    assert result.returncode == 2 and b"usage" in result.stderr
    assert not marker.exists()


def test_rows_are_counted_alike_in_blocks_large_and_small():
    """Large blocks are counted with numpy when it is there, small ones with bytes.count."""
    loader = importlib.machinery.SourceFileLoader("dump_with_manifest", str(SCRIPT))
    module = types.ModuleType(loader.name)
    loader.exec_module(module)
    rows = b"".join(b"%d\tsome text\n" % i for i in range(50_000))
    data = b"\\connect db\nCOPY public.t (a, b) FROM stdin;\n" + rows + b"\\.\n"
    for size in (1000, 1 << 16, len(data)):
        built = module.Manifest()
        for start in range(0, len(data), size):
            built.feed(data[start:start + size])
        assert built.document()["databases"]["db"]["public.t"]["rows"] == 50_000, size
