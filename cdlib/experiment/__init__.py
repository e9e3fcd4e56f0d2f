"""The experiment layer: the study as configs, cached artifacts and results. It holds the validated configs
(:mod:`~cdlib.experiment.config`), training (:mod:`~cdlib.experiment.train`), the trained models and their
per-clip outputs as artifacts (the modules that were ``runs``), evaluation, wall-clock timing and the benchmark
(:mod:`~cdlib.experiment.evaluation`, :mod:`~cdlib.experiment.timing`, :mod:`~cdlib.experiment.bench`), folds of
real sets (:mod:`~cdlib.experiment.folds`), result tables (:mod:`~cdlib.experiment.tables`) and the calibration
chapter's probes and toy problem (:mod:`~cdlib.experiment.probes`, :mod:`~cdlib.experiment.toy`). It may import
:mod:`cdlib.runtime`, :mod:`cdlib.data`, :mod:`cdlib.models` and :mod:`cdlib.method`, never the book or the
command line.
"""
