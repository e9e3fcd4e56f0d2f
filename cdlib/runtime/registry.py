"""Named, described pieces looked up by name: the one registry pattern of cdlib.

The models (:data:`cdlib.models.core.MODELS`), confidence targets
(:data:`cdlib.method.losses.CONFIDENCE_TARGETS`), gating policies
(:data:`cdlib.method.gating.POLICIES`) and data layouts (:data:`cdlib.data.sources.LAYOUTS`)
each keep one :class:`Registry`. The benchmark, the config checks and the book
iterate over a registry, so an entry registered once reaches all of them, and a
name that is not registered is refused with the names that are::

    SHAPES = Registry("shape")
    SHAPES.register("square", Square, "four equal sides")   # direct

    @SHAPES.register("circle", description="every point at one distance")   # as a decorator
    class Circle: ...

    SHAPES.get("circle")       # Circle
    SHAPES.get("hexagon")      # ConfigError: unknown shape 'hexagon'; known: square, circle
    list(SHAPES)               # ['square', 'circle']: registration order
    SHAPES.describe()          # {'square': 'four equal sides', 'circle': 'every point at one distance'}

A module wraps its registry in its own ``register_*``/``get_*``/``list_*``
functions where an entry needs more than a name (a model's role and clip shape, a
policy's knob), so that callers keep one import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from cdlib.runtime.errors import ConfigError

T = TypeVar("T")

#: the default ``entry`` of :meth:`Registry.register`: none given, so ``register`` returns a decorator
_DECORATE = object()


class Registry(Generic[T]):
    """Entries of one ``kind`` by unique name, each with a one-line description, in registration order.

    Read like a mapping (``name in registry``, ``registry[name]``, iteration over
    the names, ``items()``, ``values()``, ``len``), but written only through
    :meth:`register`, which refuses a name twice, so that two modules never
    silently replace each other's entry.
    """

    def __init__(self, kind: str):
        self.kind = kind  # what an entry is, in words: it names the registry in messages
        self._entries: dict[str, tuple[T, str]] = {}

    def register(self, name: str, entry: T = _DECORATE, description: str = ""):
        """Add ``entry`` under ``name`` with its ``description`` and return it.

        Without ``entry``, returns a decorator that registers what it decorates
        (and returns it unchanged). ``ValueError`` for a name already taken, an
        empty name or an empty description.
        """
        if entry is _DECORATE:
            return lambda decorated: self.register(name, decorated, description)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind}: a name must be a non-empty string, got {name!r}")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"{self.kind} {name!r}: a description is required")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = (entry, description)
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test or a notebook that registered an entry for a while); ConfigError if absent."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """The entry registered as ``name``; :class:`~cdlib.runtime.errors.ConfigError` naming the kind and every known
        name if there is none."""
        try:
            return self._entries[name][0]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def describe(self) -> dict[str, str]:
        """``name -> description`` of every entry, in registration order."""
        return {name: description for name, (_, description) in self._entries.items()}

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, in registration order."""
        return [(name, entry) for name, (entry, _) in self._entries.items()]

    def values(self) -> list[T]:
        """The entries, in registration order."""
        return [entry for entry, _ in self._entries.values()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable name is registered under no name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
