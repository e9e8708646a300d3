import pytest

from perfkit.core.scenario import AXES, Scenario, ScenarioError, parse_assignment, parse_vary, plan_variants
from perfkit.train.vecenv import plan, resolve_workers


def test_defaults_and_overrides():
    s = Scenario.build({"wrapper": "getattribute", "checkpoint": "epochs:5"})
    assert s["wrapper"] == "getattribute" and s["checkpoint"] == "epochs:5" and s["preset"] == "basic_easy_shaped"
    assert s.label() == "wrapper=getattribute,checkpoint=epochs:5"
    assert Scenario.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("text,message", [
    ("wrapper=proxy", "invalid value 'proxy' for axis 'wrapper'; valid: getattribute, getattr, none"),
    ("wrappr=getattr", "unknown axis 'wrappr'; valid: wrapper, env-config"),
    ("checkpoint=every:5", "invalid value 'every:5' for axis 'checkpoint'; valid: off, epochs:N"),
    ("workers=0", "invalid value '0' for axis 'workers'; valid: serial, auto, pow2, or an integer >= 1"),
    ("inject-cost-us=abc", "invalid value 'abc' for axis 'inject-cost-us'; valid: a number >= 0"),
    ("wrapper", "expected axis=value, got 'wrapper'"),
])
def test_bad_assignments_name_value_and_choices(text, message):
    with pytest.raises(ScenarioError) as e:
        parse_assignment(text)
    assert message in str(e.value)


def test_vary_rejects_repeats_and_empty():
    assert parse_vary("wrapper=getattribute,getattr") == ("wrapper", ["getattribute", "getattr"])
    with pytest.raises(ScenarioError, match="repeats a value"):
        parse_vary("wrapper=getattr,getattr")
    with pytest.raises(ScenarioError, match="names no values"):
        parse_vary("wrapper=")


def test_variants_cross_axes_in_order():
    base = Scenario.build()
    vs = plan_variants(base, [("wrapper", ["getattribute", "getattr"]), ("env-config", ["per-episode", "deferred"])])
    assert [v.label for v in vs] == [
        "wrapper=getattribute,env-config=per-episode", "wrapper=getattribute,env-config=deferred",
        "wrapper=getattr,env-config=per-episode", "wrapper=getattr,env-config=deferred",
    ]


@pytest.mark.parametrize("cpus,gpus,auto,pow2", [(16, 1, 8, 8), (12, 1, 6, 4), (2, 0, 1, 1), (32, 2, 8, 8),
                                                 (24, 1, 12, 8)])
def test_worker_counts_follow_facts(cpus, gpus, auto, pow2):
    assert resolve_workers("auto", cpus, gpus) == auto
    assert resolve_workers("pow2", cpus, gpus) == pow2
    assert resolve_workers("serial", cpus, gpus) == 0 and resolve_workers("3", cpus, gpus) == 3


def test_env_count_rounds_up_to_a_multiple_of_workers():
    assert plan("3", 4, cpu_count=8).num_envs == 6
    assert plan("serial", 4).backend == "serial"


def test_every_axis_has_a_valid_default():
    for a in AXES.values():
        assert a.validate(a.default) == a.default


@pytest.mark.parametrize("text,canonical", [
    ("inject-cost-us=0", "0"), ("inject-cost-us=0.0", "0"), ("inject-cost-us=300", "300"),
    ("inject-cost-us=1.50", "1.5"), ("inject-cost-us=1e3", "1000"), ("checkpoint=epochs:5", "epochs:5"),
    ("checkpoint=epochs:02", "epochs:2"), ("eval=seconds:30", "seconds:30"), ("eval=seconds:1.50", "seconds:1.5"),
    ("eval=seconds:30.0", "seconds:30"), ("workers=02", "2"), ("workers=auto", "auto"),
])
def test_values_are_normalised_to_one_spelling(text, canonical):
    assert parse_assignment(text)[1] == canonical


@pytest.mark.parametrize("text,shown", [
    ("inject-cost-us=0,0.0", "(as 0)"), ("checkpoint=epochs:2,epochs:02", "(as epochs:2)"),
    ("eval=seconds:1.5,seconds:1.50", "(as seconds:1.5)"), ("workers=2,02", "(as 2)"),
])
def test_vary_catches_repeats_written_differently(text, shown):
    with pytest.raises(ScenarioError, match="repeats a value") as e:
        parse_vary(text)
    assert shown in str(e.value)


def test_canonical_values_give_canonical_labels():
    assert Scenario.build({"inject-cost-us": "200.0", "checkpoint": "epochs:05"}).label() == \
        "checkpoint=epochs:5,inject-cost-us=200"


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "1000001", "1e400"])
def test_inject_cost_is_bounded_and_finite(value):
    # inf used to be accepted and busy-waited forever
    with pytest.raises(ScenarioError) as e:
        parse_assignment(f"inject-cost-us={value}")
    assert str(e.value) == f"invalid value {value!r} for axis 'inject-cost-us'; valid: a number >= 0 and <= 1000000"
    assert parse_assignment("inject-cost-us=1000000")[1] == "1000000"


def test_release_bundle_sets_the_suspects_and_given_axes_win():
    from perfkit.core.scenario import RELEASES

    after = Scenario.build({"release": "after"})
    assert {k: after[k] for k in RELEASES["after"]} == RELEASES["after"]
    assert after["workers"] == "serial"  # not in the bundle
    mine = Scenario.build({"release": "after", "checkpoint": "off", "wrapper": "none"})
    assert (mine["checkpoint"], mine["wrapper"], mine["preset"]) == ("off", "none", "make_arena")
    assert Scenario.from_dict(mine.to_dict()) == mine
    assert Scenario.build({"release": "before"}).label(["release"]) == "release=before"
    assert Scenario.build({"release": "none"}) == Scenario.build()


def test_varying_release_applies_each_bundle_but_keeps_what_the_user_set():
    from perfkit.core.scenario import plan_variants

    base = Scenario.build({"checkpoint": "off", "wrapper": "none"})
    before, after = (v.scenario for v in plan_variants(base, [("release", ["before", "after"])]))
    assert (before["preset"], after["preset"]) == ("basic_easy_shaped", "make_arena")
    assert (before["checkpoint"], after["checkpoint"]) == ("epochs:50", "epochs:5")  # off is the default
    assert (before["wrapper"], after["wrapper"]) == ("none", "none")  # set by the user: kept
    assert after.with_values(release="before") == before
    assert after.with_values(release="none")["preset"] == "basic_easy_shaped"
