"""The command-line layer, the top of cdlib below :mod:`cdlib.__main__` (``python -m cdlib``): the options the
commands share (:mod:`~cdlib.cli.options`), the ``data`` command group (:mod:`~cdlib.cli.data`) and the tools
behind their own commands: the cost estimate of a profile (:mod:`~cdlib.cli.estimate`), the streamed data's
throughput (:mod:`~cdlib.cli.bench_data`) and the GPU self-check (:mod:`~cdlib.cli.selftest`). It may import
every layer below it; only :mod:`cdlib.__main__` imports it.
"""
