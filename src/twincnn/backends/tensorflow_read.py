"""Read a Keras 3 model the user wrote (Sequential or functional) into a twincnn spec, with its weights.

``read_model(model)`` walks the model's layer graph from its output back to its input and gives each Keras
layer the spec layers that compute the same thing, already in canonical form (``spec.canonical``): an
activation given as a layer's ``activation=`` is an activation layer of its own, every padding is explicit,
and a ZeroPadding2D that one convolution alone reads is that convolution's padding. Layers come in the order
of a depth-first walk from the output (a merge's inputs in the order the merge lists them), so that spec names
(conv1, bn1, act1 ...) are stable. Anything the spec cannot say is refused with a one-line UserError naming the
layer: "<layer> (<class>): not expressible in a twincnn spec: <what is missing>".

A softmax or log-softmax that gives the model's output (a Dense's activation, an Activation or Softmax layer)
is the spec's output head; anywhere else it is refused. The reading works on the logits before the head.

The reading is a ReadModel that keeps the model: its weights are the spec's canonical weights (Keras's layouts
are the canonical ones), and backends.tensorflow's own functions get and set them, predict and take gradients on
it, wrapped as a ReadNet that runs the model's own layers one by one, keeping every spec layer's output.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import numpy as np

from ..errors import UserError
from ..spec import INPUT, Spec, SpecError, _names, same_padding
from .interface import ReadModel

NOT_EXPRESSIBLE = "not expressible in a twincnn spec"
_SPEC_ACTIVATIONS = "relu, relu6, sigmoid, tanh, elu (alpha 1), silu/swish, gelu, leaky_relu or linear"
_LOGITS = ("the spec ends in a Dense without activation (the logits), which only softmax or log_softmax may "
           "follow (the output head)")


def _backend():
    """twincnn's Keras twin on the backend Keras runs on in this process (TensorFlow's where Keras has not started
    yet): importing it starts that framework, so only a reading does."""
    from .. import backends

    return backends.load(backends.reader_twin(__name__))


@dataclass
class _Call:
    """One call of a Keras operation in the graph: the layer, its node (arguments, outputs) and its path."""

    op: object
    node: object
    path: str  # the layer's name, under the names of the models it is nested in ("encoder/conv")

    @property
    def where(self) -> str:
        return f"{self.path} ({type(self.op).__name__})"

    @property
    def inputs(self) -> list:
        return list(self.node.input_tensors)

    @property
    def output(self):
        return self.node.outputs[0]


@dataclass
class _Entry:
    """One spec layer as read: its dict (without "inputs"), what it reads, where it came from."""

    layer: dict
    reads: list  # earlier _Entry objects; None for the image
    call: _Call
    variables: dict = field(default_factory=dict)  # canonical key ("kernel") -> the Keras variable
    value: Callable | None = None  # {id(KerasTensor): value} -> this layer's inference output


class ReadNet:
    """The user's Keras model as backends.tensorflow's functions take a twin: called, it gives the logits (before
    its output head, if it has one), computed by the model's own layers; get_layer(name) holds spec layer
    ``name``'s variables under their canonical keys (kernel, gamma, moving_mean ...)."""

    def __init__(self, model, entries: dict, runner: "_Runner"):
        self.model = model  # the user's
        self._entries = entries  # spec layer name -> _Entry
        self._logits = list(entries.values())[-1]  # the last Dense's output: the model's own, or its head's input
        self._runner = runner

    @property
    def layers(self) -> list:
        return self.model.layers

    def get_layer(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(**self._entries[name].variables)

    def __call__(self, x, training: bool = False):
        return self._logits.value(self._runner.run(x, training))

    def activations(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every spec layer's output in inference mode, by spec name. The model's own layers compute them, in
        the graph's order; a convolution or dense layer whose activation the spec splits off gives its output
        before the activation (its own convolution plus bias), and the activation layer the layer's output,
        so that the first layer that differs from another model's is the one named."""
        values = self._runner.run(np.asarray(x, np.float32))
        return {name: np.asarray(entry.value(values)) for name, entry in self._entries.items()}


class _Runner:
    """Runs the graph's calls eagerly, in order, as Keras's functional model does, keeping every value."""

    def __init__(self, keras, input_tensor, calls: list, resolve):
        self.keras, self.input, self.calls, self.resolve = keras, input_tensor, calls, resolve

    def run(self, x, training: bool = False) -> dict:
        values = {id(self.input): self.keras.ops.convert_to_tensor(x)}
        for call in self.calls:
            for tensor in call.inputs:  # a nested model's tensors, or an Identity's, hold their source's value
                values[id(tensor)] = values[id(self.resolve(tensor))]
            args, kwargs = call.node.arguments.fill_in(values)
            if "training" in getattr(call.op, "_call_context_args", ()):
                kwargs["training"] = training
            outputs = self.keras.tree.flatten(call.op(*args, **kwargs))
            values.update((id(tensor), value) for tensor, value in zip(call.node.outputs, outputs))
        return values


NEEDS_INPUT_SHAPE = False  # a built Keras model knows its input's shape (one of open height and width: the one given)


def read_model(model, input_shape: tuple | None = None) -> ReadModel:
    """The spec of a Keras Sequential or functional model, with access to its weights and outputs; UserError
    naming the first layer the spec cannot express, or an ``input_shape`` (H, W, C) that is not the model's."""
    read = _Reader(_at_size(model, input_shape)).read()
    if input_shape is not None and tuple(input_shape) != read.spec.input_shape:
        raise UserError(f"{model.name}: takes input of shape {read.spec.input_shape}, not {tuple(input_shape)}")
    return read


def _at_size(model, input_shape: tuple | None):
    """A model whose input leaves its height or width open (None), called on a keras.Input of ``input_shape``: the
    same layers and variables, at the one size a spec has. Any other model as it is."""
    shape = tuple(getattr(model, "input_shape", None) or ())
    if input_shape is None or len(shape) != 4 or None not in shape[1:3]:
        return model
    keras = _backend().keras
    if any(given not in (None, wanted) for given, wanted in zip(shape[1:], input_shape)):
        raise UserError(f"{model.name}: takes input of shape {shape[1:]}, not {tuple(input_shape)}")
    image = keras.Input(tuple(input_shape))
    return keras.Model(image, model(image), name=model.name)


class _Reader:
    def __init__(self, model):
        self.tfb = _backend()
        self.keras = self.tfb.keras
        self.model = model
        self.alias = {}  # id(tensor) -> the tensor whose value it is (nested models' edges, Identity layers)
        self.prefix = {}  # id(layer) -> the names of the models it is nested in, "outer/"
        self.entry_of = {}  # id(resolved tensor) -> the _Entry that computes it
        self.folded = {}  # id(padding layer's output) -> (its padding, its input): folded into its one reader
        self.notes = []
        # the output head: a final softmax read from the graph, else twincnn's own twin's (it computes logits)
        self.head = getattr(model, self.tfb.OUTPUT_HEAD, "logits")

    # -- the graph ---------------------------------------------------------------------------------
    def read(self) -> ReadModel:
        keras, model = self.keras, self.model
        inputs, outputs = self._graph(model, f"model {getattr(model, 'name', '?')}")
        where = f"{model.name} ({type(model).__name__})"
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{where}: {NOT_EXPRESSIBLE}: {len(inputs)} input(s) and {len(outputs)} output(s); "
                            f"the spec has one image input and one output (the logits)")
        self.input, self.output = inputs[0], outputs[0]
        shape = tuple(self.input.shape[1:])
        if len(shape) != 3 or not all(isinstance(s, int) for s in shape):
            raise UserError(f"{where}: {NOT_EXPRESSIBLE}: input shape {shape}; the spec reads images (H, W, C) "
                            f"of a fixed size: give keras.Input(shape=(H, W, C))")
        self._prefixes(model, "")
        calls = self._calls()
        self.consumers = {}
        for call in calls:
            for tensor in call.inputs:
                self.consumers.setdefault(id(self.resolve(tensor)), []).append(call)
        self._refuse_shared(calls)
        entries = []
        for call in calls:
            entries.extend(self._convert(call))
        self._check_last(entries)
        spec = self._spec(shape, entries)
        paths = {info.name: entry.call.path for info, entry in zip(spec.info, entries)}
        runner = _Runner(keras, self.input, calls, self.resolve)
        net = ReadNet(model, dict(zip((info.name for info in spec.info), entries)), runner)
        return ReadModel(_backend(), net, spec, net.activations, self.notes, paths)

    def _graph(self, model, where):
        """(inputs, outputs) of a Sequential or functional model's graph; UserError for any other model."""
        if not isinstance(model, self.keras.Model):
            raise UserError(f"{where}: not a keras.Model but a {type(model).__name__}")
        try:
            return list(model.inputs), list(model.outputs)
        except AttributeError:  # an unbuilt Sequential, or a subclassed model: no graph to read
            raise UserError(f"{model.name} ({type(model).__name__}): {NOT_EXPRESSIBLE}: it has no layer graph; "
                            f"twincnn reads Sequential and functional models that start with keras.Input"
                            ) from None

    def _prefixes(self, model, prefix):
        for layer in model.layers:
            self.prefix[id(layer)] = prefix
            if isinstance(layer, self.keras.Model):
                self._prefixes(layer, f"{prefix}{layer.name}/")

    def resolve(self, tensor):
        """The tensor that computes ``tensor``'s value: through nested models' inputs and outputs (their layers
        become the graph's own) and Identity layers."""
        while True:
            if id(tensor) in self.alias:
                tensor = self.alias[id(tensor)]
                continue
            if tensor is self.input:
                return tensor
            op, node_index, index = tensor._keras_history
            node = op._inbound_nodes[node_index]
            if isinstance(op, self.keras.Model):
                inner_inputs, inner_outputs = self._graph(op, op.name)
                for inner, outer in zip(inner_inputs, node.input_tensors):
                    if self.alias.setdefault(id(inner), outer) is not outer:
                        raise UserError(f"{self._path(op)} ({type(op).__name__}): {NOT_EXPRESSIBLE}: the model is "
                                        f"called more than once; the spec has no shared weights")
                self.alias[id(tensor)] = inner_outputs[index]
            elif type(op) is self.keras.layers.Identity:
                self.alias[id(tensor)] = node.input_tensors[0]
            else:
                return tensor

    def _path(self, op) -> str:
        return f"{self.prefix.get(id(op), '')}{op.name}"

    def _calls(self) -> list[_Call]:
        """Every call the output depends on, depth first from the output, inputs in order, each after the
        calls it reads: one topological order, the same for one graph however its layers were created."""
        order, done = [], set()
        stack = [(self.resolve(self.output), False)]
        while stack:
            tensor, expanded = stack.pop()
            op, node_index, _ = tensor._keras_history
            node = op._inbound_nodes[node_index]
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(_Call(op, node, self._path(op)))
                continue
            stack.append((tensor, True))
            sources = [self.resolve(t) for t in node.input_tensors]
            stack.extend((source, False) for source in reversed(sources) if source is not self.input)
        return order

    def _refuse_shared(self, calls):
        seen = {}
        for call in calls:
            if getattr(call.op, "weights", None) and seen.setdefault(id(call.op), call) is not call:
                self._refuse(call, "the layer is called more than once; the spec has no shared weights")

    # -- errors and entries ------------------------------------------------------------------------
    @staticmethod
    def _refuse(call, what):
        raise UserError(f"{call.where}: {NOT_EXPRESSIBLE}: {what}")

    def _source(self, tensor):
        """The entry computing ``tensor`` (None: the image)."""
        tensor = self.resolve(tensor)
        return None if tensor is self.input else self.entry_of[id(tensor)]

    def _entry(self, call, layer, reads=None, variables=None, value=None) -> _Entry:
        reads = [self._source(t) for t in call.inputs] if reads is None else reads
        output = call.output
        return _Entry(layer, reads, call, variables or {}, value or (lambda values: values[id(output)]))

    def _finish(self, call, entries) -> list[_Entry]:
        """The call's output is its last entry's."""
        if entries:
            self.entry_of[id(call.output)] = entries[-1]
        return entries

    def _passthrough(self, call) -> list:
        """A call the spec leaves out: its output is its input."""
        self.entry_of[id(call.output)] = self._source(call.inputs[0])
        return []

    # -- one call -> spec layers ---------------------------------------------------------------------
    def _convert(self, call) -> list[_Entry]:
        op, layers = call.op, self.keras.layers
        if getattr(op, "data_format", "channels_last") != "channels_last":
            self._refuse(call, f"data_format {op.data_format!r}; the spec is channels_last (N, H, W, C)")
        if getattr(op, "compute_dtype", "float32") != "float32":
            self._refuse(call, f"computes in {op.compute_dtype}; the spec computes in float32")
        if getattr(op, "lora_enabled", False) or getattr(op, "quantization_mode", None):
            self._refuse(call, "LoRA or quantized weights; the spec has plain float32 weights")
        if type(op).__module__.startswith("keras.src.layers.preprocessing"):
            self._refuse(call, "a preprocessing layer; remove it and apply it to the data: the spec's input is "
                               "the image as the first computing layer sees it")
        self._note_training_extras(call)
        handlers = {
            layers.Conv2D: self._conv, layers.DepthwiseConv2D: self._depthwise,
            layers.SeparableConv2D: self._separable, layers.Dense: self._dense,
            layers.MaxPooling2D: self._pool, layers.AveragePooling2D: self._pool,
            layers.GlobalAveragePooling2D: self._gap, layers.Flatten: self._flatten,
            layers.BatchNormalization: self._batchnorm, layers.LayerNormalization: self._layernorm,
            layers.Dropout: self._dropout, layers.ZeroPadding2D: self._zeropad,
            layers.Add: self._merge, layers.Concatenate: self._merge,
            layers.Activation: self._activation_layer, layers.ReLU: self._activation_layer,
            layers.LeakyReLU: self._activation_layer, layers.ELU: self._activation_layer,
            layers.Softmax: self._activation_layer, self.tfb.GELU: self._activation_layer,
        }
        constant_padding = getattr(self.tfb, "ConstantPadding2D", None)
        if constant_padding is not None:
            handlers[constant_padding] = self._constant_padding
        handler = handlers.get(type(op))
        if handler is None and type(op).__name__ == "Add" and type(op).__module__ == "keras.src.ops.numpy":
            handler = self._merge  # x + y on Keras tensors
        if handler is None:
            self._refuse(call, f"no spec layer computes a {type(op).__name__}")
        return self._finish(call, handler(call))

    def _note_training_extras(self, call):
        """What changes training but not the network: regularisers, constraints, frozen weights."""
        op = call.op
        extras = [key for key in ("kernel_regularizer", "bias_regularizer", "depthwise_regularizer",
                                  "pointwise_regularizer", "beta_regularizer", "gamma_regularizer",
                                  "activity_regularizer") if getattr(op, key, None) is not None]
        if extras:
            self.notes.append(f"{call.where}: {', '.join(extras)} left out: the spec's loss is the cross-entropy")
        constraints = [key for key in ("kernel_constraint", "bias_constraint", "depthwise_constraint",
                                       "pointwise_constraint", "beta_constraint", "gamma_constraint")
                       if getattr(op, key, None) is not None]
        if constraints:
            self.notes.append(f"{call.where}: {', '.join(constraints)} left out: the spec's weights are free")
        if getattr(op, "weights", None) and not op.trainable:
            if type(op) is self.keras.layers.BatchNormalization:
                self._refuse(call, "frozen (trainable=False): Keras then normalises with the moving statistics in "
                                   "training too, the spec with the batch's; set trainable=True to read it")
            self.notes.append(f"{call.where}: frozen in Keras; the spec trains its weights")

    def _padded_input(self, call, window, strides, dilation, mode):
        """(the source the layer reads, its padding, explicit: 'valid' or [[top, bottom], [left, right]]):
        Keras's 'same' over the layer's input, plus the padding layers folded into it."""
        tensor = call.inputs[0]
        h, w = tensor.shape[1:3]
        extent = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
        padding = ([same_padding(h, extent[0], strides[0]), same_padding(w, extent[1], strides[1])]
                   if mode == "same" else [(0, 0), (0, 0)])
        tensor = self.resolve(tensor)
        while id(tensor) in self.folded:
            outer, tensor = self.folded[id(tensor)]
            padding = [(a + c, b + d) for (a, b), (c, d) in zip(padding, outer)]
            tensor = self.resolve(tensor)
        explicit = "valid" if padding == [(0, 0), (0, 0)] else [list(p) for p in padding]
        return self._source(tensor), explicit

    def _with_activation(self, call, entries, activation, linear) -> list[_Entry]:
        """The layer's entries, and its activation as a layer of its own; the layer's own output is then
        ``linear`` (before the activation). An output head is no spec layer: the layer's output is the logits."""
        if self._read_head(call, activation):
            entries[-1].value = linear
            return entries
        settings = self._activation(call, activation)
        if settings is None:
            return entries
        last = entries[-1]
        last.value = linear
        return [*entries, self._entry(call, {"type": "activation", **settings}, reads=[last])]

    def _conv(self, call):
        op = call.op
        source, padding = self._padded_input(call, op.kernel_size, op.strides, op.dilation_rate, op.padding)
        layer = {"type": "conv2d", "filters": op.filters, "kernel_size": list(op.kernel_size),
                 "strides": list(op.strides), "padding": padding, "dilation_rate": list(op.dilation_rate),
                 "groups": op.groups, "use_bias": op.use_bias, "activation": None}
        entry = self._entry(call, layer, [source], _weights(op, kernel="kernel", bias="bias"))
        x = call.inputs[0]
        return self._with_activation(call, [entry], op.activation,
                                     lambda values: _biased(op, op.convolution_op(values[id(x)], op.kernel)))

    def _depthwise_conv(self, op, x, kernel):
        return self.keras.ops.depthwise_conv(x, kernel, strides=op.strides, padding=op.padding,
                                             dilation_rate=op.dilation_rate, data_format="channels_last")

    def _depthwise(self, call):
        op = call.op
        if tuple(op.dilation_rate) != (1, 1):
            self._refuse(call, f"dilation_rate {op.dilation_rate}; the spec's depthwise convolution is not dilated")
        source, padding = self._padded_input(call, op.kernel_size, op.strides, (1, 1), op.padding)
        layer = {"type": "depthwiseconv2d", "kernel_size": list(op.kernel_size),
                 "depth_multiplier": op.depth_multiplier, "strides": list(op.strides), "padding": padding,
                 "use_bias": op.use_bias, "activation": None}
        entry = self._entry(call, layer, [source], _weights(op, kernel="kernel", bias="bias"))
        x = call.inputs[0]
        return self._with_activation(call, [entry], op.activation,
                                     lambda values: _biased(op, self._depthwise_conv(op, values[id(x)], op.kernel)))

    def _separable(self, call):
        """A depthwise convolution without bias, then a 1x1 convolution with the layer's bias."""
        op = call.op
        if tuple(op.dilation_rate) != (1, 1):
            self._refuse(call, f"dilation_rate {op.dilation_rate}; the spec's depthwise convolution is not dilated")
        source, padding = self._padded_input(call, op.kernel_size, op.strides, (1, 1), op.padding)
        x = call.inputs[0]

        def depthwise(values):
            return self._depthwise_conv(op, values[id(x)], op.depthwise_kernel)

        dw = self._entry(call, {"type": "depthwiseconv2d", "kernel_size": list(op.kernel_size),
                                "depth_multiplier": op.depth_multiplier, "strides": list(op.strides),
                                "padding": padding, "use_bias": False, "activation": None},
                         [source], {"kernel": op.depthwise_kernel}, depthwise)
        pointwise = self._entry(call, {"type": "conv2d", "filters": op.filters, "kernel_size": [1, 1],
                                       "strides": [1, 1], "padding": "valid", "dilation_rate": [1, 1], "groups": 1,
                                       "use_bias": op.use_bias, "activation": None},
                                [dw], _weights(op, kernel="pointwise_kernel", bias="bias"))
        def linear(values):
            return _biased(op, self.keras.ops.conv(depthwise(values), op.pointwise_kernel))

        return self._with_activation(call, [dw, pointwise], op.activation, linear)

    def _dense(self, call):
        op = call.op
        layer = {"type": "dense", "units": op.units, "use_bias": op.use_bias, "activation": None}
        entry = self._entry(call, layer, variables=_weights(op, kernel="kernel", bias="bias"))
        x = call.inputs[0]
        return self._with_activation(call, [entry], op.activation,
                                     lambda values: _biased(op, self.keras.ops.matmul(values[id(x)], op.kernel)))

    def _pool(self, call):
        op = call.op
        source, padding = self._padded_input(call, op.pool_size, op.strides, (1, 1), op.padding)
        kind = "maxpool2d" if type(op) is self.keras.layers.MaxPooling2D else "avgpool2d"
        layer = {"type": kind, "pool_size": list(op.pool_size), "strides": list(op.strides), "padding": padding}
        return [self._entry(call, layer, [source])]

    def _gap(self, call):
        if call.op.keepdims:
            readers = self.consumers.get(id(call.output), [])
            if [type(r.op) for r in readers] != [self.keras.layers.Flatten]:
                self._refuse(call, "keepdims=True; the spec's global average pool gives (C,): use keepdims=False, "
                                   "or a Flatten right after it")
            output = call.output  # (N, 1, 1, C): the Flatten that reads it alone leaves (N, C), the spec's output

            def flat(values):
                return self.keras.ops.reshape(values[id(output)], (-1, output.shape[-1]))

            return [self._entry(call, {"type": "globalavgpool2d"}, value=flat)]
        return [self._entry(call, {"type": "globalavgpool2d"})]

    def _flatten(self, call):
        source = self.resolve(call.inputs[0])
        if len(source.shape) == 2 or (source is not self.input and type(source._keras_history[0]) is
                                      self.keras.layers.GlobalAveragePooling2D):
            return self._passthrough(call)  # already flat, or a keepdims global pool's (N, 1, 1, C)
        return [self._entry(call, {"type": "flatten"})]

    def _channel_axis(self, call, axis):
        ndim = len(call.inputs[0].shape)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, ndim - 1):
            self._refuse(call, f"axis {axis!r}; the spec normalises over the last (channel) axis only")

    def _batchnorm(self, call):
        op = call.op
        self._channel_axis(call, op.axis)
        if not (op.center and op.scale):
            self._refuse(call, "center=False or scale=False; the spec's batchnorm has both beta and gamma")
        return [self._entry(call, {"type": "batchnorm", "momentum": float(op.momentum), "epsilon": float(op.epsilon)},
                            variables=_weights(op, gamma="gamma", beta="beta", moving_mean="moving_mean",
                                               moving_variance="moving_variance"))]

    def _layernorm(self, call):
        op = call.op
        self._channel_axis(call, op.axis)
        if not (op.center and op.scale) or op.rms_scaling:
            self._refuse(call, "center=False, scale=False or rms_scaling=True; the spec's layernorm has both beta "
                               "and gamma and subtracts the mean")
        return [self._entry(call, {"type": "layernorm", "axis": -1, "epsilon": float(op.epsilon)},
                            variables=_weights(op, gamma="gamma", beta="beta"))]

    def _dropout(self, call):
        if call.op.noise_shape is not None:
            self._refuse(call, f"noise_shape {call.op.noise_shape}; the spec's dropout drops each value alone")
        return [self._entry(call, {"type": "dropout", "rate": float(call.op.rate)})]

    def _zeropad(self, call):
        padding = [list(p) for p in call.op.padding]
        readers = self.consumers.get(id(call.output), [])
        conv_types = (self.keras.layers.Conv2D, self.keras.layers.DepthwiseConv2D, self.keras.layers.SeparableConv2D)
        if len(readers) == 1 and type(readers[0].op) in conv_types:  # zeros either way: the convolution's padding
            self.folded[id(call.output)] = (padding, call.inputs[0])
            return []
        return [self._entry(call, {"type": "zeropad2d", "padding": padding})]

    def _constant_padding(self, call):
        """twincnn's own -inf padding before a max pool: the pool's explicit padding, which no max counts."""
        readers = self.consumers.get(id(call.output), [])
        if call.op.value != float("-inf") or [type(r.op) for r in readers] != [self.keras.layers.MaxPooling2D]:
            self._refuse(call, f"padding with {call.op.value} that is not a max pool's (-inf, read by one "
                               f"MaxPooling2D alone)")
        self.folded[id(call.output)] = ([list(p) for p in call.op.padding], call.inputs[0])
        return []

    def _merge(self, call):
        if len(call.inputs) < 2:
            self._refuse(call, "merges a tensor with a constant; the spec's merges read two or more layers")
        if type(call.op) is self.keras.layers.Concatenate:
            self._channel_axis(call, call.op.axis)
            return [self._entry(call, {"type": "concatenate"})]
        return [self._entry(call, {"type": "add"})]

    def _activation_layer(self, call):
        if self._read_head(call, call.op):
            return self._passthrough(call)  # the spec's last layer is the logits the head reads
        settings = self._activation(call, call.op)
        if settings is None:
            return self._passthrough(call)
        return [self._entry(call, {"type": "activation", **settings})]

    # -- activations ---------------------------------------------------------------------------------
    def _read_head(self, call, act) -> bool:
        """Whether ``act`` (a function or a layer) is a softmax or log-softmax over the last axis, which the spec
        has only as its output head: recorded as the head where it gives the model's output, refused elsewhere."""
        layers, activations = self.keras.layers, self.keras.activations
        if type(act) is layers.Activation:
            act = act.activation
        heads = {activations.softmax: "softmax", activations.log_softmax: "log_softmax"}
        if type(act) is layers.Softmax:
            head, axis = "softmax", act.axis
        elif act in heads:
            head, axis = heads[act], -1  # Keras keeps no arguments for a function: its default axis
        else:
            return False
        if self.resolve(call.output) is not self.resolve(self.output):
            self._refuse(call, f"{head} inside the network; the spec has it only as the output head, after the "
                               f"logits")
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, len(call.output.shape) - 1):
            self._refuse(call, f"{head} over axis {axis!r}; the output head is over the classes (the last axis)")
        self.head = head
        return True

    def _activation(self, call, act) -> dict | None:
        """A Keras activation (a function, or a layer) -> the spec's settings; None for linear."""
        keras, layers = self.keras, self.keras.layers
        if type(act) is layers.Activation:
            act = act.activation
        if type(act) is layers.ReLU:
            return self._relu_layer(call, act)
        if type(act) is layers.LeakyReLU:
            return {"activation": "leaky_relu", "negative_slope": float(act.negative_slope)}
        if type(act) is layers.ELU:
            if float(act.alpha) != 1.0:
                self._refuse(call, f"ELU alpha {act.alpha}; the spec's elu has alpha 1")
            return {"activation": "elu"}
        if type(act) is self.tfb.GELU:
            return {"activation": "gelu_tanh" if act.approximate else "gelu"}
        activations = keras.activations
        plain = {activations.linear: None, activations.relu: "relu", activations.relu6: "relu6",
                 activations.sigmoid: "sigmoid", activations.tanh: "tanh", activations.silu: "silu"}
        if act is None or act in plain:
            return {"activation": plain[act]} if act is not None and plain[act] else None
        # a function's own defaults decide what its name means: Keras keeps no arguments for it
        if act is activations.elu and _default(act, "alpha") == 1.0:
            return {"activation": "elu"}
        if act is activations.gelu:
            return {"activation": "gelu_tanh" if _default(act, "approximate") else "gelu"}
        if act is activations.leaky_relu:
            return {"activation": "leaky_relu", "negative_slope": float(_default(act, "negative_slope"))}
        name = getattr(act, "__name__", type(act).__name__)
        self._refuse(call, f"activation {name!r}; the spec's activations are {_SPEC_ACTIVATIONS}")

    def _relu_layer(self, call, op) -> dict:
        slope, threshold, top = float(op.negative_slope), float(op.threshold), op.max_value
        if threshold == 0 and top is None:
            return {"activation": "leaky_relu", "negative_slope": slope} if slope else {"activation": "relu"}
        if threshold == 0 and slope == 0 and float(top) == 6.0:
            return {"activation": "relu6"}
        self._refuse(call, f"ReLU(max_value={top}, negative_slope={slope}, threshold={threshold}); the spec has "
                           f"relu, relu6 and leaky_relu")

    # -- the spec ------------------------------------------------------------------------------------
    def _check_last(self, entries):
        if not entries or self._source(self.output) is not entries[-1]:
            raise UserError(f"{self.model.name}: {NOT_EXPRESSIBLE}: its output is not computed by a spec layer")
        last = entries[-1]
        if last.layer["type"] == "activation":
            self._refuse(last.call, f"activation {last.layer['activation']!r} on the output; {_LOGITS}")

    def _spec(self, shape, entries) -> Spec:
        names = _names([entry.layer["type"] for entry in entries])
        index = {id(entry): n for n, entry in enumerate(entries)}
        layers = []
        for n, entry in enumerate(entries):
            reads = [INPUT if source is None else names[index[id(source)]] for source in entry.reads]
            layer = dict(entry.layer)
            if reads != [names[n - 1] if n else INPUT]:
                layer["inputs"] = reads
            layers.append(layer)
        try:
            return Spec(shape, tuple(layers), self.head)
        except SpecError as exc:  # the spec's own checks: name the Keras layer they concern
            found = re.match(r"layer (\d+) \(\w+\): (.*)", str(exc))
            if found is None:
                raise UserError(f"{self.model.name}: {NOT_EXPRESSIBLE}: {exc}") from None
            raise UserError(f"{entries[int(found[1])].call.where}: {NOT_EXPRESSIBLE}: {found[2]}") from None


def _weights(op, **keys) -> dict:
    """{canonical key: the layer's variable}, leaving out a bias the layer does not have."""
    return {key: getattr(op, attr) for key, attr in keys.items() if getattr(op, attr, None) is not None}


def _biased(op, x):
    return x + op.bias if op.use_bias else x


def _default(function, parameter):
    return inspect.signature(function).parameters[parameter].default
