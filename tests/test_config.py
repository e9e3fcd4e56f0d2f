import dataclasses
import re

import pytest

from cdlib.experiment.config import Config, DataConfig, TrainConfig, apply_overrides, make_config, profile_config
from cdlib.runtime.artifacts import config_hash
from cdlib.runtime.errors import ConfigError


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


# --------------------------------------------------------------------------- validation when a config is built


def test_the_config_command_fails_naming_every_bad_key(capsys):
    from cdlib.__main__ import main

    code = main(["config", "--set", "distill.tau=-1", "--set", "data.informative_fraction=2",
                 "--set", "distill.target=nope", "--set", "runtime.num_threads=0"])
    err = capsys.readouterr().err
    assert code != 0
    for key in ("distill.tau", "data.informative_fraction", "distill.target", "runtime.num_threads"):
        assert f"  {key}: " in err, key


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        apply_overrides(profile_config("ci"), ["data.heigth=3", "teacher_train.lr=0", "noequals", "student=c3d_small"])
    problems = info.value.problems
    assert len(problems) == 4
    assert any("heigth" in p for p in problems) and any(p.startswith("teacher_train.lr:") for p in problems)
    assert any("noequals" in p for p in problems) and any(p.startswith("student:") for p in problems)


def test_num_threads_zero_is_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"runtime\.num_threads: .*greater than or equal to 1"):
        profile_config("ci").replace(**{"runtime.num_threads": 0})


def test_a_moved_key_is_refused_with_its_new_name():
    with pytest.raises(ConfigError, match=r"'bench\.num_threads' is now 'runtime\.num_threads'"):
        profile_config("ci").replace(**{"bench.num_threads": 4})


@pytest.mark.parametrize(
    "build, named",
    [
        (lambda c: dataclasses.replace(c.data, informative_fraction=0.0), "data.informative_fraction"),
        (lambda c: dataclasses.replace(c.distill, tau=0), "distill.tau"),
        (lambda c: DataConfig(height=4), "data.height"),
        (lambda c: TrainConfig(clips="some"), "train.clips"),
        (lambda c: setattr(c.bench, "wall_selected_videos", 0), "bench.wall_selected_videos"),
        (lambda c: setattr(c, "seed", -1), "seed"),
        (lambda c: c.replace(teacher="student_fusion"), "teacher"),  # a student is not a teacher
        (lambda c: c.replace(**{"bench.thetas": ""}), "bench.thetas"),
        (lambda c: c.replace(**{"data.source": "ucf101:"}), "data.source"),
        (lambda c: c.replace(**{"data.val_fraction": 1.0}), "data.val_fraction"),
        (lambda c: c.replace(**{"teacher_train.lr": "nan"}), "teacher_train.lr"),
    ],
)
def test_sections_are_validated_when_built_replaced_or_assigned(build, named):
    with pytest.raises(ConfigError, match=r"(^|\s)" + re.escape(named) + ": "):
        build(profile_config("ci"))


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"data.video_length": 4}, "data.video_length: must be >= data.clip_length (8), got 4"),
        ({"data.num_test": 3}, "data.num_test: must be >= data.num_classes (8)"),
        ({"data.num_classes": 99}, "data.num_classes: the synthetic set has"),
        ({"data.informative_fraction": 0.001}, "data.informative_fraction: must give at least one frame"),
    ],
)
def test_rules_between_fields(overrides, named):
    with pytest.raises(ConfigError) as info:
        profile_config("ci").replace(**overrides)
    assert named in str(info.value)


def test_names_are_read_from_their_registries_when_checked(request):
    from cdlib.method import losses

    with pytest.raises(ConfigError, match="distill.target: unknown confidence target 'margin'"):
        profile_config("ci").replace(**{"distill.target": "margin"})
    losses.register_target("margin", "the max_prob target under another name")(losses.max_prob)
    request.addfinalizer(lambda: losses.CONFIDENCE_TARGETS.unregister("margin"))
    assert profile_config("ci").replace(**{"distill.target": "margin"}).distill.target == "margin"


def test_data_source_forms_are_checked_but_not_their_folders():
    assert DataConfig(source="ucf101:/nowhere:/ann:all").source == "ucf101:/nowhere:/ann:all"
    with pytest.raises(ConfigError, match=r"data\.source: .*accepted forms"):
        DataConfig(source="imagenet:/x")


def test_command_line_strings_parse_to_the_field_types():
    cfg = apply_overrides(profile_config("ci"), ["distill.calibrated_teacher=off", "seed=3", "bench.thetas=0.9, 1.01"])
    assert cfg.distill.calibrated_teacher is False and cfg.seed == 3 and cfg.bench.thetas == (0.9, 1.01)


def test_make_config_is_the_command_lines_path():
    import argparse

    from cdlib.cli.options import add_run_options, config_from_args

    parser = argparse.ArgumentParser()
    add_run_options(parser)
    args = parser.parse_args(["--seed", "2", "--data", "ucf101:/d:1", "--set", "data.height=64"])
    assert config_from_args(args) == make_config("ci", 2, "ucf101:/d:1", ["data.height=64"])
    # an override of data.source wins over the source, as --set wins over --data
    assert make_config("ci", 0, "ucf101:/d", ["data.source=synthetic"]).data.source == "synthetic"


def test_asdict_replace_and_hash_work_as_on_plain_dataclasses():
    cfg = profile_config("full", seed=1)
    assert dataclasses.asdict(cfg) == cfg.to_dict() and cfg.to_dict()["data"]["num_train"] == 3000
    assert Config(**cfg.to_dict()) == cfg and config_hash(Config(**cfg.to_dict())) == config_hash(cfg)
    assert dataclasses.replace(cfg, seed=2).seed == 2 and cfg.seed == 1


def test_bench_coverages_parse_from_the_command_line_and_are_checked():
    assert profile_config("ci").bench.coverages == (0.0, 0.25, 1.0)
    cfg = apply_overrides(profile_config("ci"), ["bench.coverages=0, 0.5,1"])
    assert cfg.bench.coverages == (0.0, 0.5, 1.0) and all(type(c) is float for c in cfg.bench.coverages)
    assert apply_overrides(profile_config("ci"), {"bench.coverages": (1.0,)}).bench.coverages == (1.0,)
    for bad in ("1.5", "-0.1", "", "nan", "half", "0.5,2"):
        with pytest.raises(ConfigError, match=r"bench\.coverages"):
            apply_overrides(profile_config("ci"), [f"bench.coverages={bad}"])
    with pytest.raises(ConfigError, match=r"bench\.coverages"):
        setattr(profile_config("ci").bench, "coverages", (0.0, 1.01))
