"""The runtime layer, the bottom of cdlib: what every other layer may use and that knows nothing of videos,
models or the method. It holds the library's errors (:mod:`~cdlib.runtime.errors`), the one registry class
(:mod:`~cdlib.runtime.registry`), progress bars and logging (:mod:`~cdlib.runtime.progress`), the artifact
store and code fingerprints (:mod:`~cdlib.runtime.artifacts`), device selection, autocast and timing
(:mod:`~cdlib.runtime.device`) and torchrun processes (:mod:`~cdlib.runtime.distributed`). It imports no other
cdlib package.
"""
