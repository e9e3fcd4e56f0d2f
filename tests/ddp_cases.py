"""Work for ``tests/test_distributed.py``, run in every process of a torchrun job (or alone, for reference).

``python -m torch.distributed.run --standalone --nproc_per_node=N tests/ddp_cases.py OUT [--stop-after E]``
trains the models of :func:`train_runs`, predicts (:func:`predict_run`) and builds artifacts
(:func:`artifact_runs`); each process saves what it got to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_train import toy_bank  # noqa: E402

from cdlib.experiment.config import TrainConfig  # noqa: E402
from cdlib.experiment.train import predict, set_determinism, train_model  # noqa: E402
from cdlib.models import create_model  # noqa: E402
from cdlib.runtime import distributed  # noqa: E402

#: 13 clips per epoch in batches of 4: the last batch has one clip, so a second process gets none
TRAIN = TrainConfig(epochs=2, batch_size=4, lr=1e-2, clips_per_video=1)


class PlainStudent(nn.Module):
    """No batch norm, no dropout: one process and DDP compute the same steps. Its second head is never in
    the loss (like a CE student's confidence head), which DDP must tolerate."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.classifier = nn.Linear(6, num_classes)
        self.score_head = nn.Linear(6, 1)

    def forward(self, x):
        features = self.features(x)
        return self.classifier(features), self.score_head(features).squeeze(-1)


def objective_for(bank):
    def objective(outputs, idx):
        return nn.functional.cross_entropy(outputs[0], bank.labels[idx]), {}

    return objective


def train_runs(out: Path, stop_after: int | None) -> dict:
    bank = toy_bank(num_videos=13, clips=3)
    results = {}
    for name, build in (("plain", lambda: PlainStudent(3)), ("batchnorm", lambda: create_model("student_micro", 3))):
        torch.manual_seed(0)
        model = build()

        def stop(epoch):
            if stop_after is not None and epoch == stop_after:
                raise SystemExit(3)  # every process stops after writing (process 0) the same checkpoint

        history = train_model(model, bank, objective_for(bank), TRAIN, seed=1, work_dir=out / f"work-{name}",
                              val_bank=bank, on_epoch_end=stop, unused_parameters=True)
        results[name] = {"state": model.state_dict(), "history": history}
    return results


def predict_run() -> dict:
    bank = toy_bank(num_videos=11, clips=3)
    torch.manual_seed(0)
    model = create_model("c3d_small", num_classes=3, widths=(4, 4, 8, 8))
    return predict(model, bank, batch_size=4)


def artifact_runs(out: Path) -> dict:
    from cdlib.runtime.artifacts import ArtifactStore

    store = ArtifactStore(out / "store")
    calls = {"collective": 0, "alone": 0}

    def build(kind):
        def make(_):
            calls[kind] += 1
            return {"value": torch.full((2,), float(distributed.world_size())), "rank": distributed.rank()}

        return make

    got = {kind: distributed.get_or_create(store, "test", {"kind": kind}, build(kind), collective=kind == "collective")
           for kind in calls}
    again = distributed.get_or_create(store, "test", {"kind": "alone"}, build("alone"), collective=False)
    return {"got": got, "again": again, "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args()
    set_determinism(1)
    distributed.init_from_env(torch.device("cpu"))
    try:
        result = {"world": distributed.world_size(), "train": train_runs(args.out, args.stop_after)}
        result["predict"] = predict_run()
        result["artifacts"] = artifact_runs(args.out)
        torch.save(result, args.out / f"rank{distributed.rank()}.pt")
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
