"""Wall-clock time of operating points: the real inference pipeline, timed one video at a time and in batches.

:func:`measure_wall_clock` runs the real pipeline on the first test videos:
preprocessing, the student on all of a video's clips (for the policies that use
one, at a knob that reads it, :meth:`cdlib.method.gating.PolicySpec.reads_student`:
``cd_gate`` at ``θ > 1``, coverage 1 and ``λ = 0`` does not, nor does
``cd_topk`` at coverage 1), the policy's decision and the teacher on the clips
it asks for, on ``runtime.num_threads`` threads. Every model runs on the inference backend of
``bench.backend`` (:mod:`cdlib.models.backends`, :func:`cdlib.method.cost.timing_model`): by default
(``auto``) frozen for inference by :func:`cdlib.models.inference_module` on the CPU, and eager under the
runtime's bf16 autocast on a GPU; each model's preparation (scripting, export, compilation, with its warm-up
calls) is timed apart (``wall_clock.prepare_s``) and never counted in a timed call. On a GPU every timed call
ends with a synchronisation of the device.

- *Latency* (``wall_ratio_to_dense``): one video at a time, as a service
  answers one request. Over ``bench.wall_repeats`` passes, each test video is
  run by every timed point in turn before the next video, so all points see the
  same quiet and busy moments of the machine. Each (point, video) is timed by
  its fastest pass (other work only ever adds time), and the ratio is the
  point's total over the timed videos divided by the dense teacher's total
  over the same videos (:func:`cdlib.method.cost.ratio_of_totals`): a ratio of costs,
  in which a video on which an adaptive policy runs the teacher counts in
  full. ``wall_s_per_video`` is the point's total divided by the number of
  videos.
- *Throughput* (``throughput_wall_ratio_to_dense``): videos in batches of
  ``bench.throughput_batch``, as an offline job: preprocessing and the student
  on all clips of the batch in one call, every video's decision, then one
  teacher call on the clips the decisions asked for, gathered across the
  batch. The same passes and ratio, over batches.

``frame_exit`` decides which clip the teacher sees next from the teacher's
answers so far, so it cannot make one teacher call per video: its path is
sequential (:meth:`TimedPipeline.run_exit`). In latency mode the teacher runs on
one clip at a time in the visiting order, the running means of its features and
softmax feed the exit gate after each clip, and the video stops once the gate
reaches the threshold. In throughput mode the batch advances step by step: at
step ``t`` one teacher call on the ``t``-th clip of every video still running,
then the gate on all of them. Either way it decides as the precomputed policy.

The selected points of every policy (:func:`cdlib.method.selection.select_points`)
and the dense teacher are timed in both modes on ``bench.wall_selected_videos``
test videos (all of them if there are fewer). The other points of each curve are
timed in latency mode only, on ``bench.wall_videos`` videos (0, the ``ci``
default: not timed), as each point's ``wall_videos`` says.

*Where the time goes.* Each timed call splits its own time into four stages
(:class:`StageTimer`), read with the same clock at the stage boundaries, on
the same passes as the totals (each unit's parts come from its fastest pass,
:func:`cdlib.method.cost.fastest_parts`):

- ``preprocess_s``: the uint8 clips to the device (and, in a batch, joined)
  and :func:`cdlib.models.preprocess` (to float, normalised, channels-last).
  The student's cheap view of its clips (fewer frames, pooled) is inside the
  student's forward, so it counts in ``student_s``.
- ``student_s``: the student's forward on every clip it reads, with the
  gathering of those clips and the split of its outputs into videos.
- ``decision_s``: the policy's choice from the scores (the sigmoid of the score
  logits, the ranking, the exit test, the averaging of the answers), and
  ``frame_exit``'s exit gate, less the teacher's forwards called from inside it.
- ``teacher_s``: the teacher's forwards on the clips it was asked for, with the
  gathering of those clips.

The parts cover each call from its first stage to its last, so they sum to the
total less the call's own entry and exit (microseconds: the call itself, the
inference and autocast contexts, the final device synchronisation). On a GPU
every stage boundary synchronises the device, so each stage's queued kernels are
counted in it. The timer also counts the clips each model ran, from which
``wall_clock.achieved_gflop_s`` gives every model's achieved GFLOP/s
(:func:`cdlib.method.cost.achieved_gflop_s`).

The keys it adds to a result's points and its ``wall_clock`` block are listed in
:mod:`cdlib.experiment.bench`.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from cdlib.experiment.config import Config
from cdlib.experiment.evaluation import evaluated_policies
from cdlib.experiment.clips import get_clips
from cdlib.experiment.exit_gate import get_exit_gate, TeacherWithFeatures
from cdlib.experiment.students import STUDENTS
from cdlib.experiment.trained_models import get_model
from cdlib.method.cost import (
    achieved_gflop_s,
    fastest_parts,
    fastest_totals,
    ratio_of_totals,
    time_interleaved,
    timing_model,
)
from cdlib.method.frame_exit import check_threshold, visiting_order
from cdlib.method.gating import Decision, PolicySpec, VideoOutputs, get_policy
from cdlib.models import preprocess
from cdlib.runtime.artifacts import ArtifactStore
from cdlib.runtime.device import autocast, configure_backend, synchronize, to_device
from cdlib.runtime.progress import log


#: the stages of a timed call, in the order of the ``*_s`` keys of a timed point (module docstring)
STAGES = ("preprocess", "student", "decision", "teacher")
#: the models whose clips :class:`StageTimer` counts: the stages that are a model's forward
MODEL_STAGES = ("student", "teacher")


class StageTimer:
    """Seconds per stage (:data:`STAGES`) of one timed call, and the clips each model stage ran.

    :meth:`switch` charges the time since the last switch to the stage that was
    running and starts the next, so the stages partition the time from a call's
    first switch to its last, and a stage entered inside another (the teacher
    called lazily by a policy's decision) is charged to itself only. Each switch
    first synchronises ``device`` (CUDA, MPS), so the kernels a stage queued are
    counted in that stage.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, device=None):
        self.clock, self.device = clock, device
        self.begin(None)

    def begin(self, stage: str | None) -> None:
        """Forget the last call's record and start ``stage``."""
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.clips = dict.fromkeys(MODEL_STAGES, 0)
        self.stage, self.last = None, 0.0
        if stage is not None:
            self.switch(stage)

    def switch(self, stage: str | None, clips: int = 0) -> str | None:
        """Charge the time since the last switch to the running stage and start ``stage`` (None: stop), which runs
        a model on ``clips`` clips; returns the stage that was running."""
        synchronize(self.device)
        now = self.clock()
        if self.stage is not None:
            self.seconds[self.stage] += now - self.last
        if clips:
            self.clips[stage] += clips
        previous, self.stage, self.last = self.stage, stage, now
        return previous

    def record(self) -> list[float]:
        """The last call's seconds per stage (:data:`STAGES`), then its clips per model stage (:data:`MODEL_STAGES`):
        numbers that add up over calls (:func:`cdlib.method.cost.fastest_parts`)."""
        return [self.seconds[s] for s in STAGES] + [float(self.clips[s]) for s in MODEL_STAGES]

    @staticmethod
    def split(values: Sequence[float]) -> tuple[dict[str, float], dict[str, float]]:
        """A :meth:`record` (or a sum of them) as ``(seconds per stage, clips per model stage)``."""
        return dict(zip(STAGES, values)), dict(zip(MODEL_STAGES, values[len(STAGES):]))


class _TeacherPending(Exception):
    """Raised by :class:`_GatheredTeacher` to stop a policy at its teacher call."""


class _GatheredTeacher:
    """The teacher of one video of a batch (throughput mode).

    The first call records the clips the policy asks for and stops it with
    :class:`_TeacherPending`; once the batch's teacher has run on the clips that
    every video asked for, ``logits`` is set and the policy runs again to the
    end. This relies on the contract of :mod:`cdlib.method.gating`: one teacher call
    per video, on clips chosen without the teacher's answer.
    """

    def __init__(self):
        self.indices: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        if self.logits is None:
            self.indices = indices
            raise _TeacherPending
        return self.logits


class TimedPipeline:
    """The real inference pipeline on the first ``num_videos`` test videos, as the wall-clock timing runs it.

    Models run as :func:`cdlib.method.cost.timing_model` prepares them with ``bench.backend`` on the runtime's
    device (``auto``: frozen by :func:`cdlib.models.inference_module` on the CPU, eager
    under bf16 autocast on a GPU; ``backend`` the one used, ``prepare_s`` each model's preparation seconds);
    clips stay uint8 until
    :func:`cdlib.models.preprocess`, which is part of every timed run. ``stages``
    (:class:`StageTimer`, on ``clock``) holds the last run's seconds per stage.
    """

    def __init__(self, cfg: Config, num_videos: int, store: ArtifactStore | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.runtime = cfg.resolved_runtime
        self.stages = StageTimer(clock, self.runtime.device)
        source = get_clips(cfg, "test", store)
        self.clips = [source.video_clips(v) for v in range(min(num_videos, source.num_videos))]
        self.labels = source.video_labels()[:num_videos].tolist()
        # every model prepared by the inference backend (bench.backend) on one video's clips, its preparation
        # timed apart from inference (prepare_s)
        example = (preprocess(to_device(self.clips[0], self.runtime)),)

        def prepared(model):
            return timing_model(model, self.runtime, cfg.bench.backend, example)

        self.teacher = prepared(get_model(cfg, "teacher", store).model)
        self.backend = self.teacher.backend
        used = {get_policy(name).student for name in evaluated_policies(cfg)} - {None}
        students = {v: get_model(cfg, v, store).model for v in STUDENTS if v in used}
        self.students = {v: prepared(model) for v, model in students.items()}
        #: the students whose clips see their video (cdlib.method.context): a batch of videos tells them each one's clips
        self.video_context = {v for v, model in students.items() if getattr(model, "video_context", False)}
        self.exit_teacher = self.exit_gate = None
        if any(get_policy(name).needs_exit_score for name in evaluated_policies(cfg)):
            # frame_exit: the teacher that also returns its features, frozen like the teacher, and the exit gate
            self.exit_teacher = prepared(TeacherWithFeatures(get_model(cfg, "teacher", store).model))
            self.exit_gate = get_exit_gate(cfg, store).to(self.runtime.device)
        #: seconds each model's preparation took (wall_clock.prepare_s), never part of a timed call
        self.prepare_s = {"teacher": self.teacher.prepare_s, **{v: m.prepare_s for v, m in self.students.items()},
                          **({"exit_teacher": self.exit_teacher.prepare_s} if self.exit_teacher is not None else {})}

    def _video(self, v: int, teacher, logits=None, score_logit=None) -> VideoOutputs:
        """Video ``v`` for a policy: its student's outputs if it has a student, else none (teacher-only)."""
        score = torch.sigmoid(score_logit) if score_logit is not None else None
        return VideoOutputs(logits, teacher, score, self.labels[v], len(self.clips[v]))

    @torch.inference_mode()
    def run_video(self, spec: PolicySpec, knob, v: int, generator: torch.Generator) -> Decision:
        """Latency mode: video ``v`` alone, the teacher called lazily on the clips the policy asks for."""
        stages = self.stages
        with autocast(self.runtime):
            stages.begin("preprocess")
            x = preprocess(to_device(self.clips[v], self.runtime))
            if spec.needs_exit_score:
                decision = self.run_exit(knob, x, [len(self.clips[v])])[0]
                stages.switch(None)
                return decision

            def teacher(idx):
                """The lazy teacher of this video, its forward charged to the teacher, not to the decision."""
                previous = stages.switch("teacher", idx.numel())
                logits = self.teacher(x[idx])
                stages.switch(previous)
                return logits

            # a knob that reads no student (cdlib.method.gating.PolicySpec.reads_student) does not run it
            reads = spec.reads_student(knob, len(self.clips[v]))
            outputs = (None, None)
            if reads:
                stages.switch("student", len(self.clips[v]))
                outputs = self.students[spec.student](x)
            stages.switch("decision")
            decision = spec.fn(self._video(v, teacher, *outputs), knob, generator=generator)
            stages.switch(None)
            return decision

    @torch.inference_mode()
    def run_batch(self, spec: PolicySpec, knob, videos: Sequence[int], generator: torch.Generator
                  ) -> list[Decision]:
        """Throughput mode: the student on every clip of ``videos`` in one call, each video's decision, and one
        teacher call on the clips all the decisions asked for."""
        with autocast(self.runtime):
            self.stages.begin("preprocess")
            decisions = self._run_batch(spec, knob, videos, generator)
            self.stages.switch(None)
            return decisions

    def _run_batch(self, spec: PolicySpec, knob, videos: Sequence[int], generator: torch.Generator
                   ) -> list[Decision]:
        counts = [len(self.clips[v]) for v in videos]
        x = preprocess(to_device(torch.cat([self.clips[v] for v in videos]), self.runtime))
        starts = torch.tensor([0, *counts[:-1]]).cumsum(0).tolist()
        if spec.needs_exit_score:
            return self.run_exit(knob, x, counts)
        # the student runs on the clips of the videos whose decision reads it (PolicySpec.reads_student)
        reads = [spec.reads_student(knob, n) for n in counts]
        per_video = [()] * len(videos)
        if any(reads):
            read_counts = [n for n, r in zip(counts, reads) if r]
            self.stages.switch("student", sum(read_counts))
            student_x = x if all(reads) else x[torch.cat([torch.arange(start, start + n) for start, n, r
                                                          in zip(starts, counts, reads) if r])]
            student = self.students[spec.student]
            logits, score_logit = student(student_x, read_counts) if spec.student in self.video_context \
                else student(student_x)
            split = iter(zip(torch.split(logits, read_counts), torch.split(score_logit, read_counts)))
            per_video = [next(split) if r else () for r in reads]
        self.stages.switch("decision")
        decisions, pending = [], []
        for i, (v, start, outputs) in enumerate(zip(videos, starts, per_video)):
            teacher = _GatheredTeacher()
            video = self._video(v, teacher, *outputs)
            state = generator.get_state()
            try:
                decisions.append(spec.fn(video, knob, generator=generator))
            except _TeacherPending:
                decisions.append(None)
                pending.append((i, video, teacher, start, state))
        if pending:
            indices = torch.cat([teacher.indices + start for _, _, teacher, start, _ in pending])
            self.stages.switch("teacher", indices.numel())
            gathered = self.teacher(x[indices])
            self.stages.switch("decision")
            offset = 0
            for i, video, teacher, _, state in pending:
                teacher.logits = gathered[offset:offset + teacher.indices.numel()]
                offset += teacher.indices.numel()
                generator.set_state(state)  # the same draws as the first, interrupted run
                decisions[i] = spec.fn(video, knob, generator=generator)
        return decisions

    def run_exit(self, threshold: float, x: torch.Tensor, counts: Sequence[int]) -> list[Decision]:
        """``frame_exit`` at ``threshold`` on preprocessed clips ``x`` of videos with ``counts`` clips (stored one
        video after the other), step-synchronous: at step ``t``, one teacher call on the ``t``-th clip in the
        visiting order of every video still running, the running means of its features and softmax, the exit
        gate on them, and every video whose gate reaches the threshold (or that has no clip left) stops. One
        video is the latency mode, a batch the throughput mode."""
        self.stages.switch("decision")  # the visiting order and the exit test are the decision
        threshold = check_threshold(threshold)
        if self.exit_teacher is None:
            raise ValueError("frame_exit: the pipeline has no exit gate (frame_exit was not among the evaluated policies)")
        starts = torch.tensor([0, *counts[:-1]], dtype=torch.long).cumsum(0)
        orders = [visiting_order(n) for n in counts]
        running = list(range(len(counts)))
        sums_f = sums_p = None
        decisions: list[Decision | None] = [None] * len(counts)
        step = 0
        while running:
            clips = torch.tensor([int(starts[i]) + int(orders[i][step]) for i in running], device=x.device)
            self.stages.switch("teacher", len(running))
            logits, features = self.exit_teacher(x[clips])
            self.stages.switch("decision")
            probs, features = torch.softmax(logits.float(), dim=1), features.float()
            if sums_f is None:
                sums_f, sums_p = features, probs
            else:
                sums_f, sums_p = sums_f + features, sums_p + probs
            step += 1
            with torch.autocast(device_type=x.device.type, enabled=False):  # the gate in float32, as it was scored
                exits = (torch.sigmoid(self.exit_gate(torch.cat([sums_f / step, sums_p / step], dim=1)))
                         >= threshold).tolist()
            keep = []
            for j, i in enumerate(running):
                if exits[j] or step == counts[i]:
                    decisions[i] = Decision((sums_p[j] / step).cpu(), step, 0, gate_steps=step)
                else:
                    keep.append(j)
            running = [running[j] for j in keep]
            sums_f, sums_p = sums_f[keep], sums_p[keep]
        return decisions


def measure_wall_clock(cfg: Config, policies: dict[str, list[dict]], selected: dict[str, dict[str, int | None]],
                       gflops_per_clip: dict[str, float], store: ArtifactStore | None = None,
                       clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time the operating points end to end and add the wall-clock keys to them (module docstring).

    The points named in ``selected`` (:func:`cdlib.method.selection.select_points`) and
    the dense teacher are timed in latency and throughput mode on the first
    ``bench.wall_selected_videos`` test videos; every other point in latency
    mode on the first ``bench.wall_videos``. ``gflops_per_clip``: every model's
    GFLOPs per clip (``cost.gflops_per_clip`` of the result), for the achieved
    rates. Returns the ``wall_clock`` block.
    """
    configure_backend(cfg.resolved_runtime)  # CPU: runtime.num_threads threads, as in training and prediction
    num_test = get_clips(cfg, "test", store).num_videos
    selected_videos = min(cfg.bench.wall_selected_videos, num_test)
    curve_videos = min(cfg.bench.wall_videos, num_test)
    pipeline = TimedPipeline(cfg, max(selected_videos, curve_videos), store, clock=clock)
    chosen = {("dense_teacher", 0)} | {(name, i) for name, picks in selected.items()
                                       for i in picks.values() if i is not None}
    chosen = [key for key in _all_points(policies) if key in chosen]  # in the policies' order, dense first
    rest = [key for key in _all_points(policies) if key not in chosen]

    def timed(keys, run, units, desc):
        """Per point: seconds per video, the ratio of totals to the dense teacher (the first key), and per video
        its seconds per stage and clips per model stage (:meth:`StageTimer.record`)."""
        calls = []
        for name, i in keys:
            spec, knob = get_policy(name), _knob(policies[name][i]["knob"])
            generator = torch.Generator().manual_seed(cfg.seed)
            # synchronised after each call, so a GPU's queued kernels are counted to their end
            calls.append(lambda unit, spec=spec, knob=knob, generator=generator:
                         (run(spec, knob, unit, generator), synchronize(pipeline.runtime.device)))
        parts = torch.zeros(len(calls), cfg.bench.wall_repeats, len(units), len(STAGES) + len(MODEL_STAGES),
                            dtype=torch.float64)

        def record(j, r, u):
            parts[j, r, u] = torch.tensor(pipeline.stages.record(), dtype=torch.float64)

        seconds = time_interleaved(calls, units, cfg.bench.wall_repeats, clock=clock, desc=desc, after=record)
        videos = sum(len(u) if isinstance(u, range) else 1 for u in units)
        return ((fastest_totals(seconds) / videos).tolist(), ratio_of_totals(seconds, 0).tolist(),
                [StageTimer.split(values) for values in (fastest_parts(seconds, parts) / videos).tolist()])

    log(f"timing {len(chosen)} selected operating points on {selected_videos} test videos")
    latency = timed(chosen, pipeline.run_video, list(range(selected_videos)), "latency passes")
    batch = cfg.bench.throughput_batch
    batches = [range(s, min(s + batch, selected_videos)) for s in range(0, selected_videos, batch)]
    throughput = timed(chosen, pipeline.run_batch, batches, "throughput passes")
    for (name, i), wall, ratio, split, t_wall, t_ratio, t_split in zip(chosen, *latency, *throughput):
        policies[name][i].update(wall_s_per_video=wall, wall_ratio_to_dense=ratio, wall_videos=selected_videos,
                                 throughput_s_per_video=t_wall, throughput_wall_ratio_to_dense=t_ratio,
                                 **_stage_keys(split), **_stage_keys(t_split, "throughput_"))
    if curve_videos > 0 and rest:
        log(f"timing the other {len(rest)} operating points on {curve_videos} test videos")
        curve = timed([("dense_teacher", 0), *rest], pipeline.run_video, list(range(curve_videos)), "curve passes")
        for (name, i), wall, ratio, split in zip(rest, curve[0][1:], curve[1][1:], curve[2][1:]):
            policies[name][i].update(wall_s_per_video=wall, wall_ratio_to_dense=ratio, wall_videos=curve_videos,
                                     **_stage_keys(split))
    return {"selected_videos": selected_videos, "curve_videos": curve_videos if rest else 0,
            "passes": cfg.bench.wall_repeats, "throughput_batch": batch, "threads": torch.get_num_threads(),
            "backend": pipeline.backend, "prepare_s": dict(pipeline.prepare_s),
            "achieved_gflop_s": {mode: _achieved_rates(chosen, parts, gflops_per_clip)
                                 for mode, parts in (("latency", latency[2]), ("throughput", throughput[2]))}}


def _stage_keys(split: tuple[dict, dict], prefix: str = "") -> dict[str, float]:
    """A point's seconds per video of each stage, ``{prefix}preprocess_s`` ..., from a :meth:`StageTimer.split`."""
    return {f"{prefix}{stage}_s": seconds for stage, seconds in split[0].items()}


def _achieved_rates(keys: Sequence[tuple[str, int]], splits: Sequence[tuple[dict, dict]],
                    gflops_per_clip: dict[str, float]) -> dict[str, float]:
    """Each model's achieved GFLOP/s on all of a video's clips, ``Σ clips · C_m / Σ seconds``
    (:func:`cdlib.method.cost.achieved_gflop_s`), from the timed points' :meth:`StageTimer.split`: the teacher at the
    dense teacher's point (other points run it on fewer clips per call), each student over the points that run it
    (always on all of a video's clips)."""
    runs = {"teacher": ("teacher", [splits[keys.index(("dense_teacher", 0))]])}
    for (name, _), split in zip(keys, splits):
        student = get_policy(name).student
        if student is not None and split[1]["student"] > 0:
            runs.setdefault(student, ("student", []))[1].append(split)
    return {model: achieved_gflop_s(sum(clips[stage] for _, clips in picked) * gflops_per_clip[model],
                                    sum(seconds[stage] for seconds, _ in picked))
            for model, (stage, picked) in runs.items()}


def _all_points(policies: dict[str, list[dict]]) -> list[tuple[str, int]]:
    """(policy, index) of every point, the dense teacher first."""
    keys = [(name, i) for name, points in policies.items() for i in range(len(points))]
    return sorted(keys, key=lambda key: key != ("dense_teacher", 0))


def _knob(value):
    """A point's knob as the policy takes it (JSON turns tuples into lists)."""
    return tuple(value) if isinstance(value, list) else value

