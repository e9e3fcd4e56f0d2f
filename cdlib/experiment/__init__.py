"""The experiment layer: the study as validated configs (:mod:`~cdlib.experiment.config`), training
(:mod:`~cdlib.experiment.train`), the trained models and their per-clip outputs as cached artifacts (the clips
of the splits in :mod:`~cdlib.experiment.clips`, the student registry and the specs that key every model in
:mod:`~cdlib.experiment.students`, the training glue in :mod:`~cdlib.experiment.fitting`, :class:`ClipOutputs` in
:mod:`~cdlib.experiment.outputs`, the teacher, the ladder and every model's outputs in
:mod:`~cdlib.experiment.trained_models`, the derived students in :mod:`~cdlib.experiment.distance_student` and
:mod:`~cdlib.experiment.context_student`, FrameExit's features, gate and scores in
:mod:`~cdlib.experiment.exit_gate`), evaluation, wall-clock timing and the benchmark
(:mod:`~cdlib.experiment.evaluation`, :mod:`~cdlib.experiment.timing`, :mod:`~cdlib.experiment.bench`), folds of
real sets (:mod:`~cdlib.experiment.folds`), result tables (:mod:`~cdlib.experiment.tables`) and the calibration
chapter's probes and toy problem (:mod:`~cdlib.experiment.probes`, :mod:`~cdlib.experiment.toy`). It may import
:mod:`cdlib.runtime`, :mod:`cdlib.data`, :mod:`cdlib.models` and :mod:`cdlib.method`, never the book or the
command line. Importing it registers the derived students, so that :data:`~cdlib.experiment.students.STUDENTS`
is complete whichever of its modules is imported first.
"""

from cdlib.experiment import context_student, distance_student  # noqa: F401  (register cd_da and cd_ctx)
