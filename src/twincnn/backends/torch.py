"""PyTorch twin: a plain NCHW network whose state_dict loads into the notebook's own class."""

from __future__ import annotations

import pickle
import platform
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..spec import Spec
from ..weights import check_layout
from .loop import run_epochs

NAME = "torch"
NOTEBOOK_VALIDATION = False  # the notebook's PyTorch loop evaluated after the timed loop


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


class TwinNet(nn.Module):
    """The spec as an nn.Module: layers named conv1.., fc1.. in order, flattening in (C, H, W) order."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        channels = spec.input_shape[2]
        for info in spec.info:
            cfg = info.config
            if info.type == "conv2d":
                (top, bottom), (left, right) = info.padding
                symmetric = top == bottom and left == right
                if not symmetric:  # Keras 'same' puts the odd pixel after: pad explicitly
                    self.add_module(f"{info.name}_pad", nn.ZeroPad2d((left, right, top, bottom)))
                module = nn.Conv2d(channels, cfg["filters"], cfg["kernel_size"], cfg["strides"],
                                   padding=(top, left) if symmetric else 0)
                channels = cfg["filters"]
            elif info.type == "maxpool2d":
                module = nn.MaxPool2d(cfg["pool_size"], cfg["strides"])
            elif info.type == "flatten":
                module = nn.Flatten()
            else:
                module = nn.Linear(info.input_shape[0], cfg["units"])
            self.add_module(info.name, module)
        self.set_plan(pool_before_relu=False)

    def set_plan(self, pool_before_relu: bool) -> None:
        """The order modules run in: (module name, apply ReLU after it).

        Max-pool and ReLU commute exactly (ReLU is monotonic), so pool_before_relu=True gives the same
        logits and gradients while running ReLU and its backward on a quarter of the pixels.
        """
        plan = []
        for info in self.spec.info:
            if hasattr(self, f"{info.name}_pad"):
                plan.append((f"{info.name}_pad", False))
            if pool_before_relu and info.type == "maxpool2d" and plan and plan[-1][1]:
                plan[-1] = (plan[-1][0], False)
                plan.append((info.name, True))
            else:
                plan.append((info.name, info.activation == "relu"))
        self.plan = plan

    def forward(self, x):
        for name, relu in self.plan:
            x = getattr(self, name)(x)
            if relu:
                x = F.relu(x)
        return x


def build(spec: Spec, seed: int | None = None, device: str = "cpu") -> TwinNet:
    """The twin with PyTorch's own initialisers (seeded); set_weights() for shared ones."""
    if seed is not None:
        torch.manual_seed(seed)
    return TwinNet(spec).to(resolve_device(device))


# -- canonical layout <-> PyTorch layout ------------------------------------------------------
def _to_torch(info, key, array: np.ndarray) -> np.ndarray:
    if key == "bias":
        return array
    if info.type == "conv2d":  # HWIO -> OIHW
        return array.transpose(3, 2, 0, 1)
    if info.flatten_from is not None:  # rows in (H, W, C) order -> (C, H, W) order
        h, w, c = info.flatten_from
        array = array.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
    return array.T


def _from_torch(info, key, array: np.ndarray) -> np.ndarray:
    if key == "bias":
        return array
    if info.type == "conv2d":  # OIHW -> HWIO
        return array.transpose(2, 3, 1, 0)
    array = array.T
    if info.flatten_from is not None:
        h, w, c = info.flatten_from
        array = array.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
    return array


_TORCH_KEY = {"kernel": "weight", "bias": "bias"}


def _named(model: nn.Module, spec: Spec, which: str):
    """(canonical name, info, key, tensor) for each weight or its gradient, in spec order."""
    for info in spec.param_layers:
        module = getattr(model, info.name)
        for key in info.weight_shapes:
            param = getattr(module, _TORCH_KEY[key])
            yield f"{info.name}/{key}", info, key, param if which == "param" else param.grad


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
    """Canonical (N, H, W, C) float32 -> NCHW tensor (channels-last strides on request)."""
    t = torch.from_numpy(np.asarray(x, np.float32)).permute(0, 3, 1, 2)
    t = t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return t.to(device)


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(to_input(x[start:start + batch_size], device)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def loss_and_grads(model: nn.Module, spec: Spec, x: np.ndarray, y: np.ndarray):
    """Mean sparse cross-entropy from logits on one batch and its canonical gradients."""
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(to_input(x, device)), torch.as_tensor(y, dtype=torch.long, device=device))
    loss.backward()
    grads = {name: np.array(_from_torch(info, key, g.detach().cpu().numpy()), order="C")
             for name, info, key, g in _named(model, spec, "grad")}
    return float(loss.detach()), grads


def layer_summary(model: nn.Module, spec: Spec) -> list[tuple[str, tuple, int]]:
    """(name, output shape as (H, W, C) or (units,), parameters) measured on the built model."""
    shapes = {}
    hooks = [getattr(model, info.name).register_forward_hook(
        lambda mod, inp, out, name=info.name: shapes.__setitem__(name, tuple(out.shape[1:])))
        for info in spec.info]
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros((1, spec.input_shape[2], *spec.input_shape[:2]), device=device))
    finally:
        for hook in hooks:
            hook.remove()
    rows = []
    for info in spec.info:
        shape = shapes[info.name]
        if len(shape) == 3:  # NCHW -> HWC for comparison with the spec
            shape = (shape[1], shape[2], shape[0])
        params = sum(p.numel() for p in getattr(model, info.name).parameters())
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

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-7, capturable=False):
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
    """Steps taken inside leave no trace: weights and optimizer state come back, in place.

    In place, because a CUDA graph captured inside keeps the addresses of the tensors it uses. State
    the optimizer creates inside (its first step) goes back to zero, which is what a fresh state means.
    """
    weights = [p.detach().clone() for p in model.parameters()]
    saved = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
             for p, state in optimizer.state.items()}
    yield
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(w)
        for p, state in optimizer.state.items():
            before = saved.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value):
                    value.copy_(before[key]) if key in before else value.zero_()
                else:
                    state[key] = before.get(key, 0)


def make_optimizer(model: nn.Module, lr: float, adam: str = "keras", capturable: bool = False):
    """'keras': Keras's Adam formula (the fair protocol); 'native': torch.optim.Adam defaults."""
    if adam == "keras":
        return KerasAdam(model.parameters(), lr=lr, capturable=capturable)
    if adam == "native":
        return torch.optim.Adam(model.parameters(), lr=lr, capturable=capturable)
    raise ValueError(f"unknown adam {adam!r}; use keras or native")


class Trainer:
    """Trains on data held as tensors; batches are index lists so both twins see the same ones.

    variant 'idiomatic': what a typical user writes (NCHW, eager loop).
    variant 'tuned': channels-last memory format (oneDNN's native layout on CPU) and max-pool before ReLU;
    on CUDA also the whole step (gather, forward, backward, Adam) captured once in a CUDA graph.
    """

    def __init__(self, model, spec, lr=1e-3, adam="keras", variant="idiomatic", device="cpu", seed=0, metrics=()):
        # metrics: accepted for symmetry with Keras's compile(); a plain PyTorch loop computes none.
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.variant = variant
        self.channels_last = variant == "tuned"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.model.set_plan(pool_before_relu=True)  # same function, cheaper order
        # The graph path needs Keras-Adam's capturable step count; torch.optim.Adam stays eager.
        self.use_graph = variant == "tuned" and self.device.type == "cuda" and adam == "keras"
        self.optimizer = make_optimizer(self.model, lr, adam, capturable=self.use_graph)
        self.generator = torch.Generator().manual_seed(seed)
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
        loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
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

    def run(self, epochs, batch_size, order_for_epoch, hooks, validation=None) -> None:
        run_epochs(self, epochs, batch_size, order_for_epoch, hooks, validation)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict(self.model, x)


def make_predictor(model, variant: str = "idiomatic"):
    """x (N, H, W, C) -> logits. idiomatic: eval() + no_grad; tuned: channels-last, pool before ReLU,
    inference_mode."""
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


def make_trainer(model, spec, **kwargs) -> Trainer:
    return Trainer(model, spec, **kwargs)


def environment() -> dict:
    return {
        "framework": "torch", "version": version(),
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
