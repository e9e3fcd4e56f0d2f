"""The clips of the data splits that training and prediction read, cached: in memory (clip banks; the synthetic
ones stored as artifacts, real videos decoded once into their decode cache) or streamed, and :func:`data_spec`,
what determines a split's clips in every artifact key.
"""

from __future__ import annotations

import dataclasses
import functools
import json

from cdlib.data import ClipBank, build_dataset
from cdlib.data.base import ClipIndex
from cdlib.data.loading import StreamedClips, decoded_bytes
from cdlib.experiment.config import Config, DataConfig
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import ArtifactStore, code_version, config_hash
from cdlib.runtime.device import IN_MEMORY_LIMIT_BYTES


#: the data modules whose code keys the synthetic clip banks and every trained model
DATA_CODE = ("cdlib.data.base", "cdlib.data.synthetic")


def resolve_store(store: ArtifactStore | None) -> ArtifactStore:
    """``store``, or the default :class:`~cdlib.runtime.artifacts.ArtifactStore` when None: what every ``store=None``
    argument of this module and of the modules built on it (:mod:`cdlib.experiment.probes`) means."""
    return store if store is not None else ArtifactStore()


#: data fields that change the test split only: models and the train/val banks do not depend on them
TEST_ONLY_FIELDS = ("test_shift", "test_informative_fraction", "num_test")


def data_spec(cfg: Config, split: str = "train") -> dict:
    """What determines the clips of ``split`` (for ``train``: everything a trained model depends on).

    A test ``rho`` (``data.test_informative_fraction``) equal to the training one is written as its default 0
    ("the same"): both give the same test videos, so a sweep over test ``rho`` reuses the outputs at that value.
    """
    data = dataclasses.asdict(cfg.data)
    if data["source"] != "synthetic":  # imported here: the layouts need PyAV, the synthetic set does not
        from cdlib.data.layouts import normalize_source

        data["source"] = normalize_source(data["source"])
    if split != "test":
        for name in TEST_ONLY_FIELDS:
            del data[name]
    elif data["test_informative_fraction"] == data["informative_fraction"]:
        data["test_informative_fraction"] = 0.0
    return {"data": data, "seed": cfg.seed}


@functools.lru_cache(maxsize=8)
def _dataset_cached(split: str, cfg_json: str):
    spec = json.loads(cfg_json)
    # Real videos: process 0 scans first (decoding into the shared cache), the others then read the cache.
    with distributed.main_first():
        return build_dataset(DataConfig(**spec["data"]), split, seed=spec["seed"])


@functools.lru_cache(maxsize=8)
def _bank_cached(root: str, data_key: str, split: str, cfg_json: str) -> ClipBank:
    spec = json.loads(cfg_json)
    dataset = _dataset_cached(split, cfg_json)
    if spec["data"]["source"] != "synthetic":
        # Real videos have their own decode cache keyed by file, size and mtime.
        return ClipBank.from_dataset(dataset)
    bank_spec = {**spec, "split": split, "code": code_version(*DATA_CODE)}
    payload = distributed.get_or_create(ArtifactStore(root), "bank", bank_spec,
                                        lambda _: dataclasses.asdict(ClipBank.from_dataset(dataset)), collective=False)
    return ClipBank(**payload)


@functools.lru_cache(maxsize=8)
def _clips_cached(root: str, data_key: str, split: str, cfg_json: str, in_memory: str) -> ClipIndex:
    dataset = _dataset_cached(split, cfg_json)
    if in_memory == "on" or (in_memory == "auto" and decoded_bytes(dataset) <= IN_MEMORY_LIMIT_BYTES):
        return _bank_cached(root, data_key, split, cfg_json)
    return StreamedClips.from_dataset(dataset)


def get_bank(cfg: Config, split: str, store: ArtifactStore | None = None) -> ClipBank:
    """All clips of ``split`` in memory (synthetic banks are cached on disk, real videos decoded once)."""
    spec = data_spec(cfg, split)
    return _bank_cached(str(resolve_store(store).root), config_hash(spec), split, json.dumps(spec, sort_keys=True))


def get_clips(cfg: Config, split: str, store: ArtifactStore | None = None) -> ClipIndex:
    """The clips of ``split`` that training and prediction read: in memory (:func:`get_bank`) or streamed.

    ``runtime.in_memory``: ``on`` keeps them in memory, ``off`` streams them
    (:class:`~cdlib.data.loading.StreamedClips`: each video is read when one of
    its clips is asked for), ``auto`` keeps a split in memory when its decoded
    clips take at most :data:`~cdlib.runtime.device.IN_MEMORY_LIMIT_BYTES`. Both give
    the same clips in the same order.
    """
    spec = data_spec(cfg, split)
    choice = cfg.resolved_runtime.in_memory
    return _clips_cached(str(resolve_store(store).root), config_hash(spec), split, json.dumps(spec, sort_keys=True),
                         choice)


def get_dataset(cfg: Config, split: str):
    """The :class:`~cdlib.data.ClipDataset` of ``split`` (for metadata and single videos)."""
    return build_dataset(cfg.data, split, seed=cfg.seed)
