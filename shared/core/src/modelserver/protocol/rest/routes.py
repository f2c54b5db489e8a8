"""The one table of REST routes: paths, methods, which are probes, what docs say.

Every path the server answers is declared here once. Dispatch, the 404/405
answers (with ``Allow``), the probes that stay open when authentication is
on, the access-log filter and the OpenAPI document all read this table.
Routes of an optional protocol (MLflow's scoring server, OpenAI's API) are
served only when the runtime's ``Model.protocols`` names it.
Routes are tried for the request's method first, hottest first, so an
inference request costs one regular-expression match.

KServe's v1 protocol was derived from TensorFlow Serving's REST API and kept
its paths (``/v1/models/{name}:predict``, ``GET /v1/models/{name}``) with
other answers. A route may belong to one dialect (``Model.dialect``): the
table of a server holds the routes of every dialect plus those of its own,
so a runtime that speaks TF Serving's answers those paths as TF Serving does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import MethodNotAllowed, RouteNotFound

#: Path parameters: a model name (no '/'; v1's ':verb' suffix is not part of it)
#: and an optional ``/versions/{version}``.
_PARAMS = {
    "{name}": r"(?P<name>[^/:]+)",
    "{name_any}": r"(?P<name>[^/]+)",
    "[/versions/{version}]": r"(?:/versions/(?P<version>[^/]+))?",
    "[/region/{region}]": r"(?:/region/(?P<region>[^/]+))?",
    "{region}": r"(?P<region>[^/]+)",
    "[/versions/{version}|/labels/{label}]": (
        r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    ),
}

#: The dialects of ``Model.dialect``; a route with no dialect is in every table.
KSERVE = "kserve"
TFSERVING = "tfserving"
#: TF Serving's optional version or version label.
_TFS_MODEL = "/v1/models/{name}[/versions/{version}|/labels/{label}]"


@dataclass(frozen=True, slots=True)
class Route:
    """One path and method, and the handler (a ``Handlers`` method) that answers it."""

    handler: str
    method: str
    template: str
    summary: str
    #: Health, readiness and metrics: open to probes when authentication is on,
    #: and left out of the access log unless asked for.
    probe: bool = False
    #: Served only with ``--enable_docs_url``.
    docs_only: bool = False
    #: The optional protocol this route belongs to ("mlflow"); "" for the ones always served.
    protocol: str = ""
    #: Served only by runtimes of this dialect ("": by every runtime).
    dialect: str = ""

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.template)


def _compiled(template: str, _cache: dict[str, re.Pattern[str]] = {}) -> re.Pattern[str]:  # noqa: B006
    pattern = _cache.get(template)
    if pattern is None:
        body = re.escape(template)
        for key, regex in _PARAMS.items():
            body = body.replace(re.escape(key), regex)
        pattern = _cache[template] = re.compile(body + r"\Z")
    return pattern


MLFLOW = "mlflow"
OPENAI = "openai"

#: Every route, the hottest first within each method.
ROUTES: tuple[Route, ...] = (
    Route(
        "infer_v2",
        "POST",
        "/v2/models/{name_any}[/versions/{version}]/infer",
        "Open Inference Protocol v2 inference (JSON or the binary tensor extension)",
    ),
    Route("predict_v1", "POST", "/v1/models/{name}:predict", "KServe v1 predict", dialect=KSERVE),
    Route(
        "tfs_predict",
        "POST",
        f"{_TFS_MODEL}:predict",
        "TF Serving predict (row or columnar JSON)",
        dialect=TFSERVING,
    ),
    Route(
        "tfs_classify", "POST", f"{_TFS_MODEL}:classify", "TF Serving classify", dialect=TFSERVING
    ),
    Route("tfs_regress", "POST", f"{_TFS_MODEL}:regress", "TF Serving regress", dialect=TFSERVING),
    Route("ready", "GET", "/v2/health/ready", "Server readiness", probe=True),
    Route("live", "GET", "/v2/health/live", "Server liveness", probe=True),
    Route(
        "model_ready",
        "GET",
        "/v2/models/{name_any}[/versions/{version}]/ready",
        "Model readiness",
        probe=True,
    ),
    Route("statistics", "GET", "/v2/models/stats", "Statistics of every model (Triton's)"),
    Route("model_metadata", "GET", "/v2/models/{name_any}[/versions/{version}]", "Model metadata"),
    Route("server_metadata", "GET", "/v2", "Server metadata"),
    Route(
        "v1_model", "GET", "/v1/models/{name}", "KServe v1 model status", probe=True, dialect=KSERVE
    ),
    Route(
        "tfs_status",
        "GET",
        _TFS_MODEL,
        "TF Serving model status (every version, or the one named)",
        probe=True,
        dialect=TFSERVING,
    ),
    Route(
        "tfs_metadata",
        "GET",
        f"{_TFS_MODEL}/metadata",
        "TF Serving model metadata (the signature map)",
        dialect=TFSERVING,
    ),
    Route("v1_models", "GET", "/v1/models", "KServe v1 model list"),
    Route("explain_v1", "POST", "/v1/models/{name}:explain", "KServe v1 explain"),
    Route("metrics", "GET", "/metrics", "Prometheus metrics", probe=True),
    Route("root", "GET", "/", "Liveness (KServe's root route)", probe=True),
    Route("repository_index", "POST", "/v2/repository/index", "Repository index"),
    Route(
        "repository_load", "POST", "/v2/repository/models/{name_any}/load", "Load or reload a model"
    ),
    Route("repository_unload", "POST", "/v2/repository/models/{name_any}/unload", "Unload a model"),
    Route(
        "statistics",
        "GET",
        "/v2/models/{name_any}[/versions/{version}]/stats",
        "A model's statistics (Triton's statistics extension)",
    ),
    Route(
        "model_config",
        "GET",
        "/v2/models/{name_any}[/versions/{version}]/config",
        "A model's configuration (Triton's model configuration extension)",
    ),
    Route(
        "shared_memory_status",
        "GET",
        "/v2/systemsharedmemory[/region/{region}]/status",
        "Registered system shared memory regions",
    ),
    Route(
        "shared_memory_register",
        "POST",
        "/v2/systemsharedmemory/region/{region}/register",
        "Register a system shared memory region",
    ),
    Route(
        "shared_memory_unregister",
        "POST",
        "/v2/systemsharedmemory[/region/{region}]/unregister",
        "Unregister one system shared memory region, or all",
    ),
    Route("openapi", "GET", "/openapi.json", "This document", docs_only=True),
    Route("docs", "GET", "/docs", "Interactive documentation", docs_only=True),
    # MLflow's scoring server (``mlflow models serve``), for runtimes that speak it.
    Route("invocations", "POST", "/invocations", "MLflow scoring", protocol=MLFLOW),
    Route("ping", "GET", "/ping", "MLflow scoring server health", probe=True, protocol=MLFLOW),
    Route("ping", "GET", "/health", "MLflow scoring server health", probe=True, protocol=MLFLOW),
    # OpenAI's API, under /openai/v1 as KServe serves it and under /v1 (where GET /v1/models
    # and GET /v1/models/{name} are KServe's v1 routes above, answering for both).
    *(
        route
        for prefix in ("/openai/v1", "/v1")
        for route in (
            Route(
                "openai.completions",
                "POST",
                f"{prefix}/completions",
                "OpenAI completions",
                protocol=OPENAI,
            ),
            Route(
                "openai.chat_completions",
                "POST",
                f"{prefix}/chat/completions",
                "OpenAI chat completions",
                protocol=OPENAI,
            ),
            Route(
                "openai.embeddings",
                "POST",
                f"{prefix}/embeddings",
                "OpenAI embeddings",
                protocol=OPENAI,
            ),
        )
    ),
    Route("openai.models", "GET", "/openai/v1/models", "OpenAI model list", protocol=OPENAI),
    Route("openai.model", "GET", "/openai/v1/models/{name_any}", "OpenAI model", protocol=OPENAI),
)

#: Every optional protocol a route belongs to.
PROTOCOLS = frozenset(route.protocol for route in ROUTES if route.protocol)

#: Methods answered like GET without a body.
_AS_GET = {"HEAD": "GET"}


class RouteTable:
    """Matches a request's method and path to a route and its path parameters."""

    def __init__(
        self,
        routes: tuple[Route, ...] = ROUTES,
        docs: bool = False,
        protocols: frozenset[str] | tuple[str, ...] = (),
        dialect: str | None = KSERVE,
    ) -> None:
        """The routes a server answers: every dialect's when ``dialect`` is None."""
        self.routes = tuple(
            r
            for r in routes
            if (docs or not r.docs_only)
            and (not r.protocol or r.protocol in protocols)
            and (dialect is None or r.dialect in ("", dialect))
        )
        self._by_method: dict[str, list[tuple[re.Pattern[str], Route]]] = {}
        for route in self.routes:
            self._by_method.setdefault(route.method, []).append((route.pattern, route))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str | None]]:
        """The route and its parameters; RouteNotFound (404) or MethodNotAllowed (405)."""
        for pattern, route in self._by_method.get(_AS_GET.get(method, method), ()):
            found = pattern.match(path)
            if found is not None:
                return route, found.groupdict()
        allowed = sorted({r.method for r in self.routes if r.pattern.match(path) is not None})
        if allowed:
            if "GET" in allowed:
                allowed.append("HEAD")
            raise MethodNotAllowed(allowed)
        raise RouteNotFound()

    def is_probe(self, method: str, path: str) -> bool:
        """Whether the request is a health, readiness or metrics probe."""
        if method not in ("GET", "HEAD"):
            return False
        try:
            route, _ = self.match(method, path)
        except (RouteNotFound, MethodNotAllowed):
            return False
        return route.probe

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        """An OpenAPI 3 document of the routes (paths, methods, parameters, summaries)."""
        paths: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            variants = [route.template]
            for optional in (
                "[/versions/{version}]",
                "[/region/{region}]",
                "[/versions/{version}|/labels/{label}]",
            ):
                if optional in route.template:
                    choices = optional.strip("[]").split("|")
                    variants = [route.template.replace(optional, c) for c in ("", *choices)]
            for variant in variants:
                path = variant.replace("{name_any}", "{name}")
                params = [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in ("name", "version", "region", "label")
                    if "{" + p + "}" in path
                ]
                paths.setdefault(path, {})[route.method.lower()] = {
                    "summary": route.summary,
                    "operationId": f"{route.handler}_{len(paths)}",
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                }
        return {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": paths}


def is_probe(method: str, path: str, _table: list[RouteTable] = []) -> bool:  # noqa: B006
    """``RouteTable().is_probe`` over every route of every dialect (for the access-log filter)."""
    if not _table:
        _table.append(RouteTable(protocols=PROTOCOLS, dialect=None))
    return _table[0].is_probe(method, path)
