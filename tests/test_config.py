import pytest

from cdlib.config import Config, apply_overrides, config_hash, profile_config
from cdlib.errors import ConfigError


def test_profiles_differ_and_unknown_profile_is_rejected():
    ci, full = profile_config("ci"), profile_config("full")
    assert ci.profile == "ci" and full.profile == "full"
    assert full.data.num_train > ci.data.num_train and full.teacher_train.epochs > ci.teacher_train.epochs
    with pytest.raises(ConfigError, match="nope"):
        profile_config("nope")


def test_dotted_overrides_parse_to_field_types():
    cfg = apply_overrides(
        profile_config("ci"),
        ["data.informative_fraction=0.2", "teacher_train.epochs=3", "distill.calibrated_teacher=true",
         "bench.thetas=0.5,0.9", "data.source=ucf101:/x"],
    )
    assert cfg.data.informative_fraction == 0.2
    assert cfg.teacher_train.epochs == 3 and isinstance(cfg.teacher_train.epochs, int)
    assert cfg.distill.calibrated_teacher is True
    assert cfg.bench.thetas == (0.5, 0.9)
    assert cfg.data.source == "ucf101:/x"


def test_overrides_do_not_mutate_the_original():
    base = profile_config("ci")
    apply_overrides(base, {"data.num_classes": 4})
    assert base.data.num_classes == Config().data.num_classes


@pytest.mark.parametrize(
    "item, named",
    [
        ("data.informative_fractoin=0.2", "informative_fractoin"),
        ("dat.height=3", "dat"),
        ("data.height.x=3", "data.height"),
        ("data=3", "data"),
        ("noequals", "noequals"),
    ],
)
def test_unknown_or_malformed_keys_are_rejected_by_name(item, named):
    with pytest.raises(ConfigError, match=named):
        apply_overrides(profile_config("ci"), [item])


@pytest.mark.parametrize(
    "item, named",
    [
        ("teacher_train.epochs=two", "teacher_train.epochs"),
        ("teacher_train.epochs=2.5", "teacher_train.epochs"),
        ("data.informative_fraction=lots", "data.informative_fraction"),
        ("distill.calibrated_teacher=maybe", "distill.calibrated_teacher"),
        ("profile=huge", "profile"),
    ],
)
def test_wrongly_typed_values_are_rejected_by_name(item, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        apply_overrides(profile_config("ci"), [item])


def test_config_hash_is_stable_and_sensitive():
    a, b = profile_config("ci"), profile_config("ci")
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(a.replace(**{"data.informative_fraction": 0.31}))
    assert config_hash(a) != config_hash(profile_config("ci", seed=1))
