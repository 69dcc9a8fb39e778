"""PyTorch twin: a plain NCHW network whose state_dict loads into the notebook's own class."""

from __future__ import annotations

import copy
import functools
import inspect
import pickle
import platform
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..spec import INPUT, Spec, real_cells
from ..weights import check_layout
from .defaults import signature_default
from .interface import KERAS_ADAM_EPSILON, TrainerConfig
from .base import BaseTrainer, attributes_set

NAME = "torch"
NOTEBOOK_VALIDATION = False  # the notebook's PyTorch loop evaluated after the timed loop
NOTEBOOK_TIMING = ""


def version() -> str:
    return f"torch {torch.__version__}"


def configure(threads: int | None = None) -> dict:
    """Set intra-op threads (and inter-op to 1 where still allowed); return what is in force."""
    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only allowed before the first parallel op
            pass
    return {"intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads()}


def resolve_device(device: str = "cpu") -> torch.device:
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: this PyTorch sees no CUDA GPU; use --device cpu")
        # twincnn compares float32 results: TF32 matmuls/convolutions would round to 10-bit mantissas.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(device)


class KerasBatchNorm(nn.Module):
    """Batch normalisation with Keras's semantics, over the channel dimension (dim 1) or a flat input's features.

    nn.BatchNorm2d differs in two ways no setting fixes at once: its running_var takes the *unbiased* batch
    variance (Keras: biased), and its momentum is the weight of the new batch (Keras: of the old average).
    Here: moving = momentum * moving + (1 - momentum) * batch, both statistics biased, in Keras's order.
    Training normalises with the batch statistics, eval() with the moving ones. The state_dict keys are
    nn.BatchNorm2d's (weight, bias, running_mean, running_var), without num_batches_tracked.
    """

    def __init__(self, features: int, momentum: float, eps: float):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x):
        dims, shape = ((0,), (1, -1)) if x.dim() == 2 else ((0, 2, 3), (1, -1, 1, 1))
        if self.training:
            var, mean = torch.var_mean(x, dim=dims, correction=0)  # biased, as Keras's moments
            with torch.no_grad():
                self.running_mean.mul_(self.momentum).add_(mean, alpha=1 - self.momentum)
                self.running_var.mul_(self.momentum).add_(var, alpha=1 - self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        inv = torch.rsqrt(var + self.eps) * self.weight  # tf.nn.batch_normalization's form
        return x * inv.view(shape) + (self.bias - mean * inv).view(shape)


class ChannelLayerNorm(nn.Module):
    """Keras's LayerNormalization(axis=-1): each position's channels (dim 1 of NCHW), or a flat input's features."""

    def __init__(self, features: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x):
        if x.dim() == 2:
            return F.layer_norm(x, x.shape[1:], self.weight, self.bias, self.eps)
        out = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return out.permute(0, 3, 1, 2)


class GlobalAvgPool2d(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class SameAvgPool2d(nn.Module):
    """An average pool with padding that never counts (Keras's 'same', or explicit): zero padding, each window's
    sum divided by its number of real cells. avg_pool2d's count_include_pad=False cannot say this for
    asymmetric padding."""

    def __init__(self, info):
        super().__init__()
        (top, bottom), (left, right) = info.padding
        self.pads = (left, right, top, bottom)
        self.pool, self.strides = info.config["pool_size"], info.config["strides"]
        rows, cols = real_cells(info)
        # not persistent: derived from the spec, so no state_dict key
        self.register_buffer("cells", torch.from_numpy(np.outer(rows, cols).astype(np.float32))[None, None],
                             persistent=False)

    def forward(self, x):
        total = F.avg_pool2d(F.pad(x, self.pads), self.pool, self.strides, divisor_override=1)
        return total / self.cells


def _activate(x, activation):
    name, slope = activation
    if name == "relu":
        return F.relu(x)
    if name == "relu6":
        return F.relu6(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "elu":
        return F.elu(x, alpha=1.0)
    if name == "silu":
        return F.silu(x)
    if name == "gelu":  # F.gelu's default is exact too; said here because Keras's ops default differs
        return F.gelu(x, approximate="none")
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    return F.leaky_relu(x, negative_slope=slope)  # PyTorch's default slope is 0.01, Keras's layer 0.3


def _pad_module(info, value: float = 0.0):
    """Explicit padding where the framework's own cannot express it (asymmetric, or -inf for a max)."""
    (top, bottom), (left, right) = info.padding
    return nn.ConstantPad2d((left, right, top, bottom), value)


class TwinNet(nn.Module):
    """The spec as an nn.Module: layers named conv1.., fc1.., bn1.. as in the spec, flattening in (C, H, W) order."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        for info in spec.info:
            cfg, channels = info.config, info.input_shape[-1]
            padded = info.padding is not None and any(map(any, info.padding))
            if info.type in ("conv2d", "depthwiseconv2d"):
                (top, bottom), (left, right) = info.padding
                symmetric = top == bottom and left == right
                if not symmetric:  # Keras 'same' puts the odd pixel after: pad explicitly
                    self.add_module(f"{info.name}_pad", _pad_module(info))
                groups = cfg["groups"] if info.type == "conv2d" else channels
                module = nn.Conv2d(channels, info.output_shape[-1], cfg["kernel_size"], cfg["strides"],
                                   padding=(top, left) if symmetric else 0,
                                   dilation=cfg.get("dilation_rate", (1, 1)), groups=groups,
                                   bias="bias" in info.weight_shapes)
            elif info.type == "maxpool2d":
                if padded:  # padded cells must never win: pad with -inf
                    self.add_module(f"{info.name}_pad", _pad_module(info, float("-inf")))
                module = nn.MaxPool2d(cfg["pool_size"], cfg["strides"], padding=0)
            elif info.type == "avgpool2d":
                module = (SameAvgPool2d(info) if padded else
                          nn.AvgPool2d(cfg["pool_size"], cfg["strides"], padding=0, count_include_pad=False))
            elif info.type == "zeropad2d":
                module = _pad_module(info)
            elif info.type == "globalavgpool2d":
                module = GlobalAvgPool2d()
            elif info.type == "flatten":
                module = nn.Flatten()
            elif info.type == "dense":
                module = nn.Linear(info.input_shape[0], cfg["units"], bias="bias" in info.weight_shapes)
            elif info.type == "batchnorm":
                module = KerasBatchNorm(channels, cfg["momentum"], cfg["epsilon"])
            elif info.type == "layernorm":
                module = ChannelLayerNorm(channels, cfg["epsilon"])
            elif info.type == "dropout":
                module = nn.Dropout(p=cfg["rate"], inplace=False)
            elif info.type in ("activation", "add", "concatenate"):
                continue  # no module: forward applies them
            else:
                raise ValueError(f"{info.name}: the PyTorch twin has no layer type {info.type!r}")
            self.add_module(info.name, module)
        self.set_plan(pool_before_relu=False)

    def spec_layer(self, name: str) -> nn.Module:
        """The module holding spec layer ``name``'s weights."""
        return getattr(self, name)

    def set_plan(self, pool_before_relu: bool) -> None:
        """The steps forward takes: (what it calls, activation after it: (name, negative slope) or None,
        the names of the outputs it reads, the name of its output). What it calls is a module's name, or
        "add"/"concatenate"/"identity" for the layers without a module.

        A max-pool commutes exactly with ReLU (a monotonic function), so pool_before_relu=True moves the ReLU
        of a layer that a max-pool alone reads behind the pool: the same logits and gradients, with ReLU
        and its backward on a quarter of the pixels. Only ReLU is moved (GELU and SiLU are not monotonic).
        """
        readers = {}
        for info in self.spec.info:
            for name in info.inputs:
                readers[name] = readers.get(name, 0) + 1
        plan = []
        for info in self.spec.info:
            inputs = info.inputs
            if hasattr(self, f"{info.name}_pad"):
                plan.append((f"{info.name}_pad", None, inputs, info.name))
                inputs = (info.name,)
            activation = (info.activation, info.config.get("negative_slope")) if info.activation else None
            call = info.name if info.type not in _WITHOUT_MODULE else _WITHOUT_MODULE[info.type]
            if (pool_before_relu and info.type == "maxpool2d" and plan and plan[-1][3] == inputs[0]
                    and plan[-1][1] == ("relu", None) and readers[inputs[0]] == 1):
                plan[-1] = (*plan[-1][:1], None, *plan[-1][2:])
                activation = ("relu", None)
            plan.append((call, activation, inputs, info.name))
        self.plan = plan
        self.output = self.spec.info[-1].name

    def forward(self, x, shapes=None):
        """Logits; ``shapes``, a dict, receives each layer's output shape (NCHW without N) by name."""
        outputs = {INPUT: x}
        for call, activation, inputs, name in self.plan:
            if call == "add":
                x = functools.reduce(torch.add, [outputs[n] for n in inputs])
            elif call == "concatenate":  # NCHW: channels are axis 1
                x = torch.cat([outputs[n] for n in inputs], dim=1)
            elif call == "identity":
                x = outputs[inputs[0]]
            else:
                x = getattr(self, call)(outputs[inputs[0]])
            if activation is not None:
                x = _activate(x, activation)
            outputs[name] = x
            if shapes is not None:
                shapes[name] = tuple(x.shape[1:])
        return outputs[self.output]


# the layer types forward computes without a module of their own
_WITHOUT_MODULE = {"add": "add", "concatenate": "concatenate", "activation": "identity"}


def build(spec: Spec, seed: int | None = None, device: str = "cpu") -> TwinNet:
    """The twin with PyTorch's own initialisers (seeded); set_weights() for shared ones."""
    if seed is not None:
        torch.manual_seed(seed)
    return TwinNet(spec).to(resolve_device(device))


# -- canonical layout <-> PyTorch layout ------------------------------------------------------
def _to_torch(info, key, array: np.ndarray) -> np.ndarray:
    if info.type in ("batchnorm", "layernorm") and info.flatten_from is not None:
        h, w, c = info.flatten_from  # per feature of a flat input: (H, W, C) order -> (C, H, W) order
        return array.reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
    if key != "kernel":
        return array
    if info.type == "conv2d":  # HWIO -> OIHW (I: the input channels of one group)
        return array.transpose(3, 2, 0, 1)
    if info.type == "depthwiseconv2d":  # (kh, kw, C, M) -> (C*M, 1, kh, kw): output channel c*M + m
        kh, kw, c, m = array.shape
        return array.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]
    if info.flatten_from is not None:  # rows in (H, W, C) order -> (C, H, W) order
        h, w, c = info.flatten_from
        array = array.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
    return array.T


def _from_torch(info, key, array: np.ndarray) -> np.ndarray:
    if info.type in ("batchnorm", "layernorm") and info.flatten_from is not None:
        h, w, c = info.flatten_from
        return array.reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    if key != "kernel":
        return array
    if info.type == "conv2d":  # OIHW -> HWIO
        return array.transpose(2, 3, 1, 0)
    if info.type == "depthwiseconv2d":
        m = info.config["depth_multiplier"]
        out, _, kh, kw = array.shape
        return array[:, 0].transpose(1, 2, 0).reshape(kh, kw, out // m, m)
    array = array.T
    if info.flatten_from is not None:
        h, w, c = info.flatten_from
        array = array.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
    return array


# canonical weight name -> PyTorch's (the state_dict keys of nn.Conv2d, nn.Linear, nn.BatchNorm2d)
_TORCH_KEY = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
              "moving_variance": "running_var"}


def _named(model: nn.Module, spec: Spec, which: str):
    """(canonical name, info, key, tensor) for each weight, or each trainable weight's gradient, in spec order.
    ``model`` is a TwinNet or a user's module as read (torch_read.ReadNet): spec_layer(name) holds a layer's
    weights in both."""
    names = spec.weight_shapes() if which == "param" else spec.trainable_weight_shapes()
    infos = {info.name: info for info in spec.param_layers}
    for name in names:
        layer, key = name.split("/")
        tensor = getattr(model.spec_layer(layer), _TORCH_KEY[key])
        if which == "param":
            yield name, infos[layer], key, tensor
        else:  # a weight the loss does not reach has no gradient: zero
            yield name, infos[layer], key, tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)


def get_weights(model: nn.Module, spec: Spec) -> dict[str, np.ndarray]:
    # np.array copies: .numpy() shares memory with the live parameter, which training would change.
    return {name: np.array(_from_torch(info, key, t.detach().cpu().numpy()), order="C")
            for name, info, key, t in _named(model, spec, "param")}


def set_weights(model: nn.Module, spec: Spec, weights: dict) -> None:
    check_layout(spec, weights)
    with torch.no_grad():
        for name, info, key, t in _named(model, spec, "param"):
            value = np.ascontiguousarray(_to_torch(info, key, np.asarray(weights[name], np.float32)))
            t.copy_(torch.from_numpy(value))


def to_input(x: np.ndarray, device="cpu", channels_last=False) -> torch.Tensor:
    """Canonical (N, H, W, C) float32 -> NCHW tensor (channels-last strides on request). A copy in either
    layout: with one channel the permuted view already counts as contiguous, but its channels-last strides would
    make convolutions give channels-last outputs, on which a model's own x.view(x.size(0), -1) fails."""
    t = torch.from_numpy(np.asarray(x, np.float32)).permute(0, 3, 1, 2)
    t = t.clone(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return t.to(device)


@contextmanager
def _mode(model: nn.Module, training: bool):
    """Every submodule in training or eval mode inside, each in the mode it had afterwards (a user's module may
    keep some of its parts in eval mode)."""
    before = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, was_training in before:
            module.training = was_training


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    device = next(model.parameters()).device
    out = []
    with _mode(model, training=False), torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(to_input(x[start:start + batch_size], device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def loss_and_grads(model: nn.Module, spec: Spec, x: np.ndarray, y: np.ndarray):
    """Mean sparse cross-entropy from logits on one batch in training mode (batch statistics, dropout; the
    moving statistics move as in a training step) and the gradients of the trainable weights."""
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    with _mode(model, training=True):
        loss = F.cross_entropy(model(to_input(x, device)), torch.as_tensor(y, dtype=torch.long, device=device))
    loss.backward()
    grads = {name: np.array(_from_torch(info, key, g.detach().cpu().numpy()), order="C")
             for name, info, key, g in _named(model, spec, "grad")}
    return float(loss.detach()), grads


def without_dropout(model: nn.Module):
    """nn.Dropout with p=0 is the identity in training mode too (the reader refuses the other dropouts)."""
    return attributes_set([m for m in model.modules() if isinstance(m, nn.Dropout)], "p", 0.0)


def layer_summary(model: nn.Module, spec: Spec) -> list[tuple[str, tuple, int]]:
    """(name, output shape as (H, W, C) or (units,), weights: parameters and BatchNorm's moving statistics)
    measured on the built model, run once in eval mode (no moving statistics change)."""
    shapes = {}
    device = next(model.parameters()).device
    with _mode(model, training=False), torch.no_grad():
        model(torch.zeros((1, spec.input_shape[2], *spec.input_shape[:2]), device=device), shapes=shapes)
    rows = []
    for info in spec.info:
        shape = shapes[info.name]
        if len(shape) == 3:  # NCHW -> HWC for comparison with the spec
            shape = (shape[1], shape[2], shape[0])
        module = getattr(model, info.name, None)  # add, concatenate and activation have none
        params = 0 if module is None else sum(t.numel() for t in module.state_dict().values())  # buffers too
        rows.append((info.name, shape, params))
    return rows


class KerasAdam(torch.optim.Optimizer):
    """Keras 3's Adam update in PyTorch, so both twins take identical steps.

    Keras folds the bias correction into the step size and adds epsilon to sqrt(v):
        alpha = lr * sqrt(1 - b2^t) / (1 - b1^t);  m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2)
        w -= m * alpha / (sqrt(v) + eps),  eps = 1e-7
    PyTorch's Adam adds eps to sqrt(v_hat) instead, so no fixed eps makes the two agree.
    capturable=True keeps the step count on the device, so the whole step can live in a CUDA graph.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=KERAS_ADAM_EPSILON, capturable=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, capturable=capturable))

    def _state(self, params):
        for p in params:
            if not self.state[p]:
                self.state[p].update(m=torch.zeros_like(p), v=torch.zeros_like(p))
        first = self.state[params[0]]
        if "step" not in first:
            first["step"] = torch.zeros((), device=params[0].device) if self.defaults["capturable"] else 0
        return first

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            b1, b2 = group["betas"]
            first = self._state(params)
            grads = [p.grad for p in params]
            ms = [self.state[p]["m"] for p in params]
            vs = [self.state[p]["v"] for p in params]
            torch._foreach_lerp_(ms, grads, 1 - b1)
            torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), 1 - b2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            first["step"] += 1
            t = first["step"]
            if group["capturable"]:
                alpha = group["lr"] * torch.sqrt(1 - torch.pow(b2, t)) / (1 - torch.pow(b1, t))
                update = torch._foreach_div(ms, denom)
                torch._foreach_mul_(update, alpha)
                torch._foreach_sub_(params, update)
            else:
                f32 = np.float32  # in float32, as Keras computes it
                alpha = f32(group["lr"]) * np.sqrt(f32(1) - f32(b2) ** f32(t)) / (f32(1) - f32(b1) ** f32(t))
                torch._foreach_addcdiv_(params, ms, denom, value=-float(alpha))


@contextmanager
def training_state_kept(model: nn.Module, optimizer: torch.optim.Optimizer):
    """Steps taken inside leave no trace: weights, buffers (BatchNorm's moving statistics) and optimizer state
    come back, in place.

    In place, because a CUDA graph captured inside keeps the addresses of the tensors it uses. State
    the optimizer creates inside (its first step) goes back to zero, which is what a fresh state means.
    """
    weights = [p.detach().clone() for p in (*model.parameters(), *model.buffers())]
    saved = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
             for p, state in optimizer.state.items()}
    yield
    with torch.no_grad():
        for p, w in zip((*model.parameters(), *model.buffers()), weights):
            p.copy_(w)
        for p, state in optimizer.state.items():
            before = saved.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value):
                    value.copy_(before[key]) if key in before else value.zero_()
                else:
                    state[key] = before.get(key, 0)


def make_optimizer(model: nn.Module, lr: float, adam: str = "keras", capturable: bool = False,
                   eps: float = KERAS_ADAM_EPSILON):
    """'keras': Keras's Adam formula (the fair protocol); 'native': torch.optim.Adam defaults."""
    if adam == "keras":
        return KerasAdam(model.parameters(), lr=lr, eps=eps, capturable=capturable)
    if adam == "native":
        return torch.optim.Adam(model.parameters(), lr=lr, capturable=capturable)
    raise ValueError(f"unknown adam {adam!r}; use keras or native")


class Trainer(BaseTrainer):
    """Trains on data held as tensors; batches are index lists so both twins see the same ones.

    variant 'idiomatic': what a typical user writes (NCHW, eager loop).
    variant 'tuned': channels-last memory format (oneDNN's native layout on CPU) and max-pool before ReLU;
    on CUDA also the whole step (gather, forward, backward, Adam) captured once in a CUDA graph.
    """

    predict_logits = staticmethod(predict)

    def __init__(self, model, spec, config: TrainerConfig, metrics=()):
        super().__init__(model, spec, config, metrics)
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.channels_last = self.variant == "tuned"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.model.set_plan(pool_before_relu=True)  # same function, cheaper order
        # The graph path needs Keras-Adam's capturable step count; torch.optim.Adam stays eager.
        self.use_graph = self.variant == "tuned" and self.device.type == "cuda" and config.adam == "keras"
        self.optimizer = make_optimizer(self.model, config.lr, config.adam, capturable=self.use_graph,
                                        eps=config.eps)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.forward = self.model  # what a step calls: the model, or a wrapper around it (DDP)
        self.x = self.y = None
        self.graphs = {}  # batch size -> (graph, static index, static loss)

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = to_input(x, self.device, self.channels_last)  # resident on the device
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.long, device=self.device)
        # idiomatic code iterates a DataLoader over host tensors and moves each batch, as users write it
        host = (self.x, self.y) if self.device.type == "cpu" else (to_input(x), torch.as_tensor(np.asarray(y)))
        self.dataset = torch.utils.data.TensorDataset(*host)

    def _loader_epoch(self, order, batch_size, on_step=None) -> float:
        """The plain PyTorch loop: DataLoader (the shared order as its sampler, or its own shuffle)."""
        if order is None:
            loader = torch.utils.data.DataLoader(self.dataset, batch_size, shuffle=True, generator=self.generator)
        else:
            loader = torch.utils.data.DataLoader(self.dataset, batch_size, sampler=order.tolist())
        total, steps = 0.0, 0
        for xb, yb in loader:
            xb, yb = xb.to(self.device), yb.to(self.device)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(xb), yb)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            steps += 1
            if on_step is not None:
                on_step(steps)
        return total / steps

    def _eager_step(self, idx):
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(self.x[idx]), self.y[idx])
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _capture(self, batch_size):
        """Warm up on a side stream and capture one step; the weights and Adam state stay as they were
        (a capture can happen mid-training, for the last, partial batch of the first epoch)."""
        static_idx = torch.arange(batch_size, device=self.device)
        with training_state_kept(self.model, self.optimizer):
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._eager_step(static_idx)
            torch.cuda.current_stream().wait_stream(stream)
            self.optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_loss = self._eager_step(static_idx)
        self.graphs[batch_size] = (graph, static_idx, static_loss)

    def step(self, idx):
        if not torch.is_tensor(idx):
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        idx = idx.to(self.device, non_blocking=True)
        if not self.use_graph:
            return self._eager_step(idx)
        if len(idx) not in self.graphs:
            self._capture(len(idx))
        graph, static_idx, static_loss = self.graphs[len(idx)]
        static_idx.copy_(idx)
        graph.replay()
        return static_loss

    def train_epoch(self, order, batch_size, on_step=None, validation=None) -> float:
        """One epoch over ``order`` (None: PyTorch's own shuffle, as a DataLoader does)."""
        self.model.train()
        if self.variant == "idiomatic":
            return self._loader_epoch(order, batch_size, on_step)
        order = torch.randperm(len(self.x), generator=self.generator) if order is None else torch.from_numpy(order)
        order = order.to(self.device)
        total, steps = torch.zeros((), device=self.device), 0
        for start in range(0, len(order), batch_size):
            total += self.step(order[start:start + batch_size])  # queued in stream order: no sync here
            steps += 1
            if on_step is not None:
                on_step(steps)
        return float(total) / steps

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits from the weights the model has now. idiomatic: eval() + no_grad; tuned:
    channels-last, pool before ReLU, inference_mode. It predicts with its own copy of the model, so the
    caller's model keeps its mode, layout and plan."""
    TrainerConfig(variant=variant)  # an unknown variant is refused, never run as another
    model = copy.deepcopy(model)
    device = next(model.parameters()).device
    model.eval()
    if variant == "idiomatic":
        def run(x):
            with torch.no_grad():
                return model(to_input(x, device)).cpu().numpy()
        return run
    model.to(memory_format=torch.channels_last)
    model.set_plan(pool_before_relu=True)

    def run_tuned(x):
        with torch.inference_mode():
            return model(to_input(x, device, channels_last=True)).cpu().numpy()
    return run_tuned


make_trainer = Trainer.from_options


def isa() -> str:
    """The vector kernels ATen dispatched to (ATEN_CPU_CAPABILITY caps them): DEFAULT, AVX2, AVX512..."""
    return torch.backends.cpu.get_cpu_capability()


def environment() -> dict:
    return {
        "framework": "torch", "version": version(), "isa": isa(),
        "intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "mkldnn": torch.backends.mkldnn.is_available(), "python": platform.python_version(),
    }


# -- files: a PyTorch state_dict <-> canonical weights -----------------------------------------
# What torch.load(weights_only=True) raises for a file that is not a plain state_dict (torch 2.13):
# text, a plain pickle or a pickled nn.Module -> UnpicklingError; an empty file -> EOFError;
# a truncated, corrupted or foreign zip -> RuntimeError ("... zip archive ...", "... in archive ...");
# unreadable -> OSError. Anything else is a bug and keeps its traceback.
NOT_A_STATE_DICT = (pickle.UnpicklingError, EOFError, RuntimeError, OSError)


def load_file(path, spec: Spec):
    """A state_dict saved with torch.save -> (TwinNet with those weights, spec); one-line errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except NOT_A_STATE_DICT as exc:
        if isinstance(exc, RuntimeError) and "archive" not in str(exc):
            raise  # a RuntimeError about something other than the file's zip container is not bad input
        raise ValueError(f"not a PyTorch state_dict saved with torch.save ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a state_dict")
    model = TwinNet(spec)
    expected = model.state_dict()
    # nn.BatchNorm2d's step counter: only its momentum=None mode reads it, which twincnn's BatchNorm has not
    state = {k: v for k, v in state.items() if not (k.endswith(".num_batches_tracked") and
                                                    k.rsplit(".", 1)[0] + ".running_mean" in expected)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"does not match the spec: missing {missing or 'nothing'}, unexpected "
                         f"{unexpected or 'nothing'}; pass the right --spec")
    for key, value in expected.items():
        if not torch.is_tensor(state[key]):
            raise ValueError(f"{key} holds a {type(state[key]).__name__}, not a tensor")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f"{key} has shape {tuple(state[key].shape)}, the spec needs {tuple(value.shape)}; "
                             f"pass the right --spec")
    model.load_state_dict(state)
    return model, spec


def save_file(model, spec: Spec, path) -> None:
    torch.save(model.state_dict(), path)


def audit_defaults() -> dict:
    """{`twincnn audit` row key: this framework's default, as text} (backends/defaults.py ROWS)."""
    from torch.utils.data import DataLoader

    conv_src = inspect.getsource(torch.nn.Conv2d.reset_parameters) if hasattr(torch.nn.Conv2d, "reset_parameters") \
        else inspect.getsource(torch.nn.modules.conv._ConvNd.reset_parameters)
    dense_src = inspect.getsource(torch.nn.Linear.reset_parameters)

    def init_name(src):
        if "kaiming_uniform_" in src:
            return "kaiming_uniform_(a=√5)" if "math.sqrt(5)" in src else "kaiming_uniform_"
        return "see reset_parameters()"

    adam = inspect.signature(torch.optim.Adam).parameters
    loader = inspect.signature(DataLoader).parameters
    return {
        "conv_init": init_name(conv_src),
        "dense_init": init_name(dense_src),
        "bias_init": "uniform(±1/√fan_in)" if "uniform_(self.bias" in dense_src else "see reset_parameters()",
        "adam_eps": f"{adam['eps'].default:g}",
        "adam_betas": ", ".join(f"{b:g}" for b in adam["betas"].default),
        "adam_formula": "w -= lr · m̂/(√v̂ + ε), m̂ = m/(1-β1ᵗ), v̂ = v/(1-β2ᵗ)",
        "shuffle": f"DataLoader(shuffle={loader['shuffle'].default})" + (" = no shuffling" if not loader["shuffle"].default else ""),
        "partial_batch": f"kept: DataLoader(drop_last={loader['drop_last'].default})",
        "intra": f"{torch.get_num_threads()} (get_num_threads)",
        "inter": f"{torch.get_num_interop_threads()} (get_num_interop_threads)",
        "tf32": (f"matmul allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
                 f"cudnn allow_tf32={torch.backends.cudnn.allow_tf32}"),
        "determinism": f"are_deterministic_algorithms_enabled()={torch.are_deterministic_algorithms_enabled()}",
        "fit_epoch": "nothing: the user's loop does only what it says",
        "graph": "eager (torch.compile is opt-in)",
        "layout": "NCHW (contiguous), flatten in (C, H, W) order",
        "precision": str(torch.get_default_dtype()).replace("torch.", ""),
        "conv_padding": f"Conv2d(padding={signature_default(torch.nn.Conv2d, 'padding')!r})",
        "pool_strides": f"MaxPool2d(stride={signature_default(torch.nn.MaxPool2d, 'stride')}) = kernel_size",
        "loss": f"reduction={signature_default(torch.nn.CrossEntropyLoss, 'reduction')!r}",
        "onednn": f"mkldnn enabled={torch.backends.mkldnn.enabled}",
        **_torch_layer_defaults(torch),
    }


def _torch_layer_defaults(torch) -> dict:
    nn = torch.nn

    bn = nn.BatchNorm1d(1, momentum=1.0)  # momentum 1 in PyTorch's meaning: running_var becomes the batch's
    with torch.no_grad():
        bn.train()(torch.tensor([[0.0], [2.0]]))
    depthwise = nn.Conv2d(3, 6, 3, groups=3)
    return {
        "bn_momentum": (f"BatchNorm2d(momentum={signature_default(nn.BatchNorm2d, 'momentum'):g}): "
                        f"running = (1-m)·running + m·batch"),
        "bn_epsilon": f"BatchNorm2d(eps={signature_default(nn.BatchNorm2d, 'eps'):g})",
        "bn_variance": (f"unbiased (x N/(N-1)): running_var after one batch [0, 2] is {bn.running_var.item():g}, "
                        f"while normalising with the biased one"),
        "avgpool_same": (f"AvgPool2d(count_include_pad={signature_default(nn.AvgPool2d, 'count_include_pad')}): "
                         f"the whole window; no 'same', symmetric padding only"),
        "same_side": ("Conv2d(padding='same'): stride 1 only, odd pixel after; pools: symmetric padding only "
                      "(Keras's extra bottom/right row needs an explicit pad)"),
        "gelu": f"nn.GELU(approximate={signature_default(nn.GELU, 'approximate')!r})",
        "leaky_slope": f"nn.LeakyReLU({signature_default(nn.LeakyReLU, 'negative_slope'):g})",
        "ln_epsilon": f"LayerNorm(eps={signature_default(nn.LayerNorm, 'eps'):g})",
        "depthwise_layout": f"Conv2d(groups=in) weight {tuple(depthwise.weight.shape)} = (in·multiplier, 1, kh, kw)",
    }
