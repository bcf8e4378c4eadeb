"""Aligning network B to network A by permuting B's hidden units: weight matching (Git Re-Basin)
and activation matching (Git Re-Basin, REPAIR), so that θ_A and π(θ_B) can be interpolated.

Both take the permutations of a `PermutationSpec` and return an `Alignment`. Only learned
parameters are matched; buffers (BatchNorm running statistics) are permuted with their channels
and are best re-estimated after interpolating (`lmcnb.lmc.repair.reset_batchnorm`). The float64
arithmetic runs on `device` (the CPU by default; "cuda" is faster for big models; MPS has no
float64); the assignments are `scipy.optimize.linear_sum_assignment` on the CPU.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..core.checks import at_least
from ..core.device import task_threads
from ..data.tensors import TensorData
from .permutation import (
    PermutationSpec,
    Site,
    apply_permutation,
    axis_index,
    identity_permutations,
    permutation_spec,
)
from .repair import check_data

EPS_CORRELATION = 1e-4  # REPAIR's: corr = cov / (σ_A σ_B + 1e-4)


@dataclass(frozen=True)
class Alignment:
    """The permutations that align B to A (name → LongTensor, π(W)[i] = W[p[i]]), the matched
    objective, π(θ_B) as a state dict (interpolate it with θ_A), and the sweeps run (weight
    matching; 0 for activation matching)."""

    perms: dict[str, torch.Tensor]
    objective: float
    permuted_b: dict[str, torch.Tensor]
    sweeps: int


def _checked_spec(model_a: nn.Module, model_b: nn.Module,
                  spec: PermutationSpec | None) -> PermutationSpec:
    """`spec` (or model A's), checked against both models' state dicts."""
    spec = permutation_spec(model_a) if spec is None else spec
    spec.check(model_a.state_dict(), "model A")
    spec.check(model_b.state_dict(), "model B")
    return spec


def _assign(cost: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """Per group g, the assignment p maximizing Σ_i cost[g, i, p[i]], as one permutation of all
    units. With `start`, cost's columns are reordered so that `start` lies on the diagonal
    before solving (the same optimum: scipy's solver is several times faster when the optimum
    is near the diagonal, as it is once a descent settles)."""
    g, n, _ = cost.shape
    local = (torch.arange(g * n) if start is None else start).view(g, n) % n
    cols = cost.gather(2, local.view(g, 1, n).expand(g, n, n).to(cost.device)).cpu().numpy()
    found = np.stack([linear_sum_assignment(c, maximize=True)[1] for c in cols])
    return (local.gather(1, torch.from_numpy(found)) + torch.arange(g)[:, None] * n).flatten()


def _matched(cost: torch.Tensor, perm: torch.Tensor) -> float:
    """Σ_g Σ_i cost[g, i, p[i]] for a permutation p of all G·n units (grouped)."""
    g, n, _ = cost.shape
    return float(cost.gather(2, (perm.view(g, n, 1) % n).to(cost.device)).sum())


# -- weight matching ---------------------------------------------------------------------------
def _units_first(t: torch.Tensor, dim: int, start: int, n: int, block: int,
                 groups: int) -> torch.Tensor:
    """Entries start … start + n·block of `t` along `dim` as (groups, n / groups, rest): unit i
    of the permutation (its `block` entries and every other axis) is a row."""
    t = t.narrow(dim, start, n * block).unflatten(dim, (n, block)).movedim(dim, 0)
    return t.reshape(groups, n // groups, -1)


def _gathered(t: torch.Tensor, index: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """`t` with index[d] gathered along each axis d."""
    for d, ix in index.items():
        t = t.index_select(d, ix)
    return t


class _Use:
    """One chunk of one axis of a learned tensor on which permutation p acts, and its cached
    term of p's cost matrix, Σ_rest W_A[i, rest]·π'(W_B)[j, rest] (π': the tensor's other
    permuted axes as they were when the term was computed)."""

    def __init__(self, key: str, dim: int, chunk: int, spec: PermutationSpec,
                 state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor]):
        axes = spec.axes[key]
        p = axes[dim].perms[chunk]
        self.key, self.dim = key, dim
        self.cut = (chunk * spec.sizes[p] * axes[dim].block, spec.sizes[p], axes[dim].block,
                    spec.groups.get(p, 1))
        self.others = {d: a for d, a in enumerate(axes) if a is not None and d != dim}
        self.a, self.b = state_a[key], state_b[key]
        self.wa = self.view(self.a)
        self.index: dict[int, torch.Tensor] = {}
        self.cost: torch.Tensor | None = None
        self.version = 0

    def view(self, t: torch.Tensor) -> torch.Tensor:
        return _units_first(t, self.dim, *self.cut)

    def b_rows(self, index: Mapping[int, torch.Tensor], dim: int | None = None,
               select: torch.Tensor | None = None) -> torch.Tensor:
        """π'(W_B) as rows of units, `index` gathered on the other axes; with `dim`, only
        the entries `select` of axis `dim` (gathered from W_B by index[dim][select])."""
        if dim is None:
            return self.view(_gathered(self.b, index))
        return self.view(_gathered(self.b.index_select(dim, index[dim][select]),
                                   {d: ix for d, ix in index.items() if d != dim}))

    def update(self, index: dict[int, torch.Tensor]) -> None:
        """Bring the cached term to the other axes' current `index`: unchanged; updated through
        the entries S of the one axis whose index changed, if S is at most ¾ of it,
        ΔC = W_A[:, S]·(π'_new(W_B)[:, S] − π'_old(W_B)[:, S])ᵀ; or recomputed."""
        if self.cost is not None:
            changed = [d for d in index if not torch.equal(index[d], self.index[d])]
            if not changed:
                return
            d = changed[0]
            where = torch.nonzero(index[d] != self.index[d]).flatten()
            if len(changed) == 1 and 4 * len(where) <= 3 * len(index[d]):
                wa = self.view(self.a.index_select(d, where))
                delta = self.b_rows(index, d, where) - self.b_rows(self.index, d, where)
                self.cost += wa @ delta.transpose(1, 2)
                self.index, self.version = index, self.version + 1
                return
        self.cost = self.wa @ self.b_rows(index).transpose(1, 2)
        self.index, self.version = index, self.version + 1


def weight_matching(model_a: nn.Module, model_b: nn.Module, *, spec: PermutationSpec | None = None,
                    seed: int = 0, max_sweeps: int = 100,
                    device: torch.device | str = "cpu") -> Alignment:
    """Git Re-Basin's weight matching: the permutations π maximizing Σ_W ⟨W_A, π(W_B)⟩ over the
    learned tensors a permutation acts on (each tied tensor once; the objective reported), by
    coordinate descent from the identity.

    A sweep visits the permutations in a random order (numpy's generator from `seed`); for each
    p it solves linear_sum_assignment(C_p, maximize=True) with
    C_p[i, j] = Σ over the axes p acts on of Σ_rest W_A[i, rest]·π(W_B)[j, rest] (π: every other
    permutation as it stands; within each group for a grouped p). The descent stops after a sweep
    without gain, or after `max_sweeps`. Each term of C_p is cached in float64 on `device` and
    updated only where another permutation moved units; a p whose C_p did not change since its
    last assignment is not solved again (the same assignment would come back).

    The descent can stop in a local optimum: for a tiny two-layer GPT-2 (width 16) and a
    permuted copy of itself, seeds 0-9 recover the permutation 5 times (activation matching,
    every time).
    """
    at_least("max_sweeps", max_sweeps, 1)
    spec = _checked_spec(model_a, model_b, spec)
    keys = [k for k in spec.axes if k in spec.learned and k not in spec.tied]
    state_a, state_b = ({k: s[k].to(device, torch.float64) for k in keys}
                        for s in (model_a.state_dict(), model_b.state_dict()))
    uses: dict[str, list[_Use]] = {p: [] for p in spec.sizes}
    for key in keys:
        for dim, axis in enumerate(spec.axes[key]):
            for chunk, p in enumerate(axis.perms if axis else ()):
                uses[p].append(_Use(key, dim, chunk, spec, state_a, state_b))
    perms = identity_permutations(spec)
    index = {key: {d: axis_index(a, perms, spec.sizes).to(device)
                   for d, a in enumerate(spec.axes[key]) if a is not None} for key in keys}
    solved: dict[str, tuple[int, ...]] = {}
    rng = np.random.default_rng(seed)
    names = list(spec.sizes)
    sweeps = 0
    with torch.no_grad(), task_threads():
        while sweeps < max_sweeps:
            sweeps += 1
            progress = False
            for p in rng.permutation(names):
                n, g = spec.sizes[p], spec.groups.get(p, 1)
                for use in uses[p]:
                    use.update({d: index[use.key][d] for d in use.others})
                versions = tuple(u.version for u in uses[p])
                if solved.get(p) == versions:
                    continue
                solved[p] = versions
                cost = sum((u.cost for u in uses[p]),
                           torch.zeros(g, n // g, n // g, dtype=torch.float64, device=device))
                new = _assign(cost, perms[p])
                progress |= _matched(cost, new) > _matched(cost, perms[p]) + 1e-12
                perms[p] = new
                for key in {u.key for u in uses[p]}:
                    for d, a in enumerate(spec.axes[key]):
                        if a is not None and p in a.perms:
                            index[key][d] = axis_index(a, perms, spec.sizes).to(device)
            if not progress:
                break
        objective = sum(float(torch.vdot(state_a[k].flatten(),
                                         _gathered(state_b[k], index[k]).flatten()))
                        for k in keys)
    return Alignment(perms, objective, apply_permutation(spec, model_b.state_dict(), perms),
                     sweeps)


# -- activation matching -----------------------------------------------------------------------
class _Recorder:
    """Forward hooks that keep, for each site of each permutation, the last batch's features as
    (rows, units) in float64 on `device`."""

    def __init__(self, model: nn.Module, sites: Mapping[str, tuple[Site, ...]],
                 device: torch.device | str):
        self.features: dict[tuple[str, int], torch.Tensor] = {}
        self.handles = []
        for p, ss in sites.items():
            for i, site in enumerate(ss):
                module = model.get_submodule(site.module)
                hook = self._hook((p, i), site, model, device)
                self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True)
                                    if site.where == "input" else
                                    module.register_forward_hook(hook, with_kwargs=True))

    def _hook(self, key: tuple[str, int], site: Site, model: nn.Module,
              device: torch.device | str):
        def record(module: nn.Module, args: tuple, kwargs: dict, *output) -> None:
            values = output[0] if output else (*args, *kwargs.values())
            x = _first_tensor(values)
            if site.proj:
                x = F.linear(x, model.get_parameter(site.proj[0]),
                             model.get_parameter(site.proj[1]))
            size = x.shape[site.dim] // site.chunks
            x = x.narrow(site.dim, site.chunk * size, size).movedim(site.dim, -1)
            self.features[key] = x.reshape(-1, size).to(device, torch.float64)
        return record

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _first_tensor(values) -> torch.Tensor:
    """The first tensor of a module's output or arguments (a tensor, tuple or ModelOutput)."""
    if isinstance(values, torch.Tensor):
        return values
    items = values.values() if isinstance(values, Mapping) else values
    return next(v for v in items if isinstance(v, torch.Tensor))


class _Moments:
    """Running sums of a site's features of A and B over rows: Σa, Σb, Σa², Σb², and the
    within-group cross products Σ aᵢbⱼ."""

    def __init__(self, groups: int):
        self.groups, self.rows = groups, 0
        self.sums: list[torch.Tensor] | None = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        g = self.groups
        cross = torch.einsum("rgi,rgj->gij", a.view(len(a), g, -1), b.view(len(b), g, -1))
        terms = [a.sum(0), b.sum(0), a.square().sum(0), b.square().sum(0), cross]
        self.sums = terms if self.sums is None else [s + t for s, t in zip(self.sums, terms)]
        self.rows += len(a)

    def correlation(self) -> torch.Tensor:
        """Pearson correlation (groups, n, n): (E[aᵢbⱼ] − μ_aᵢμ_bⱼ) / (σ_aᵢσ_bⱼ + 1e-4)."""
        g = self.groups
        sa, sb, qa, qb, cross = (s / self.rows for s in self.sums)
        std_a = (qa - sa.square()).clamp_min(0).sqrt().view(g, -1, 1)
        std_b = (qb - sb.square()).clamp_min(0).sqrt().view(g, 1, -1)
        cov = cross - sa.view(g, -1, 1) * sb.view(g, 1, -1)
        return cov / (std_a * std_b + EPS_CORRELATION)


def activation_matching(model_a: nn.Module, model_b: nn.Module, data: TensorData, *,
                        spec: PermutationSpec | None = None, batch_size: int = 250,
                        device: torch.device | str = "cpu") -> Alignment:
    """Activation matching: for each permutation p, the assignment maximizing Σ_i corr[i, p[i]],
    corr = Σ over p's sites of the Pearson correlation of A's units with B's on `data` (both
    networks in eval mode, the same inputs), (E[aᵢbⱼ] − μ_aᵢμ_bⱼ) / (σ_aᵢσ_bⱼ + 1e-4) in float64;
    one assignment per permutation (per head for a grouped one), no iterations. The objective is
    the matched correlation summed over permutations and sites.
    """
    spec = _checked_spec(model_a, model_b, spec)
    check_data("data", data)
    at_least("batch_size", batch_size, 1)
    unseen = [p for p in spec.sizes if not spec.sites.get(p)]
    if unseen:
        raise ValueError(f"permutation {unseen[0]!r} has no site in the spec: activation "
                         "matching cannot observe its units (weight matching can match it)")
    moments = {(p, i): _Moments(spec.groups.get(p, 1))
               for p, ss in spec.sites.items() for i in range(len(ss))}
    recorders = [_Recorder(m, spec.sites, device) for m in (model_a, model_b)]
    modes = [m.training for m in (model_a, model_b)]
    try:
        with torch.no_grad(), task_threads():
            for m in (model_a, model_b):
                m.eval()
            for start in range(0, len(data), batch_size):
                x = data.x[start:start + batch_size]
                for m in (model_a, model_b):
                    m(x.to(next(m.parameters()).device))
                for key, mom in moments.items():
                    mom.add(recorders[0].features[key], recorders[1].features[key])
    finally:
        for m, rec, mode in zip((model_a, model_b), recorders, modes):
            rec.remove()
            m.train(mode)
    perms, objective = {}, 0.0
    for p in spec.sizes:
        corr = sum(moments[(p, i)].correlation() for i in range(len(spec.sites[p])))
        perms[p] = _assign(corr)
        objective += _matched(corr, perms[p])
    return Alignment(perms, objective, apply_permutation(spec, model_b.state_dict(), perms), 0)


ALIGNMENTS = ("none", "weights", "activations")  # how B's hidden units are matched to A's


def aligned_state(model: nn.Module, state_a: Mapping[str, torch.Tensor],
                  state_b: Mapping[str, torch.Tensor], how: str, data: TensorData | None = None,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """θ_B with its hidden units permuted to match θ_A's, in `model`'s architecture: `how` is
    "none" (θ_B as it is), "weights" (`weight_matching` from `seed`) or "activations"
    (`activation_matching` on `data`)."""
    import copy

    if how not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {how!r}; valid: {', '.join(ALIGNMENTS)}")
    if how == "none":
        return dict(state_b)
    if how == "activations" and data is None:
        raise ValueError("activation matching needs data (inputs both networks see)")
    net_a, net_b = copy.deepcopy(model), copy.deepcopy(model)
    net_a.load_state_dict(state_a)
    net_b.load_state_dict(state_b)
    found = (weight_matching(net_a, net_b, seed=seed) if how == "weights"
             else activation_matching(net_a, net_b, data))
    return found.permuted_b
