"""Reading a PyTorch nn.Module the user wrote into a twincnn spec, with its weights in the canonical layout.

The module is traced with torch.fx and run once on zeros so that every node has a shape; each node
then becomes a spec layer, an alias of one (a reshape that changes nothing the spec sees), or a refusal that
names the module or line and what the spec lacks. The layers come out in canonical form (activations as their
own layers, explicit padding, a zero pad that one convolution alone reads folded into it), so that
canonical(read.spec) == read.spec and every spec layer keeps one fx node whose output it is.

A softmax or log-softmax over the classes (dim 1 of the (N, classes) logits) that the module returns is the
spec's output head; anywhere else it is refused. The reading is a ReadModel: its weights, logits and gradients
go through backends.torch's own functions, which take the module wrapped as a ReadNet whose forward gives the
logits before the head (the output of the Linear the spec ends in).

The user's view(x.size(0), -1) flattens in (C, H, W) order and the spec's flatten in (H, W, C) order: nothing
in the module changes for that, the weights of the dense layer after it are permuted on the way in and out
(info.flatten_from), exactly as for twincnn's own PyTorch twin.
"""

from __future__ import annotations

import inspect
import math
import operator
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..spec import INPUT, Spec, SpecError, _names, canonical
from . import torch as backend
from .interface import ReadModel
from .torch import ChannelLayerNorm, GlobalAvgPool2d, KerasBatchNorm, SameAvgPool2d, TwinNet, _mode, to_input

# twincnn's own modules: traced as single calls (their forward branches on the input's rank, which fx cannot
# trace, and their settings are plain attributes to read)
_TWINCNN_LEAVES = (KerasBatchNorm, ChannelLayerNorm, SameAvgPool2d, GlobalAvgPool2d)
_SHAPE_BATCH = 2  # the shape run's batch: 2, so that a reshape that hard-codes a batch of 1 shows as not keeping it


NEEDS_INPUT_SHAPE = True  # a module says nothing of the image it takes


def read_model(module: nn.Module, input_shape: tuple[int, int, int]) -> ReadModel:
    """The spec of ``module`` (which takes NCHW input of canonical ``input_shape`` (H, W, C)) and a handle on
    its weights in the canonical layout; UserError, one line naming the layer, for what a spec cannot say."""
    input_shape = _checked_input_shape(input_shape)
    graph = _trace(module)
    _refuse_unknown_ops(graph)
    return _Reader(graph, module, input_shape, _shapes(graph, module, input_shape)).read()


class ReadNet(nn.Module):
    """The user's module as backends.torch's functions take a twin: forward gives the logits (the output of the
    Linear the spec ends in, which the module returns or its output head reads), spec_layer(name) the module
    holding spec layer ``name``'s weights. Its parameters are the module's own."""

    def __init__(self, module: nn.Module, weighted: dict, logits_layer: str):
        super().__init__()
        self.module = module
        self._weighted = weighted  # spec layer name -> the user's nn.Module holding its weights
        self._logits_layer = logits_layer

    def spec_layer(self, name: str) -> nn.Module:
        return self._weighted[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        like = _first_tensor(self.module)
        caught = []
        hook = self._weighted[self._logits_layer].register_forward_hook(lambda module, args, out: caught.append(out))
        try:
            self.module(x.to(device=like.device, dtype=like.dtype))
        finally:
            hook.remove()
        return caught[-1]


@dataclass
class _Activations:
    """Every spec layer's output for canonical x (N, H, W, C) in eval mode, in the canonical layout (NHWC images;
    flat features flattened from an image in (H, W, C) order until a dense layer), recorded from one run of
    the traced graph."""

    module: nn.Module
    spec: Spec
    graph: fx.GraphModule
    nodes: dict  # spec layer name -> the fx node whose output it is (None: a pad avg_pool applies)
    flat_orders: dict  # spec layer name -> the (H, W, C) its flat output was flattened from

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        wanted = {node for node in self.nodes.values() if node is not None}
        like = _first_tensor(self.module)
        with _mode(self.module, training=False), torch.no_grad():
            recorder = _Recorder(self.graph, keep=wanted)
            recorder.run(to_input(x, like.device).to(like.dtype))
        out = {INPUT: np.asarray(x, np.float32)}
        for info in self.spec.info:
            node = self.nodes[info.name]
            if node is None:  # the zero pad that avg_pool2d(count_include_pad=True) applies inside
                (top, bottom), (left, right) = info.padding
                out[info.name] = np.pad(out[info.inputs[0]], ((0, 0), (top, bottom), (left, right), (0, 0)))
                continue
            out[info.name] = self._canonical_output(info, recorder.outputs[node].float().cpu().numpy())
        del out[INPUT]
        return out

    def _canonical_output(self, info, array: np.ndarray) -> np.ndarray:
        if len(info.output_shape) == 3:
            return np.ascontiguousarray(array.transpose(0, 2, 3, 1))
        array = array.reshape(len(array), -1)  # a global average pool that kept its 1x1 image
        order = self.flat_orders[info.name]
        if order is not None:  # flattened in (C, H, W) order by PyTorch; the spec's is (H, W, C)
            h, w, c = order
            array = array.reshape(len(array), c, h, w).transpose(0, 2, 3, 1).reshape(len(array), -1)
        return np.ascontiguousarray(array)


class _Recorder(fx.Interpreter):
    """Runs the traced graph, keeping each tensor node's shape and a copy of the kept nodes' outputs (a copy:
    a later in-place activation would change the tensor itself)."""

    def __init__(self, graph: fx.GraphModule, keep: set[str] = frozenset()):
        super().__init__(graph)
        self.keep = keep
        self.shapes = {}  # fx node -> output shape, tensors only
        self.outputs = {}  # node name -> output

    def run_node(self, node):
        result = super().run_node(node)
        if isinstance(result, torch.Tensor):
            self.shapes[node] = tuple(result.shape)
            if node.name in self.keep:
                self.outputs[node.name] = result.detach().clone()
        return result


def _first_tensor(module: nn.Module) -> torch.Tensor:
    """A parameter or buffer, for the device and dtype inputs must have (float32 on the CPU if none)."""
    return next(iter((*module.parameters(), *module.buffers())), torch.zeros(()))


def _checked_input_shape(input_shape) -> tuple:
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape)):
        raise UserError(f"input_shape must be three positive ints (H, W, C), got {input_shape!r}")
    return tuple(input_shape)


# -- tracing ------------------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    def __init__(self):
        super().__init__()
        self.record_stack_traces = True  # the file and line of each call, for refusals of functions

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _TWINCNN_LEAVES) or super().is_leaf_module(m, qualname)


def _trace(module: nn.Module) -> fx.GraphModule:
    """The module's forward as an fx graph; its arguments after the image keep their defaults."""
    name = type(module).__name__
    params = list(inspect.signature(module.forward).parameters.values())[1:]
    required = [p.name for p in params if p.default is inspect.Parameter.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        raise UserError(f"{name}: forward needs more than the image ({', '.join(required)}); "
                        f"a twincnn spec has one input")
    concrete = {p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    tracer = _Tracer()
    try:
        graph = tracer.trace(module, concrete_args=concrete or None)
    # TraceError: control flow on a traced value; RuntimeError: len() of one; TypeError: a traced value
    # passed where Python needs a number
    except (fx.proxy.TraceError, RuntimeError, TypeError) as exc:
        raise UserError(f"{name}: forward does not trace with torch.fx ({_first_line(exc)})") from None
    return fx.GraphModule(tracer.root, graph, name)


def _shapes(graph: fx.GraphModule, module: nn.Module, input_shape: tuple) -> dict:
    """Every tensor node's shape, from one eval-mode run on zeros (eval: no moving statistic changes).
    Recorded here rather than by ShapeProp, which prints a traceback and rewraps the error of a failing node."""
    h, w, c = input_shape
    like = _first_tensor(module)
    zeros = torch.zeros((_SHAPE_BATCH, c, h, w), device=like.device, dtype=like.dtype)
    recorder = _Recorder(graph)
    try:
        with _mode(module, training=False), torch.no_grad():
            recorder.run(zeros)
    except RuntimeError as exc:  # PyTorch's error for a shape that does not fit a layer
        raise UserError(f"{type(module).__name__}: does not run on an input of shape (N, {c}, {h}, {w}) "
                        f"(input_shape {input_shape}): {_first_line(exc)}") from None
    return recorder.shapes


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- what each node may be ----------------------------------------------------------------------------
_ACTIVATION_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu_: "relu", torch.relu_: "relu",
                         F.relu6: "relu6", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh",
                         F.tanh: "tanh", F.silu: "silu", F.hardtanh: "hardtanh", F.hardtanh_: "hardtanh",
                         F.elu: "elu", F.elu_: "elu", F.gelu: "gelu", F.leaky_relu: "leaky_relu",
                         F.leaky_relu_: "leaky_relu"}
_ACTIVATION_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
                       "tanh": "tanh", "tanh_": "tanh"}
# each function's parameters after the input, with their defaults, to read positional and keyword arguments
_PARAMETERS = {
    "hardtanh": {"min_val": -1.0, "max_val": 1.0}, "elu": {"alpha": 1.0}, "gelu": {"approximate": "none"},
    "leaky_relu": {"negative_slope": 0.01},
    F.max_pool2d: {"kernel_size": None, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                   "return_indices": False},
    F.avg_pool2d: {"kernel_size": None, "stride": None, "padding": 0, "ceil_mode": False,
                   "count_include_pad": True, "divisor_override": None},
    F.adaptive_avg_pool2d: {"output_size": None},
    F.pad: {"pad": None, "mode": "constant", "value": None},
    "mean": {"dim": None, "keepdim": False, "dtype": None},
    "add": {"other": None, "alpha": 1},
    "cat": {"dim": 0},
}
_RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape, torch.squeeze)
_RESHAPE_METHODS = ("view", "reshape", "flatten", "squeeze")
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
_SOFTMAX_FUNCTIONS = (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)
_SOFTMAX_METHODS = ("softmax", "log_softmax")
# plain Python on sizes (x.size(0), x.shape[0] * 2): fine while no tensor comes out
_SIZE_FUNCTIONS = (getattr, operator.getitem, operator.mul, operator.floordiv, operator.truediv, operator.sub,
                   operator.neg)
_SIZE_METHODS = ("size", "dim")
_ALIAS_METHODS = ("contiguous",)
_KNOWN_FUNCTIONS = (*_ACTIVATION_FUNCTIONS, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean, F.pad,
                    *_RESHAPE_FUNCTIONS, *_ADD_FUNCTIONS, *_CAT_FUNCTIONS, *_SOFTMAX_FUNCTIONS, *_SIZE_FUNCTIONS)
_KNOWN_METHODS = (*_ACTIVATION_METHODS, *_RESHAPE_METHODS, *_SIZE_METHODS, *_ALIAS_METHODS, *_SOFTMAX_METHODS,
                  "mean", "add", "add_")
_MODULES = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ConstantPad2d,
            nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm, nn.Dropout, nn.Flatten, nn.Identity, nn.ReLU,
            nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.ELU, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.Softmax,
            nn.LogSoftmax, *_TWINCNN_LEAVES)
# what the spec lacks, for modules people often put in a CNN
_MISSING = {
    "LSTM": "recurrent layers", "GRU": "recurrent layers", "RNN": "recurrent layers",
    "MultiheadAttention": "attention", "ConvTranspose2d": "transposed convolution",
    "Upsample": "upsampling", "UpsamplingNearest2d": "upsampling", "UpsamplingBilinear2d": "upsampling",
    "AdaptiveMaxPool2d": "global max pooling (globalavgpool2d only)", "GroupNorm": "group normalisation",
    "InstanceNorm2d": "instance normalisation", "Dropout2d": "channel dropout (nn.Dropout only)",
    "ReflectionPad2d": "reflection padding (zero padding only)",
    "ReplicationPad2d": "replication padding (zero padding only)",
    "CircularPad2d": "circular padding (zero padding only)", "PReLU": "a learned activation slope",
    "Conv1d": "1-D convolution", "Conv3d": "3-D convolution", "Embedding": "embeddings",
}
_FUNCTION_MISSING = {
    F.dropout: "functional dropout, whose training flag the trace fixes; use nn.Dropout",
    F.conv2d: "a convolution of weights passed as tensors; use nn.Conv2d",
    F.linear: "a dense layer of weights passed as tensors; use nn.Linear",
    F.batch_norm: "batch normalisation of statistics passed as tensors; use nn.BatchNorm2d",
    F.adaptive_max_pool2d: "global max pooling (globalavgpool2d only)",
}


_TORCH_DIR = os.path.dirname(torch.__file__)


def _location(node: fx.Node) -> str:
    """file.py:line of the user's code that made a node: the innermost frame outside PyTorch in its
    recorded stack trace."""
    frames = [(path, line) for path, line in re.findall(r'File "([^"]*)", line (\d+)', node.stack_trace or "")
              if not path.startswith(_TORCH_DIR)]
    return f"{os.path.basename(frames[-1][0])}:{frames[-1][1]}" if frames else ""


def _path(node: fx.Node) -> str:
    """The module path of a module call (layer1.0.conv1), the fx node's name (relu_1) otherwise."""
    return node.target if node.op == "call_module" else node.name


def _describe(node: fx.Node, graph: fx.GraphModule) -> tuple[str, str]:
    """(where, what) for messages: ("layer1.0.conv1", "Conv2d") or ("sort at model.py:12", "torch.sort")."""
    if node.op == "call_module":
        return node.target, type(graph.get_submodule(node.target)).__name__
    where = f"{node.name} at {_location(node)}" if _location(node) else node.name
    if node.op == "call_method":
        return where, f"Tensor.{node.target}"
    module = getattr(node.target, "__module__", None) or "torch"
    short = {"torch.nn.functional": "F", "torch._C._nn": "F", "_operator": "operator",
             "builtins": "builtins"}.get(module, "torch")
    return where, f"{short}.{getattr(node.target, '__name__', node.target)}"


def _refusal(node: fx.Node, graph: fx.GraphModule, reason: str) -> UserError:
    where, what = _describe(node, graph)
    return UserError(f"{where} ({what}): not expressible in a twincnn spec: {reason}")


def _is_known(node: fx.Node, graph: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(graph.get_submodule(node.target), _MODULES)
    if node.op == "call_function":
        return any(node.target is f for f in _KNOWN_FUNCTIONS)
    if node.op == "call_method":
        return node.target in _KNOWN_METHODS
    return True  # placeholder, get_attr, output


def _refuse_unknown_ops(graph: fx.GraphModule) -> None:
    """The first operation no spec layer does, before the shape run (which it might not survive)."""
    for node in _live_nodes(graph):
        if not _is_known(node, graph):
            if node.op == "call_module":
                kind = type(graph.get_submodule(node.target)).__name__
                reason = _MISSING.get(kind, f"no spec layer does what {kind} does")
            else:
                reason = next((why for f, why in _FUNCTION_MISSING.items() if node.target is f),
                              "no spec layer does this")
            raise _refusal(node, graph, reason)


def _live_nodes(graph: fx.GraphModule) -> list[fx.Node]:
    """The nodes the output depends on, in graph order (an in-place one that nothing reads after it changes
    nothing: _Reader refuses the others)."""
    output = next(n for n in graph.graph.nodes if n.op == "output")
    live, stack = set(), [output]
    while stack:
        node = stack.pop()
        if node not in live:
            live.add(node)
            stack.extend(node.all_input_nodes)
    return [n for n in graph.graph.nodes if n in live]


def _mutates(node: fx.Node, graph: fx.GraphModule) -> bool:
    """Whether a node changes its input tensor in place (inplace=True, relu_(), iadd ...)."""
    if node.op == "call_module":
        return bool(getattr(graph.get_submodule(node.target), "inplace", False))
    if node.op == "call_method":
        return node.target.endswith("_")
    if node.op == "call_function":
        return (node.kwargs.get("inplace") is True or node.target is operator.iadd
                or getattr(node.target, "__name__", "").endswith("_"))
    return False


# -- the walk -----------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Layer:
    """One spec layer being read."""

    layer: dict  # the spec's layer dict, without inputs
    node: fx.Node | None  # whose output the layer's output is (None: a pad inside avg_pool2d)
    path: str  # the module path or fx node name, for reports
    where: tuple  # (where, what) for refusals
    inputs: list  # _Layer objects or INPUT
    module: nn.Module | None = None  # holds the weights
    flat: bool = False  # flat in the spec, whatever PyTorch's tensor rank (a global pool keeps (N, C, 1, 1))
    note: str | None = None


@dataclass(frozen=True)
class _NegInfPad:
    """Padding with -inf, which only a max pool may read: its padded cells never win, as a spec pool's."""

    source: object  # _Layer or INPUT
    padding: tuple  # ((top, bottom), (left, right))


_SIZE = object()  # the value of a node that computes a size, not a tensor


@dataclass
class _Reader:
    graph: fx.GraphModule
    module: nn.Module
    input_shape: tuple
    shapes: dict  # fx node -> output shape (N, ...), tensors only
    values: dict = field(default_factory=dict)  # fx node -> _Layer, INPUT, _NegInfPad or _SIZE
    layers: list = field(default_factory=list)
    head: str = "logits"  # the output head a final softmax or log_softmax gives

    def read(self) -> ReadModel:
        order = {node: i for i, node in enumerate(self.graph.graph.nodes)}
        for node in self.graph.graph.nodes:
            self._refuse_aliasing(node, order)
        for node in _live_nodes(self.graph):
            self.values[node] = self._value(node)
        self._fold_zero_pads()
        return self._result()

    # -- helpers --------------------------------------------------------------------------------------
    def refuse(self, node, reason) -> UserError:
        return _refusal(node, self.graph, reason)

    def shape(self, node) -> tuple | None:
        """The output shape of a tensor node (None: not a tensor)."""
        return self.shapes.get(node)

    def source(self, node, arg):
        """The layer (or INPUT) that ``arg`` of ``node`` holds the output of."""
        value = self.values.get(arg) if isinstance(arg, fx.Node) else None
        if isinstance(value, _NegInfPad):
            raise self.refuse(node, "reads -inf padding; only a max pool may (its padded cells never win)")
        if value is None or value is _SIZE:
            raise self.refuse(node, f"reads {arg!r}, which is not the output of a layer (a parameter, buffer "
                                    f"or constant used as data)")
        return value

    def image(self, node, arg):
        """The source of an image operation: an (N, C, H, W) tensor the spec sees as an image too."""
        value = self.source(node, arg)
        if len(self.shape(arg)) != 4:
            raise self.refuse(node, f"needs an image (N, C, H, W), got shape {self.shape(arg)}")
        if value is not INPUT and value.flat:
            raise self.refuse(node, "reads the output of a global average pool as an image; the spec's "
                                    "globalavgpool2d gives flat features (C,): follow it with a Linear")
        return value

    def emit(self, node, layer, inputs, module=None, flat=None, note=None) -> _Layer:
        if module is not None and any(made.module is module for made in self.layers):
            raise self.refuse(node, "a module with weights used twice; a twincnn spec shares no weights")
        if flat is None:
            flat = any(i is not INPUT and i.flat for i in inputs)
        made = _Layer(layer, node, _path(node), _describe(node, self.graph), list(inputs), module, flat, note)
        self.layers.append(made)
        return made

    def arguments(self, node, parameters: dict) -> dict:
        """The node's arguments after the input by name, defaults filled in."""
        bound = dict(zip(parameters, node.args[1:]))
        bound.update({k: v for k, v in node.kwargs.items() if k in parameters})
        return {**parameters, **bound}

    def _refuse_aliasing(self, node, order):
        """An in-place operation whose input a later node reads: the spec would read the value before it."""
        if not _mutates(node, self.graph) or not node.args or not isinstance(node.args[0], fx.Node):
            return
        later = [u for u in node.args[0].users if u is not node and order[u] > order[node]]
        if later:
            raise self.refuse(node, f"changes {node.args[0].name} in place, which {later[0].name} reads "
                                    f"afterwards; use the result (or inplace=False)")

    # -- dispatch -------------------------------------------------------------------------------------
    def _value(self, node):
        if node.op == "placeholder":  # the image, then arguments fixed to their defaults
            return INPUT if node is next(iter(self.graph.graph.nodes)) else _SIZE
        if node.op == "get_attr":
            return None
        if node.op == "output":
            return None
        if self._is_size(node):
            if self.shape(node) is not None:
                raise self.refuse(node, "indexing, slicing or arithmetic on tensors; no spec layer does it")
            return _SIZE
        if node.op == "call_module":
            return self._module(node, self.graph.get_submodule(node.target))
        if node.op == "call_method":
            return self._method(node)
        return self._function(node)

    def _is_size(self, node):
        return ((node.op == "call_function" and any(node.target is f for f in _SIZE_FUNCTIONS))
                or (node.op == "call_method" and node.target in _SIZE_METHODS))

    def _module(self, node, m):
        if isinstance(m, nn.Conv2d):
            return self._conv(node, m)
        if isinstance(m, nn.Linear):
            return self._dense(node, m)
        if isinstance(m, nn.MaxPool2d):
            return self._max_pool(node, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                  m.return_indices)
        if isinstance(m, nn.AvgPool2d):
            return self._avg_pool(node, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                  m.divisor_override)
        if isinstance(m, SameAvgPool2d):
            left, right, top, bottom = m.pads
            return self._pool(node, "avgpool2d", m.pool, m.strides, ((top, bottom), (left, right)))
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self._adaptive(node, m.output_size)
        if isinstance(m, GlobalAvgPool2d):
            return self.emit(node, {"type": "globalavgpool2d"}, [self.image(node, node.args[0])], flat=True)
        if isinstance(m, nn.ConstantPad2d):
            return self._pad(node, m.padding, m.value)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, KerasBatchNorm)):
            return self._batchnorm(node, m)
        if isinstance(m, (nn.LayerNorm, ChannelLayerNorm)):
            return self._layernorm(node, m)
        if isinstance(m, nn.Dropout):
            return self.emit(node, {"type": "dropout", "rate": m.p}, [self.source(node, node.args[0])])
        if isinstance(m, (nn.Flatten,)):
            return self._reshape(node)
        if isinstance(m, nn.Identity):
            return self.source(node, node.args[0])
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            return self._head(node, "softmax" if isinstance(m, nn.Softmax) else "log_softmax", m.dim)
        return self._activation_module(node, m)

    def _activation_module(self, node, m):
        if isinstance(m, nn.Hardtanh):  # nn.ReLU6 is a Hardtanh(0, 6)
            return self._activation(node, "hardtanh", {"min_val": m.min_val, "max_val": m.max_val})
        names = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu"}
        for kind, name in names.items():
            if isinstance(m, kind):
                return self._activation(node, name, {})
        if isinstance(m, nn.ELU):
            return self._activation(node, "elu", {"alpha": m.alpha})
        if isinstance(m, nn.GELU):
            return self._activation(node, "gelu", {"approximate": m.approximate})
        return self._activation(node, "leaky_relu", {"negative_slope": m.negative_slope})  # the last of _MODULES

    def _method(self, node):
        name = node.target
        if name in _ACTIVATION_METHODS:
            return self._activation(node, _ACTIVATION_METHODS[name], {})
        if name in _RESHAPE_METHODS:
            return self._reshape(node)
        if name in _ALIAS_METHODS:
            return self.source(node, node.args[0])
        if name == "mean":
            return self._mean(node, self.arguments(node, _PARAMETERS["mean"]))
        if name in ("add", "add_"):
            args = self.arguments(node, _PARAMETERS["add"])
            return self._add(node, node.args[0], args["other"], args["alpha"])
        return self._head(node, name, self.arguments(node, {"dim": None})["dim"])  # the last of _KNOWN_METHODS

    def _function(self, node):
        target = node.target
        if target in _ACTIVATION_FUNCTIONS:
            name = _ACTIVATION_FUNCTIONS[target]
            return self._activation(node, name, self.arguments(node, _PARAMETERS.get(name, {})))
        if target is F.max_pool2d:
            a = self.arguments(node, _PARAMETERS[F.max_pool2d])
            return self._max_pool(node, a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                                  a["ceil_mode"], a["return_indices"])
        if target is F.avg_pool2d:
            a = self.arguments(node, _PARAMETERS[F.avg_pool2d])
            return self._avg_pool(node, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                  a["count_include_pad"], a["divisor_override"])
        if target is F.adaptive_avg_pool2d:
            return self._adaptive(node, self.arguments(node, _PARAMETERS[F.adaptive_avg_pool2d])["output_size"])
        if target is torch.mean:
            return self._mean(node, self.arguments(node, _PARAMETERS["mean"]))
        if target is F.pad:
            a = self.arguments(node, _PARAMETERS[F.pad])
            if a["mode"] != "constant":
                raise self.refuse(node, f"padding mode {a['mode']!r} (zero padding only)")
            return self._pad(node, a["pad"], a["value"] or 0.0)
        if target in _RESHAPE_FUNCTIONS:
            return self._reshape(node)
        if target in _ADD_FUNCTIONS:
            if target is torch.add:
                args = self.arguments(node, _PARAMETERS["add"])
                return self._add(node, node.args[0], args["other"], args["alpha"])
            return self._add(node, node.args[0], node.args[1], 1)
        if target in _CAT_FUNCTIONS:
            tensors = node.args[0] if node.args else node.kwargs["tensors"]
            return self._cat(node, tensors, self.arguments(node, _PARAMETERS["cat"])["dim"])
        head = "softmax" if target in (F.softmax, torch.softmax) else "log_softmax"  # the last of _KNOWN_FUNCTIONS
        return self._head(node, head, self.arguments(node, {"dim": None})["dim"])

    def _head(self, node, head, dim):
        """A softmax or log-softmax over the classes that the module returns: the spec's output head, whose value
        is the logits it reads. Anywhere else, or over another dim, it is refused."""
        output = next(n for n in self.graph.graph.nodes if n.op == "output")
        if output.args[0] is not node:
            raise self.refuse(node, f"{head} inside the network; the spec has it only as the output head, after "
                                    f"the logits")
        shape = self.shape(node.args[0])
        dim = 1 if dim is None and len(shape) == 2 else dim  # PyTorch's implicit dim for a 2-D input
        if len(shape) != 2 or not isinstance(dim, int) or dim % 2 != 1:  # 1 or -1 of (N, classes)
            raise self.refuse(node, f"{head} over dim {dim!r} of shape {shape}; the output head is over the "
                                    f"classes: give dim=1 (or -1) on the (N, classes) logits")
        self.head = head
        return self.source(node, node.args[0])

    # -- layers ---------------------------------------------------------------------------------------
    def _conv(self, node, m: nn.Conv2d):
        if m.padding_mode != "zeros":
            raise self.refuse(node, f"padding_mode {m.padding_mode!r} (zero padding only)")
        source = self.image(node, node.args[0])
        if isinstance(m.padding, str):  # 'same': PyTorch's, as TensorFlow's, puts the odd pixel after
            totals = [0, 0] if m.padding == "valid" else [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
            padding = tuple((t // 2, t - t // 2) for t in totals)
        else:
            padding = tuple((p, p) for p in m.padding)
        cin, cout, groups = m.in_channels, m.out_channels, m.groups
        common = {"kernel_size": list(m.kernel_size), "strides": list(m.stride), "padding": _spec_padding(padding),
                  "use_bias": m.bias is not None, "activation": None}
        if groups > 1 and groups == cin and cout % cin == 0:
            if tuple(m.dilation) != (1, 1):
                raise self.refuse(node, f"a dilated depthwise convolution (dilation {m.dilation}); the spec's "
                                        f"depthwiseconv2d has no dilation_rate")
            layer = {"type": "depthwiseconv2d", "depth_multiplier": cout // cin, **common}
        else:
            layer = {"type": "conv2d", "filters": cout, "dilation_rate": list(m.dilation), "groups": groups,
                     **common}
        return self.emit(node, layer, [source], module=m, flat=False)

    def _dense(self, node, m: nn.Linear):
        source = self.source(node, node.args[0])
        if len(self.shape(node.args[0])) != 2:
            raise self.refuse(node, f"a Linear on a tensor of shape {self.shape(node.args[0])}; the spec's dense "
                                    f"layer reads flat (N, features) input: flatten first")
        layer = {"type": "dense", "units": m.out_features, "use_bias": m.bias is not None, "activation": None}
        return self.emit(node, layer, [source], module=m, flat=True)

    def _max_pool(self, node, kernel, stride, padding, dilation, ceil_mode, return_indices):
        if ceil_mode or _pair(dilation) != (1, 1) or return_indices:
            raise self.refuse(node, "ceil_mode, dilation or return_indices (the spec's pools have none)")
        value = self.values.get(node.args[0])
        outer = ((0, 0), (0, 0))
        if isinstance(value, _NegInfPad):  # twincnn's own twin pads with -inf before an asymmetric max pool
            outer, source_node = value.padding, node.args[0].args[0]
        else:
            source_node = node.args[0]
        own = tuple((p, p) for p in _pair(padding))
        total = tuple(tuple(a + b for a, b in zip(p, q)) for p, q in zip(outer, own))
        return self._pool(node, "maxpool2d", kernel, stride, total, source_node)

    def _avg_pool(self, node, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
        if ceil_mode or divisor_override is not None:
            raise self.refuse(node, "ceil_mode or divisor_override (the spec's pools have neither)")
        pad = tuple((p, p) for p in _pair(padding))
        if pad == ((0, 0), (0, 0)) or not count_include_pad:  # the spec divides by the real cells only
            return self._pool(node, "avgpool2d", kernel, stride, pad)
        # count_include_pad=True averages padded zeros too: a zero pad layer, then a valid pool
        source = self.image(node, node.args[0])
        zero_pad = _Layer({"type": "zeropad2d", "padding": [list(p) for p in pad]}, None, _path(node),
                          _describe(node, self.graph), [source])
        self.layers.append(zero_pad)
        layer = {"type": "avgpool2d", "pool_size": list(_pair(kernel)),
                 "strides": list(_pair(stride or kernel)), "padding": "valid"}
        return self.emit(node, layer, [zero_pad], flat=False)

    def _pool(self, node, kind, kernel, stride, padding, source_node=None):
        source = self.image(node, node.args[0] if source_node is None else source_node)
        layer = {"type": kind, "pool_size": list(_pair(kernel)), "strides": list(_pair(stride or kernel)),
                 "padding": _spec_padding(padding)}
        return self.emit(node, layer, [source], flat=False)

    def _adaptive(self, node, output_size):
        if _pair(output_size) != (1, 1):
            raise self.refuse(node, f"output size {output_size}; only 1 (global average pooling) is expressible")
        return self.emit(node, {"type": "globalavgpool2d"}, [self.image(node, node.args[0])], flat=True)

    def _mean(self, node, args):
        dims = args["dim"] if isinstance(args["dim"], (list, tuple)) else [args["dim"]]
        rank = len(self.shape(node.args[0]))
        spatial = rank == 4 and all(isinstance(d, int) for d in dims) and sorted(d % 4 for d in dims) == [2, 3]
        if not spatial or args["dtype"] is not None:
            raise self.refuse(node, f"a mean over dims {args['dim']}; only the mean over (2, 3) of an image "
                                    f"(global average pooling) is expressible")
        return self.emit(node, {"type": "globalavgpool2d"}, [self.image(node, node.args[0])], flat=True)

    def _pad(self, node, pads, value):
        pads = tuple(pads)
        if len(pads) not in (2, 4) or any(not isinstance(p, int) or p < 0 for p in pads):
            raise self.refuse(node, f"padding {pads}; only non-negative padding of height and width")
        left, right, top, bottom = (*pads, 0, 0)[:4]
        padding = ((top, bottom), (left, right))
        source = self.image(node, node.args[0])
        if value == float("-inf"):
            return _NegInfPad(source, padding)
        if value != 0:
            raise self.refuse(node, f"padding with {value} (zero padding only)")
        return self.emit(node, {"type": "zeropad2d", "padding": [list(p) for p in padding]}, [source], flat=False)

    def _reshape(self, node):
        """Flatten, or nothing the spec sees: decided by the shapes before and after."""
        source = self.source(node, node.args[0])
        before, after = self.shape(node.args[0]), self.shape(node)
        flat = source is not INPUT and source.flat
        if before == after or (flat and len(before) == 4 and after == (before[0], before[1])):
            return source  # the same features (a global pool's (N, C, 1, 1) made (N, C))
        if len(before) == 4 and not flat and after == (before[0], math.prod(before[1:])):
            return self.emit(node, {"type": "flatten"}, [source], flat=True)
        raise self.refuse(node, f"reshapes {before} to {after}; only flattening (N, C, H, W) to "
                                f"(N, C*H*W) is expressible")

    def _batchnorm(self, node, m):
        source = self.source(node, node.args[0])
        if isinstance(m, KerasBatchNorm):  # twincnn's own: Keras's momentum and biased variance already
            return self.emit(node, {"type": "batchnorm", "momentum": m.momentum, "epsilon": m.eps}, [source],
                             module=m)
        if not m.affine or not m.track_running_stats:
            raise self.refuse(node, "affine=False or track_running_stats=False; the spec's batchnorm has a "
                                    "scale, a shift and moving statistics")
        if m.momentum is None:
            raise self.refuse(node, "momentum=None (a cumulative average); the spec's moving statistics are "
                                    "exponential")
        rank = 4 if isinstance(m, nn.BatchNorm2d) else 2
        if len(self.shape(node.args[0])) != rank:
            raise self.refuse(node, f"input of shape {self.shape(node.args[0])}; the spec normalises images or "
                                    f"flat features")
        # PyTorch's momentum weighs the new batch, Keras's the old average
        layer = {"type": "batchnorm", "momentum": round(1.0 - m.momentum, 12), "epsilon": m.eps}
        note = "PyTorch's running variance is unbiased (divides by N-1); the spec's is biased (divides by N)"
        return self.emit(node, layer, [source], module=m, note=note)

    def _layernorm(self, node, m):
        source = self.source(node, node.args[0])
        if isinstance(m, nn.LayerNorm):
            shape = self.shape(node.args[0])
            if len(shape) != 2 or tuple(m.normalized_shape) != shape[1:]:
                raise self.refuse(node, f"normalises over {tuple(m.normalized_shape)} of shape {shape}; the "
                                        f"spec's layernorm normalises each position's channels or flat features "
                                        f"(for images, twincnn's ChannelLayerNorm)")
            if not m.elementwise_affine or m.bias is None:
                raise self.refuse(node, "no elementwise scale and shift; the spec's layernorm has both")
        return self.emit(node, {"type": "layernorm", "axis": -1, "epsilon": m.eps}, [source], module=m)

    def _activation(self, node, name, args):
        if name == "hardtanh":
            if (args["min_val"], args["max_val"]) != (0.0, 6.0):
                raise self.refuse(node, f"hardtanh({args['min_val']}, {args['max_val']}); only (0, 6), relu6")
            name = "relu6"
        elif name == "elu" and args["alpha"] != 1.0:
            raise self.refuse(node, f"elu with alpha {args['alpha']}; the spec's elu has alpha 1")
        elif name == "gelu":
            name = {"none": "gelu", "tanh": "gelu_tanh"}[args["approximate"]]
        layer = {"type": "activation", "activation": name}
        if name == "leaky_relu":
            layer["negative_slope"] = args["negative_slope"]
        return self.emit(node, layer, [self.source(node, node.args[0])])

    def _add(self, node, a, b, alpha):
        for arg in (a, b):
            if isinstance(arg, (int, float)) and arg == 0:  # sum([...]) starts at 0
                return self.source(node, b if arg is a else a)
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) or alpha != 1:
            raise self.refuse(node, "adds a constant, or scales a summand (alpha); the spec's add sums layer "
                                    "outputs")
        if self.shape(a) != self.shape(b):
            raise self.refuse(node, f"adds shapes {self.shape(a)} and {self.shape(b)}; the spec's add takes "
                                    f"inputs of one shape (no broadcasting)")
        return self.emit(node, {"type": "add"}, [self.source(node, a), self.source(node, b)])

    def _cat(self, node, tensors, dim):
        rank = len(self.shape(node))
        if dim % rank != 1:
            raise self.refuse(node, f"joins on dim {dim}; the spec's concatenate joins channels (dim 1)")
        return self.emit(node, {"type": "concatenate"}, [self.source(node, t) for t in tensors])

    # -- the result -----------------------------------------------------------------------------------
    def _fold_zero_pads(self):
        """A zero pad that one convolution alone reads becomes that convolution's padding (canonical form).
        Chained pads fold one after the other, so that canonical() finds nothing left to fold."""
        readers = {}
        for layer in self.layers:
            for source in layer.inputs:
                readers.setdefault(id(source), []).append(layer)
        for layer in list(self.layers):
            while layer.layer["type"] in ("conv2d", "depthwiseconv2d") and self._sole_zero_pad(layer, readers):
                pad = layer.inputs[0]
                outer, own = _explicit(pad.layer["padding"]), _explicit(layer.layer["padding"])
                total = tuple(tuple(a + b for a, b in zip(p, q)) for p, q in zip(outer, own))
                layer.layer["padding"] = _spec_padding(total)
                layer.inputs = list(pad.inputs)
                self.layers.remove(pad)

    @staticmethod
    def _sole_zero_pad(layer, readers) -> bool:
        pad = layer.inputs[0]
        return pad is not INPUT and pad.layer["type"] == "zeropad2d" and len(readers[id(pad)]) == 1

    def _result(self) -> ReadModel:
        output = next(n for n in self.graph.graph.nodes if n.op == "output")
        value = self.values.get(output.args[0]) if isinstance(output.args[0], fx.Node) else None
        if not isinstance(value, _Layer):
            raise UserError(f"{type(self.module).__name__}: forward must return one tensor computed from the "
                            f"image (the logits), got {output.args[0]!r}")
        last = self.layers[-1]
        if value is not last or last.layer["type"] != "dense":
            where, what = value.where
            raise UserError(f"{where} ({what}): not expressible in a twincnn spec: the model must end in a "
                            f"Linear's logits (after the last Linear only softmax or log_softmax, the output head)")
        names = _names(layer.layer["type"] for layer in self.layers)
        name_of = {id(layer): name for layer, name in zip(self.layers, names)}
        dicts = [{**layer.layer, "inputs": [i if i is INPUT else name_of[id(i)] for i in layer.inputs]}
                 for layer in self.layers]
        spec = self._spec(dicts)
        canon = canonical(spec)
        # built in canonical form, so canonical() renames nothing and each name keeps its node
        assert canon == spec and [i.name for i in canon.info] == names, "torch_read: not in canonical form"
        self._check_shapes(canon)
        paths = {name: layer.path for name, layer in zip(names, self.layers)}
        notes = [f"{name} ({layer.path}): {layer.note}" for name, layer in zip(names, self.layers) if layer.note]
        notes += self._unused_parameters()
        weighted = {name: layer.module for name, layer in zip(names, self.layers) if layer.module is not None}
        nodes = {name: layer.node.name if layer.node is not None else None for name, layer in zip(names, self.layers)}
        return ReadModel(backend, ReadNet(self.module, weighted, names[-1]), canon,
                         _Activations(self.module, canon, self.graph, nodes, _flat_orders(canon)), notes, paths)

    def _spec(self, dicts) -> Spec:
        # twincnn's own twin computes its spec's logits and keeps the spec's head
        head = self.module.spec.output if isinstance(self.module, TwinNet) else self.head
        try:
            return Spec(self.input_shape, dicts, head)
        except SpecError as exc:  # a setting the spec does not allow (dilation with strides, p = 1 ...)
            found = re.match(r"layer (\d+) \([^)]*\): (.*)", str(exc))
            if not found:
                raise UserError(f"{type(self.module).__name__}: not expressible in a twincnn spec: {exc}") from None
            where, what = self.layers[int(found.group(1))].where
            raise UserError(f"{where} ({what}): not expressible in a twincnn spec: {found.group(2)}") from None

    def _check_shapes(self, spec: Spec) -> None:
        """Each layer's spec shape against PyTorch's: a setting read wrongly shows here, not as wrong numbers."""
        for info, layer in zip(spec.info, self.layers):
            if layer.node is None:
                continue
            torch_shape = self.shape(layer.node)[1:]
            out = info.output_shape
            expected = [(out[2], *out[:2])] if len(out) == 3 else [out, (*out, 1, 1)]  # a pool may keep 1x1
            if torch_shape not in expected:
                where, what = layer.where
                raise UserError(f"{where} ({what}): not expressible in a twincnn spec: PyTorch gives shape "
                                f"{torch_shape}, the spec's {info.name} {out}")

    def _unused_parameters(self) -> list[str]:
        used = {id(p) for layer in self.layers if layer.module is not None for p in layer.module.parameters()}
        return [f"{name}: a parameter forward does not use; it is not in the spec"
                for name, p in self.module.named_parameters() if id(p) not in used]


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _spec_padding(padding):
    """A window layer's ((top, bottom), (left, right)) as the spec writes it: 'valid' for none."""
    if tuple(map(tuple, padding)) == ((0, 0), (0, 0)):
        return "valid"
    return [list(p) for p in padding]


def _explicit(padding) -> tuple:
    return ((0, 0), (0, 0)) if padding == "valid" else tuple(tuple(p) for p in padding)


def _flat_orders(spec: Spec) -> dict:
    """For each layer with flat output: the (H, W, C) a flatten made it from, until a dense layer mixes the
    features (None: not flattened, or mixed since)."""
    orders = {INPUT: None}
    for info in spec.info:
        if info.type == "flatten":
            orders[info.name] = info.input_shape
        elif info.type in ("dense", "globalavgpool2d") or len(info.output_shape) == 3:
            orders[info.name] = None
        else:
            orders[info.name] = orders[info.inputs[0]]
    return orders
