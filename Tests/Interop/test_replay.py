"""`agenttrace replay`: in-process replay of every testdata format, determinism,
and replay over OTLP/HTTP into a running collector."""

import json
import secrets

import pytest

import fakes
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


# --- replay --endpoint: pacing and retries, against a fake OTLP/HTTP backend ---------------------

PACED_REQUESTS = 5
PACED_STEP_S = 2.0   # the recording's requests end 2 s apart: it spans 8 s


def paced_recording(path, n=PACED_REQUESTS, step_s=PACED_STEP_S):
    """A .jsonl of n one-span requests whose spans end step_s apart; returns [(span key, recorded offset s)]."""
    base = 1767225600 * 10**9
    out = []
    with open(path, "w") as f:
        for i in range(n):
            tid, sid = secrets.token_hex(16), secrets.token_hex(8)
            end = base + int(i * step_s * 1e9)
            req = {"resourceSpans": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "paced"}}]},
                "scopeSpans": [{"scope": {"name": "replay"}, "spans": [{
                    "traceId": tid, "spanId": sid, "name": "paced-%d" % i, "kind": 1,
                    "startTimeUnixNano": str(end - 1000000), "endTimeUnixNano": str(end)}]}]}]}
            f.write(json.dumps(req) + "\n")
            out.append(((tid, sid), i * step_s))
    return out


def replay_to(agenttrace_bin, url, speed, path):
    r = h.run_cli(agenttrace_bin, ["replay", "--endpoint", url, "--speed", str(speed), path], timeout=120)
    assert r.returncode == 0, "replay --endpoint exited %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout, r.stderr)
    return h.parse_replay_output(r.stdout), r


def arrival_offsets(fake, recording):
    """Offsets (s) of each recorded request's accepted arrival from the first one's, in recording order."""
    first = {}
    for rec in fake.accepted_requests():
        for s in rec.spans:
            first.setdefault(s.key, rec.time)
    missing = [k for k, _ in recording if k not in first]
    assert not missing, "%d requests never arrived: %s" % (len(missing), fake.describe())
    t0 = first[recording[0][0]]
    return [first[k] - t0 for k, _ in recording]


def test_replay_endpoint_paces_by_recorded_time_over_speed(agenttrace_bin, tmp_path):
    recording = paced_recording(str(tmp_path / "paced.jsonl"))
    span_s = recording[-1][1]
    results = {}
    for speed in (4, 0):
        with fakes.OTLPHttpFake() as fake:
            summary, _ = replay_to(agenttrace_bin, fake.base_url, speed, str(tmp_path / "paced.jsonl"))
            assert (summary.spans_read, summary.accepted, summary.rejected) == (PACED_REQUESTS, PACED_REQUESTS, 0)
            assert fake.violations == []
            results[speed] = arrival_offsets(fake, recording)
    paced, fast = results[4], results[0]
    print("\nreplay of a recording spanning %.0f s: --speed 4 took %.2f s between first and last request "
          "(want ~%.1f), --speed 0 took %.2f s" % (span_s, paced[-1], span_s / 4, fast[-1]))
    # Each request leaves at (recorded offset) / speed after the first, never before it; generous after.
    for (key, recorded), got in zip(recording, paced):
        want = recorded / 4
        assert want - 0.05 <= got <= want + 1.0, "request at recorded +%.1f s arrived +%.2f s, want ~%.2f s" % (
            recorded, got, want)
    assert fast[-1] < 1.0 and fast[-1] < paced[-1] / 2, "--speed 0 is not as fast as possible: %s vs %s" % (fast, paced)


def test_replay_endpoint_retries_429_and_503_and_loses_nothing(agenttrace_bin, tmp_path):
    recording = paced_recording(str(tmp_path / "retry.jsonl"), n=3, step_s=0.0)
    with fakes.OTLPHttpFake() as fake:
        fake.script.fail_next(1, 503, retry_after=1, message="busy")
        fake.script.fail_next(1, 429, retry_after=1, message="slow down")
        summary, r = replay_to(agenttrace_bin, fake.base_url, 0, str(tmp_path / "retry.jsonl"))
        reqs = fake.snapshot()
        assert fake.violations == []
    assert (summary.spans_read, summary.accepted, summary.rejected) == (3, 3, 0), r.stdout
    assert [q.answer for q in reqs] == [503, 429, 200, 200, 200], [(q.answer, q.span_ids()) for q in reqs]
    # The refused request is the one sent again, and not sooner than its Retry-After.
    assert reqs[0].span_ids() == reqs[1].span_ids() == reqs[2].span_ids() == [recording[0][0]]
    assert reqs[1].time - reqs[0].time >= 0.95 and reqs[2].time - reqs[1].time >= 0.95, \
        [round(q.time - reqs[0].time, 2) for q in reqs]
    assert sorted(fake.accepted_counts().items()) == sorted((k, 1) for k, _ in recording)
