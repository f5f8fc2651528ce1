"""Checks of a model folder built into the cache, reading no weights.

The folder carries a manifest (every file and its size); a folder checks out when every listed file is
present with its size, JSON files parse, and each safetensors header parses with tensor byte ranges
that exactly fill the file.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path
from typing import Any, Callable

from delift.fsutil import atomic_folder, discard_folder

log = logging.getLogger(__name__)

MANIFEST = "delift_manifest.json"
REQUIRED_FILES = ("config.json", "tokenizer_config.json")
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
                           "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def write_manifest(folder: Path) -> None:
    """Record every file under ``folder`` and its size in ``folder/MANIFEST``."""
    files = {path.relative_to(folder).as_posix(): path.stat().st_size
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=2) + "\n", encoding="utf-8")


def folder_problem(folder: Path, required: tuple[str, ...] = REQUIRED_FILES) -> str | None:
    """Why the built ``folder`` cannot be used (naming the file), or None when it checks out.

    ``required``: the files its manifest must list (a model's by default; an adapter cache passes its own)."""
    manifest_path = folder / MANIFEST
    try:
        files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"{manifest_path} is missing"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest_path} is unreadable: {exc!r}"
    if not isinstance(files, dict) or not all(isinstance(size, int) for size in files.values()):
        return f"{manifest_path} is malformed"
    missing = [name for name in required if name not in files]
    if missing or not any(name.endswith(".safetensors") for name in files):
        return f"{manifest_path} lists no {missing[0] if missing else 'safetensors weights'}"
    for name, size in files.items():
        problem = _file_problem(folder / name, size)
        if problem is not None:
            return problem
    return None


def sound_folder(folder: Path, what: str, then: str, required: tuple[str, ...] = REQUIRED_FILES) -> Path | None:
    """``folder`` when it exists and checks out, else None; a damaged one is logged (``"<what> <folder> is damaged
    (<why>); <then>"``) and discarded."""
    if not folder.exists():
        return None
    problem = folder_problem(folder, required)
    if problem is None:
        return folder
    log.warning("%s %s is damaged (%s); %s", what, folder, problem, then)
    discard_folder(folder)
    return None


def store_folder(folder: Path, build: Callable[[Path], Any], what: str, done: str,
                 required: tuple[str, ...] = REQUIRED_FILES) -> Path:
    """``folder`` built atomically by ``build`` with its manifest (a concurrent writer's copy wins), then checked:
    a folder that fails right after being ``done`` is a RuntimeError naming ``what``."""
    def build_with_manifest(tmp: Path) -> None:
        build(tmp)
        write_manifest(tmp)

    target = atomic_folder(folder, build_with_manifest)
    problem = folder_problem(target, required)
    if problem is not None:
        raise RuntimeError(f"{what} {target} fails its check right after being {done}: {problem}")
    return target


def _file_problem(path: Path, size: int) -> str | None:
    """Why one listed file is damaged: absent, another size, or (JSON, safetensors) unloadable."""
    if not path.is_file():
        return f"{path} is missing"
    actual = path.stat().st_size
    if actual != size:
        return f"{path} has {actual} bytes, the manifest says {size}"
    try:
        if path.suffix == ".json":
            json.loads(path.read_bytes())
        elif path.suffix == ".safetensors":
            check_safetensors(path)
    except (OSError, ValueError) as exc:
        return f"{path} does not load: {exc}"
    return None


def check_safetensors(path: Path) -> None:
    """Raise ``ValueError`` unless the header parses and its tensors exactly fill the data section.

    Reads only the header: ``<u64 n><n bytes of JSON><data>``, where each tensor's
    ``data_offsets`` must lie in the data, span ``prod(shape) * itemsize`` bytes and together end at
    its last byte (so a truncated or padded file fails).
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise ValueError(f"header of {length} bytes does not fit in a file of {size} bytes")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    data = size - 8 - length
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, stop, expected = _tensor_span(name, info)
        if not 0 <= begin <= stop <= data or stop - begin != expected:
            raise ValueError(f"tensor {name!r} spans bytes {begin}..{stop} of {data} data bytes, "
                             f"expected {expected} bytes")
        end = max(end, stop)
    if end != data:
        raise ValueError(f"tensors end at byte {end} of {data} data bytes")


def _tensor_span(name: str, info: Any) -> tuple[int, int, int]:
    """``(begin, stop, expected size)`` of one safetensors header entry; ValueError if malformed."""
    try:
        begin, stop = info["data_offsets"]
        shape, dtype = list(info["shape"]), info["dtype"]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"tensor {name!r} has a malformed header entry") from None
    if not all(isinstance(v, int) for v in (begin, stop, *shape)):
        raise ValueError(f"tensor {name!r} has a malformed header entry")
    itemsize = SAFETENSORS_DTYPE_BYTES.get(dtype)
    return begin, stop, math.prod(shape) * itemsize if itemsize else stop - begin
