"""Fixtures for the interop suite: the binary, promtool, prometheus, and running collectors.

Run from the repository root (scripts/install-deps --test makes .venv/):

    .venv/bin/python -m pytest Tests/Interop

The binary is $AGENTTRACE_BIN or .build/debug/agenttrace. A missing binary,
promtool or h2load makes the tests fail (never skip): this suite exists to
prove the built collector works with real peers.
"""

import os
import shutil

import pytest

import interop_helpers as h

# A missing binary, promtool or h2load is reported as a test FAILURE (not a setup error, never a skip).
MISSING = "missing prerequisite:"


def _fail_missing(problem):
    pytest.fail("%s %s" % (MISSING, problem), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if (rep.when == "setup" and rep.failed and call.excinfo is not None
            and call.excinfo.errisinstance(pytest.fail.Exception)
            and str(call.excinfo.value).startswith(MISSING)):
        rep.when = "call"  # the terminal summary then lists it under FAILED


@pytest.fixture(scope="session")
def agenttrace_bin():
    path = h.binary_path()
    problem = h.binary_problem(path)
    if problem:
        _fail_missing(problem)
    return path


@pytest.fixture(scope="session")
def promtool():
    path = shutil.which("promtool")
    if not path:
        _fail_missing("promtool not found on PATH: install Debian's 'prometheus' package "
                      "(apt-get install prometheus)")
    return path


@pytest.fixture(scope="session")
def prometheus_bin():
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if not path:
        _fail_missing("prometheus not found: install Debian's 'prometheus' package (apt-get install prometheus)")
    return path


@pytest.fixture(scope="session")
def h2load():
    path = shutil.which("h2load")
    if not path:
        _fail_missing("h2load not found on PATH: install Debian's 'nghttp2-client' package "
                      "(apt-get install nghttp2-client)")
    return path


@pytest.fixture(scope="session")
def testdata():
    """Absolute path of a file in testdata/ (fails if scripts/generate-testdata was not run)."""
    def path(name):
        p = os.path.join(h.TESTDATA, name)
        if not os.path.exists(p):
            _fail_missing("%s is missing: run scripts/generate-testdata" % p)
        return p
    return path


class _Collectors:
    """Starts collectors on demand and stops them all at teardown, checking a clean exit."""

    def __init__(self, binary, base_dir):
        self.binary = binary
        self.base_dir = base_dir
        self.started = []

    def __call__(self, name="collector", **config_kw):
        workdir = os.path.join(str(self.base_dir), "%s-%d" % (name, len(self.started)))
        c = h.Collector(self.binary, workdir, **config_kw)
        self.started.append(c)
        c.start()
        return c

    def launch(self, name, config, text=None):
        """A collector running `config` (a dict, written as YAML), or the YAML `text` whose parsed form is `config`."""
        c = h.Collector(self.binary, os.path.join(str(self.base_dir), "%s-%d" % (name, len(self.started))))
        c.config = config
        if text is None:
            h.write_config(c.config_path, config)
        else:
            with open(c.config_path, "w") as f:
                f.write(text)
        self.started.append(c)
        c.start()
        return c

    def stop_all(self):
        problems = []
        for c in self.started:
            if c.proc is None:
                continue
            if c.stop_requested:
                c.stop(timeout=15.0)  # the test stopped it and checked the exit itself; just reap it
                continue
            was_running = c.proc.poll() is None
            rc = c.stop(timeout=15.0)
            if not was_running:
                problems.append("agenttrace serve had already exited with code %s before teardown\n%s"
                                % (rc, c.describe()))
            elif rc is None:
                problems.append("agenttrace serve did not exit within 15 s of SIGTERM (killed)\n%s"
                                % c.describe())
            elif rc != 0:
                problems.append("agenttrace serve exited with code %s after SIGTERM (want 0)\n%s"
                                % (rc, c.describe()))
        return problems


@pytest.fixture
def start_collector(agenttrace_bin, tmp_path):
    """start_collector(**config) -> a ready Collector; stopped with SIGTERM at teardown (exit 0 asserted)."""
    cs = _Collectors(agenttrace_bin, tmp_path)
    yield cs
    problems = cs.stop_all()
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def collectors(start_collector):
    """`start_collector` under the name the alerting tests use (`collectors.launch(name, config)`)."""
    return start_collector


@pytest.fixture(scope="module")
def module_collector(agenttrace_bin, tmp_path_factory):
    """One collector shared by the tests of a module (they run in order, one at a time)."""
    cs = _Collectors(agenttrace_bin, tmp_path_factory.mktemp("collector"))
    c = cs()
    yield c
    problems = cs.stop_all()
    assert not problems, "\n\n".join(problems)


@pytest.fixture(scope="module")
def module_grpc_collector(agenttrace_bin, tmp_path_factory):
    """Like module_collector, with the OTLP/gRPC receiver (h.GRPC_SETTINGS) next to the HTTP one."""
    cs = _Collectors(agenttrace_bin, tmp_path_factory.mktemp("grpc-collector"))
    c = cs("grpc", grpc=h.GRPC_SETTINGS)
    yield c
    problems = cs.stop_all()
    assert not problems, "\n\n".join(problems)


def pytest_terminal_summary(terminalreporter):
    """The hostile inputs sent and how each was answered (test_hostile.py), for the record."""
    if not h.HOSTILE_REPORT:
        return
    terminalreporter.section("hostile inputs: %d sent" % len(h.HOSTILE_REPORT))
    for case, transport, answer in h.HOSTILE_REPORT:
        terminalreporter.write_line("%-5s %-55s -> %s" % (transport, case, answer))
