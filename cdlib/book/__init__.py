"""The book layer: what the Jupyter Book's chapters need beyond the experiment. It holds the chapters' shared
setup (:mod:`~cdlib.book.chapter`), their figures (:mod:`~cdlib.book.viz`), the papermill execution and staging
of the chapters for jupyter-book (:mod:`~cdlib.book.execute`) and the check of the built book in headless
Chromium (:mod:`~cdlib.book.browser`). It may import every layer below it (:mod:`cdlib.runtime`,
:mod:`cdlib.data`, :mod:`cdlib.models`, :mod:`cdlib.method`, :mod:`cdlib.experiment`), never the command line.
"""
