"""`agenttrace version` and `agenttrace validate`."""

import copy
import re
import subprocess

import pytest

import interop_helpers as h


def installed_version(pkg_config_name):
    """The version of a C library as its pkg-config file states it (Debian's -dev package), e.g. 1.52.0."""
    r = subprocess.run(["pkg-config", "--modversion", pkg_config_name], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip(), "pkg-config --modversion %s failed: %s" % (pkg_config_name, r.stderr)
    return r.stdout.strip()


def test_version(agenttrace_bin):
    r = h.run_cli(agenttrace_bin, ["version"], timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = r.stdout.strip()
    # README: "agenttrace version — version and the C libraries in use". The oracle is the system's own
    # record of the libraries, not the binary.
    for library, pc in (("libprotobuf-c", "libprotobuf-c"), ("libnghttp2", "libnghttp2")):
        want = installed_version(pc)
        m = re.search(r"%s (\S+?)[,)\s]" % re.escape(library), out + " ")
        assert m, "version output %r does not name %s" % (out, library)
        assert m.group(1) == want, "%s: version prints %s, the system has %s" % (library, m.group(1), want)
    assert re.match(r"^agenttrace \d+\.\d+\.\d+ ", out), out


def test_validate_accepts_good_config(agenttrace_bin, tmp_path):
    cfg = h.write_config(str(tmp_path / "good.yaml"), h.build_config(str(tmp_path / "out.jsonl")))
    r = h.run_cli(agenttrace_bin, ["validate", "--config", cfg], timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "configuration is valid" in r.stdout, r.stdout


def _with_extra_key(config, dotted):
    """A copy of config with one extra (unknown) key at the dotted path; everything else stays valid."""
    cfg = copy.deepcopy(config)
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = "unexpected"
    return cfg


@pytest.mark.parametrize("dotted", [
    "exporters.file.pathh",
    "receivers.otlp.protocols.http.max_request_body_sise",
    "processors.batch.send_batch_sizee",
    "service.admin.endpoit",
    "servce",
])
def test_validate_rejects_unknown_key_and_names_it(agenttrace_bin, tmp_path, dotted):
    good = h.build_config(str(tmp_path / "out.jsonl"))
    cfg = h.write_config(str(tmp_path / "bad.yaml"), _with_extra_key(good, dotted))
    r = h.run_cli(agenttrace_bin, ["validate", "--config", cfg], timeout=30)
    assert r.returncode != 0, "validate accepted an unknown key %s:\n%s" % (dotted, r.stdout)
    assert dotted in r.stderr, "stderr does not name %s:\n%s" % (dotted, r.stderr)
    assert "configuration is valid" not in r.stdout


def test_serve_refuses_invalid_config(agenttrace_bin, tmp_path):
    good = h.build_config(str(tmp_path / "out.jsonl"))
    cfg = h.write_config(str(tmp_path / "bad.yaml"), _with_extra_key(good, "exporters.file.pathh"))
    r = h.run_cli(agenttrace_bin, ["serve", "--config", cfg], timeout=15)
    assert r.returncode != 0
    assert "exporters.file.pathh" in r.stderr, r.stderr
    assert "agenttrace: ready" not in r.stdout


def test_print_default_is_valid(agenttrace_bin, tmp_path):
    r = h.run_cli(agenttrace_bin, ["validate", "--print-default"], timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.strip(), "--print-default printed nothing"
    p = tmp_path / "default.yaml"
    p.write_text(r.stdout)
    v = h.run_cli(agenttrace_bin, ["validate", "--config", str(p)], timeout=30)
    assert v.returncode == 0, "the printed default config does not validate:\n%s\n%s" % (v.stdout, v.stderr)
    assert "configuration is valid" in v.stdout
