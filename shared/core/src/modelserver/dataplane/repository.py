"""The registry of served models, with their lifecycle.

Lookups on the request path are a dict access. Loading and unloading are
serialised per model name so two concurrent loads of one model cannot race.
Every model, at startup or on a repository load, is built by one factory, so
a reload keeps batching, metrics and every other per-model setting; an
unloaded model is dropped entirely, so its memory can be reclaimed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, ModelLoadError, ModelNotFound, ModelNotReady
from ..model.discovery import MODEL_NAME, validate_model_name
from ..observability import metrics
from .served import ModelState, ServedModel

logger = logging.getLogger(__name__)

#: Builds the served model for a name and its directory.
ModelFactory = Callable[[str, Path], ServedModel]


class ModelRepository:
    """Served models by name.

    ``root`` is the multi-model directory (one sub-folder per model), which
    a repository load may pick new models from; None for a single model.
    """

    def __init__(self, factory: ModelFactory, root: str | Path | None = None):
        self.root = Path(root) if root is not None else None
        self.factory = factory
        self.models: dict[str, ServedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.on_change: list[Callable[[], None]] = []

    def add(self, model: ServedModel) -> None:
        self.models[model.name] = model
        self._changed()

    def _changed(self) -> None:
        # The state metric follows the registry: the instance serving under a
        # name, not one being loaded beside it or one just replaced.
        for name, model in self.models.items():
            metrics.model_state(name, model.state.value)
        for callback in self.on_change:
            callback()

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model of that name (any state); ModelNotFound, listing the models, otherwise.

        ``version``, when given, may be any version the model serves.
        """
        model = self.models.get(name)
        if model is not None and version and version != model.version:
            model = model.at_version(version)
        if model is None:
            raise ModelNotFound(name, version, served=self.models)
        return model

    def get_ready(self, name: str, version: str | None = None) -> ServedModel:
        model = self.get(name, version)
        if model.state is not ModelState.READY:
            raise ModelNotReady(name, model.reason)
        return model

    @property
    def all_ready(self) -> bool:
        return bool(self.models) and all(m.ready for m in self.models.values())

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """The repository index: every known model with its state and reason."""
        entries: dict[str, dict[str, Any]] = {}
        if self.root is not None and self.root.is_dir():
            for path in sorted(self.root.iterdir()):
                if (
                    path.is_dir()
                    and MODEL_NAME.fullmatch(path.name)
                    and path.name not in self.models
                    and self._inside(path)
                ):
                    entries[path.name] = {"name": path.name}
        for name, model in self.models.items():
            entry: dict[str, Any] = {
                "name": name,
                "version": model.version,
                "state": model.state.value,
            }
            if model.reason:
                entry["reason"] = model.reason
            entries[name] = entry
        result = [entries[k] for k in sorted(entries)]
        if ready_only:
            result = [e for e in result if e.get("state") == ModelState.READY.value]
        return result

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str) -> ServedModel:
        """(Re)load a model by name: an existing one in place, or a new sub-folder."""
        try:
            validate_model_name(name)
        except ModelLoadError as exc:
            raise InvalidInput(str(exc)) from None
        async with self._lock(name):
            current = self.models.get(name)
            if current is None:
                model = self.factory(name, self._new_path(name))
                self.models[name] = model
                self._changed()
                await self._start(model)
            else:
                if current.model_dir is None:
                    raise InvalidInput(f"Model {name} has no directory to reload from")
                # Reload: build a fresh instance and swap it in only once it
                # loaded, so a broken file never takes down a serving model.
                model = self.factory(name, current.model_dir)
                await self._start(model)
                self.models[name] = model
                current.stop()
                asyncio.get_running_loop().create_task(self._release_when_idle(current))
            logger.info("model %s loaded", name)
            self._changed()
            return model

    def _new_path(self, name: str) -> Path:
        if self.root is None:
            raise ModelNotFound(name, served=self.models)
        path = self.root / name
        if not path.is_dir():
            raise ModelNotFound(name, served=self.models)
        if not self._inside(path):
            raise InvalidInput(f"Model {name} resolves outside the model directory")
        return path

    def _inside(self, path: Path) -> bool:
        """Whether ``path`` (a sub-folder, perhaps a link) stays within the model directory."""
        root = self.root
        return root is not None and path.resolve().is_relative_to(root.resolve())

    async def _release_when_idle(self, model: ServedModel) -> None:
        await self._drain(model, 30.0)
        self._release(model)

    async def _start(self, model: ServedModel) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, model.load)
        except Exception as exc:
            logger.error("loading model %s failed: %s", model.name, exc)
            current = self.models.get(model.name)
            if current is not None and current is not model and current.ready:
                current.reason = f"reload failed, still serving the previous load: {model.reason}"
            else:
                self.models[model.name] = model  # reported as FAILED, with the reason
            self._changed()
            raise ModelLoadError(f"Failed to load model {model.name}: {model.reason}") from exc

    async def unload(self, name: str, drain_s: float = 30.0) -> None:
        """Stop taking requests for a model, let those in flight finish, then release it."""
        async with self._lock(name):
            model = self.get(name)
            model.stop()
            self._changed()
            await self._drain(model, drain_s)
            self._release(model)
            logger.info("model %s unloaded", name)

    @staticmethod
    def _release(model: ServedModel) -> None:
        """Drop the model and collect it now.

        The objects loaded at startup were frozen out of the collector's
        passes (``gc.freeze``), where a cycle in a framework's objects would
        never be freed: unfreeze, collect, and freeze what is left.
        """
        model.release()
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    @staticmethod
    async def _drain(model: ServedModel, drain_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + drain_s
        while model.busy > 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if model.busy > 0:
            logger.warning(
                "model %s released with %d requests still in flight after %.0fs",
                model.name,
                model.busy,
                drain_s,
            )
