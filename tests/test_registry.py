"""The one registry pattern (cdlib.runtime.registry.Registry) and the four registries built on it."""

from __future__ import annotations

import pytest

from cdlib.data.sources import LAYOUTS, parse_source
from cdlib.method.gating import POLICIES, get_policy
from cdlib.method.losses import CONFIDENCE_TARGETS, get_target
from cdlib.models import MODELS, model_spec
from cdlib.runtime.errors import ConfigError
from cdlib.runtime.registry import Registry


def test_entries_are_kept_in_registration_order_with_their_descriptions():
    shapes = Registry("shape")
    assert shapes.register("square", 4, "four equal sides") == 4
    assert shapes.register("triangle", 3, "three sides") == 3
    assert list(shapes) == shapes.names() == ["square", "triangle"]
    assert shapes.describe() == {"square": "four equal sides", "triangle": "three sides"}
    assert shapes.items() == [("square", 4), ("triangle", 3)] and shapes.values() == [4, 3]
    assert shapes.get("triangle") == shapes["triangle"] == 3
    assert "square" in shapes and "circle" not in shapes and ["unhashable"] not in shapes
    assert len(shapes) == 2


def test_register_decorates_and_returns_what_it_decorates():
    shapes = Registry("shape")

    @shapes.register("circle", description="every point at one distance")
    def circle():
        return "round"

    assert circle() == "round" and shapes.get("circle") is circle
    assert shapes.describe() == {"circle": "every point at one distance"}


def test_unknown_names_raise_a_config_error_naming_the_kind_and_every_known_name():
    shapes = Registry("shape")
    shapes.register("square", 4, "four equal sides")
    shapes.register("triangle", 3, "three sides")
    for unknown in ("hexagon", ["unhashable"], None):
        with pytest.raises(ConfigError, match=r"^unknown shape .*; known: square, triangle$"):
            shapes.get(unknown)
    with pytest.raises(ConfigError, match="unknown shape 'hexagon'"):
        shapes["hexagon"]


def test_a_name_is_registered_once_with_a_description():
    shapes = Registry("shape")
    shapes.register("square", 4, "four equal sides")
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        shapes.register("square", 5, "another square")
    with pytest.raises(ValueError, match="description"):
        shapes.register("circle", 0, "  ")
    with pytest.raises(ValueError, match="name"):
        shapes.register("", 0, "no name")
    assert shapes.items() == [("square", 4)]  # refused entries leave nothing behind


def test_unregister_frees_the_name():
    shapes = Registry("shape")
    shapes.register("square", 4, "four equal sides")
    shapes.unregister("square")
    assert shapes.names() == [] and "square" not in shapes
    shapes.register("square", 5, "registered again")
    assert shapes.get("square") == 5
    with pytest.raises(ConfigError, match="unknown shape 'circle'"):
        shapes.unregister("circle")


REGISTRIES = {"model": MODELS, "confidence target": CONFIDENCE_TARGETS, "policy": POLICIES, "data layout": LAYOUTS}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_registry_describes_every_entry(kind):
    registry = REGISTRIES[kind]
    assert registry.kind == kind and len(registry) >= 3
    descriptions = registry.describe()
    assert list(descriptions) == registry.names()
    assert all(text.strip() for text in descriptions.values()), descriptions


@pytest.mark.parametrize("lookup, registry", [(model_spec, MODELS), (get_target, CONFIDENCE_TARGETS),
                                              (get_policy, POLICIES)])
def test_the_modules_lookups_name_every_alternative(lookup, registry):
    with pytest.raises(ConfigError) as info:
        lookup("nope")
    message = str(info.value)
    assert f"unknown {registry.kind} 'nope'" in message
    assert all(name in message for name in registry.names()), message


def test_an_unknown_layout_names_the_forms_of_every_registered_layout():
    with pytest.raises(ConfigError) as info:
        parse_source("nope:/data")
    message = str(info.value)
    assert "unknown layout 'nope'" in message
    assert all(f"{name}:<root>" in message for name in LAYOUTS.names()), message


def test_the_entries_specs_agree_with_their_names():
    assert all(spec.name == name for name, spec in MODELS.items())
    assert all(spec.name == name for name, spec in POLICIES.items())
    assert all(layout.name == name for name, layout in LAYOUTS.items())
    assert MODELS.describe()["r3d_18"] == model_spec("r3d_18").description
    assert POLICIES.describe()["cd_gate"] == get_policy("cd_gate").description
