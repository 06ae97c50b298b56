"""bench/bench.py's goals table: each figure a ratio of two rows against its goal, another digit for a
figure just under its goal, and with profiles, where the gap of a goal not met goes."""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "bench_module", os.path.join(os.path.dirname(__file__), "..", "..", "bench", "bench.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

TAIL = "AgentTrace tail_sampling, batch -> nop, OTLP/HTTP"
BATCH = "AgentTrace batch -> nop, OTLP/HTTP"
CHAIN = f"AgentTrace {bench.CHAIN}, OTLP/HTTP"
ROTEL = "rotel (blackhole), OTLP/HTTP"
INGEST = "AgentTrace ingest -> nop, OTLP/HTTP"


def rows(table):
    return [line for line in table.splitlines()[2:]]


def test_a_figure_just_under_its_goal_gets_another_digit():
    table = bench.goals_table({TAIL: 798.0, BATCH: 1000.0}, unpinned=False)
    assert rows(table) == ["| tail_sampling alone vs batch alone | agent | 0.798x | >= 0.8x | no |"]
    table = bench.goals_table({TAIL: 810.0, BATCH: 1000.0}, unpinned=False)
    assert rows(table) == ["| tail_sampling alone vs batch alone | agent | 0.81x | >= 0.8x | yes |"]


def test_a_goal_not_met_says_where_its_gap_goes_and_against_rotel_beyond_our_own_ingest():
    profiles = {TAIL: ({"tail_sampling": 0.5, "decoding requests": 0.5}, 0.0),
                BATCH: ({"decoding requests": 1.0}, 0.0),
                CHAIN: ({"service_graph": 0.5, "decoding requests": 0.5}, 0.0),
                INGEST: ({"decoding requests": 1.0}, 0.0)}
    cpu = {TAIL: 2.0, BATCH: 1.0, CHAIN: 3.0, INGEST: 1.0}
    rates = {TAIL: 500.0, BATCH: 1000.0, CHAIN: 500.0, ROTEL: 1000.0, INGEST: 1500.0}
    table = rows(bench.goals_table(rates, False, profiles, cpu))
    assert "| tail_sampling alone vs batch alone | agent | 0.50x | >= 0.8x | no | "\
           "+1.00 µs a span: tail_sampling +1.00, decoding requests +0.00 |" in table
    assert "| default chain -> nop vs rotel raw | agent | 0.50x | >= 0.8x | no | "\
           "beyond ingest -> nop: +2.00 µs a span: service_graph +1.50, decoding requests +0.50 |" in table
    # A goal met has nothing in that column.
    assert "| ingest -> nop vs rotel, OTLP/HTTP | agent | 1.50x | >= 1.3x | yes |  |" in table
