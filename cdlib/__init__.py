"""cdlib: confidence distillation for efficient action recognition.

The library behind the Confidence Distillation book: synthetic and real action
videos (:mod:`cdlib.data`), teacher and student models (:mod:`cdlib.models`),
the distillation loss (:mod:`cdlib.losses`), training with cached artifacts
(:mod:`cdlib.train`, :mod:`cdlib.artifacts`) on any device and over several
processes (:mod:`cdlib.device`, :mod:`cdlib.distributed`), gating policies
(:mod:`cdlib.gating`), cost accounting (:mod:`cdlib.cost`), calibration metrics
(:mod:`cdlib.calibration`) and the benchmark (:mod:`cdlib.bench`: evaluation in
:mod:`cdlib.evaluation`, the choice of operating points in :mod:`cdlib.selection`,
wall-clock time in :mod:`cdlib.timing`).
"""

__version__ = "0.1.0"
