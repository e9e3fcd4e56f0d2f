"""Shared pytest fixtures.

The small real sets ship with the project in ``data/`` (``data/README.md``); the
tests use them from there and fail, rather than skip, when they are missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DATA = PROJECT_ROOT / "data"


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny models: fastest, and far faster than two on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_run(request, tmp_path_factory):
    """``(cfg, store, result)``: the timed benchmark of the test module's own ``tiny_config()`` in a fresh
    artifact store, run once per module."""
    from cdlib.experiment.bench import run_benchmark
    from cdlib.runtime.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"))
    cfg = request.module.tiny_config()
    return cfg, store, run_benchmark(cfg, store)


@pytest.fixture(scope="session")
def weizmann_rgb_dir() -> Path:
    """The small real set in the UCF101 layout shipped in ``data/weizmann-rgb``."""
    root = SHIPPED_DATA / "weizmann-rgb"
    assert (root / "ucfTrainTestlist" / "classInd.txt").is_file(), f"the shipped Weizmann set is missing at {root}"
    return root


@pytest.fixture(scope="session")
def ucf101_sample_path() -> Path:
    """The real UCF101 clip (320x240, 164 frames) shipped in ``data/samples``."""
    path = SHIPPED_DATA / "samples" / "ucf101_sample.avi"
    assert path.is_file(), f"the shipped UCF101 sample clip is missing at {path}"
    return path


def synthetic_frames(num_frames: int, height: int = 16, width: int = 16, level: int = 128, seed: int = 0) -> np.ndarray:
    """uint8 ``[L, H, W, 3]``: a flat grey ``level`` with a bright square moving right.

    The mean brightness tells the class apart after a lossy codec (tests give each
    class its own ``level``).
    """
    rng = np.random.default_rng(seed)
    frames = np.full((num_frames, height, width, 3), level, dtype=np.uint8)
    size = max(2, height // 4)
    y = int(rng.integers(0, height - size))
    for t in range(num_frames):
        x = (t * 2) % (width - size)
        frames[t, y : y + size, x : x + size] = 255
    return frames


def write_video_file(path, frames: np.ndarray, codec: str = "mpeg4", fps: int = 25) -> Path:
    """Encode ``frames`` with PyAV directly (independent of cdlib's own writer).

    ``mpeg4`` (a real-world lossy codec, needs even sizes) or ``ffv1`` (lossless RGB).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pix_fmt = {"mpeg4": "yuv420p", "ffv1": "bgr0"}[codec]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def write_video():
    """``write_video(path, frames, codec="mpeg4")``: a tiny real video file written with PyAV."""
    return write_video_file


@pytest.fixture
def decode_cache_dir(tmp_path) -> Path:
    """A fresh decode cache folder per test (never the project's artifacts)."""
    return tmp_path / "decode-cache"


@pytest.fixture(scope="session")
def make_frames():
    """``make_frames(num_frames, height=16, width=16, level=128, seed=0)`` → uint8 ``[L, H, W, 3]``."""
    return synthetic_frames


#: (class name, grey level, frames per video) in classInd order: deliberately not
#: alphabetical, and with frame counts that give different clip counts.
UCF_TREE_CLASSES = (("Gamma", 200, 20), ("Alpha", 60, 18), ("Beta", 120, 13))


def build_ucf101_tree(
    root,
    classes=UCF_TREE_CLASSES,
    groups: int = 4,
    takes: int = 2,
    test_groups=None,
    annotation: str | None = "ucfTrainTestlist",
    labels_in_trainlist: bool = True,
    size: int = 16,
) -> Path:
    """A tiny UCF101 tree: ``<root>/<Class>/v_<Class>_gNN_cMM.avi`` and the annotation files.

    ``test_groups`` maps fold → the groups in its test list (default: fold 1 tests
    the last group, fold 2 the first). ``annotation=None`` writes no annotation files.
    """
    root = Path(root)
    test_groups = test_groups or {1: (groups,), 2: (1,)}
    lists = {fold: ([], []) for fold in test_groups}
    for label, (name, level, num_frames) in enumerate(classes):
        for g in range(1, groups + 1):
            for c in range(1, takes + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                write_video_file(root / rel, synthetic_frames(num_frames, size, size, level, seed=g * 10 + c))
                for fold, (train, test) in lists.items():
                    if g in test_groups[fold]:
                        test.append(rel)
                    else:
                        train.append(f"{rel} {label + 1}" if labels_in_trainlist else rel)
    if annotation is not None:
        ann = root / annotation
        ann.mkdir(parents=True, exist_ok=True)
        (ann / "classInd.txt").write_text("".join(f"{k + 1} {c[0]}\n" for k, c in enumerate(classes)))
        for fold, (train, test) in lists.items():
            (ann / f"trainlist{fold:02d}.txt").write_text("\n".join(train) + "\n")
            (ann / f"testlist{fold:02d}.txt").write_text("\n".join(test) + "\n")
    return root


@pytest.fixture(scope="session")
def make_ucf101_tree():
    """``make_ucf101_tree(root, classes=..., groups=4, takes=2, test_groups=None, annotation=...)``."""
    return build_ucf101_tree
