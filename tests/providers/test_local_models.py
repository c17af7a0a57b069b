"""Packaged models: joined from their chunk packages, checksummed, never run when damaged."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localgpt.providers.local.models import ModelError, PackagedModel, cached_path, prepare

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 700, b"c" * 5]
WHOLE = b"".join(CHUNKS)


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[str]:
    """Three chunk packages laid out like the real ones: <prefix>N/data/partNN.bin."""
    root = tmp_path / "site"
    prefix = f"lgt_test_{tmp_path.name.replace('-', '_')}_part"
    for i, chunk in enumerate(CHUNKS, 1):
        package = root / f"{prefix}{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    sys.path.insert(0, str(root))
    yield prefix
    sys.path.remove(str(root))


def model(prefix: str, sha256: str | None = None) -> PackagedModel:
    digest = sha256 or hashlib.sha256(WHOLE).hexdigest()
    return PackagedModel("test-model", "test.gguf", digest, len(WHOLE), prefix, len(CHUNKS))


def test_chunks_are_joined_once_in_order(packages: str, tmp_path: Path) -> None:
    seen: list[int] = []
    path = prepare(model(packages), tmp_path / "cache", seen.append)
    assert path == cached_path(model(packages), tmp_path / "cache")
    assert path.read_bytes() == WHOLE and sum(seen) == len(WHOLE)
    assert [p.name for p in path.parent.iterdir()] == ["test.gguf"]  # no partial left
    stamp = path.stat().st_mtime_ns
    assert prepare(model(packages), tmp_path / "cache") == path
    assert path.stat().st_mtime_ns == stamp  # verified, not joined again


def test_a_wrong_checksum_leaves_no_file_that_looks_complete(packages: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="checksum mismatch"):
        prepare(model(packages, "0" * 64), tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_damaged_cached_copy_is_joined_again(packages: str, tmp_path: Path) -> None:
    path = prepare(model(packages), tmp_path / "cache")
    path.write_bytes(b"X" * len(WHOLE))  # same size, other bytes
    assert prepare(model(packages), tmp_path / "cache").read_bytes() == WHOLE


def test_a_missing_package_is_named(packages: str, tmp_path: Path) -> None:
    missing = PackagedModel("test-model", "t.gguf", "0" * 64, 1, packages, len(CHUNKS) + 1)
    with pytest.raises(ModelError, match=f"{packages}{len(CHUNKS) + 1}".replace("_", "-")):
        prepare(missing, tmp_path / "cache")
