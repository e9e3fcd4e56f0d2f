"""How long a profile takes on GPUs: FLOPs counted by torch on the profile's real models, throughput assumed.

``python -m cdlib estimate --profile ucf101`` prints, as Markdown, the profile's
models (FLOPs per clip, parameters, activation memory), the pretrained weight
files they need and where they go, and how long each part of the study
(training, per-clip outputs, the benchmark's wall-clock timing) should take on
1 and 8 GPUs; ``--readme README.md`` writes that into the README's "Running at
scale" section instead.

How it is computed
------------------
- **FLOPs** of one clip are counted by :class:`torch.utils.flop_counter.FlopCounterMode`
  on the profile's models built on the ``meta`` device (shapes only, nothing
  computed): a forward pass for inference, forward and backward for a training
  step (convolutions and matrix products; a multiply-add is 2 FLOPs).
- **Activation memory** of a training step is the size of the tensors autograd
  saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``), in
  float32; bf16 autocast stores most of them in half the space.
- **Data set size** of UCF101 is from its published statistics (Soomro et al.
  2012, CRCV-TR-12-01: 25 fps, mean video 7.21 s, longest 71.04 s) and the
  official split lists (train/test videos per fold); the synthetic set's from the
  config. A video gives ``⌊frames / T⌋`` clips, about ``mean frames / T − 1/2`` on average.
- **GPU throughput** is not measured here (this machine has no GPU). It is
  assumed from a published reference: NVIDIA's DeepLearningExamples train
  ResNet-50 v1.5 (PyTorch, mixed precision, 21.03 container) at 2470 images/s on
  one A100 80GB and 16621 images/s on eight. Multiplied by ResNet-50's
  training-step FLOPs, counted here the same way as ours, that is the *achieved*
  FLOP/s of a well-tuned convolutional network in mixed precision, about a fifth
  of the A100's 312 TFLOP/s bf16 peak; the video networks are assumed to reach
  the same (3D convolutions are often less tuned than 2D ones: treat the times
  as lower bounds). The H100 80GB SXM is assumed faster by its memory bandwidth
  ratio (3.35 / 2.04 TB/s, below its 3.2x compute ratio: convolutional training
  with batch norm is largely bandwidth-bound). Eight GPUs are assumed to scale
  training as the reference did (16621 / (8 · 2470) = 0.84 of linear), with the
  per-GPU batch kept (the global batch ×8); per-clip outputs are sharded over the
  GPUs with nothing to synchronise (linear); the wall-clock timing runs on one GPU.
  ``--tflops`` replaces the assumption with a number measured on your GPU.
- **Data loading** can be slower than the GPU: a phase takes at least the time
  to decode its frames, at ``DECODE_FPS_PER_WORKER`` frames/s for each of
  ``LOADER_WORKERS_PER_GPU`` loader processes per GPU (``--decode-fps`` and
  ``--workers`` change them). The default rate is conservative next to what
  PyAV decoding and resizing a UCF101 video (320x240 to 112x112,
  :func:`cdlib.data.video.read_video` and :func:`~cdlib.data.video.resize_video`)
  reached on one core of the 2-core development machine: 1,100 to 1,600 frames/s,
  measured on ``data/samples/ucf101_sample.avi`` with other work running.
  Reading clips back from the decode cache after the first epoch is faster, so
  loader-bound times are upper bounds. The timing phase reads a few videos once.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from cdlib.data.sources import ALL_FOLDS, parse_source
from cdlib.experiment.config import Config
from cdlib.models import create_meta_model, model_spec
from cdlib.runtime.errors import ConfigError


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelCost:
    """What one clip costs a model: FLOPs of inference and of a training step, saved activations, parameters."""

    name: str
    input_shape: tuple[int, ...]
    forward_flops: float
    train_flops: float
    activation_bytes: float
    parameters: int


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of a convolution's backward pass: each gradient asked for (input, weight) costs its forward pass.

    Replaces torch's formula, which counts the weight gradient of a grouped
    convolution ``groups`` times over (the depthwise convolutions of MobileNet:
    64x for 64 channels; torch 2.14). For ``groups = 1`` both agree (a test checks it).
    """
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, with the backward pass of grouped convolutions counted right."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})


def _network_cost(model: torch.nn.Module, input_shape: tuple[int, ...]) -> tuple[float, float, float, int]:
    """``(forward FLOPs, training-step FLOPs, saved activation bytes, parameters)`` per sample of a ``meta`` model.

    Counted on a batch of 2 and halved (batch norm needs more than one value per
    channel in training mode).
    """
    batch = 2
    x = torch.zeros(batch, *input_shape, device="meta")
    model.eval()
    with flop_counter() as counter, torch.no_grad():
        model(x)
    forward = counter.get_total_flops() / batch

    model.train()
    saved: dict[int, int] = {}

    def pack(tensor):  # the graph holds every saved tensor until backward, so ids are not reused meanwhile
        saved[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    with flop_counter() as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = model(x)
        outputs = out if isinstance(out, tuple) else (out,)
        sum(o.float().sum() for o in outputs).backward()
    parameters = sum(p.numel() for p in model.parameters())
    return forward, counter.get_total_flops() / batch, sum(saved.values()) / batch, parameters


def model_cost(name: str, input_shape: tuple[int, ...], num_classes: int) -> ModelCost:
    """:class:`ModelCost` of the registered model ``name`` on clips of ``input_shape`` ``(C, T, H, W)``."""
    forward, train, activations, parameters = _network_cost(create_meta_model(name, num_classes), input_shape)
    return ModelCost(name, tuple(input_shape), forward, train, activations, parameters)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSize:
    """Videos per split and clips per video of a profile's data (see the module docstring for the sources)."""

    description: str
    train_videos: float  # after the validation hold-out
    val_videos: float
    test_videos: float
    clips_per_video: float  # mean
    max_clips_per_video: int  # the longest video's (the benchmark's knob range)
    action_fraction: float = 1.0  # of the clips, those showing the action (train.clips = "action")
    decoded: bool = True  # whether the loader decodes videos (the synthetic set is generated in memory)


#: UCF101 (Soomro, Zamir and Shah 2012): train and test videos of folds 1-3 in the official lists, frame rate,
#: mean and longest video in seconds
UCF101_SPLITS = {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}
UCF101_FPS, UCF101_MEAN_S, UCF101_MAX_S = 25, 7.21, 71.04


def data_size(cfg: Config) -> DataSize:
    """Sizes of the data of ``cfg``: the synthetic set's from the config, UCF101's from its published statistics."""
    data = cfg.data
    if data.source == "synthetic":
        clips = data.video_length // data.clip_length
        if data.max_clips > 0:
            clips = min(clips, data.max_clips)
        return DataSize("synthetic", data.num_train, data.num_val, data.num_test, clips, clips,
                        action_fraction=data.informative_fraction, decoded=False)
    kind, fields = parse_source(data.source)
    if kind != "ucf101":
        raise ConfigError(f"estimate: data.source {data.source!r}: sizes are known for synthetic and ucf101 data only")
    fold = fields["fold"] or 1
    if fold == ALL_FOLDS:
        raise ConfigError(f"estimate: data.source {data.source!r}: all folds are three runs, one per fold; estimate "
                          "one fold (ucf101:<root>:1) and count it three times")
    if fold not in UCF101_SPLITS:
        raise ConfigError(f"estimate: UCF101 has folds 1-3, got {fold}")
    train, test = UCF101_SPLITS[fold]
    mean_clips = UCF101_MEAN_S * UCF101_FPS / data.clip_length - 0.5
    longest = math.floor(UCF101_MAX_S * UCF101_FPS / data.clip_length)
    if data.max_clips > 0:
        mean_clips, longest = min(mean_clips, data.max_clips), min(longest, data.max_clips)
    val = train * data.val_fraction
    return DataSize(f"UCF101 split {fold}", train - val, val, test, mean_clips, longest)


# ----------------------------------------------------------------------------- GPUs

#: ResNet-50 v1.5 training, mixed precision, images/s on 1 and on 8 A100 80GB (NVIDIA DeepLearningExamples,
#: PyTorch/Classification/ConvNets/resnet50v1.5, "Training performance: NVIDIA DGX A100 (8x A100 80GB)")
REFERENCE_IMAGES_PER_S = {1: 2470, 8: 16621}
#: HBM bandwidth in TB/s (NVIDIA's data sheets)
MEMORY_BANDWIDTH_TB_S = {"A100 80GB": 2.039, "H100 80GB SXM": 3.35}


@dataclass(frozen=True)
class GPU:
    name: str
    achieved_tflops: float  # mixed-precision training throughput assumed for our networks
    why: str


def reference_tflops() -> float:
    """Achieved TFLOP/s of the reference: ResNet-50's training-step FLOPs (counted here) x its images/s on one A100."""
    from torchvision.models import resnet50

    with torch.device("meta"):
        net = resnet50(weights=None)
    _, train_flops, _, _ = _network_cost(net, (3, 224, 224))
    return train_flops * REFERENCE_IMAGES_PER_S[1] / 1e12


def assumed_gpus(tflops: float | None = None) -> list[GPU]:
    """The GPUs of the table: A100 and H100 from the reference, or one GPU at ``tflops`` measured by the user."""
    if tflops is not None:
        return [GPU("GPU", tflops, "given with --tflops")]
    a100 = reference_tflops()
    ratio = MEMORY_BANDWIDTH_TB_S["H100 80GB SXM"] / MEMORY_BANDWIDTH_TB_S["A100 80GB"]
    return [
        GPU("A100", a100, "ResNet-50 reference"),
        GPU("H100", a100 * ratio, f"A100 x {ratio:.2f} (memory bandwidth)"),
    ]


def training_scaling(num_gpus: int) -> float:
    """Fraction of linear speed-up of data-parallel training on ``num_gpus`` GPUs (the reference's, 8 GPUs)."""
    if num_gpus == 1:
        return 1.0
    if num_gpus == 8:
        return REFERENCE_IMAGES_PER_S[8] / (8 * REFERENCE_IMAGES_PER_S[1])
    raise ValueError("the reference gives the scaling of 1 and 8 GPUs only")


#: frames/s one data-loader process decodes and resizes, and loader processes per GPU (see the module docstring)
DECODE_FPS_PER_WORKER = 1000
LOADER_WORKERS_PER_GPU = 8


# ----------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class Phase:
    """Work of one part of the study. ``scaling``: how it spreads over GPUs: ``train`` (data-parallel, the
    reference's scaling), ``shard`` (linear) or ``one`` (one GPU). ``frames``: frames the data loader decodes."""

    name: str
    clips: float  # clips processed (forward passes, or training steps, per clip)
    flops: float
    scaling: str
    frames: float


def phases(cfg: Config, teacher: ModelCost, student: ModelCost, size: DataSize) -> list[Phase]:
    """The work of training the teacher and the student ladder and running the benchmark of ``cfg`` (only the
    policies and students of ``bench.policies`` where it names some)."""
    from cdlib.experiment.evaluation import evaluated_policies, evaluated_students
    from cdlib.experiment.students import trained_students
    from cdlib.method.gating import get_policy

    def per_epoch(train_cfg) -> float:
        eligible = size.clips_per_video * (size.action_fraction if train_cfg.clips == "action" else 1.0)
        return size.train_videos * (eligible if train_cfg.clips_per_video <= 0 else min(train_cfg.clips_per_video, eligible))

    clips = {split: videos * size.clips_per_video
             for split, videos in (("train", size.train_videos), ("val", size.val_videos), ("test", size.test_videos))}
    students, policies = evaluated_students(cfg), evaluated_policies(cfg)
    t, s, variants = cfg.teacher_train, cfg.student_train, len(set(trained_students()) & set(students))
    b = cfg.bench
    points = sum(len(get_policy(name).knob_values(size.max_clips_per_video, b.thetas, b.student_weights,
                                                  b.coverages, b.exit_thresholds))
                 for name in policies)
    # cdlib.experiment.timing.measure_wall_clock: the matched and best points of every policy, in latency and throughput
    # mode, on bench.wall_selected_videos videos; every other point in latency mode on bench.wall_videos.
    selected_runs = 2 * len(policies) * 2 * min(b.wall_selected_videos, size.test_videos)
    timed_clips = (b.wall_repeats * (selected_runs + points * b.wall_videos) + points) * size.clips_per_video
    # (name, clips, FLOPs per clip, scaling, whether the clips are loaded: the timing reuses a few loaded videos)
    rows = [
        ("teacher: fine-tune", t.epochs * per_epoch(t), teacher.train_flops, "train", True),
        ("teacher: validation after each epoch", t.epochs * clips["val"], teacher.forward_flops, "shard", True),
        ("teacher: outputs on train, val, test", sum(clips.values()), teacher.forward_flops, "shard", True),
        (f"students ({variants}): train", variants * s.epochs * per_epoch(s), student.train_flops, "train", True),
        (f"students ({variants}): validation after each epoch", variants * s.epochs * clips["val"],
         student.forward_flops, "shard", True),
        (f"students ({variants}): outputs on test", variants * clips["test"], student.forward_flops, "shard", True),
        (f"benchmark: wall-clock timing of {points} operating points (at most)", timed_clips,
         teacher.forward_flops + student.forward_flops, "one", False),
    ]
    if "cd_da" in students:
        rows.insert(-1, ("cd_da student: features on train, val, test; outputs on val, test",
                         sum(clips.values()) + clips["val"] + clips["test"], student.forward_flops, "shard", True))
    if "cd_ctx" in students:  # its trunk features on train are the cd_da row's (or its own without cd_da)
        ctx_clips = clips["val"] + clips["test"] + (0 if "cd_da" in students else clips["train"])
        rows.insert(-1, ("cd_ctx student: outputs on val, test (its temporal module's training: negligible)",
                         ctx_clips, student.forward_flops, "shard", True))
    if "frame_exit" in policies:
        rows.insert(-1, ("teacher: features on train, val, test (frame_exit's gate)", sum(clips.values()),
                         teacher.forward_flops, "shard", True))
    return [Phase(name, n, n * flops, scaling, n * cfg.data.clip_length if loaded and size.decoded else 0.0)
            for name, n, flops, scaling, loaded in rows]


def hours(phase: Phase, gpu: GPU, num_gpus: int, loader_fps: float = DECODE_FPS_PER_WORKER * LOADER_WORKERS_PER_GPU
          ) -> tuple[float, bool]:
    """Hours of ``phase`` on ``num_gpus`` of ``gpu`` with ``loader_fps`` decoded frames/s per GPU, and whether
    the data loader rather than the GPU sets them (see the module docstring for the assumptions)."""
    speed = gpu.achieved_tflops * 1e12
    gpus = num_gpus if phase.scaling != "one" else 1
    if phase.scaling == "train":
        speed *= num_gpus * training_scaling(num_gpus)
    elif phase.scaling == "shard":
        speed *= num_gpus
    compute = phase.flops / speed
    loading = phase.frames / (loader_fps * gpus)
    return max(compute, loading) / 3600, loading > compute


def _duration(h: float, loader_bound: bool = False) -> str:
    text = "< 1 min" if h < 1 / 60 else f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"
    return text + (" *" if loader_bound else "")


def _weights_lines(cfg: Config) -> list[str]:
    from cdlib.models.weights import hub_file, is_weights_path, torchvision_weights

    lines = []
    for role, name, weights in (("teacher", cfg.teacher, cfg.teacher_weights), ("student", cfg.student, cfg.student_weights)):
        arch = model_spec(name).weights_arch
        if not weights:
            lines.append(f"- {role} `{name}`: no pretrained weights (trained from scratch)")
        elif is_weights_path(weights):
            lines.append(f"- {role} `{name}`: the state-dict file `{weights}`")
        else:
            member = torchvision_weights(arch, weights)
            lines.append(f"- {role} `{name}` ({arch}, {member.name}): `$TORCH_HOME/hub/checkpoints/{hub_file(member).name}` "
                         f"from <{member.url}>")
    return lines


def estimate_markdown(cfg: Config, tflops: float | None = None, decode_fps: float = DECODE_FPS_PER_WORKER,
                      workers: int = LOADER_WORKERS_PER_GPU) -> str:
    """The estimate of ``cfg`` as Markdown: models, weight files, hours per phase on 1 and 8 GPUs, assumptions."""
    size = data_size(cfg)
    shape = (3, cfg.data.clip_length, cfg.data.height, cfg.data.width)
    num_classes = 101 if size.description.startswith("UCF101") else cfg.data.num_classes
    teacher = model_cost(cfg.teacher, shape, num_classes)
    student = model_cost(cfg.student, shape, num_classes)
    gpus = assumed_gpus(tflops)
    counts = (1, 8)

    out = [f"Profile `{cfg.profile}`: {size.description}, {size.train_videos:.0f} train / {size.val_videos:.0f} val / "
           f"{size.test_videos:.0f} test videos, about {size.clips_per_video:.1f} clips of "
           f"{'x'.join(map(str, shape[1:]))} per video (at most {size.max_clips_per_video}).", ""]
    out += ["| model | role | GFLOPs per clip (inference) | GFLOPs per clip (training step) | parameters | "
            "saved activations per clip (fp32) |", "|---|---|---:|---:|---:|---:|"]
    for role, cost in (("teacher", teacher), ("student", student)):
        out.append(f"| `{cost.name}` | {role} | {cost.forward_flops / 1e9:.2f} | {cost.train_flops / 1e9:.2f} | "
                   f"{cost.parameters / 1e6:.1f} M | {cost.activation_bytes / 2**20:.0f} MiB |")
    out += ["", f"The student costs 1/{teacher.forward_flops / student.forward_flops:.0f} of the teacher's FLOPs per clip. "
            f"A teacher training batch of {cfg.teacher_train.batch_size} clips saves "
            f"{cfg.teacher_train.batch_size * teacher.activation_bytes / 2**30:.1f} GiB of activations in fp32 "
            "(bf16 autocast: about half).", "", "Pretrained weights:", *_weights_lines(cfg), ""]

    header = "| phase | clips | PFLOP | " + " | ".join(f"{n}x {gpu.name}" for gpu in gpus for n in counts) + " |"
    out += [header, "|---|---:|---:|" + "---:|" * (len(gpus) * len(counts))]
    rows = phases(cfg, teacher, student, size)
    loader_fps = decode_fps * workers
    for phase in rows:
        times = " | ".join(_duration(*hours(phase, gpu, n, loader_fps)) for gpu in gpus for n in counts)
        out.append(f"| {phase.name} | {phase.clips:,.0f} | {phase.flops / 1e15:,.1f} | {times} |")
    totals = " | ".join(_duration(sum(hours(p, gpu, n, loader_fps)[0] for p in rows)) for gpu in gpus for n in counts)
    out.append(f"| **total** | | {sum(p.flops for p in rows) / 1e15:,.1f} | {totals} |")
    fine_tune = rows[0]
    per_gpu = [gpu.achieved_tflops * 1e12 / teacher.train_flops * cfg.data.clip_length for gpu in gpus]
    if any(hours(p, gpu, n, loader_fps)[1] for p in rows for gpu in gpus for n in counts):
        out += ["", f"\\* set by the data loader, not the GPU: {workers} loader processes per GPU decoding "
                f"{decode_fps:,.0f} frames/s each."]
    out += ["", "Assumed throughput: " + "; ".join(f"{gpu.name} {gpu.achieved_tflops:.0f} TFLOP/s ({gpu.why})" for gpu in gpus)
            + f"; 8 GPUs train at {training_scaling(8):.2f} of linear speed-up. "
            f"To keep up while the teacher is fine-tuned ({fine_tune.clips:,.0f} clips), the data loader must deliver "
            + ", ".join(f"{rate:,.0f} frames/s per {gpu.name}" for rate, gpu in zip(per_gpu, gpus)) + "."]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- command line

README_START = "<!-- estimate: start (generated by python -m cdlib estimate --profile ucf101 --readme README.md) -->"
README_END = "<!-- estimate: end -->"


def write_into_readme(path: str | Path, text: str) -> None:
    """Replace the text between the estimate markers of the README at ``path`` with ``text``."""
    path = Path(path)
    readme = path.read_text()
    pattern = re.compile(re.escape(README_START) + r"\n.*?" + re.escape(README_END), re.S)
    if not pattern.search(readme):
        raise ConfigError(f"{path}: no block between {README_START!r} and {README_END!r}")
    path.write_text(pattern.sub(lambda _: f"{README_START}\n{text}{README_END}", readme))


def cmd_estimate(args: argparse.Namespace) -> int:
    from cdlib.cli.options import config_from_args

    text = estimate_markdown(config_from_args(args), tflops=args.tflops, decode_fps=args.decode_fps,
                             workers=args.workers)
    if args.readme:
        write_into_readme(args.readme, text)
        print(f"wrote the estimate into {args.readme}")
    else:
        print(text, end="")
    return 0


def add_estimate_command(sub) -> None:
    """``python -m cdlib estimate``."""
    from cdlib.cli.options import add_config_options

    p = sub.add_parser("estimate", help="FLOPs, memory and expected GPU hours of a profile (Markdown)")
    add_config_options(p)
    p.add_argument("--data", default=None, metavar="SOURCE", help="data source (sizes: synthetic or ucf101:<root>[:fold])")
    p.add_argument("--tflops", type=float, default=None,
                   help="achieved training TFLOP/s of your GPU (e.g. measured), instead of the A100/H100 assumption")
    p.add_argument("--decode-fps", type=float, default=DECODE_FPS_PER_WORKER,
                   help=f"frames/s one data-loader process decodes (default {DECODE_FPS_PER_WORKER})")
    p.add_argument("--workers", type=int, default=LOADER_WORKERS_PER_GPU,
                   help=f"data-loader processes per GPU (default {LOADER_WORKERS_PER_GPU})")
    p.add_argument("--readme", default=None, metavar="FILE", help="write into FILE's estimate block instead of printing")
    p.set_defaults(func=cmd_estimate)
