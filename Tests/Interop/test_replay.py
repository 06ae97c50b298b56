"""`agenttrace replay`: in-process replay of every testdata format, determinism,
and replay over OTLP/HTTP into a running collector."""

import pytest

import interop_helpers as h


def replay(agenttrace_bin, tmp_path, name, files, extra=()):
    """Replay files through an in-process pipeline writing to tmp_path/name.jsonl."""
    out = str(tmp_path / ("%s.jsonl" % name))
    cfg = h.write_config(str(tmp_path / ("%s.yaml" % name)), h.build_config(out))
    r = h.run_cli(agenttrace_bin, ["replay", "--config", cfg, "--speed", "0"] + list(extra) + list(files))
    assert r.returncode == 0, "replay exited %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout, r.stderr)
    return out, h.parse_replay_output(r.stdout)


def test_replay_jsonl_is_complete_and_deterministic(agenttrace_bin, tmp_path, testdata):
    src = testdata("multi-agent.jsonl")
    want = h.load_spans(src)
    out1, s1 = replay(agenttrace_bin, tmp_path, "first", [src])
    out2, s2 = replay(agenttrace_bin, tmp_path, "second", [src])

    for s in (s1, s2):
        assert (s.files, s.spans_read, s.accepted, s.rejected) == (1, len(want), len(want), 0)
        assert s.exporters == {"file": (len(want), 0)}
    got = h.read_output_spans(out1, allow_partial_tail=False)
    assert len(got) == len(want)
    assert sorted(x.key for x in got) == sorted(x.key for x in want)

    b1, b2 = open(out1, "rb").read(), open(out2, "rb").read()
    assert b1 == b2, "two replays of the same file produced different output (%d vs %d bytes)" % (len(b1), len(b2))


def test_replay_preserves_span_content(agenttrace_bin, tmp_path, testdata):
    """What goes in is what comes out: names, kinds, times, attributes of every AnyValue kind,
    events, links, status, resource and scope."""
    src = testdata("multi-agent.jsonl")
    want = {s.key: s for s in h.load_spans(src)}
    out, _ = replay(agenttrace_bin, tmp_path, "content", [src])
    got = {s.key: s for s in h.read_output_spans(out, allow_partial_tail=False)}
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        for attr in ("parent_span_id", "name", "kind", "start", "end", "attributes", "events", "links",
                     "status_code", "status_message", "resource", "scope_name", "scope_version", "trace_state"):
            assert getattr(g, attr) == getattr(w, attr), "span %s (%s): %s differs" % (key[1], w.name, attr)


@pytest.mark.parametrize("name", ["multi-agent.json", "multi-agent.pb", "multi-agent.jsonl.gz"])
def test_replay_other_formats(agenttrace_bin, tmp_path, testdata, name):
    src = testdata(name)
    want = h.load_spans(src)
    out, s = replay(agenttrace_bin, tmp_path, "fmt", [src])
    assert (s.files, s.spans_read, s.accepted, s.rejected) == (1, len(want), len(want), 0)
    assert s.exporters == {"file": (len(want), 0)}
    got = h.read_output_spans(out, allow_partial_tail=False)
    assert sorted(x.key for x in got) == sorted(x.key for x in want)


def test_replay_several_files(agenttrace_bin, tmp_path, testdata):
    files = [testdata("multi-agent.json"), testdata("multi-agent.pb")]
    n = sum(len(h.load_spans(f)) for f in files)
    out, s = replay(agenttrace_bin, tmp_path, "many", files)
    assert (s.files, s.spans_read, s.accepted) == (2, n, n)
    assert len(h.read_output_spans(out, allow_partial_tail=False)) == n


def test_replay_to_endpoint(start_collector, agenttrace_bin, testdata):
    col = start_collector("replay-target")
    src = testdata("multi-agent.jsonl")
    want = h.load_spans(src)
    before = col.scrape()
    r = h.run_cli(agenttrace_bin, ["replay", "--endpoint", col.endpoint, "--speed", "0", src])
    assert r.returncode == 0, "replay --endpoint exited %d\nstdout:\n%s\nstderr:\n%s" % (
        r.returncode, r.stdout, r.stderr)
    s = h.parse_replay_output(r.stdout)
    assert (s.files, s.spans_read, s.accepted, s.rejected) == (1, len(want), len(want), 0)

    want_keys = {x.key for x in want}
    got = col.wait_for_spans(lambda spans: want_keys <= {x.key for x in spans}, timeout=10)
    assert len(got) == len(want)
    after = col.scrape()
    lab = {"receiver": "otlp", "transport": "http"}
    assert (after.value("agenttrace_receiver_accepted_spans_total", lab)
            - before.value("agenttrace_receiver_accepted_spans_total", lab)) == len(want)
    # every request replay sent was answered 200
    sent = {}
    for labels, v in after.series("agenttrace_receiver_requests_total"):
        delta = v - before.value("agenttrace_receiver_requests_total", labels)
        if delta:
            sent[labels.get("code")] = delta
    assert set(sent) == {"200"} and sent["200"] >= 1, sent
