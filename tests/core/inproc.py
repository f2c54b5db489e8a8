"""The real serving stack in this process, for tests that take milliseconds.

Everything here is the project's own code put together the way
``server/process.py`` and ``server/server.py`` do it (served models in a
repository, a data plane, a request policy and the inference gate, the REST
app, the gRPC generic handler), minus sockets for REST and minus the process:

* ``Stack`` holds one such set; ``stack(...)`` builds it from loaded models;
* ``asgi`` drives the REST app with hand-made ASGI messages, for what httpx's
  ``ASGITransport`` cannot show (the body of a HEAD answer, which it drops,
  and a client leaving mid-request, which it never reports);
* ``grpc_channel`` serves the servicer on a free localhost port with
  ``grpc.aio`` and yields a client channel to it;
* ``Arith`` is a small model with joint outputs, an output of its own
  function, and switches to fail or block on purpose.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from modelserver import InferRequest, Model, RequestedOutput, Tensor, tensor_spec
from modelserver.dataplane.context import RequestContext
from modelserver.dataplane.dataplane import DataPlane
from modelserver.dataplane.gate import InferenceGate
from modelserver.dataplane.policy import RequestPolicy
from modelserver.dataplane.repository import ModelFactory, ModelRepository
from modelserver.dataplane.served import ServedModel, ServingOptions
from modelserver.protocol.grpc.servicer import generic_handler
from modelserver.protocol.rest.app import RestApp

#: The predict pool of every in-process stack (a server has one per process).
POOL = ThreadPoolExecutor(4, thread_name_prefix="predict")
#: How long a test waits for something that should happen at once before failing.
WAIT_S = 5.0


def options(**overrides: Any) -> ServingOptions:
    """Serving options as the server builds them: the predict pool, predict inline."""
    values: dict[str, Any] = {"executor": POOL, "predict_executor": "inline"}
    values.update(overrides)
    return ServingOptions(**values)


def loaded(model: Model, opts: ServingOptions | None = None) -> ServedModel:
    """``model`` loaded and READY, served with ``opts`` (or the defaults of ``options``)."""
    served = ServedModel(model, opts if opts is not None else options())
    served.load()
    return served


def factory_of(model_class: type[Model], opts: ServingOptions | None = None) -> ModelFactory:
    """The repository's factory for ``model_class``: one options object for every load."""
    shared = opts if opts is not None else options()

    def build(name: str, path: Path) -> ServedModel:
        return ServedModel(model_class(name, path), shared)

    return build


def unloadable(name: str, path: Path) -> ServedModel:
    """A factory for repositories whose models are all added by hand."""
    raise AssertionError(f"this repository loads nothing ({name} from {path})")


@dataclass
class Stack:
    """One server's data plane, policy and gate over a repository."""

    repository: ModelRepository
    dataplane: DataPlane
    policy: RequestPolicy
    gate: InferenceGate

    def app(self, max_body_size: int = 1 << 20, docs: bool = False) -> RestApp:
        return RestApp(self.dataplane, self.gate, max_body_size, docs)

    def client(self, app: RestApp | None = None) -> httpx.AsyncClient:
        """An httpx client whose requests go straight to the REST app."""
        transport = httpx.ASGITransport(app=app if app is not None else self.app())
        return httpx.AsyncClient(transport=transport, base_url="http://inproc")


def stack(
    *served: ServedModel,
    factory: ModelFactory = unloadable,
    root: Path | None = None,
    tokens: Sequence[bytes] = (),
    max_concurrent: int = 0,
    timeout_s: float = 0.0,
    protocols: tuple[str, ...] = (),
) -> Stack:
    """The stack over ``served`` (already loaded), as ``prepare_server`` assembles it."""
    repository = ModelRepository(factory, root)
    for model in served:
        repository.add(model)
    dataplane = DataPlane(repository, server_name="inproc", protocols=protocols)
    policy = RequestPolicy(list(tokens), max_concurrent, timeout_s)
    return Stack(repository, dataplane, policy, InferenceGate(repository, policy))


# -- requests ---------------------------------------------------------------------------


def tensor(name: str, data: Any, datatype: str = "FP64") -> Tensor:
    arr = np.asarray(data)
    return Tensor(name, datatype, tuple(arr.shape), arr)


def request(
    model: str,
    *inputs: Tensor,
    outputs: Iterable[str] | None = None,
    id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> InferRequest:
    return InferRequest(
        model_name=model,
        inputs=list(inputs),
        id=id,
        outputs=[RequestedOutput(n) for n in outputs] if outputs is not None else None,
        parameters=parameters or {},
    )


class Disconnect:
    """A client that can be made to leave: its ``wait`` is a RequestContext's ``disconnected``."""

    def __init__(self) -> None:
        self.left = asyncio.Event()

    async def wait(self) -> None:
        await self.left.wait()

    def context(self, protocol: str = "test", deadline: float | None = None) -> RequestContext:
        return RequestContext(protocol, deadline=deadline, disconnected=self.wait)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``WAIT_S``."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


# -- a model with every kind of output ----------------------------------------------------------


class Arith(Model):
    """Rows of numbers in; joint outputs ``double`` and ``total``, own-function ``negate``.

    ``predict`` doubles the rows and ``postprocess`` adds their sums, so the
    two joint outputs come from one predict call; ``negate`` is computed by
    its own function and is not a default. Every predict call is recorded
    (rows, thread). Switches: a NaN in the input is refused by predict
    (``ValueError``, an input error), a 666 makes predict crash
    (``RuntimeError``), the request parameter ``preprocess`` = ``reject`` or
    ``crash`` makes preprocess raise ``KeyError`` or ``ZeroDivisionError``,
    and ``block()`` makes predict wait until ``unblock()``.
    """

    platform = "arith"

    def __init__(self, name: str = "arith", model_dir: str | Path | None = None) -> None:
        super().__init__(name, model_dir)
        self.calls: list[np.ndarray] = []
        self.negations: list[np.ndarray] = []
        self.threads: list[str] = []
        self.entered = threading.Event()
        self._gate: threading.Event | None = None

    def load(self) -> None:
        self.outputs.add("double", "FP64", [-1, -1])
        self.outputs.add("total", "FP64", [-1])
        self.outputs.add("negate", "FP64", [-1, -1], self._negate, default=False)

    def preprocess(self, request: InferRequest) -> Any:
        mode = request.parameters.get("preprocess")
        if mode == "reject":
            raise KeyError("no column named 'x'")
        if mode == "crash":
            raise ZeroDivisionError("division by zero in preprocess")
        return super().preprocess(request)

    def predict(self, inputs: Any) -> Any:
        x = np.asarray(inputs, dtype=np.float64)
        self.calls.append(x.copy())
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        gate = self._gate
        if gate is not None and not gate.wait(WAIT_S):
            raise TimeoutError("the test never unblocked predict")
        if np.isnan(x).any():
            raise ValueError("NaN is not a number this model takes")
        if (x == 666).any():
            raise RuntimeError("the model broke on 666")
        return x * 2

    def postprocess(self, result: Any) -> Any:
        return {"double": result, "total": result.sum(axis=1)}

    def _negate(self, inputs: Any) -> Any:
        x = np.asarray(inputs, dtype=np.float64)
        self.negations.append(x.copy())
        return -x

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [tensor_spec("x", "FP64", [-1, -1])]

    def metadata_parameters(self) -> dict[str, Any]:
        return {"operation": "double"}

    def block(self) -> None:
        self.entered.clear()
        self._gate = threading.Event()

    def unblock(self) -> None:
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    async def wait_entered(self) -> None:
        """Until a predict call has started (in whichever thread)."""
        await eventually(self.entered.is_set, "predict to start")

    def expected(self, x: Any, names: list[str]) -> dict[str, np.ndarray]:
        """This model's own answer for ``x``, computed directly (not recorded as a call)."""
        twin = Arith(self.name)
        twin.load()
        return {k: np.asarray(v) for k, v in twin.compute(np.asarray(x, np.float64), names).items()}


# -- REST without httpx ---------------------------------------------------------------------


@dataclass
class AsgiReply:
    """What the app sent: the status, the headers and every body message."""

    status: int
    headers: dict[str, str]
    bodies: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.bodies)


async def asgi(
    app: RestApp,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    leave: asyncio.Event | None = None,
    sent: list[dict[str, Any]] | None = None,
) -> AsgiReply:
    """One request straight into the ASGI app, as uvicorn would make it.

    The body arrives in one message; afterwards ``receive`` waits for
    ``leave`` (when given) and then reports that the client disconnected.
    Every message the app sends is also appended to ``sent`` when given, so
    a request whose task is cancelled still shows what it answered.
    """
    sent = sent if sent is not None else []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        if leave is None:
            await asyncio.Event().wait()  # a client that stays until the answer
        else:
            await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(b"content-length", str(len(body)).encode()), *headers]
    scope = {"type": "http", "method": method, "path": path, "headers": raw_headers}
    await app(scope, receive, send)
    start, *rest = sent
    assert start["type"] == "http.response.start"
    reply = AsgiReply(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, [])
    for message in rest:
        assert message["type"] == "http.response.body"
        reply.bodies.append(message.get("body", b""))
    return reply


# -- gRPC -------------------------------------------------------------------------------------


@asynccontextmanager
async def grpc_channel(s: Stack) -> AsyncIterator[grpc.aio.Channel]:
    """The servicer of ``s`` on a free localhost port, and a client channel to it."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((generic_handler(s.dataplane, s.gate),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)
