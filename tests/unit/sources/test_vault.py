import hashlib
import io
import tarfile

import pytest

from runner.sources import SourceError
from runner.sources.vault.backup import verify_snapshot


def snapshot(tmp_path, meta=b'{"Index": 42, "Term": 3}', state=b"raft state" * 100, sums=None, drop=()):
    files = {"meta.json": meta, "state.bin": state}
    if sums is None:
        sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()).encode()
    files["SHA256SUMS"] = sums
    files["SHA256SUMS.sealed"] = b"signature"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            if name in drop:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path = tmp_path / "snap"
    path.write_bytes(buffer.getvalue())
    return path


def test_a_good_snapshot_verifies_and_returns_its_meta(tmp_path):
    assert verify_snapshot(snapshot(tmp_path)) == {"Index": 42, "Term": 3}


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a complete gzip'd tar"),
    (lambda p: p.write_bytes(b"PK" + p.read_bytes()[2:]), "not gzip data"),
])
def test_damaged_files_are_rejected(tmp_path, damage, message):
    path = snapshot(tmp_path)
    damage(path)
    with pytest.raises(SourceError, match=message):
        verify_snapshot(path)


def test_state_not_matching_its_sum_is_rejected(tmp_path):
    good_sums = f"{hashlib.sha256(b'other').hexdigest()}  state.bin\n{hashlib.sha256(b'{}').hexdigest()}  meta.json\n"
    with pytest.raises(SourceError, match="state.bin does not match"):
        verify_snapshot(snapshot(tmp_path, meta=b"{}", sums=good_sums.encode()))


def test_missing_members_and_bad_meta_are_rejected(tmp_path):
    with pytest.raises(SourceError, match="lacks state.bin"):
        verify_snapshot(snapshot(tmp_path, drop=("state.bin",)))
    with pytest.raises(SourceError, match="no SHA256SUMS"):
        verify_snapshot(snapshot(tmp_path, drop=("SHA256SUMS",)))
    with pytest.raises(SourceError, match="meta.json is not valid JSON"):
        verify_snapshot(snapshot(tmp_path, meta=b"{not json"))
