"""Every env value a command will run is checked up front: a broken `--env pkg.module:factory` is a
usage error (exit 2) naming the value, the reason and what a factory must be, before any trial."""

import sys
import uuid

import click
import pytest
from click.testing import CliRunner

from envs import registry
from perfkit.cli import options as opts
from perfkit.cli.main import main

CONTRACT = "pkg.module:callable taking (buf=None, seed=0) and returning a pufferlib.PufferEnv"

TINY_ENV = '''
import gymnasium
import numpy as np
import pufferlib


class Tiny(pufferlib.PufferEnv):
    """A minimal user env: 2 agents, 4-byte observations, 3 actions, 16-step episodes."""

    def __init__(self, buf=None, seed=0):
        self.single_observation_space = gymnasium.spaces.Box(0, 255, (4,), dtype=np.uint8)
        self.single_action_space = gymnasium.spaces.Discrete(3)
        self.num_agents = 2
        super().__init__(buf)
        self._t = 0

    def reset(self, seed=None):
        self._t = 0
        self.observations[:] = 0
        return self.observations, []

    def step(self, actions):
        self._t += 1
        self.observations[:] = self._t
        self.rewards[:] = 0.0
        self.terminals[:] = False
        self.truncations[:] = self._t == 16
        if self._t == 16:
            self._t = 0
        return self.observations, self.rewards, self.terminals, self.truncations, []

    def close(self):
        pass


class WithConfig(Tiny):
    def set_env_config(self, cfg):
        self.cfg = cfg

    def get_env_config(self):
        return getattr(self, "cfg", None)


def make(buf=None, seed=0):
    return Tiny(buf, seed)


def make_with_config(buf=None, seed=0):
    return WithConfig(buf, seed)


def raises(buf=None, seed=0):
    raise ValueError("no map file")


def not_an_env(buf=None, seed=0):
    return object()


NOT_CALLABLE = 3
'''


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A package of user env modules on sys.path, under a fresh name per test; no cached checks."""
    name = f"userenvs_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "good.py").write_text(TINY_ENV)
    (root / "raises_on_import.py").write_text('raise RuntimeError("cannot find the game data")\n')
    (root / "syntax.py").write_text("def make(buf=None, seed=0:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(opts, "_ENV_CHECKS", {})
    yield name
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("target,reason", [
    ("{pkg}.raises_on_import:make",
     "importing module '{pkg}.raises_on_import' failed (RuntimeError: cannot find the game data)"),
    ("{pkg}.syntax:make", "importing module '{pkg}.syntax' failed (SyntaxError:"),
    ("{pkg}.nowhere:make", "cannot import module '{pkg}.nowhere' (ModuleNotFoundError"),
    ("{pkg}.good:missing", "module '{pkg}.good' has no attribute 'missing'"),
    ("{pkg}.good:NOT_CALLABLE", "'NOT_CALLABLE' is not callable (an object of type int)"),
    ("{pkg}.good:raises", "building one env with raises(buf=None, seed=0) raised ValueError: no map file"),
    ("{pkg}.good:not_an_env", "not_an_env(buf=None, seed=0) returned a builtins.object: not a pufferlib.PufferEnv"),
    ("os:getcwd", "building one env with getcwd(buf=None, seed=0) raised TypeError"),
])
def test_a_broken_factory_is_a_usage_error_with_the_reason(pkg, tmp_path, target, reason):
    target, reason = target.format(pkg=pkg), reason.format(pkg=pkg)
    r = invoke("run", "--env", target, "--steps", "10", "--out", str(tmp_path / "out"))
    assert r.exit_code == 2, r.output
    assert f"--env {target}:" in r.output and reason in r.output and CONTRACT in r.output
    assert "Traceback" not in r.output
    with pytest.raises(registry.EnvSpecError, match="expected pkg.module:callable"):
        registry.check_env(target)


def test_compare_checks_every_varied_env_before_any_trial(pkg, tmp_path, monkeypatch):
    import perfkit.commands.compare

    def no_trials(*a, **k):
        raise AssertionError("a trial ran before the env check")

    monkeypatch.setattr(perfkit.commands.compare, "run_compare", no_trials)
    monkeypatch.setattr(perfkit.commands.compare, "run_inprocess", no_trials)
    out = tmp_path / "out"
    r = invoke("compare", "--vary", f"env=arena,{pkg}.raises_on_import:make", "--steps", "10", "--out", str(out))
    assert r.exit_code == 2, r.output
    assert f"--env {pkg}.raises_on_import:make" in r.output and "RuntimeError" in r.output
    assert not (out / "trials").exists()
    r = invoke("compare", "--vary", "env=arena,nosuchmod:f", "--steps", "10", "--out", str(out))
    assert r.exit_code == 2 and "cannot import module 'nosuchmod'" in r.output


def test_gate_checks_the_env_of_every_scenario_it_names(pkg, tmp_path):
    r = invoke("gate", "--check", "sps(env=nosuchmod:f) >= 0.9 * sps(wrapper=none)", "--out", str(tmp_path))
    assert r.exit_code == 2 and "--env nosuchmod:f: cannot load the factory" in r.output
    # as in compare, an env without set_env_config runs unwrapped unless the check names a wrapper ...
    from perfkit.commands import gate as g

    c = g.parse_check(f"sps(wrapper=none,preset=make_arena) >= 0.9 * sps(env={pkg}.good:make)")
    assert c.rhs == f"wrapper=none,env={pkg}.good:make"
    # ... and naming one that cannot drive it is an error with the fix
    r = invoke("gate", "--check", f"sps(wrapper=none) >= 0.9 * sps(env={pkg}.good:make,wrapper=getattr)",
               "--out", str(tmp_path))
    assert r.exit_code == 2
    assert "wrapper=getattr (the default) cannot drive it" in r.output
    assert f"sps(env={pkg}.good:make,wrapper=none)" in r.output


def test_check_env_reports_the_config_methods(pkg, monkeypatch):
    assert registry.check_env("arena").has_set_env_config
    c = registry.check_env(f"{pkg}.good:make")
    assert c.kind == "factory" and not c.has_set_env_config
    assert c.missing_config_methods == ("set_env_config", "get_env_config")
    assert registry.check_env(f"{pkg}.good:make_with_config").has_set_env_config

    import envs.mettagrid

    monkeypatch.setattr(envs.mettagrid, "available", lambda: False)
    with pytest.raises(registry.EnvSpecError, match="pip install 'perfkit\\[mettagrid\\]'"):
        registry.check_env("mettagrid")


def test_wrapper_none_is_chosen_for_an_env_without_set_env_config(pkg, capsys):
    env = f"{pkg}.good:make"
    assert opts.apply_env_defaults({"env": env}) == {"env": env, "wrapper": "none"}
    assert f"note: --env {env} has no set_env_config/get_env_config; using wrapper=none" in capsys.readouterr().err
    varied = [("env", ["arena", env])]
    assert opts.apply_env_defaults({}, varied) == {"wrapper": "none"}
    assert "for every variant" in capsys.readouterr().err
    # set explicitly to none, or an env that has the methods: unchanged, no note
    assert opts.apply_env_defaults({"env": env, "wrapper": "none"}) == {"env": env, "wrapper": "none"}
    assert opts.apply_env_defaults({"env": f"{pkg}.good:make_with_config"}) == {"env": f"{pkg}.good:make_with_config"}
    assert opts.apply_env_defaults({}) == {}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("values,varied", [
    ({"wrapper": "getattr"}, []),
    ({}, [("wrapper", ["none", "getattribute"])]),
])
def test_an_explicit_wrapper_on_such_an_env_is_a_usage_error(pkg, values, varied):
    env = f"{pkg}.good:make"
    with pytest.raises(click.UsageError, match=f"--env {env} has no set_env_config.*use wrapper=none"):
        opts.apply_env_defaults({"env": env, **values}, varied)


def test_run_with_a_user_env_and_no_wrapper_option(pkg, tmp_path):
    r = invoke("run", "--env", f"{pkg}.good:make", "--steps", "2048", "--out", str(tmp_path / "out"),
               "--format", "plain")
    assert r.exit_code == 0, r.output
    assert "using wrapper=none (the curriculum wrapper needs it)" in r.stderr
    assert "agent-steps/s" in r.stdout
    r = invoke("run", "--env", f"{pkg}.good:make", "--wrapper", "getattribute", "--steps", "10")
    assert r.exit_code == 2 and "wrapper=getattribute cannot drive it" in r.output
