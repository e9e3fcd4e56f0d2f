"""Pretrained weights: torchvision's published files from the local torch hub cache, or a state-dict file.

The config fields ``teacher_weights`` and ``student_weights`` (and
``create_model(..., weights=...)``) take one of

- ``""``: random initialisation (training from scratch);
- a torchvision weights name of the model's architecture: ``KINETICS400_V1``,
  ``IMAGENET1K_V1``, ``DEFAULT``, or the full form ``R2Plus1D_18_Weights.KINETICS400_V1``.
  It is loaded by torchvision's own loader (``WeightsEnum.get_state_dict``) from
  the torch hub cache, ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``;
  ``TORCH_HOME`` defaults to ``~/.cache/torch``), under the file name of
  torchvision's URL, e.g. ``r2plus1d_18-91a641e6.pth``. The file must be the
  published one: the start of its SHA-256 must match the one in its name (torch
  checks that only when it downloads; here it is checked on every load, as the
  artifacts of a model trained from it are keyed by that name);
- a path to a state-dict file of the torchvision network
  (``torch.save(net.state_dict(), path)``, or such a file downloaded by hand).
  Its classification layer, of any size, is ignored.

Nothing is ever downloaded: torchvision's loader would fetch a missing file, so it
is called only once the file is there. A missing file, an unknown name, a damaged
file or one that does not fit the network raises
:class:`~cdlib.runtime.errors.WeightsError` naming it (and, for a missing file, the file to
put where and the URL to fetch it from); weights are never silently replaced by a
random initialisation.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

import torch
from torch import nn

from cdlib.runtime.artifacts import file_sha256
from cdlib.runtime.errors import WeightsError

#: what ``(state_dict, source)`` pairs look like: the tensors and a description of where they came from
Pretrained = tuple[Mapping[str, torch.Tensor], str]

_PATH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


def is_weights_path(weights: str) -> bool:
    """Whether ``weights`` names a file (a path) rather than a torchvision weights name."""
    return (
        os.sep in weights or "/" in weights or weights.startswith(("~", "."))
        or weights.lower().endswith(_PATH_SUFFIXES) or Path(weights).exists()
    )


def torchvision_weights(arch: str, name: str):
    """The member of torchvision's weights enum of ``arch`` named ``name`` (``KINETICS400_V1``, ``DEFAULT``, ...)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    try:
        return enum.verify(name)  # accepts "NAME" and "Enum.NAME"
    except KeyError:
        known = ", ".join(["DEFAULT", *(member.name for member in enum)])
        raise WeightsError(f"{arch} has no torchvision weights {name!r}; known: {known}") from None


def hub_file(weights) -> Path:
    """Where torchvision's loader looks for the file of ``weights``: ``torch.hub.get_dir()/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def missing_file_message(arch: str, weights) -> str:
    file = hub_file(weights)
    return (
        f"pretrained weights {arch} {weights.name} not found: put {file.name} into {file.parent}/ "
        f"(download it from {weights.url} on a machine with internet access; the folder is "
        f"$TORCH_HOME/hub/checkpoints, TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch (unset)')}). "
        "cdlib never downloads weights by itself."
    )


def _sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, remembered while its size and modification time stay (artifact keys ask often)."""
    return file_sha256(path)


def _unwrap(state, path: Path) -> Mapping[str, torch.Tensor]:
    """The tensors of a state-dict file: a plain state dict, or one under ``state_dict``/``model``
    (training checkpoints), with the ``module.`` prefix of DistributedDataParallel removed."""
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def require_weights_file(arch: str, weights: str) -> None:
    """Raise :class:`WeightsError` if the file of ``weights`` (a name or a path) is not there."""
    if is_weights_path(weights):
        if not Path(weights).expanduser().is_file():
            raise WeightsError(f"weights file {Path(weights).expanduser()} for {arch} does not exist")
        return
    member = torchvision_weights(arch, weights)
    if not hub_file(member).is_file():
        raise WeightsError(missing_file_message(arch, member))


def load_weights(arch: str, weights: str) -> Pretrained:
    """The state dict of torchvision's ``arch`` named by ``weights`` (a weights name or a file), and its source."""
    require_weights_file(arch, weights)
    if is_weights_path(weights):
        path = Path(weights).expanduser()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged or foreign file: say which
            raise WeightsError(f"weights file {path} cannot be read as a PyTorch state dict: {exc}") from exc
        return _unwrap(state, path), str(path)
    member = torchvision_weights(arch, weights)
    file = hub_file(member)
    named = torch.hub.HASH_REGEX.search(file.name)
    if named and not _sha256(file).startswith(named.group(1)):
        raise WeightsError(f"{file} is not the file torchvision publishes for {arch} {member.name} (its SHA-256 does "
                           f"not start with {named.group(1)}); delete it and download {member.url} again")
    try:
        state = member.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise WeightsError(
            f"{file} (torchvision weights {arch} {member.name}) cannot be used: {exc}; "
            f"delete it and download {member.url} again"
        ) from exc
    return state, f"torchvision {arch} {member.name} ({file})"


def weights_fingerprint(arch: str, weights: str) -> str:
    """What identifies ``weights`` in artifact keys: torchvision's file name (it carries the file's hash) for a
    weights name, the SHA-256 of the file's bytes for a path."""
    if not weights:
        return ""
    if is_weights_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} for {arch} does not exist")
        return f"sha256:{_sha256(path)}"
    member = torchvision_weights(arch, weights)
    return f"torchvision:{arch}:{member.name}:{hub_file(member).name}"


def load_backbone(net: nn.Module, pretrained: Pretrained, skip: tuple[str, ...]) -> None:
    """Load ``pretrained`` into ``net``, except the layers named in ``skip`` (the classification layer).

    Every other tensor of ``net`` must be in the state dict with the same shape, and
    the state dict may hold nothing else: a file of another architecture is an
    error naming the file and the first mismatches, never a partial load.
    """
    state, source = pretrained

    def skipped(key: str) -> bool:
        return any(key == layer or key.startswith(layer + ".") for layer in skip)

    own = net.state_dict()
    missing = [k for k in own if not skipped(k) and k not in state]
    unexpected = [k for k in state if not skipped(k) and k not in own]
    reshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
                if k in own and not skipped(k) and state[k].shape != own[k].shape]
    if missing or unexpected or reshaped:
        problems = [f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped)) if keys]
        raise WeightsError(f"weights {source} do not fit {type(net).__name__}: {'; '.join(problems)}")
    net.load_state_dict({k: v for k, v in state.items() if not skipped(k)}, strict=False)
