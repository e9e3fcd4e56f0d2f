"""Streamed clips and the DataLoader path give what the in-memory bank gives, whatever the worker count."""

import pytest
import torch

from cdlib.data import ClipBank, build_dataset
from cdlib.data.loading import BatchPlan, ClipReader, StreamedClips, clip_loader, decoded_bytes
from cdlib.experiment.config import DataConfig, TrainConfig, profile_config
from cdlib.experiment.train import epoch_order, predict, set_determinism, train_model
from cdlib.runtime.device import Runtime

TINY = DataConfig(num_classes=3, video_length=32, num_train=9, num_val=3, num_test=3, height=16, width=16)


@pytest.fixture(scope="module")
def synthetic():
    """The tiny synthetic train split as a dataset, an in-memory bank and a streamed source."""
    dataset = build_dataset(TINY, "train", seed=3)
    return dataset, ClipBank.from_dataset(dataset, progress=False), StreamedClips.from_dataset(dataset)


def test_streamed_metadata_and_clips_equal_the_bank(synthetic):
    dataset, bank, streamed = synthetic
    for name in ("labels", "video", "position", "informative"):
        assert torch.equal(getattr(streamed, name), getattr(bank, name)), name
    assert (streamed.num_classes, streamed.class_names, streamed.clip_shape) == (bank.num_classes, bank.class_names,
                                                                                bank.clip_shape)
    idx = torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))[:17]
    assert torch.equal(streamed.read(idx), bank.clips[idx])
    assert torch.equal(streamed.video_clips(4), bank.video_clips(4))
    assert decoded_bytes(dataset) == bank.clips.numel()


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_yields_the_planned_batches_in_order(synthetic, workers):
    _, bank, streamed = synthetic
    order = epoch_order(bank, TrainConfig(clips_per_video=3), torch.Generator().manual_seed(1))
    batches = [order[i : i + 5] for i in range(0, len(order), 5)]
    runtime = Runtime(num_workers=workers)
    for source in (bank, streamed):
        got = list(clip_loader(source, BatchPlan(batches), runtime))
        assert len(got) == len(batches)
        for (clips, idx), batch in zip(got, batches):
            assert torch.equal(idx, batch)
            assert torch.equal(clips, bank.clips[batch])


def test_iterating_a_loader_leaves_the_global_rng_alone(synthetic):
    _, bank, _ = synthetic
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(clip_loader(bank, BatchPlan([[0, 1], [2]]), Runtime(num_workers=0)))
    assert torch.equal(torch.rand(3), expected)  # dropout masks would otherwise depend on the loader


def test_clip_reader_is_a_map_style_dataset(synthetic):
    _, bank, streamed = synthetic
    reader = ClipReader(streamed)
    assert len(reader) == len(bank)
    assert torch.equal(reader[7], bank.clips[7])


def _objective(source):
    def objective(outputs, idx):
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        return torch.nn.functional.cross_entropy(logits, source.labels[idx].to(logits.device)), {}

    return objective


def _train(source, workers, val=None):
    set_determinism(1)
    torch.manual_seed(0)
    from cdlib.models import create_model

    model = create_model("student_micro", num_classes=source.num_classes)  # has dropout-free BN layers
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, clips_per_video=2)
    history = train_model(model, source, _objective(source), cfg, seed=2, val_bank=val,
                          runtime=Runtime(num_workers=workers))
    return model.state_dict(), history


def test_streamed_and_in_memory_training_agree_and_workers_change_nothing(synthetic):
    _, bank, streamed = synthetic
    reference, ref_history = _train(bank, 0, val=bank)
    for source, workers in ((streamed, 0), (streamed, 2), (bank, 2)):
        weights, history = _train(source, workers, val=source)
        assert history == ref_history, (type(source).__name__, workers)
        for name, value in reference.items():
            assert torch.equal(value, weights[name]), (type(source).__name__, workers, name)


def test_dropout_model_trains_identically_with_two_workers(synthetic):
    """The CI teacher has dropout: its noise comes from the epoch seed, never from the loader."""
    _, bank, _ = synthetic
    from cdlib.models import create_model

    runs = []
    for workers in (0, 2):
        set_determinism(1)
        torch.manual_seed(0)
        model = create_model("c3d_small", num_classes=bank.num_classes, widths=(4, 4, 8, 8))
        train_model(model, bank, _objective(bank), TrainConfig(epochs=1, batch_size=16, lr=1e-2), seed=0,
                    runtime=Runtime(num_workers=workers))
        runs.append(model.state_dict())
    for name, value in runs[0].items():
        assert torch.equal(value, runs[1][name]), name


def test_prediction_is_the_same_streamed_or_in_memory(synthetic):
    _, bank, streamed = synthetic
    from cdlib.models import create_model

    torch.manual_seed(0)
    model = create_model("student_micro", num_classes=bank.num_classes)
    a = predict(model, bank, batch_size=7)
    b = predict(model, streamed, batch_size=7, runtime=Runtime(num_workers=2))
    assert a.keys() == b.keys() == {"logits", "score_logit"}
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_get_clips_streams_or_keeps_in_memory_as_configured(tmp_path):
    from cdlib.experiment import clips
    from cdlib.runtime.artifacts import ArtifactStore

    cfg = profile_config("ci").replace(**{f"data.{k}": v for k, v in vars(TINY).items()})
    store = ArtifactStore(tmp_path)
    auto = clips.get_clips(cfg, "val", store)
    off = clips.get_clips(cfg.replace(**{"runtime.in_memory": "off"}), "val", store)
    assert isinstance(auto, ClipBank)  # a few KiB: auto keeps it in memory
    assert isinstance(off, StreamedClips)
    assert torch.equal(off.read(torch.arange(len(off))), auto.clips)


def test_files_stream_through_the_decode_cache(tmp_path, make_ucf101_tree):
    from cdlib.data.layouts import UCF101Videos

    root = make_ucf101_tree(tmp_path / "ucf")
    dataset = UCF101Videos(root, "train", height=16, width=16, clip_length=4, cache_dir=tmp_path / "cache",
                           progress=False)
    bank = ClipBank.from_dataset(dataset, progress=False)
    streamed = StreamedClips.from_dataset(dataset)
    assert torch.equal(streamed.video, bank.video) and torch.equal(streamed.labels, bank.labels)
    batches = [torch.arange(len(bank)).flip(0)[i : i + 4] for i in range(0, len(bank), 4)]
    for (clips, idx), batch in zip(clip_loader(streamed, BatchPlan(batches), Runtime(num_workers=2)), batches):
        assert torch.equal(clips, bank.clips[batch])


def test_a_split_and_a_models_outputs_on_it_share_one_per_video_bookkeeping():
    from cdlib.experiment.outputs import ClipOutputs

    sizes, video_label = [3, 1, 2], [2, 0, 1]
    video = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    labels = torch.tensor(video_label)[video]
    bank = ClipBank(clips=torch.zeros(6, 2, 8, 8, 3, dtype=torch.uint8), labels=labels, video=video,
                    position=torch.cat([torch.arange(n) for n in sizes]), informative=torch.full((6,), -1, dtype=torch.int8),
                    num_classes=3, class_names=["a", "b", "c"])
    outputs = ClipOutputs(logits=torch.randn(6, 3), labels=labels, video=video, position=bank.position,
                          informative=bank.informative)
    values = torch.arange(12).view(6, 2)
    for layout in (bank, outputs):
        assert layout.num_videos == 3
        assert layout.clips_per_video().tolist() == sizes
        assert layout.video_labels().tolist() == video_label
        assert [part.tolist() for part in layout.split_by_video(values)] == [
            values[video == v].tolist() for v in range(3)]
