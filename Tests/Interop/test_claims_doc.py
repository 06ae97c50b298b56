"""docs/claims.md stays true: every row of its claim tables names at least one test, none says NOT PROVED,
and every test it names exists — a Python test as `Tests/Interop/FILE.py::test_name` (a `def` of that name in
that file; a `[param]` suffix is a pytest id) and a swift-testing test as `Tests/TARGET/FILE.swift: "display
name", "another"` (an `@Test("display name"` in that file).

No collector is started: this reads files only.
"""

import os
import re

import pytest

import interop_helpers as h

CLAIMS = os.path.join(h.REPO_ROOT, "docs", "claims.md")

PYTHON_REF = re.compile(r"(?<![\w>/])(Tests/Interop/[\w./-]+\.py)::(\w+)(\[[^\]\s]*\])?")
SWIFT_FILE = re.compile(r"(?<![\w>/])(Tests/[\w./+-]+\.swift):((?:\s*\"(?:[^\"\\]|\\.)*\",?)+)")
QUOTED = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")
SWIFT_TEST = re.compile(r"@Test\(\s*\"((?:[^\"\\]|\\.)*)\"")
UNESCAPED_BAR = re.compile(r"(?<!\\)\|")


def claims_text():
    with open(CLAIMS, encoding="utf-8") as f:
        return f.read()


def table_rows(text):
    """(line number, claim, proved-by) of every claim row of every `| claim | proved by |` table."""
    rows = []
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in UNESCAPED_BAR.split(line.strip())[1:-1]]
        if cells == ["claim", "proved by"]:
            in_table = True
            continue
        if not in_table or all(set(c) <= set("-: ") for c in cells):
            continue
        rows.append((number, cells[0], " | ".join(cells[1:])))
    return rows


def python_tests(path):
    """The test functions (module level or in classes) defined in a Python file."""
    with open(os.path.join(h.REPO_ROOT, path), encoding="utf-8") as f:
        return set(re.findall(r"^\s*(?:async\s+)?def\s+(test_\w+)\s*\(", f.read(), re.M))


def swift_display_names(path):
    """The display names of the `@Test("…")` functions of a Swift file, unescaped."""
    with open(os.path.join(h.REPO_ROOT, path), encoding="utf-8") as f:
        return {unescape(n) for n in SWIFT_TEST.findall(f.read())}


def unescape(text):
    return re.sub(r"\\(.)", r"\1", text)


def reference_problems(text, where):
    """What is wrong with the test references in `text`; each problem names `where`."""
    problems = []
    for path, name, _ in PYTHON_REF.findall(text):
        if not os.path.isfile(os.path.join(h.REPO_ROOT, path)):
            problems.append("%s: %s does not exist" % (where, path))
        elif name not in python_tests(path):
            problems.append("%s: %s has no test %s" % (where, path, name))
    for path, names in SWIFT_FILE.findall(text):
        if not os.path.isfile(os.path.join(h.REPO_ROOT, path)):
            problems.append("%s: %s does not exist" % (where, path))
            continue
        known = swift_display_names(path)
        for name in QUOTED.findall(names):
            # A `|` inside a Markdown table cell is written `\|`.
            if unescape(name) not in known:
                problems.append("%s: %s has no @Test(\"%s\")" % (where, path, unescape(name)))
    return problems


def has_test_reference(text):
    return bool(PYTHON_REF.search(text) or SWIFT_FILE.search(text))


def test_every_claim_row_names_a_test_that_exists_and_none_is_unproved():
    text = claims_text()
    rows = table_rows(text)
    assert len(rows) > 100, "found only %d claim rows in %s: is the table format still `| claim | proved by |`?" \
        % (len(rows), CLAIMS)
    problems = []
    for number, claim, proved_by in rows:
        where = "docs/claims.md:%d (%s)" % (number, claim[:60])
        if "NOT PROVED" in proved_by:
            problems.append("%s: says NOT PROVED" % where)
        if not has_test_reference(proved_by):
            problems.append("%s: names no test (%r)" % (where, proved_by[:100]))
        problems += reference_problems(proved_by, where)
    assert not problems, "\n".join(problems)


def test_every_test_named_outside_the_tables_exists_too():
    """The prose of docs/claims.md names tests as well; they must exist like the tables' ones."""
    text = claims_text()
    assert "NOT PROVED" not in text, "docs/claims.md still says NOT PROVED somewhere"
    prose = "\n".join(ln for ln in text.splitlines() if not ln.startswith("|"))
    problems = reference_problems(prose, "docs/claims.md (prose)")
    assert not problems, "\n".join(problems)


# The checker itself, on small made-up documents: it must catch what it is for.

SAMPLE_HEADER = "| claim | proved by |\n| --- | --- |\n"


@pytest.mark.parametrize("row,problem", [
    ("| a | NOT PROVED: nobody wrote it |", "NOT PROVED"),
    ("| a | tooling, not checked by a test |", "names no test"),
    ("| a | Tests/Interop/test_claims_doc.py::test_that_does_not_exist |", "has no test"),
    ("| a | Tests/Interop/no_such_file.py::test_x |", "does not exist"),
    ('| a | Tests/PipelineTests/RetryAfterTests.swift: "no such display name" |', "has no @Test"),
], ids=["not-proved", "no-test", "missing-python-test", "missing-file", "missing-swift-test"])
def test_the_checker_catches_each_kind_of_bad_row(row, problem):
    rows = table_rows(SAMPLE_HEADER + row + "\n")
    assert len(rows) == 1
    number, claim, proved_by = rows[0]
    found = (["NOT PROVED"] if "NOT PROVED" in proved_by else []) + \
        ([] if has_test_reference(proved_by) else ["names no test"]) + reference_problems(proved_by, "sample")
    assert any(problem in p for p in found), found


def test_the_checker_accepts_good_rows():
    rows = table_rows(SAMPLE_HEADER + (
        "| a `x\\|y` | Tests/Interop/test_claims_doc.py::test_the_checker_accepts_good_rows; "
        "Tests/Interop/test_claims_doc.py::test_the_checker_catches_each_kind_of_bad_row[no-test]; "
        'Tests/PipelineTests/RetryAfterTests.swift: "delay-seconds and the three HTTP-date formats of RFC 9110 §5.6.7", '
        '"a date in the past is no delay; anything else is not a Retry-After" (and a note) |\n'))
    assert [r[1] for r in rows] == ["a `x\\|y`"]
    assert has_test_reference(rows[0][2])
    assert reference_problems(rows[0][2], "sample") == []
