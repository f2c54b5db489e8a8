"""The registry of models the server knows, with their lifecycle.

Lookups on the request path are a dict access. Loading and unloading are
serialised per model name so two concurrent loads of one model cannot race.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import metrics
from .discovery import MODEL_NAME, validate_model_name
from .errors import InvalidInput, ModelLoadError, ModelNotFound, ModelNotReady
from .model import Model, ModelState

logger = logging.getLogger(__name__)

ModelFactory = Callable[[str, Path], Model]


class ModelRepository:
    """Models by name; ``factory`` builds a model for a name and directory on load."""

    def __init__(self, model_dir: str | Path | None = None, factory: ModelFactory | None = None):
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.factory = factory
        self.models: dict[str, Model] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.on_change: list[Callable[[], None]] = []

    def add(self, model: Model) -> None:
        self.models[model.name] = model
        self._changed()

    def _changed(self) -> None:
        # The state metric follows the registry: the instance serving under a
        # name, not one being loaded beside it or one just replaced.
        for name, model in self.models.items():
            metrics.model_state(name, model.state.value)
        for callback in self.on_change:
            callback()

    def get(self, name: str, version: str | None = None) -> Model:
        """The model of that name (any state); ModelNotFound for unknown name or version."""
        model = self.models.get(name)
        if model is None or (version and version != model.version):
            raise ModelNotFound(name, version)
        return model

    def get_ready(self, name: str, version: str | None = None) -> Model:
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
        if self.model_dir is not None and self.model_dir.is_dir() and self.factory is not None:
            for path in sorted(self.model_dir.iterdir()):
                if (
                    path.is_dir()
                    and MODEL_NAME.fullmatch(path.name)
                    and path.name not in self.models
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

    async def load(self, name: str) -> Model:
        """(Re)load a model by name: an existing one in place, or a new sub-folder."""
        try:
            validate_model_name(name)
        except ModelLoadError as exc:
            raise InvalidInput(str(exc)) from None
        async with self._lock(name):
            model = self.models.get(name)
            if model is None:
                if self.factory is None or self.model_dir is None:
                    raise ModelNotFound(name)
                path = self.model_dir / name
                if not path.is_dir():
                    raise ModelNotFound(name)
                if not path.resolve().is_relative_to(self.model_dir.resolve()):
                    raise InvalidInput(f"Model {name} resolves outside the model directory")
                model = self.factory(name, path)
                self.models[name] = model
                self._changed()
                await self._start(model)
            else:
                # Reload: build a fresh instance and swap it in only once it
                # loaded, so a broken file never takes down a serving model.
                fresh = self._fresh(model)
                await self._start(fresh)
                self.models[name] = fresh
                model.stop()
                old = model
                asyncio.get_running_loop().create_task(self._release_when_idle(old))
                model = fresh
            logger.info("model %s loaded", name)
            self._changed()
            return model

    async def _release_when_idle(self, model: Model) -> None:
        await self._drain(model, 30.0)
        model.release()

    def _fresh(self, model: Model) -> Model:
        if self.factory is not None and model.model_dir is not None:
            return self.factory(model.name, model.model_dir)
        fresh = type(model)(model.name, model.model_dir, model.version, model.options)
        fresh.runner = model.runner
        return fresh

    async def _start(self, model: Model) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, model.start)
        except Exception as exc:
            logger.error("loading model %s failed: %s", model.name, exc)
            current = self.models.get(model.name)
            if current is not None and current is not model and current.ready:
                current.reason = f"reload failed, still serving the previous load: {exc}"
            else:
                self.models[model.name] = model  # reported as FAILED, with the reason
            self._changed()
            raise ModelLoadError(f"Failed to load model {model.name}: {exc}") from exc

    async def unload(self, name: str, drain_s: float = 30.0) -> None:
        """Stop taking requests for a model, let those in flight finish, then release it."""
        async with self._lock(name):
            model = self.get(name)
            model.stop()
            self._changed()
            await self._drain(model, drain_s)
            model.release()
            logger.info("model %s unloaded", name)

    @staticmethod
    async def _drain(model: Model, drain_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + drain_s
        while model.inflight > 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if model.inflight > 0:
            logger.warning(
                "model %s released with %d requests still in flight after %.0fs",
                model.name,
                model.inflight,
                drain_s,
            )
