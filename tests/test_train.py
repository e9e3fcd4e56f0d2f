import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from cdlib.data.base import ClipBank
from cdlib.experiment.config import TrainConfig
from cdlib.experiment.train import epoch_order, learning_rate, set_determinism, train_model
from cdlib.models import create_model
from cdlib.runtime.errors import ConfigError


def toy_bank(num_videos=12, clips=3, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_videos) % classes
    m = num_videos * clips
    video = torch.arange(num_videos).repeat_interleave(clips)
    clip_labels = labels[video]
    # class-dependent brightness makes the toy task learnable
    base = (clip_labels.float() * 80).view(m, 1, 1, 1, 1)
    pixels = (base + 40 * torch.rand(m, 8, 8, 8, 3, generator=g)).clamp(0, 255).to(torch.uint8)
    return ClipBank(
        clips=pixels, labels=clip_labels, video=video, position=torch.arange(clips).repeat(num_videos),
        informative=torch.full((m,), -1, dtype=torch.int8), num_classes=classes, class_names=["a", "b", "c"],
    )


def ce_objective(bank):
    def objective(outputs, idx):
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        return torch.nn.functional.cross_entropy(logits, bank.labels[idx]), {}

    return objective


CFG = TrainConfig(epochs=3, batch_size=8, lr=1e-2, clips_per_video=2)


def fresh_model(seed=0):
    set_determinism(1)
    torch.manual_seed(seed)
    return create_model("student_micro", num_classes=3)


def test_training_learns_the_toy_task():
    bank = toy_bank()
    model = fresh_model()
    history = train_model(model, bank, ce_objective(bank), TrainConfig(epochs=8, batch_size=8, lr=2e-2), seed=0,
                          val_bank=bank)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_clip_accuracy"] > 0.6


def test_same_config_twice_gives_identical_weights_and_metrics():
    bank = toy_bank()
    runs = []
    for _ in range(2):
        model = fresh_model()
        history = train_model(model, bank, ce_objective(bank), CFG, seed=5, val_bank=bank)
        runs.append((model.state_dict(), history))
    assert runs[0][1] == runs[1][1]
    for name, value in runs[0][0].items():
        assert torch.equal(value, runs[1][0][name]), name


def test_validation_every_few_epochs_changes_the_history_not_the_weights():
    bank = toy_bank()
    runs = {}
    for every in (1, 2, 0):
        model = fresh_model()
        cfg = TrainConfig(epochs=5, batch_size=8, lr=1e-2, clips_per_video=2, val_every=every)
        runs[every] = (model.state_dict(), train_model(model, bank, ce_objective(bank), cfg, seed=5, val_bank=bank))
    validated = {every: [record["epoch"] for record in history if "val_clip_accuracy" in record]
                 for every, (_, history) in runs.items()}
    assert validated == {1: [1, 2, 3, 4, 5], 2: [2, 4, 5], 0: [5]}
    for every in (2, 0):
        assert all(torch.equal(value, runs[every][0][name]) for name, value in runs[1][0].items())
        assert runs[every][1][-1] == runs[1][1][-1]


def test_other_seed_gives_other_order():
    bank = toy_bank()
    a = epoch_order(bank, CFG, torch.Generator().manual_seed(1))
    b = epoch_order(bank, CFG, torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)


def test_epoch_order_samples_clips_per_video():
    bank = toy_bank(num_videos=7, clips=5)
    order = epoch_order(bank, TrainConfig(clips_per_video=2), torch.Generator().manual_seed(0))
    assert torch.bincount(bank.video[order]).tolist() == [2] * 7
    assert len(set(order.tolist())) == len(order)
    full = epoch_order(bank, TrainConfig(), torch.Generator().manual_seed(0))
    assert sorted(full.tolist()) == list(range(35))


def test_action_clips_exclude_only_clips_known_to_lack_the_action():
    bank = toy_bank(num_videos=4, clips=3)
    bank.informative = torch.tensor([1, 0, -1] * 4, dtype=torch.int8)
    order = epoch_order(bank, TrainConfig(clips="action", clips_per_video=1), torch.Generator().manual_seed(0))
    assert torch.bincount(bank.video[order]).tolist() == [1] * 4
    assert set(bank.informative[order].tolist()) <= {1, -1}
    everything = epoch_order(bank, TrainConfig(clips="action"), torch.Generator().manual_seed(0))
    assert sorted(everything.tolist()) == [i for i in range(12) if i % 3 != 1]
    with pytest.raises(ConfigError, match="clips"):
        epoch_order(bank, TrainConfig(clips="some"), torch.Generator())


def test_learning_rate_warms_up_and_decays():
    lrs = [learning_rate(1.0, s, 100) for s in range(100)]
    assert lrs[0] < lrs[4] and max(lrs) == pytest.approx(1.0) and lrs[-1] < 0.01


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    bank = toy_bank()
    reference = fresh_model()
    ref_history = train_model(reference, bank, ce_objective(bank), CFG, seed=3, work_dir=tmp_path / "ref")

    class Interrupt(Exception):
        pass

    def interrupt_after_first(epoch):
        if epoch == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_model(fresh_model(), bank, ce_objective(bank), CFG, seed=3, work_dir=tmp_path / "run",
                    on_epoch_end=interrupt_after_first)
    # a new process would start from a fresh model: so does the resumed run
    resumed = fresh_model(seed=99)
    history = train_model(resumed, bank, ce_objective(bank), CFG, seed=3, work_dir=tmp_path / "run")
    assert history == ref_history
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import CFG, ce_objective, fresh_model, toy_bank
    from cdlib.experiment.train import train_model
    bank = toy_bank()
    def die(epoch):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    train_model(fresh_model(), bank, ce_objective(bank), CFG, seed=4, work_dir={work!r}, on_epoch_end=die)
    """
)


def test_killed_process_resumes_to_the_same_weights(tmp_path):
    work = tmp_path / "killed"
    script = KILLED_RUN.format(tests=os.path.dirname(__file__), work=str(work))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (work / "checkpoint.pt").exists()
    bank = toy_bank()
    resumed = fresh_model()
    train_model(resumed, bank, ce_objective(bank), CFG, seed=4, work_dir=work)
    reference = fresh_model()
    train_model(reference, bank, ce_objective(bank), CFG, seed=4)
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_damaged_checkpoint_is_not_trusted(tmp_path):
    bank = toy_bank()
    work = tmp_path / "run"
    train_model(fresh_model(), bank, ce_objective(bank), TrainConfig(epochs=1, batch_size=8), seed=0, work_dir=work)
    checkpoint = work / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:50])
    history = train_model(fresh_model(), bank, ce_objective(bank), TrainConfig(epochs=1, batch_size=8), seed=0,
                          work_dir=work)
    assert len(history) == 1  # retrained from scratch instead of loading the damaged file
