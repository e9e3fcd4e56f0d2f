"""Probes of a trained clip model's confidence where it should know nothing.

With ``z = f(x)`` the class logits of a clip model (a student's class head, not
its confidence head), the *confidence* of a clip is ``max_k softmax(z / T)_k``
(``T = 1``: raw; ``T`` fitted on validation: temperature-scaled, Guo et al. 2017).
The probes compare it, and the model's accuracy, across groups of clips:

- ``action``: test clips that show their video's action (``informative == 1``);
- ``non-action``: test clips outside the action segment (``informative == 0``),
  which show background and, often, a distractor motion of another class;
- ``noise``: clips of pure uniform noise (:func:`noise_clips`); they belong to no
  class, so every prediction on them counts as wrong (``label = -1``,
  ``correct = 0``);
- ``scaled``: a deterministic subset of the test clips whose *normalised* input
  tensor ``x = (u/255 − mean)/std`` is multiplied by ``α`` before the model
  (:func:`scaled_logits`). The clip models are ReLU networks whose other
  layers (convolutions, max and average pooling, batch norm with its running
  statistics in eval mode, dropout off) are affine or piecewise affine, so
  ``f`` is piecewise affine: ``f(αx)`` is eventually affine in ``α`` and the
  confidence tends to 1 as ``α`` grows, for almost every ``x`` (Hein et al.,
  CVPR 2019).

:func:`probe_model` builds the tidy table from a model and a
:class:`~cdlib.data.ClipBank`; :func:`model_probe` (:func:`teacher_probe`) does
it for a trained model of a config (cached as an artifact). :func:`calibration_summary` and
:func:`teacher_calibration` give the in-distribution calibration metrics
before and after temperature scaling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from cdlib.data.base import CLIP_GROUPS, ClipBank, clip_groups
from cdlib.experiment.clips import data_spec, get_bank, resolve_store
from cdlib.experiment.students import model_spec_of
from cdlib.experiment.train import set_determinism
from cdlib.experiment.trained_models import get_model, get_outputs, teacher_temperature
from cdlib.method.calibration import fit_temperature
from cdlib.models import preprocess
from cdlib.runtime.artifacts import code_version
from cdlib.runtime.errors import ConfigError

#: scales of the normalised input tensor probed by default
DEFAULT_ALPHAS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)

#: group names of the probe table, in display order
GROUPS = (*CLIP_GROUPS, "noise", "scaled")

PROBE_COLUMNS = ("group", "alpha", "clip", "label", "informative", "prediction", "confidence", "confidence_ts",
                 "correct")


def noise_clips(n: int, shape, seed: int = 0) -> torch.Tensor:
    """``n`` clips of i.i.d. uniform noise: uint8 ``[n, *shape]`` (``shape = (T, H, W, C)``), each
    value uniform on ``{0, …, 255}``; deterministic in ``seed`` (a private generator)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n: expected an integer >= 0, got {n!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(f"shape: expected (T, H, W, C) with positive sizes, got {shape!r}")
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8)


def class_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class logits of ``model`` on preprocessed ``x``: a teacher's output, or a student's first head."""
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def _check_alphas(alphas) -> tuple[float, ...]:
    alphas = tuple(float(a) for a in alphas)
    if not alphas or not all(a > 0 for a in alphas):
        raise ConfigError(f"alphas: expected a non-empty sequence of scales > 0, got {alphas!r}")
    return alphas


@torch.no_grad()
def scaled_logits(model: nn.Module, x: torch.Tensor, alphas, batch_size: int = 256) -> torch.Tensor:
    """Logits ``f(α·x)`` for every ``α`` in ``alphas``: ``[A, B, K]`` for preprocessed ``x [B, C, T, H, W]``.

    The model runs in eval mode (batch norm uses its running statistics, so each
    clip's output does not depend on the rest of the batch).
    """
    alphas = _check_alphas(alphas)
    model.eval()
    out = []
    for alpha in alphas:
        parts = [class_logits(model, alpha * x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        out.append(torch.cat(parts) if parts else torch.empty(0))
    return torch.stack(out)


def confidence_table(logits: torch.Tensor, labels: torch.Tensor, group: str, temperature: float = 1.0,
                     alpha: float = 1.0, clip=None, informative=None) -> pd.DataFrame:
    """One row per clip: ``group, alpha, clip, label, informative, prediction, confidence,
    confidence_ts, correct``.

    ``confidence = max_k softmax(z)_k``, ``confidence_ts = max_k softmax(z/T)_k``;
    ``correct = 1[argmax_k z_k = label]`` (0 where ``label < 0``: a clip of no class).
    ``clip`` (index into the split's clips, -1 if none) and ``informative`` (1/0/-1)
    default to -1.
    """
    logits = torch.as_tensor(logits).detach().to(torch.float64)
    labels = torch.as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits [M, K] and labels [M], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if not temperature > 0:
        raise ConfigError(f"temperature: expected a number > 0, got {temperature!r}")
    m = logits.shape[0]
    conf, pred = torch.softmax(logits, dim=1).max(dim=1)
    conf_ts = torch.softmax(logits / temperature, dim=1).amax(dim=1)
    minus_one = np.full(m, -1, dtype=np.int64)
    return pd.DataFrame(
        {
            "group": pd.Categorical([group] * m, categories=GROUPS),
            "alpha": np.full(m, float(alpha)),
            "clip": minus_one if clip is None else np.asarray(torch.as_tensor(clip).long()),
            "label": labels.numpy(),
            "informative": minus_one if informative is None else np.asarray(torch.as_tensor(informative).long()),
            "prediction": pred.numpy(),
            "confidence": conf.numpy(),
            "confidence_ts": conf_ts.numpy(),
            "correct": ((pred == labels) & (labels >= 0)).to(torch.float64).numpy(),
        }
    )


def subset_indices(m: int, max_clips: int, seed: int = 0) -> torch.Tensor:
    """At most ``max_clips`` of ``range(m)``, sorted; a random subset deterministic in ``seed``
    (all of them when ``m <= max_clips``)."""
    if max_clips >= m:
        return torch.arange(m)
    generator = torch.Generator().manual_seed(int(seed))
    return torch.sort(torch.randperm(m, generator=generator)[:max_clips]).values


@torch.no_grad()
def _logits_of(model: nn.Module, clips: torch.Tensor, alphas, batch_size: int) -> torch.Tensor:
    """``[A, M, K]`` logits of uint8 clips, preprocessed batch by batch (bounded memory)."""
    parts = [scaled_logits(model, preprocess(clips[s : s + batch_size]), alphas, batch_size)
             for s in range(0, len(clips), batch_size)]
    return torch.cat(parts, dim=1)


def probe_model(model: nn.Module, bank: ClipBank, temperature: float = 1.0, alphas=DEFAULT_ALPHAS,
                max_clips: int = 2000, num_noise: int = 500, seed: int = 0, logits: torch.Tensor | None = None,
                batch_size: int = 128) -> pd.DataFrame:
    """The tidy probe table (columns :data:`PROBE_COLUMNS`) of ``model`` on ``bank``.

    Groups ``action`` and ``non-action`` (:data:`cdlib.data.base.CLIP_GROUPS`) hold every clip of ``bank`` with
    ``informative`` 1 and 0 (``alpha = 1``); ``logits [M, K]``, if given, are the
    model's stored outputs on ``bank`` and spare recomputing them. ``noise``
    holds ``num_noise`` uniform-noise clips of the bank's clip shape (seeded by
    ``seed``). ``scaled`` holds, for each ``α`` in ``alphas``, the same
    ``max_clips`` clips of the bank (a random subset seeded by ``seed``), their
    normalised input multiplied by ``α``. ``temperature`` gives ``confidence_ts``.
    """
    alphas = _check_alphas(alphas)
    model.eval()
    if logits is None:
        logits = _logits_of(model, bank.clips, (1.0,), batch_size)[0]
    logits = torch.as_tensor(logits)
    if logits.shape[0] != len(bank.clips):
        raise ValueError(f"logits: expected one row per clip of the bank ({len(bank.clips)}), got {logits.shape[0]}")
    tables = []
    all_idx = torch.arange(len(bank.clips))
    for group, mask in clip_groups(bank.informative).items():
        idx = all_idx[mask]
        tables.append(confidence_table(logits[idx], bank.labels[idx], group, temperature,
                                       clip=idx, informative=bank.informative[idx]))
    if num_noise > 0:
        noise = noise_clips(num_noise, bank.clips.shape[1:], seed=seed)
        noise_logits = _logits_of(model, noise, (1.0,), batch_size)[0]
        tables.append(confidence_table(noise_logits, torch.full((num_noise,), -1), "noise", temperature))
    idx = subset_indices(len(bank.clips), max_clips, seed)
    scaled = _logits_of(model, bank.clips[idx], alphas, batch_size)
    for alpha, alpha_logits in zip(alphas, scaled):
        tables.append(confidence_table(alpha_logits, bank.labels[idx], "scaled", temperature, alpha=alpha,
                                       clip=idx, informative=bank.informative[idx]))
    return pd.concat(tables, ignore_index=True)


def summarize_probe(table: pd.DataFrame, threshold: float = 0.9) -> pd.DataFrame:
    """Per ``(group, alpha)`` (and ``seed``, if the table has that column): ``clips``, mean
    ``confidence`` and ``confidence_ts``, ``accuracy`` (mean of ``correct``), ``overconfidence``
    (mean confidence − accuracy) and ``confident_wrong``: the fraction of clips with
    ``confidence ≥ threshold`` and a wrong prediction."""
    keys = ["seed", "group", "alpha"] if "seed" in table.columns else ["group", "alpha"]
    table = table.assign(_cw=((table["confidence"] >= threshold) & (table["correct"] == 0)).astype(float))
    summary = table.groupby(keys, observed=True).agg(
        clips=("confidence", "size"),
        confidence=("confidence", "mean"),
        confidence_ts=("confidence_ts", "mean"),
        accuracy=("correct", "mean"),
        confident_wrong=("_cw", "mean"),
    )
    summary["overconfidence"] = summary["confidence"] - summary["accuracy"]
    return summary.reset_index()


def _to_payload(table: pd.DataFrame) -> dict:
    """The table as tensors (the artifact store loads with ``weights_only``)."""
    payload = {c: torch.from_numpy(np.array(table[c].to_numpy(), copy=True)) for c in PROBE_COLUMNS if c != "group"}
    payload["group"] = torch.as_tensor(table["group"].cat.codes.to_numpy().astype(np.int64))
    return payload


def _from_payload(payload: dict) -> pd.DataFrame:
    columns = {c: payload[c].numpy() for c in PROBE_COLUMNS if c != "group"}
    columns["group"] = pd.Categorical.from_codes(payload["group"].numpy(), categories=GROUPS)
    return pd.DataFrame(columns)[list(PROBE_COLUMNS)]


def model_temperature(cfg, which: str = "teacher", store=None) -> float:
    """Temperature of a model's class logits fitted by NLL on the validation split
    (:func:`cdlib.experiment.trained_models.teacher_temperature` for the teacher)."""
    if which == "teacher":
        return teacher_temperature(cfg, store)
    val = get_outputs(cfg, which, "val", store)
    return fit_temperature(val.logits, val.labels)


def model_probe(cfg, which: str = "teacher", store=None, alphas=DEFAULT_ALPHAS, max_clips: int = 2000,
                num_noise: int = 500, split: str = "test") -> pd.DataFrame:
    """:func:`probe_model` of a trained model of ``cfg`` on ``split`` (an artifact: computed once).

    ``which`` is ``teacher`` or a student variant (``ce``, ``kd``, ``cd``; their
    class head is probed). The model is trained on first use
    (:func:`cdlib.experiment.trained_models.get_model`); its stored outputs give the
    ``action``/``non-action`` rows, its temperature fitted on validation
    (:func:`model_temperature`) the ``confidence_ts`` column, and ``cfg.seed``
    seeds the noise clips and the scaled subset.
    """
    alphas = _check_alphas(alphas)
    store = resolve_store(store)
    spec = {
        "probe": which, "model": model_spec_of(cfg, which), "split": split,
        "clips": data_spec(cfg, split), "alphas": list(alphas),
        "max_clips": int(max_clips), "num_noise": int(num_noise), "code": code_version("cdlib.experiment.probes"),
    }

    def build(_):
        trained = get_model(cfg, which, store)
        outputs = get_outputs(cfg, which, split, store)
        temperature = model_temperature(cfg, which, store)
        set_determinism(cfg.resolved_runtime.threads)
        table = probe_model(trained.model, get_bank(cfg, split, store), temperature, alphas, max_clips,
                            num_noise, seed=cfg.seed, logits=outputs.logits)
        return _to_payload(table)

    return _from_payload(store.get_or_create("probe", spec, build))


def teacher_probe(cfg, store=None, alphas=DEFAULT_ALPHAS, max_clips: int = 2000, num_noise: int = 500,
                  split: str = "test") -> pd.DataFrame:
    """:func:`model_probe` of the teacher of ``cfg``."""
    return model_probe(cfg, "teacher", store, alphas, max_clips, num_noise, split)


def calibration_summary(logits, labels, informative, temperature: float, n_bins: int = 15) -> pd.DataFrame:
    """Calibration of ``softmax(logits / T)`` on action clips (``informative == 1``) and on all clips,
    raw (``T = 1``) and temperature-scaled: one row per ``(clips, scaling)`` with the columns of
    :func:`cdlib.method.calibration.calibration_report` and ``temperature``."""
    from cdlib.method.calibration import calibration_report

    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    rows = []
    for clips, scaling, t, mask in _calibration_cases(labels, informative, temperature):
        report = calibration_report(logits[mask], labels[mask], temperature=t, n_bins=n_bins)
        rows.append({"clips": clips, "scaling": scaling, "temperature": t, "count": int(mask.sum()), **report})
    return pd.DataFrame(rows)


def _calibration_cases(labels: torch.Tensor, informative, temperature: float):
    """``(clips, scaling, T, mask)`` of the calibration tables: the action clips and all clips (a group with no
    clip left out), each raw (``T = 1``) and temperature-scaled."""
    groups = {"action": clip_groups(torch.as_tensor(informative))["action"],
              "all": torch.ones_like(labels, dtype=torch.bool)}
    for clips, mask in groups.items():
        if bool(mask.any()):
            for scaling, t in (("raw", 1.0), ("temperature", float(temperature))):
                yield clips, scaling, t, mask


def teacher_calibration(cfg, store=None, split: str = "test", n_bins: int = 15) -> pd.DataFrame:
    """:func:`calibration_summary` of the teacher of ``cfg`` on ``split``, ``T`` fitted on validation."""
    outputs = get_outputs(cfg, "teacher", split, store)
    temperature = teacher_temperature(cfg, store)
    return calibration_summary(outputs.logits, outputs.labels, outputs.informative, temperature, n_bins)


def reliability_table(logits, labels, informative, temperature: float, n_bins: int = 15) -> pd.DataFrame:
    """:func:`cdlib.method.calibration.reliability_diagram` rows for each ``(clips, scaling)`` of
    :func:`calibration_summary`, with those two columns added."""
    from cdlib.method.calibration import reliability_diagram

    logits, labels = torch.as_tensor(logits).to(torch.float64), torch.as_tensor(labels)
    tables = []
    for clips, scaling, t, mask in _calibration_cases(labels, informative, temperature):
        diagram = reliability_diagram(torch.softmax(logits[mask] / t, dim=1), labels[mask], n_bins)
        tables.append(diagram.assign(clips=clips, scaling=scaling))
    return pd.concat(tables, ignore_index=True)


__all__ = [
    "DEFAULT_ALPHAS", "GROUPS", "PROBE_COLUMNS", "noise_clips", "class_logits", "scaled_logits",
    "confidence_table", "subset_indices", "probe_model", "summarize_probe", "model_temperature", "model_probe",
    "teacher_probe", "calibration_summary",
    "teacher_calibration", "reliability_table",
]
