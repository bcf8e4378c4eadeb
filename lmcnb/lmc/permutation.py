"""Permutation specs as data: which permutation acts on each axis of every tensor of a model.

Reordering a layer's hidden units, and the next layer's inputs alike, leaves the function of the
network unchanged. A `PermutationSpec` names, for every tensor of a state dict, the permutation
that acts on each of its axes (or None), and lists the tensors that no permutation touches as
fixed. `permutation_spec(model)` gives the spec of every model the book trains and derives one
for a plain `nn.Sequential`; `make_spec` builds and checks a spec written by hand.

Convention: a permutation p of n units is a LongTensor with π(W)[i] = W[p[i]] along each axis
p acts on: unit p[i] of B moves to position i, where A's unit i sits.
"""
from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from ..train.evaluation import logits_of

State = Mapping[str, torch.Tensor]
Perms = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Axis:
    """The permutations acting on one axis of a tensor: one per equal chunk along it (Q, K and V
    packed in one matrix: three chunks), each unit a run of `block` consecutive entries (the
    Linear after a Flatten of C×H×W maps: C units of H·W entries)."""

    perms: tuple[str, ...]
    block: int = 1


@dataclass(frozen=True)
class Site:
    """Where a permutation's units show in a forward pass (for activation matching): the output,
    or the input, of module `module` (the first tensor of a tuple), units along axis `dim`, chunk
    `chunk` of `chunks` along it. With `proj` = (weight, bias) tensor names, the features are
    x·W[chunk]ᵀ + b[chunk]: the Q, K, V projections `nn.MultiheadAttention` computes inside."""

    module: str
    where: str = "output"
    dim: int = -1
    chunk: int = 0
    chunks: int = 1
    proj: tuple[str, str] | None = None


@dataclass(frozen=True)
class PermutationSpec:
    """The permutations of one architecture, as data (build with `make_spec`, which checks it).

    `axes`: tensor → one `Axis` or None per axis; `fixed`: tensors no permutation acts on;
    `sizes`: permutation → number of units; `groups`: permutation → number of groups its units
    never leave (attention heads; 1 when absent); `shapes`: tensor → shape; `learned`: the
    tensors that are parameters (the rest are buffers: permuted, never matched); `tied`: tensor →
    the tensor it shares storage with (GPT-2's lm_head and wte); `sites`: permutation → where its
    units show in a forward pass.
    """

    axes: dict[str, tuple[Axis | None, ...]]
    fixed: frozenset[str]
    sizes: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    learned: frozenset[str]
    groups: dict[str, int] = field(default_factory=dict)
    tied: dict[str, str] = field(default_factory=dict)
    sites: dict[str, tuple[Site, ...]] = field(default_factory=dict)

    def check(self, state: State, name: str = "the state dict") -> None:
        """Raise a ValueError naming the first tensor of `state` the spec does not describe."""
        missing = [k for k in state if k not in self.shapes]
        if missing:
            raise ValueError(f"{name} has tensor {missing[0]!r}, which the permutation spec "
                             "neither permutes nor fixes (a different architecture?)")
        absent = [k for k in self.shapes if k not in state]
        if absent:
            raise ValueError(f"{name} lacks tensor {absent[0]!r}, which the permutation spec "
                             "names (a different architecture?)")
        for key, shape in self.shapes.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(f"tensor {key!r} of {name} has shape {tuple(state[key].shape)}; "
                                 f"the permutation spec's model has {shape}")

    def table(self) -> pd.DataFrame:
        """One row per tensor: its shape, the permutation on each axis ('—': none), learned."""
        def show(axis: Axis | None) -> str:
            if axis is None:
                return "—"
            text = "|".join(axis.perms)
            return f"{text} (blocks of {axis.block})" if axis.block > 1 else text
        return pd.DataFrame([{"tensor": key, "shape": shape,
                              "axes": " × ".join(show(a) for a in self.axes.get(key, ()))
                              or "fixed", "learned": key in self.learned}
                             for key, shape in self.shapes.items()])


# -- building and checking a spec --------------------------------------------------------------
HOW_TO = ("Write the spec by hand: lmcnb.lmc.permutation.make_spec(model, axes={'fc1.weight': "
          "('h1', None), 'fc1.bias': ('h1',), 'fc2.weight': (None, 'h1'), ...}, fixed=["
          "'fc2.bias', ...]) names, for every tensor of model.state_dict(), the permutation "
          "acting on each axis (None: no permutation; Axis(('q', 'q', 'v')) for packed chunks, "
          "Axis(('c',), block=h*w) for the Linear after a Flatten), and pass it as spec=.")


def tied_tensors(model: nn.Module) -> dict[str, str]:
    """State-dict tensors that share storage with an earlier one (tied weights): alias → first."""
    first: dict[tuple, str] = {}
    tied = {}
    for key, t in model.state_dict(keep_vars=True).items():
        where = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                 tuple(t.stride()))
        if where in first and t.numel():
            tied[key] = first[where]
        else:
            first.setdefault(where, key)
    return tied


def make_spec(model: nn.Module, axes: Mapping[str, tuple[Axis | str | None, ...]],
              fixed: Iterable[str] = (), groups: Mapping[str, int] | None = None,
              sites: Mapping[str, Iterable[Site]] | None = None) -> PermutationSpec:
    """The spec of `model`, checked: every tensor of its state dict is in `axes` or in `fixed`,
    each axis's size is chunks × units × block, one size per permutation, groups divide it.

    A permutation written as a string stands for `Axis((name,))`.
    """
    state = model.state_dict()
    norm = {key: tuple(Axis((a,)) if isinstance(a, str) else a for a in entry)
            for key, entry in axes.items()}
    fixed = frozenset(fixed)
    for key in (*norm, *fixed):
        if key not in state:
            raise ValueError(f"the permutation spec names tensor {key!r}, which "
                             f"{type(model).__name__} does not have")
    both = sorted(set(norm) & fixed)
    if both:
        raise ValueError(f"tensor {both[0]!r} is both permuted and fixed in the spec")
    uncovered = [k for k in state if k not in norm and k not in fixed]
    if uncovered:
        raise ValueError(f"tensor {uncovered[0]!r} of {type(model).__name__} is neither permuted "
                         "nor fixed by the spec: list it in axes or in fixed")
    sizes: dict[str, int] = {}
    where: dict[str, str] = {}
    for key, entry in norm.items():
        shape = tuple(state[key].shape)
        if len(entry) != len(shape):
            raise ValueError(f"tensor {key!r} has {len(shape)} axes {shape}; the spec gives "
                             f"{len(entry)}")
        for dim, axis in enumerate(entry):
            if axis is None:
                continue
            if not axis.perms or axis.block < 1:
                raise ValueError(f"axis {dim} of {key!r}: an Axis names at least one "
                                 "permutation and a block of at least 1")
            units, rest = divmod(shape[dim], len(axis.perms) * axis.block)
            if rest or not units:
                raise ValueError(f"axis {dim} of {key!r} has {shape[dim]} entries, not a "
                                 f"multiple of {len(axis.perms)} chunk(s) × block {axis.block}")
            for p in axis.perms:
                if sizes.setdefault(p, units) != units:
                    raise ValueError(f"permutation {p!r} has {sizes[p]} units at {where[p]} "
                                     f"but axis {dim} of {key!r} needs {units}")
                where.setdefault(p, f"{key!r}")
    groups = dict(groups or {})
    for p, g in groups.items():
        if p not in sizes or sizes[p] % g:
            raise ValueError(f"permutation {p!r} ({sizes.get(p)} units) cannot be split into "
                             f"{g} groups")
    tied = tied_tensors(model)
    for alias, original in tied.items():
        if norm.get(alias) != norm.get(original):
            raise ValueError(f"tensors {alias!r} and {original!r} share storage, but the spec "
                             "permutes them differently")
    sites = {p: tuple(s) for p, s in (sites or {}).items()}
    names = dict(model.named_modules())
    for p, ss in sites.items():
        for s in ss:
            if p not in sizes or s.module not in names:
                raise ValueError(f"site {s} of permutation {p!r}: no such "
                                 f"{'permutation' if p not in sizes else 'module'}")
    learned = frozenset(k for k, _ in model.named_parameters(remove_duplicate=False)) & set(state)
    return PermutationSpec(norm, fixed, sizes, {k: tuple(t.shape) for k, t in state.items()},
                           learned, groups, tied, sites)


# -- permuting -------------------------------------------------------------------------------
def axis_index(axis: Axis, perms: Perms, sizes: Mapping[str, int]) -> torch.Tensor:
    """The gather index of a whole axis: chunk c, unit i, offset s ↦ c·n·b + p_c[i]·b + s."""
    parts, offset = [], 0
    for name in axis.perms:
        units = perms[name].cpu()
        parts.append((units[:, None] * axis.block + torch.arange(axis.block)).flatten() + offset)
        offset += sizes[name] * axis.block
    return torch.cat(parts)


def check_perms(spec: PermutationSpec, perms: Perms) -> None:
    """Raise a ValueError unless `perms` holds one permutation of the right size for each name,
    keeping the units of a grouped permutation (a head's) inside their group."""
    for name, n in spec.sizes.items():
        if name not in perms:
            raise ValueError(f"no permutation given for {name!r}")
        p = torch.as_tensor(perms[name]).cpu()
        if p.shape != (n,) or not torch.equal(p.sort().values, torch.arange(n)):
            raise ValueError(f"perms[{name!r}] is not a permutation of {n} units")
        g = spec.groups.get(name, 1)
        if not torch.equal(p.view(g, -1) // (n // g), torch.arange(g)[:, None].expand(g, n // g)):
            raise ValueError(f"perms[{name!r}] moves units across its {g} groups (heads)")


def apply_permutation(spec: PermutationSpec, state: State, perms: Perms) -> dict[str, torch.Tensor]:
    """π(θ): a new state dict with every permuted axis gathered, π(W)[…, i, …] = W[…, p[i], …]
    (parameters and buffers alike); fixed tensors are copied as they are."""
    spec.check(state)
    check_perms(spec, perms)
    perms = {k: torch.as_tensor(v).long() for k, v in perms.items()}
    out = {}
    for key, t in state.items():
        for dim, axis in enumerate(spec.axes.get(key, ())):
            if axis is not None:
                t = t.index_select(dim, axis_index(axis, perms, spec.sizes).to(t.device))
        out[key] = t.clone() if t is state[key] else t
    return out


def identity_permutations(spec: PermutationSpec) -> dict[str, torch.Tensor]:
    """The identity for each permutation: π(θ) = θ."""
    return {name: torch.arange(n) for name, n in spec.sizes.items()}


def random_permutations(spec: PermutationSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random permutation for each name (within each group of a grouped one), from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    perms = {}
    for name, n in spec.sizes.items():
        g = spec.groups.get(name, 1)
        size = n // g
        perms[name] = torch.cat([torch.randperm(size, generator=gen) + i * size
                                 for i in range(g)])
    return perms


@torch.no_grad()
def invariance_gap(model: nn.Module, spec: PermutationSpec, x: torch.Tensor,
                   perms: Perms | None = None, seed: int = 0) -> float:
    """max |f(π(θ); x) − f(θ; x)| over the logits, in eval mode: 0 up to float round-off when the
    spec is right (`perms`: random ones from `seed` when not given). `model` is left as it is."""
    permuted = copy.deepcopy(model).eval()
    perms = random_permutations(spec, seed) if perms is None else perms
    permuted.load_state_dict(apply_permutation(spec, model.state_dict(), perms))
    was_training = model.training
    model.eval()
    try:
        return float((logits_of(permuted, x) - logits_of(model, x)).abs().max())
    finally:
        model.train(was_training)


# -- chains: nn.Sequential and the book's CNNs and MLP -----------------------------------------
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.CELU,
                nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish,
                nn.Hardsigmoid, nn.Identity)
_PASS = _ELEMENTWISE + (nn.modules.dropout._DropoutNd, nn.modules.pooling._MaxPoolNd,
                        nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
                        nn.modules.pooling._AdaptiveMaxPoolNd)
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)

# A chain model runs its Sequentials one after the other: class → their attribute names.
CHAINS = {
    "torch.nn.modules.container.Sequential": ("",),
    "lmcnb.models.mlp.MLP": ("layers",),
    "lmcnb.models.cnn.LeNet5": ("features", "classifier"),
    "lmcnb.models.cnn.ReducedVGG": ("features", "classifier"),
    "lmcnb.models.cnn.AlexNet": ("features", "classifier"),
}


def _class(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def is_chain(model: nn.Module) -> bool:
    """Whether `model` runs Sequentials one after the other (an nn.Sequential, MLP, the CNNs)."""
    return _class(model) in CHAINS


def chain_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of a chain model in forward order, nested Sequentials unrolled."""
    if not is_chain(model):
        _no_spec(model, None)

    def walk(prefix: str, seq: nn.Module) -> Iterable[tuple[str, nn.Module]]:
        for name, m in seq._modules.items():  # not named_children: it skips a module used twice
            full = f"{prefix}.{name}" if prefix else name
            yield from walk(full, m) if type(m) is nn.Sequential else [(full, m)]

    return [item for attr in CHAINS[_class(model)]
            for item in walk(attr, model.get_submodule(attr))]


def _chain_spec(model: nn.Module) -> PermutationSpec:
    """One permutation per hidden Linear/Conv (named after it) on its output channels, followed
    by its norm and the next layer's inputs (by blocks of H·W after a Flatten); the input and the
    last layer's outputs are fixed. Activations, dropout and pooling act on each channel alike.
    A permutation's site is the output of its layer's norm and activation."""
    chain = chain_modules(model)
    uses = Counter(id(m) for _, m in chain)
    for name, m in chain:
        if uses[id(m)] > 1 and not isinstance(m, _PASS):
            raise ValueError(f"module {name!r} appears twice in the chain: shared weights cannot "
                             "follow two permutations")
    layers = [i for i, (_, m) in enumerate(chain) if isinstance(m, WEIGHT_LAYERS)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layer to permute")
    state = model.state_dict()
    axes: dict[str, tuple[Axis | None, ...]] = {}
    fixed: list[str] = []
    sites: dict[str, tuple[Site, ...]] = {}
    current, width, spatial, flat = None, 0, False, False

    def along(n: int) -> Axis | None:  # the current units on an axis of n entries
        if current is None:
            return None
        if n % width:
            raise ValueError(f"{n} features cannot follow the {width} units of {current!r}")
        return Axis((current,), n // width)

    def assign(prefix: str, names: Iterable[str], axis: Axis | None, rest: int = 0) -> None:
        for key in (f"{prefix}.{t}" for t in names):
            if key in state:
                if axis is None:
                    fixed.append(key)
                else:
                    axes[key] = (axis,) + (None,) * rest

    for i, (name, m) in enumerate(chain):
        if isinstance(m, WEIGHT_LAYERS):
            linear = isinstance(m, nn.Linear)
            if (linear and spatial and not flat) or (not linear and flat):
                raise ValueError(f"{name!r} ({type(m).__name__}) follows "
                                 f"{'a Flatten' if flat else 'a conv without a Flatten'}: "
                                 "no chain spec for that")
            if not linear and m.groups != 1:
                raise ValueError(f"{name!r} is a grouped convolution: no chain spec for that")
            n_in, n_out = ((m.in_features, m.out_features) if linear
                           else (m.in_channels, m.out_channels))
            out = Axis((name,)) if i != layers[-1] else None
            axes[f"{name}.weight"] = (out, along(n_in), *[None] * (m.weight.dim() - 2))
            assign(name, ["bias"], out)
            current, width, spatial, flat = name if out else None, n_out, not linear, False
            if out:
                run = i + 1
                while run < len(chain) and isinstance(chain[run][1], NORM_LAYERS + _ELEMENTWISE):
                    run += 1
                site = next(j for j in range(run - 1, i - 1, -1) if uses[id(chain[j][1])] == 1)
                sites[name] = (Site(chain[site][0], dim=1),)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            assign(name, ["weight", "bias", "running_mean", "running_var"],
                   along(m.num_features))
            assign(name, ["num_batches_tracked"], None)
        elif isinstance(m, nn.LayerNorm):
            shape = tuple(m.normalized_shape)
            if len(shape) > 1 and not (spatial and not flat and shape[0] == width):
                raise ValueError(f"LayerNorm {name!r} over {shape}: no chain spec for that")
            assign(name, ["weight", "bias"], along(shape[0]), rest=len(shape) - 1)
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"Flatten {name!r} must flatten dims 1…-1 for a chain spec")
            flat = True
        elif not isinstance(m, _PASS):
            _no_spec(model, (name, m))
    return make_spec(model, axes, fixed, sites=sites)


# -- transformers ------------------------------------------------------------------------------
def _transformer_lm_spec(model: nn.Module) -> PermutationSpec:
    """The PTB `TransformerLM` (`nn.TransformerEncoder`): per layer, a permutation within each
    head shared by Q and K, one within each head shared by V and the output projection's inputs,
    and the FFN's hidden units. The residual stream stays fixed: the sinusoidal position table it
    adds is a function of the config, not a tensor of the state dict, so permuting the embedding
    without it would change the function (so embedding, LayerNorms, output rows and the decoder
    are fixed)."""
    heads = model.cfg.n_head
    axes: dict[str, tuple] = {}
    groups, sites = {}, {}
    for i in range(model.cfg.n_layer):
        layer = f"encoder.layers.{i}"
        qk, v, ffn = f"layer{i}.qk", f"layer{i}.v", f"layer{i}.ffn"
        qkv = Axis((qk, qk, v))
        attn = f"{layer}.self_attn"
        axes |= {f"{attn}.in_proj_weight": (qkv, None), f"{attn}.in_proj_bias": (qkv,),
                 f"{attn}.out_proj.weight": (None, v),
                 f"{layer}.linear1.weight": (ffn, None), f"{layer}.linear1.bias": (ffn,),
                 f"{layer}.linear2.weight": (None, ffn)}
        groups[qk] = groups[v] = heads
        proj = (f"{attn}.in_proj_weight", f"{attn}.in_proj_bias")
        sites[qk] = tuple(Site(attn, "input", chunk=c, chunks=3, proj=proj) for c in (0, 1))
        sites[v] = (Site(attn, "input", chunk=2, chunks=3, proj=proj),)
        sites[ffn] = (Site(f"{layer}.linear2", "input"),)
    fixed = [k for k in model.state_dict() if k not in axes]
    return make_spec(model, axes, fixed, groups, sites)


def _gpt2_spec(model: nn.Module) -> PermutationSpec:
    """`transformers`' GPT2LMHeadModel: one residual permutation shared by wte and wpe columns,
    every LayerNorm, the attention and MLP output projections' outputs, the next inputs, ln_f and
    lm_head (tied to wte); per layer a within-head permutation shared by Q and K, one shared by V
    and the attention output's inputs, the MLP's hidden units. Conv1D weights are (in, out)."""
    res = "residual"
    axes: dict[str, tuple] = {"transformer.wte.weight": (None, res),
                              "transformer.wpe.weight": (None, res),
                              "transformer.ln_f.weight": (res,), "transformer.ln_f.bias": (res,),
                              "lm_head.weight": (None, res)}
    groups, sites = {}, {res: [Site("transformer.h.0", "input")]}
    for i in range(model.config.n_layer):
        h = f"transformer.h.{i}"
        qk, v, ffn = f"h{i}.qk", f"h{i}.v", f"h{i}.ffn"
        qkv = Axis((qk, qk, v))
        axes |= {f"{h}.ln_1.weight": (res,), f"{h}.ln_1.bias": (res,),
                 f"{h}.attn.c_attn.weight": (res, qkv), f"{h}.attn.c_attn.bias": (qkv,),
                 f"{h}.attn.c_proj.weight": (v, res), f"{h}.attn.c_proj.bias": (res,),
                 f"{h}.ln_2.weight": (res,), f"{h}.ln_2.bias": (res,),
                 f"{h}.mlp.c_fc.weight": (res, ffn), f"{h}.mlp.c_fc.bias": (ffn,),
                 f"{h}.mlp.c_proj.weight": (ffn, res), f"{h}.mlp.c_proj.bias": (res,)}
        groups[qk] = groups[v] = model.config.n_head
        sites[qk] = tuple(Site(f"{h}.attn.c_attn", chunk=c, chunks=3) for c in (0, 1))
        sites[v] = (Site(f"{h}.attn.c_proj", "input"),)
        sites[ffn] = (Site(f"{h}.mlp.c_proj", "input"),)
        sites[res].append(Site(h))
    return make_spec(model, axes, groups=groups, sites=sites)


def _vit_spec(model: nn.Module) -> PermutationSpec:
    """`transformers`' ViTForImageClassification: one residual permutation shared by the patch
    embedding's output channels, the CLS token, the position embeddings, every LayerNorm, the
    attention and MLP output rows, the next inputs and the classifier's inputs; per layer a
    within-head permutation shared by Q and K, one shared by V and the attention output's
    inputs, the MLP's hidden units. A layer's six Linears are found in registration order (Q, K,
    V, attention output, MLP in, MLP out), which transformers 4.x and 5.x share."""
    res, emb = "residual", "vit.embeddings"
    axes: dict[str, tuple] = {f"{emb}.cls_token": (None, None, res),
                              f"{emb}.position_embeddings": (None, None, res),
                              f"{emb}.patch_embeddings.projection.weight": (res, None, None, None),
                              f"{emb}.patch_embeddings.projection.bias": (res,),
                              "vit.layernorm.weight": (res,), "vit.layernorm.bias": (res,)}
    fixed = []
    if isinstance(model.classifier, nn.Linear):
        axes["classifier.weight"] = (None, res)
        fixed.append("classifier.bias")
    layers = [(n, m) for n, m in model.named_modules() if type(m).__name__ == "ViTLayer"]
    groups, sites = {}, {res: [Site(layers[0][0], "input")] if layers else []}
    for i, (name, layer) in enumerate(layers):
        linears = [f"{name}.{n}" for n, m in layer.named_modules() if isinstance(m, nn.Linear)]
        if len(linears) != 6:
            raise ValueError(f"ViT layer {name!r} has {len(linears)} Linears, not Q, K, V, "
                             "output, MLP in and out")
        q, k, v, o, fc1, fc2 = linears
        qk, vo, ffn = f"layer{i}.qk", f"layer{i}.v", f"layer{i}.ffn"
        for lin, rows, cols in ((q, qk, res), (k, qk, res), (v, vo, res), (o, res, vo),
                                (fc1, ffn, res), (fc2, res, ffn)):
            axes |= {f"{lin}.weight": (rows, cols), f"{lin}.bias": (rows,)}
        for norm in ("layernorm_before", "layernorm_after"):
            axes |= {f"{name}.{norm}.weight": (res,), f"{name}.{norm}.bias": (res,)}
        groups[qk] = groups[vo] = model.config.num_attention_heads
        sites[qk] = (Site(q), Site(k))
        sites[vo] = (Site(o, "input"),)
        sites[ffn] = (Site(fc2, "input"),)
        sites[res].append(Site(name))
    return make_spec(model, axes, fixed, groups, sites)


# Models with a spec of their own, by class (`_class`): exact classes, as a subclass may have
# another forward.
BUILDERS: dict[str, Callable[[nn.Module], PermutationSpec]] = {
    **dict.fromkeys(CHAINS, _chain_spec),
    "lmcnb.models.transformer_lm.TransformerLM": _transformer_lm_spec,
    "transformers.models.gpt2.modeling_gpt2.GPT2LMHeadModel": _gpt2_spec,
    "transformers.models.vit.modeling_vit.ViTForImageClassification": _vit_spec,
}


def _no_spec(model: nn.Module, module: tuple[str, nn.Module] | None) -> None:
    known = ", ".join(sorted({k.rpartition(".")[2] for k in BUILDERS}))
    where = (f"layer {module[0]!r} ({type(module[1]).__name__})" if module else
             f"the model itself ({type(model).__name__}: its forward is its own, and the order in "
             "which it runs its modules cannot be seen from outside)")
    raise ValueError(f"no permutation spec for {type(model).__name__}: lmcnb has specs for "
                     f"{known}, and derives one for an nn.Sequential of Linear, Conv, BatchNorm, "
                     "LayerNorm, Flatten, activation, dropout and pooling layers. The first "
                     f"module it cannot place: {where}. {HOW_TO}")


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The checked spec of `model`: a book model's own, or one derived for an `nn.Sequential`;
    for any other model a ValueError naming the first module it cannot place."""
    builder = BUILDERS.get(_class(model))
    if builder is None:
        _no_spec(model, None)
    return builder(model)
