"""cdlib: confidence distillation for efficient action recognition.

The library behind the Confidence Distillation book: synthetic and real action
videos (:mod:`cdlib.data`), teacher and student models (:mod:`cdlib.models`),
the distillation loss (:mod:`cdlib.method.losses`), training with cached artifacts
(:mod:`cdlib.experiment.train`, :mod:`cdlib.runtime.artifacts`) on any device and over several
processes (:mod:`cdlib.runtime.device`, :mod:`cdlib.runtime.distributed`), gating policies
(:mod:`cdlib.method.gating`), cost accounting (:mod:`cdlib.method.cost`), calibration metrics
(:mod:`cdlib.method.calibration`) and the benchmark (:mod:`cdlib.experiment.bench`: evaluation in
:mod:`cdlib.experiment.evaluation`, the choice of operating points in :mod:`cdlib.method.selection`,
wall-clock time in :mod:`cdlib.experiment.timing`).
"""

__version__ = "0.1.0"
