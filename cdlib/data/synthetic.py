"""The embedded default data: procedural action videos where only part of a video shows its action.

Each video is ``L`` RGB frames of ``H×W`` (``data.video_length``, ``data.height``,
``data.width``), cut into ``N = L // T`` non-overlapping clips of ``T`` frames
(``data.clip_length``). It is generated, deterministically in ``(seed, split,
index)``, as follows:

1. **Label.** Labels are balanced: a per-split permutation of ``index % K``
   (``K = data.num_classes``), so every class appears in every split. Class ``k``
   is the motion pattern ``PATTERNS[k]``.
2. **Background.** A smooth random texture (a tinted base colour plus a few
   low-frequency sinusoids), different for every video.
3. **Action.** One temporal segment of ``round(ρ·L)`` frames
   (``ρ = data.informative_fraction``; in the test split
   ``data.test_informative_fraction`` instead, where it is not 0) at a uniformly
   random position. Inside it a
   foreground sprite (an "L" shape, so that rotation is visible) performs the
   class's motion. Its colour, contrast, size, orientation, position, speed and
   phase are random per video and independent of the class: only the motion
   identifies it. Motions wrap around the frame edges (a torus), so a sprite never
   leaves the picture however long the segment.
4. **Distractors.** In each clip with no action frame, with probability
   ``data.distractor_rate``, another sprite performs the motion of a random other
   class for the whole clip, at ``data.distractor_salience`` times the action
   sprite's contrast: uninformative clips are misleading, not blank.
5. **Nuisances** everywhere: small camera shake (integer jitter of the whole
   scene), flicker (a slow global brightness modulation of a few percent) and
   Gaussian sensor noise of std ``data.noise_level`` on frames in ``[0, 1]``.
6. **Test-time shift.** In the test split only, a fraction ``data.test_shift`` of
   the clips with no action frame of each video gets a corruption never seen in
   training: bright flashing blobs, a flashing coloured patch, or a strong colour
   cast. Train and val never have it; at 0 (the default) there is none.

A clip is *informative* (``VideoMeta.informative``) when at least half of its
frames lie inside the action segment.

Every random component draws from its own stream (action and scene,
distractors, noise, shift), each seeded by ``(seed, split, index)``: a video is
bit-identical whatever the access order, and changing ``distractor_rate`` or
``test_shift`` leaves the rest of the video unchanged (the shift changes only the
corrupted clips of test videos).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cdlib.data.base import SPLITS, ClipDataset, VideoMeta
from cdlib.runtime.errors import ConfigError

#: Motion patterns in class order: class ``k`` is ``PATTERNS[k]``. The first eight
#: hold three pairs that differ only in direction (a single frame cannot tell them
#: apart); later ones add rotation and more translations.
PATTERNS: tuple[str, ...] = (
    "move_right",
    "move_left",
    "circle_cw",
    "circle_ccw",
    "expand",
    "contract",
    "zigzag",
    "bounce",
    "rotate_cw",
    "rotate_ccw",
    "move_up",
    "move_down",
    "swing",
)

_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
# Spawn keys of the independent random streams of one video.
_STREAM_SCENE, _STREAM_DISTRACTOR, _STREAM_NOISE, _STREAM_SHIFT = 0, 1, 2, 3
_STREAM_LABELS = 1000  # per-split label permutation

# Geometry in pixels of a 32×32 frame; scaled by min(H, W) / 32.
_SPRITE_SIZE = 9.0  # extent of the L at scale 1
_SPEED = (1.2, 1.8)  # translation speed, px/frame
_CIRCLE_RADIUS = (5.0, 7.0)
_CIRCLE_PERIOD = 12.0  # frames per turn: two thirds of a turn per 8-frame clip
_SCALE_RANGE = (0.4, 2.0)  # expand/contract sweep this range once per period (sawtooth)
_SCALE_PERIOD = 20.0
_SPIN_SPEED = 2 * np.pi / 20  # rotate: 18°/frame, well under the L's ambiguity
_OSC_PERIOD = 8.0  # zigzag/bounce/swing: one full period per 8-frame clip
_OSC_AMPLITUDE = (4.0, 6.0)
_CONTRAST = (0.38, 0.55)  # L2 norm (over RGB) of the action sprite's colour offset

# The L shape in units of half its extent: two rectangles (centre, half-sizes),
# centred on the shape's centroid so that rotation and scaling keep it in place.
_L_RECTS = (((0.26, 0.34), (1.0, 0.3)), ((-0.44, -0.26), (0.3, 0.9)))


@dataclass
class _Sprite:
    pattern: str
    x0: float
    y0: float
    theta0: float
    size: float  # half extent, px
    speed: float
    radius: float
    amplitude: float
    phase: float  # in [0, 1): start phase of periodic motions
    colour: np.ndarray  # RGB offset added to the background, norm = contrast


@dataclass
class _Corruption:
    clip: int
    kind: str  # blobs | flash | cast
    params: dict


@dataclass
class _Plan:
    """Every random choice of one video except its per-pixel noise (cheap to compute)."""

    label: int
    start: int
    end: int
    sprite: _Sprite
    distractors: list[tuple[int, _Sprite]]  # (clip index, sprite)
    base_colour: np.ndarray
    waves: np.ndarray  # [k, 4]: fx, fy (cycles/px), phase, amplitude
    wave_tints: np.ndarray  # [k, 3]
    shake: np.ndarray  # [L, 2] integer (dy, dx)
    flicker: np.ndarray  # [L] gain
    corruptions: list[_Corruption] = field(default_factory=list)


class SyntheticActionVideos(ClipDataset):
    """One split of the procedural action videos (see the module docstring).

    Item ``i`` is ``(clips uint8 [N, T, H, W, 3], label)``; :meth:`video` gives all
    ``L`` frames and :meth:`meta` the action segment and which clips are
    informative. Pixels are rendered on access (a few ms per video), never stored.
    """

    def __init__(self, data_cfg, split: str, seed: int = 0, *, _nuisance: bool = True):
        # ``_nuisance=False`` (tests only) turns off texture, flicker and shake so that
        # a frame changes only where a sprite moves.
        if split not in _SPLIT_IDS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        # every knob of data_cfg was checked when the config was built (cdlib.experiment.config.DataConfig)
        c = data_cfg
        rho = c.test_informative_fraction if split == "test" and c.test_informative_fraction > 0 \
            else c.informative_fraction
        self.cfg = c
        self.split = split
        self.seed = int(seed)
        self.clip_length = int(c.clip_length)
        self.video_length = int(c.video_length)
        self.num_clips = self.video_length // self.clip_length
        self.height, self.width = int(c.height), int(c.width)
        self.class_names = list(PATTERNS[: c.num_classes])
        self.skipped = []
        self._split_id = _SPLIT_IDS[split]
        self._nuisance = bool(_nuisance)
        self._unit = min(self.height, self.width) / 32.0
        self.informative_fraction = float(rho)  # of this split
        self._action_len = int(round(rho * self.video_length))
        n = {"train": c.num_train, "val": c.num_val, "test": c.num_test}[split]
        rng = self._rng(None, _STREAM_LABELS)
        self._labels = rng.permutation(np.arange(n) % c.num_classes).astype(np.int64)
        # Pixel grids, shared by every render.
        self._ys = np.arange(self.height, dtype=np.float32)[None, :, None]
        self._xs = np.arange(self.width, dtype=np.float32)[None, None, :]

    # ------------------------------------------------------------------ API
    def __len__(self) -> int:
        return len(self._labels)

    def _index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"video index {index} out of range for {len(self)} videos")
        return i

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        i = self._index(index)
        frames = self._render(i)
        n, t = self.num_clips, self.clip_length
        clips = frames[: n * t].reshape(n, t, self.height, self.width, 3)
        return torch.from_numpy(np.ascontiguousarray(clips)), int(self._labels[i])

    def video(self, index: int) -> torch.Tensor:
        """All ``L`` frames of video ``index``: uint8 ``[L, H, W, 3]``."""
        return torch.from_numpy(self._render(self._index(index)))

    def label(self, index: int) -> int:
        return int(self._labels[self._index(index)])

    def meta(self, index: int) -> VideoMeta:
        i = self._index(index)
        start, end = self._segment(i)
        return VideoMeta(
            name=f"synthetic/{self.split}/{i:05d}",
            label=int(self._labels[i]),
            num_clips=self.num_clips,
            informative=self._informative(start, end),
            action_start=start,
            action_end=end,
        )

    def describe(self) -> dict:
        d = super().describe()
        c = self.cfg
        d.update(
            source="synthetic",
            seed=self.seed,
            video_length=self.video_length,
            clip_length=self.clip_length,
            clips_per_video=self.num_clips,
            size=[self.height, self.width],
            informative_fraction=self.informative_fraction,
            distractor_rate=c.distractor_rate,
            distractor_salience=c.distractor_salience,
            noise_level=c.noise_level,
            test_shift=c.test_shift if self.split == "test" else 0.0,
        )
        return d

    # ------------------------------------------------------------- planning
    def _rng(self, index: int | None, stream: int) -> np.random.Generator:
        entropy = [self.seed, self._split_id] + ([] if index is None else [index])
        return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream,)))

    def _segment(self, i: int) -> tuple[int, int]:
        # The first draw of the scene stream, so meta() needs no rendering.
        rng = self._rng(i, _STREAM_SCENE)
        start = int(rng.integers(0, self.video_length - self._action_len + 1))
        return start, start + self._action_len

    def _informative(self, start: int, end: int) -> np.ndarray:
        t = self.clip_length
        lo = np.arange(self.num_clips) * t
        inside = np.clip(np.minimum(lo + t, end) - np.maximum(lo, start), 0, None)
        return 2 * inside >= t

    def _quiet_clips(self, start: int, end: int) -> np.ndarray:
        """Clips with no action frame at all: where distractors and corruptions may go."""
        t = self.clip_length
        lo = np.arange(self.num_clips) * t
        return (lo + t <= start) | (lo >= end)

    def _sprite(self, rng: np.random.Generator, pattern: str, contrast: float) -> _Sprite:
        u = self._unit
        # Colour offset: a random hue with a definite brightness sign, so that the
        # sprite stands out in luminance too; its L2 norm is the contrast.
        lum = rng.choice([-1.0, 1.0]) * np.ones(3) / np.sqrt(3)
        hue = rng.normal(size=3)
        hue /= np.linalg.norm(hue) + 1e-8
        direction = 0.75 * lum + 0.55 * hue
        colour = (contrast * direction / np.linalg.norm(direction)).astype(np.float32)
        return _Sprite(
            pattern=pattern,
            x0=float(rng.uniform(0, self.width)),
            y0=float(rng.uniform(0, self.height)),
            theta0=float(rng.uniform(0, 2 * np.pi)),
            size=float(0.5 * _SPRITE_SIZE * u * rng.uniform(0.85, 1.15)),
            speed=float(rng.uniform(*_SPEED) * u),
            radius=float(rng.uniform(*_CIRCLE_RADIUS) * u),
            amplitude=float(rng.uniform(*_OSC_AMPLITUDE) * u),
            phase=float(rng.uniform()),
            colour=colour,
        )

    def _plan(self, i: int) -> _Plan:
        c, L = self.cfg, self.video_length
        label = int(self._labels[i])
        rng = self._rng(i, _STREAM_SCENE)
        start = int(rng.integers(0, L - self._action_len + 1))  # same draw as _segment
        end = start + self._action_len
        contrast = float(rng.uniform(*_CONTRAST))
        sprite = self._sprite(rng, PATTERNS[label], contrast)
        base = rng.uniform(0.3, 0.6) + rng.uniform(-0.08, 0.08, size=3)
        k = 5
        waves = np.stack(
            [
                rng.uniform(-3, 3, k) / self.width,  # cycles per pixel: at most 3 per frame
                rng.uniform(-3, 3, k) / self.height,
                rng.uniform(0, 2 * np.pi, k),
                rng.uniform(0.02, 0.05, k),
            ],
            axis=1,
        )
        tints = rng.uniform(0.5, 1.5, size=(k, 3))
        # Camera shake: mostly still, sometimes a one-pixel jolt.
        shake = np.clip(np.rint(rng.normal(0, 0.5 * max(self._unit, 1.0), size=(L, 2))), -2, 2).astype(np.int64)
        f = np.arange(L)
        flicker = 1 + rng.uniform(0.015, 0.04) * np.sin(2 * np.pi * f / rng.uniform(10, 40) + rng.uniform(0, 6.3))
        flicker = flicker + rng.normal(0, 0.006, size=L)
        if not self._nuisance:
            waves[:, 3] = 0
            shake[:] = 0
            flicker[:] = 1

        # Distractors: every quiet clip draws its dice and sprite whatever the rate,
        # so that the rate changes only which clips get one.
        drng = self._rng(i, _STREAM_DISTRACTOR)
        quiet = self._quiet_clips(start, end)
        distractors = []
        others = [k2 for k2 in range(c.num_classes) if k2 != label]
        for j in range(self.num_clips):
            roll = drng.uniform()
            other = others[int(drng.integers(len(others)))]
            d = self._sprite(drng, PATTERNS[other], contrast * c.distractor_salience)
            if quiet[j] and roll < c.distractor_rate and c.distractor_salience > 0:
                distractors.append((j, d))

        corruptions = []
        if self.split == "test" and c.test_shift > 0:
            corruptions = self._plan_shift(i, np.flatnonzero(quiet))
        return _Plan(label, start, end, sprite, distractors, base, waves, tints, shake, flicker, corruptions)

    def _plan_shift(self, i: int, quiet: np.ndarray) -> list[_Corruption]:
        rng = self._rng(i, _STREAM_SHIFT)
        s = self.cfg.test_shift
        # Stochastic rounding: exactly floor or ceil of s·n per video, s·n on average.
        count = int(np.floor(s * len(quiet) + rng.uniform()))
        chosen = np.sort(rng.permutation(quiet)[: min(count, len(quiet))])
        H, W, T = self.height, self.width, self.clip_length
        out = []
        for j in chosen:
            kind = ("blobs", "flash", "cast")[int(rng.integers(3))]
            if kind == "blobs":
                nb = int(rng.integers(2, 5))
                params = dict(
                    y=rng.uniform(0, H, size=(T, nb)), x=rng.uniform(0, W, size=(T, nb)),
                    r=rng.uniform(1.5, 3.5, size=nb) * self._unit,
                    colour=rng.uniform(0.6, 1.0, size=(nb, 3)),
                    on=rng.uniform(size=(T, nb)) < 0.75,
                )
            elif kind == "flash":
                ph, pw = int(rng.integers(H // 4, H // 2 + 1)), int(rng.integers(W // 4, W // 2 + 1))
                params = dict(
                    y=int(rng.integers(0, H - ph + 1)), x=int(rng.integers(0, W - pw + 1)), h=ph, w=pw,
                    colour=rng.uniform(0, 1, size=(T, 3)), on=rng.uniform(size=T) < 0.6,
                )
            else:
                gain = rng.uniform(0.2, 0.6, size=3)
                gain[int(rng.integers(3))] = rng.uniform(1.6, 2.2)
                params = dict(gain=gain, offset=rng.uniform(-0.1, 0.2, size=3))
            out.append(_Corruption(int(j), kind, params))
        return out

    # ------------------------------------------------------------ rendering
    def _trajectory(self, s: _Sprite, t: np.ndarray):
        """Centre (x, y), angle and scale of sprite ``s`` at times ``t`` (frames since its start)."""
        x = np.full_like(t, s.x0)
        y = np.full_like(t, s.y0)
        theta = np.full_like(t, s.theta0)
        scale = np.ones_like(t)
        p = s.pattern
        tri = lambda z: 4 * np.abs(z - np.floor(z + 0.5)) - 1  # triangle wave in [-1, 1], period 1
        # Image y grows downward, so increasing angles turn clockwise on screen.
        if p == "move_right":
            x = s.x0 + s.speed * t
        elif p == "move_left":
            x = s.x0 - s.speed * t
        elif p == "move_down":
            y = s.y0 + s.speed * t
        elif p == "move_up":
            y = s.y0 - s.speed * t
        elif p in ("circle_cw", "circle_ccw"):
            sign = 1.0 if p == "circle_cw" else -1.0
            phi = 2 * np.pi * (s.phase + sign * t / _CIRCLE_PERIOD)
            x = s.x0 + s.radius * np.cos(phi)
            y = s.y0 + s.radius * np.sin(phi)
        elif p in ("expand", "contract"):
            sign = 1.0 if p == "expand" else -1.0
            lo, hi = _SCALE_RANGE
            z = s.phase + sign * t / _SCALE_PERIOD
            scale = lo * (hi / lo) ** (z - np.floor(z))
        elif p in ("rotate_cw", "rotate_ccw"):
            sign = 1.0 if p == "rotate_cw" else -1.0
            theta = s.theta0 + sign * _SPIN_SPEED * t
        elif p == "zigzag":  # rightward drift, up and down once per clip
            x = s.x0 + 0.6 * s.speed * t
            y = s.y0 + s.amplitude * tri(s.phase + t / _OSC_PERIOD)
        elif p == "bounce":  # hops: vertical |sine|, no drift
            y = s.y0 - 1.3 * s.amplitude * np.abs(np.sin(np.pi * (s.phase + t / _OSC_PERIOD)))
        elif p == "swing":  # horizontal pendulum, no drift
            x = s.x0 + s.amplitude * np.sin(2 * np.pi * (s.phase + t / _OSC_PERIOD))
        else:  # pragma: no cover - PATTERNS and this switch are kept in sync
            raise AssertionError(p)
        return x, y, theta, scale

    def _coverage(self, s: _Sprite, t: np.ndarray, shake: np.ndarray) -> np.ndarray:
        """Anti-aliased sprite coverage in [0, 1], ``[len(t), H, W]``, on a torus."""
        x, y, theta, scale = self._trajectory(s, t.astype(np.float32))
        H, W = self.height, self.width
        x = (x + shake[:, 1]).astype(np.float32)[:, None, None]
        y = (y + shake[:, 0]).astype(np.float32)[:, None, None]
        # Wrapped offsets from the centre: the sprite re-enters on the opposite edge.
        dx = (self._xs - x + W / 2) % W - W / 2
        dy = (self._ys - y + H / 2) % H - H / 2
        cs = np.cos(theta).astype(np.float32)[:, None, None]
        sn = np.sin(theta).astype(np.float32)[:, None, None]
        u = cs * dx + sn * dy
        v = cs * dy - sn * dx
        k = (s.size * scale).astype(np.float32)[:, None, None]
        cover = None
        for (cu, cv), (hu, hv) in _L_RECTS:
            # 0.5 + (half-width − distance): 1 inside, 0 outside, linear over the edge pixel.
            a = np.clip(0.5 + k * hu - np.abs(u - k * cu), 0, 1) * np.clip(0.5 + k * hv - np.abs(v - k * cv), 0, 1)
            cover = a if cover is None else np.maximum(cover, a)
        return cover

    def _render(self, i: int) -> np.ndarray:
        plan = self._plan(i)
        L, H, W, T = self.video_length, self.height, self.width, self.clip_length
        # Background texture on a padded grid, then cut with each frame's shake offset.
        m = 2
        gy = np.arange(-m, H + m, dtype=np.float64)[:, None]
        gx = np.arange(-m, W + m, dtype=np.float64)[None, :]
        tex = np.broadcast_to(plan.base_colour, (H + 2 * m, W + 2 * m, 3)).copy()
        for (fx, fy, ph, amp), tint in zip(plan.waves, plan.wave_tints):
            if amp:
                tex += (amp * np.cos(2 * np.pi * (fx * gx + fy * gy) + ph))[..., None] * tint
        tex = tex.astype(np.float32)
        frames = np.empty((L, H, W, 3), dtype=np.float32)
        for f, (sy, sx) in enumerate(plan.shake):  # slicing beats fancy indexing 10x here
            frames[f] = tex[m - sy : m - sy + H, m - sx : m - sx + W]

        t = np.arange(plan.end - plan.start)
        cover = self._coverage(plan.sprite, t, plan.shake[plan.start : plan.end])
        frames[plan.start : plan.end] += cover[..., None] * plan.sprite.colour
        for j, d in plan.distractors:
            sl = slice(j * T, (j + 1) * T)
            frames[sl] += self._coverage(d, np.arange(T), plan.shake[sl])[..., None] * d.colour

        frames *= plan.flicker.astype(np.float32)[:, None, None, None]
        for corr in plan.corruptions:
            self._corrupt(frames[corr.clip * T : (corr.clip + 1) * T], corr)
        if self.cfg.noise_level > 0:
            # torch's normal sampler is ~3x faster than numpy's, and noise is the bulk of
            # the render time; its seed comes from the video's own noise stream.
            gen = torch.Generator().manual_seed(int(self._rng(i, _STREAM_NOISE).integers(2**62)))
            noise = torch.randn(frames.shape, generator=gen, dtype=torch.float32).numpy()
            frames += noise * np.float32(self.cfg.noise_level)
        np.clip(frames, 0, 1, out=frames)
        return (frames * 255 + 0.5).astype(np.uint8)

    def _corrupt(self, clip: np.ndarray, corr: _Corruption) -> None:
        """Apply one test-time corruption to ``clip`` ``[T, H, W, 3]`` in place."""
        p = corr.params
        if corr.kind == "blobs":  # bright Gaussian blobs jumping and flashing frame to frame
            dy = self._ys[0, :, :, None] - p["y"][:, None, None, :].astype(np.float32)  # [T,H,1,nb]
            dx = self._xs[0, :, :, None] - p["x"][:, None, None, :].astype(np.float32)  # [T,1,W,nb]
            g = np.exp(-(dx**2 + dy**2) / (2 * p["r"].astype(np.float32) ** 2)) * p["on"][:, None, None, :]
            clip += np.einsum("thwb,bc->thwc", g.astype(np.float32), p["colour"].astype(np.float32))
        elif corr.kind == "flash":  # a rectangle of random colour switching on and off
            y, x, h, w = p["y"], p["x"], p["h"], p["w"]
            on = p["on"]
            clip[on, y : y + h, x : x + w] = p["colour"][on, None, None, :].astype(np.float32)
        else:  # strong colour cast
            clip *= p["gain"].astype(np.float32)
            clip += p["offset"].astype(np.float32)
