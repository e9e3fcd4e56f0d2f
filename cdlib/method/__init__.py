"""The method layer: confidence distillation and its baselines as functions and modules over tensors and
per-clip outputs, with no knowledge of configs, artifacts or how models are trained. It holds the calibration
metrics (:mod:`~cdlib.method.calibration`), the distillation loss and its confidence targets
(:mod:`~cdlib.method.losses`), the distance-aware confidence (:mod:`~cdlib.method.distance`), the context
student's temporal modules (:mod:`~cdlib.method.context`), the FrameExit baseline
(:mod:`~cdlib.method.frame_exit`), the gating policies (:mod:`~cdlib.method.gating`), the choice of operating
points (:mod:`~cdlib.method.selection`) and cost accounting (:mod:`~cdlib.method.cost`). It may import
:mod:`cdlib.runtime`, :mod:`cdlib.data` and :mod:`cdlib.models`, nothing above.
"""
