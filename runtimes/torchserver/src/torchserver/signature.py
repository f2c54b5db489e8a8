"""A model's inputs and outputs, named and typed from what its format records.

- torch.export programs record everything: input names (``forward``'s
  argument names), dtypes, shapes with their dynamic dimensions, and the
  structure of the output. So does an AOTInductor package that carries the
  program it was compiled from.
- A traced TorchScript module keeps its example inputs: their dtypes and
  shapes, the first dimension taken as the batch. Its outputs are learnt by
  running it once on zeros of that shape (``model.py``).
- A scripted TorchScript module, an eager ``nn.Module`` and a bare
  AOTInductor package record argument names (or only their count) but no
  dtypes or shapes. Their inputs are declared ``FP32`` with no shape
  (``UNKNOWN``): a float tensor reaches the model as float32, an integer or
  boolean one as sent, and torch itself checks the rest. Their outputs are
  named when the model answers.

Outputs that are tuples, lists, dicts or nested mixes of them are flattened
into named tensors: a tensor alone is ``output-0``, the i-th item of a tuple
or list ``output-<i>``, a dict's entry its key; deeper levels append
``.<index>`` or ``.<key>`` (``output-1.0``, ``scores.top``).

Datatypes: bfloat16 has no Open Inference Protocol datatype, so a bfloat16
input is declared and sent as FP32 (rounded to bfloat16 by the model's
cast) and a bfloat16 output answered as FP32 (exact). float16 travels as
FP16. Complex and float8 tensors are refused at startup.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from modelserver import ModelLoadError, TensorSpec

#: The datatype of an input whose format does not record it (and its shape: unchecked).
UNKNOWN = ""

DATATYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "UINT8",
    torch.uint16: "UINT16",
    torch.uint32: "UINT32",
    torch.uint64: "UINT64",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FP16",
    torch.float32: "FP32",
    torch.float64: "FP64",
    torch.bfloat16: "FP32",
}


@dataclass(frozen=True)
class Constant:
    """An argument the program fixed when it was exported (not an input of the request)."""

    value: Any


@dataclass
class Signature:
    """What the server declares, and how the request's tensors become the model's arguments."""

    inputs: list[TensorSpec]
    #: None: named and typed only when the model answers.
    outputs: list[TensorSpec] | None
    #: The model's flat arguments in order: an input's name, or a constant.
    leaves: list[str | Constant]
    #: How the flat arguments become ``(args, kwargs)``.
    in_spec: pytree.TreeSpec
    #: Inputs whose tensor dtype differs from their datatype's (bfloat16 declared FP32).
    casts: dict[str, torch.dtype] = field(default_factory=dict)

    def arguments(self, tensors: dict[str, Any]) -> tuple[Sequence[Any], dict[str, Any]]:
        values = [tensors[leaf] if isinstance(leaf, str) else leaf.value for leaf in self.leaves]
        args, kwargs = pytree.tree_unflatten(values, self.in_spec)
        return args, kwargs


def datatype_of(dtype: torch.dtype, what: str) -> str:
    """The protocol datatype ``dtype`` travels as; a startup error naming ``what`` if none."""
    datatype = DATATYPES.get(dtype)
    if datatype is None:
        raise ModelLoadError(
            f"{what} is {dtype}, which has no Open Inference Protocol datatype; "
            f"servable dtypes: {', '.join(str(d) for d in DATATYPES)}"
        )
    return datatype


def spec_of(name: str, dtype: torch.dtype, shape: Sequence[Any], what: str) -> TensorSpec:
    """A declared tensor; a symbolic (dynamic) dimension is -1."""
    dims = tuple(d if isinstance(d, int) else -1 for d in shape)
    return TensorSpec(name, datatype_of(dtype, f"{what} '{name}'"), dims)


def _key(key: Any, first: bool) -> str:
    if isinstance(key, pytree.SequenceKey):
        return f"output-{key.idx}" if first else str(key.idx)
    if isinstance(key, pytree.MappingKey):
        return str(key.key)
    if isinstance(key, pytree.GetAttrKey):
        return key.name
    return str(key)


def flatten(result: Any) -> list[tuple[str, Any]]:
    """A model's answer as ``(name, leaf)`` pairs, named by the rule in the module's doc."""
    pairs, _ = pytree.tree_flatten_with_path(result)
    return [
        (".".join(_key(k, i == 0) for i, k in enumerate(path)) or "output-0", leaf)
        for path, leaf in pairs
    ]


def leaf_names(spec: pytree.TreeSpec) -> list[str]:
    """The output names of a recorded output structure, without running the model."""
    return [name for name, _ in flatten(pytree.tree_unflatten(range(spec.num_leaves), spec))]


def by_name(positional: Sequence[str], keyword: Sequence[str] = ()) -> pytree.TreeSpec:
    """The call structure that passes ``positional`` in order and ``keyword`` by name."""
    return pytree.tree_structure((tuple(positional), {k: k for k in keyword}))


def unknown_inputs(names: Sequence[str]) -> list[TensorSpec]:
    return [TensorSpec(name, UNKNOWN, ()) for name in names]


# -- the formats ---------------------------------------------------------------------------


def exported(program: Any) -> Signature:
    """Inputs and outputs of a ``torch.export`` ExportedProgram, all recorded."""
    from torch.export.graph_signature import (
        ConstantArgument,
        InputKind,
        OutputKind,
        TensorArgument,
    )

    nodes = {node.name: node for node in program.graph.nodes}
    graph = program.graph_signature
    inputs: list[TensorSpec] = []
    leaves: list[str | Constant] = []
    casts: dict[str, torch.dtype] = {}
    for spec in graph.input_specs:
        if spec.kind != InputKind.USER_INPUT:
            continue
        arg = spec.arg
        if isinstance(arg, ConstantArgument):
            leaves.append(Constant(arg.value))
            continue
        if not isinstance(arg, TensorArgument):
            raise ModelLoadError(f"input '{arg.name}' is a {type(arg).__name__}, not a tensor")
        value = nodes[arg.name].meta["val"]
        inputs.append(spec_of(arg.name, value.dtype, value.shape, "input"))
        leaves.append(arg.name)
        if value.dtype == torch.bfloat16:
            casts[arg.name] = value.dtype
    outputs: list[TensorSpec] = []
    user = [s for s in graph.output_specs if s.kind == OutputKind.USER_OUTPUT]
    names = leaf_names(program.call_spec.out_spec)
    if len(names) != len(user):
        raise ModelLoadError(f"the program's {len(user)} outputs do not fit its output structure")
    for name, spec in zip(names, user, strict=True):
        node = nodes.get(getattr(spec.arg, "name", ""))
        value = node.meta.get("val") if node is not None else getattr(spec.arg, "value", None)
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"output '{name}' is {value!r}, not a tensor")
        outputs.append(spec_of(name, value.dtype, value.shape, "output"))
    return Signature(inputs, outputs, leaves, program.call_spec.in_spec, casts)


def compiled(call_spec: Sequence[str]) -> Signature:
    """A bare AOTInductor package: its call structure names kwargs and counts positionals."""
    in_spec = pytree.treespec_loads(call_spec[0])
    pairs, _ = pytree.tree_flatten_with_path(
        pytree.tree_unflatten(range(in_spec.num_leaves), in_spec)
    )
    names = []
    for path, _ in pairs:
        where, *rest = path
        head = _key(rest[0], False) if rest else ""
        name = f"input-{head}" if where == pytree.SequenceKey(0) else head
        names.append(".".join([name, *(_key(k, False) for k in rest[1:])]))
    return Signature(unknown_inputs(names), None, list(names), in_spec)


def scripted(module: Any) -> Signature:
    """A TorchScript module from its ``forward`` schema: Tensor arguments by name."""
    names = []
    for arg in module.forward.schema.arguments[1:]:
        if arg.has_default_value():
            continue
        if not isinstance(arg.type, torch.TensorType):
            raise ModelLoadError(
                f"forward's argument '{arg.name}' is {arg.type} without a default; only "
                "Tensor arguments can come from a request"
            )
        names.append(arg.name)
    return Signature(unknown_inputs(names), None, list(names), by_name((), names))


def traced(module: Any) -> Signature | None:
    """A traced TorchScript module's inputs from its example inputs; None without them.

    The module must be loaded with its example shapes restored; each is
    declared with its first dimension as the (dynamic) batch.
    """
    names = [a.name for a in module.forward.schema.arguments[1:]]
    types = [value.type() for value in list(module.graph.inputs())[1:]]
    if len(types) != len(names) or not all(isinstance(t, torch.TensorType) for t in types):
        return None
    inputs, casts = [], {}
    for name, kind in zip(names, types, strict=True):
        dtype, sizes = kind.dtype(), kind.sizes()
        if dtype is None or not sizes:
            return None
        inputs.append(spec_of(name, dtype, (-1, *sizes[1:]), "input"))
        if dtype == torch.bfloat16:
            casts[name] = dtype
    return Signature(inputs, None, list(names), by_name((), names), casts)


def eager(module: torch.nn.Module) -> Signature:
    """An ``nn.Module``'s inputs from ``forward``'s required arguments."""
    positional, keyword = [], []
    for param in inspect.signature(module.forward).parameters.values():
        if param.default is not param.empty:
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            positional.append(param.name)
        elif param.kind is param.KEYWORD_ONLY:
            keyword.append(param.name)
    names = positional + keyword
    if not names:
        raise ModelLoadError(
            f"{type(module).__name__}.forward has no required named argument to feed"
        )
    return Signature(unknown_inputs(names), None, list(names), by_name(positional, keyword))
