"""The live view on the admin port (`GET /`, docs/live-view.md), driven in real headless Chromium.

A swarm of agents made with the OpenTelemetry Python SDK (its own TracerProvider per agent, OTLP/HTTP)
feeds a collector with service_graph, threshold_triggers and the memory exporter; Debian's `chromium`
and `chromium-driver`, driven by selenium (chromedriver's path given, so selenium-manager downloads
nothing), load the page and read what it shows. What is expected comes from the spans the test made
(their services, parents, start times and names), never from the collector's answers.

Screenshots of each tab go to docs/img/ (the README's "Live view" section shows them).
"""

import json
import os
import shutil
import time
import urllib.parse

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

import interop_helpers as h

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)
pytestmark = pytest.mark.skipif(
    not HAVE_CHROMIUM,
    reason="Debian's chromium and chromium-driver are not installed (scripts/install-deps --test installs them)")

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the skip above names the missing browser; a missing selenium fails loudly in the fixture
    webdriver = None

IMG_DIR = os.path.join(h.REPO_ROOT, "docs", "img")
REFRESH_S = 3.0  # app.js REFRESH_MS
HOSTILE = "<img src=x onerror=alert(1)>"
TOKEN = "view-s3cret"
RULE = "slow_tool_call"


class Agent:
    """One agent process: its own resource and a synchronous OTLP/HTTP export per span."""

    def __init__(self, endpoint, service, agent_type):
        session = requests.Session()
        session.trust_env = False
        self.provider = TracerProvider(resource=Resource.create({
            "service.name": service, "agent.name": service, "agent.type": agent_type}))
        self.provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=10, session=session)))
        self.tracer = self.provider.get_tracer("live.view.interop", "1.0")

    def close(self):
        self.provider.shutdown()


def view_config(tmp_path, auth=False):
    overrides = {
        "processors": {
            "threshold_triggers": {"cooldown": "1s", "rules": [
                {"name": RULE, "severity": "warning", "duration_above": "400ms",
                 "where": {"gen_ai.operation.name": "execute_tool"}, "group_by": ["agent.name"]},
            ]},
        },
        "exporters": {"memory": {}},
        "service": {"pipelines": {"traces": {
            "processors": ["service_graph", "threshold_triggers", "batch"], "exporters": ["file", "memory"]}}},
    }
    if auth:
        overrides["service"]["admin"] = {"auth": {"bearer_tokens": [TOKEN]}}
    return h.build_config(str(tmp_path / "out.jsonl"), timeout="50ms",
                          service_graph={"store": {"ttl": "2s"}}, overrides=overrides)


def send_swarm(endpoint, slow_tool=False, hostile=False):
    """One request through the swarm: user -> coordinator -> researcher (SERVER/CLIENT pair) -> model and tool.
    hostile: a span named HOSTILE, and the tool call fails.

    Returns (trace id hex, [(start ns, service, span name)] in the order the spans start)."""
    coordinator = Agent(endpoint, "coordinator", "coordinator")
    researcher = Agent(endpoint, "researcher", "research")
    spans = []
    start = time.time_ns()

    def span(agent, service, name, parent, offset_ms, length_ms, kind=SpanKind.INTERNAL, attributes=None, error=False):
        s = agent.tracer.start_span(name, context=set_span_in_context(parent) if parent is not None else None, kind=kind,
                                    start_time=start + offset_ms * 1_000_000, attributes=attributes or {})
        if error:
            s.set_status(Status(StatusCode.ERROR, "tool failed"))
        spans.append((start + offset_ms * 1_000_000, service, name, s, length_ms))
        return s

    root = span(coordinator, "coordinator", "handle request", None, 0, 900, SpanKind.SERVER)
    call = span(coordinator, "coordinator", "call researcher", root, 10, 850, SpanKind.CLIENT,
                {"peer.service": "researcher"})
    serve = span(researcher, "researcher", "research", call, 20, 820, SpanKind.SERVER)
    span(researcher, "researcher", "chat gpt-4o", serve, 30, 200, SpanKind.CLIENT,
         {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
          "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300})
    tool = span(researcher, "researcher", "execute_tool web_search", serve, 240, 500 if slow_tool else 100, SpanKind.INTERNAL,
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_search"}, error=hostile)
    tool.add_event("retry", {"attempt": 2}, timestamp=start + 260 * 1_000_000)
    if hostile:
        span(coordinator, "coordinator", HOSTILE, root, 870, 5, attributes={"note": "<script>alert(2)</script>"})
    # end children before parents, as a real swarm does; each end exports the span
    for s_start, _, _, s, length_ms in sorted(spans, key=lambda x: -x[0]):
        s.end(end_time=s_start + length_ms * 1_000_000)
    coordinator.close()
    researcher.close()
    trace_id = format(root.get_span_context().trace_id, "032x")
    return trace_id, [(s_start, service, name) for s_start, service, name, _, _ in sorted(spans, key=lambda x: x[0])]


def wait_for(predicate, timeout=15.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def stored(col, trace_id, spans):
    def ready():
        r = col.admin_get("/api/traces/" + trace_id)
        return r.status == 200 and len(r.json()["data"][0]["spans"]) >= spans
    wait_for(ready, what="trace %s stored with %d spans" % (trace_id, spans))


@pytest.fixture(scope="module")
def browser():
    if webdriver is None:
        pytest.fail("selenium is not installed: scripts/install-deps --test installs Tests/Interop/requirements.txt")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    # chromedriver from Debian: selenium-manager is never asked to download a driver or a browser
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def view(agenttrace_bin, tmp_path_factory):
    """A collector fed one swarm request with a hostile span name; the module's tests share it."""
    from conftest import _Collectors
    base = tmp_path_factory.mktemp("live-view")
    cs = _Collectors(agenttrace_bin, base)
    col = cs.launch("view", view_config(base))
    first = send_swarm(col.endpoint, hostile=True)
    second = send_swarm(col.endpoint)
    stored(col, first[0], len(first[1]))
    stored(col, second[0], len(second[1]))
    yield col, first, second
    problems = cs.stop_all()
    assert not problems, "\n\n".join(problems)


def admin_url(col, fragment="", token=None):
    return "http://%s/%s%s" % (col.admin, "?access_token=" + urllib.parse.quote(token, safe="") if token else "",
                               "#" + fragment if fragment else "")


def screenshot(driver, name):
    os.makedirs(IMG_DIR, exist_ok=True)
    driver.save_screenshot(os.path.join(IMG_DIR, name))


def attrs(driver, selector, attribute):
    """An attribute of every element `selector` matches, read in one step (the view redraws every refresh)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]))", selector, attribute)


def texts(driver, selector):
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector)


def click(driver, selector, timeout=15.0):
    """A real click on the first element `selector` matches, found again when a refresh replaced it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def no_alert_dialog(driver):
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return True
    raise AssertionError("the page opened a JavaScript alert: %r" % text)


def test_live_view_graph_shows_the_agents_and_edges_and_a_node_s_figures(view, browser):
    col, (trace_id, spans), _ = view
    browser.get(admin_url(col, "agents"))
    wait = WebDriverWait(browser, 15)
    # nodes by agent: the two services, the model and the tool their spans name
    want_nodes = {"coordinator", "researcher", "gpt-4o", "web_search"}
    wait.until(lambda d: want_nodes <= set(attrs(d, "#graph g.node", "data-id")))
    nodes = dict(zip(attrs(browser, "#graph g.node", "data-id"), attrs(browser, "#graph g.node", "data-type")))
    assert nodes["coordinator"] == "coordinator" and nodes["researcher"] == "research"  # coloured by agent.type
    want_edges = {("coordinator", "researcher"), ("researcher", "gpt-4o"), ("researcher", "web_search")}
    wait.until(lambda d: want_edges <= set(zip(attrs(d, "#graph g.edge", "data-source"), attrs(d, "#graph g.edge", "data-target"))))
    # two requests went coordinator -> researcher; the label carries calls (or rate), error share and p95
    [label] = texts(browser, '#graph g.edge[data-source="coordinator"][data-target="researcher"] text')
    assert "err" in label and "p95" in label, label
    [model_label] = texts(browser, '#graph g.edge[data-target="gpt-4o"] text')
    assert "3000 tok" in model_label, model_label  # 2 requests × (1200 + 300) tokens
    # refreshed without reloading: a marker set on the window survives the next refresh
    browser.execute_script("window.__notReloaded = true")
    status = browser.find_element(By.ID, "status").text
    wait.until(lambda d: d.find_element(By.ID, "status").text != status)
    assert browser.execute_script("return window.__notReloaded") is True
    # a node: its RED figures, tokens, and its recent traces
    click(browser, '#graph g.node[data-id="researcher"] circle')
    wait.until(lambda d: texts(d, "#details-title") == ["researcher"])
    wait.until(lambda d: trace_id in attrs(d, "#graph-details a.trace-link", "data-trace-id"))
    [details] = texts(browser, "#graph-details")
    for word in ("RED", "requests", "errors", "duration p95", "Tokens", "input", "Recent traces"):
        assert word in details, (word, details)
    screenshot(browser, "live-view-agents.png")
    # an edge: its calls, from the stored traces
    click(browser, '#graph g.edge[data-source="coordinator"][data-target="researcher"] path.hit')
    wait.until(lambda d: texts(d, "#details-title") == ["coordinator → researcher"])
    wait.until(lambda d: trace_id in attrs(d, "#graph-details table a.trace-link", "data-trace-id"))
    assert "call researcher" in texts(browser, "#graph-details")[0]
    no_alert_dialog(browser)


def test_live_view_search_finds_a_trace_by_agent_and_shows_its_waterfall_in_start_order(view, browser):
    col, (trace_id, spans), _ = view
    browser.get(admin_url(col, "traces"))
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: "researcher" in [o.get_attribute("value") for o in Select(d.find_element(By.ID, "search-service")).options])
    Select(browser.find_element(By.ID, "search-service")).select_by_value("researcher")
    browser.find_element(By.ID, "search-tags").send_keys("agent.name=researcher")
    browser.find_element(By.ID, "search-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.trace-row[data-trace-id="%s"]' % trace_id))
    browser.find_element(By.CSS_SELECTOR, 'tr.trace-row[data-trace-id="%s"]' % trace_id).click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")) == len(spans))
    shown = [(row.find_element(By.CSS_SELECTOR, ".svc").text, row.find_element(By.CSS_SELECTOR, ".op").text)
             for row in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")]
    assert shown == [(service, name) for _, service, name in spans]
    # what each span talks to: the model, the tool, the other agent
    peers = {row.find_element(By.CSS_SELECTOR, ".op").text: row.find_element(By.CSS_SELECTOR, ".span-label").text
             for row in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")}
    assert "model gpt-4o" in peers["chat gpt-4o"]
    assert "tool web_search" in peers["execute_tool web_search"]
    assert "agent researcher" in peers["call researcher"]
    # a span's attributes and events
    tool_row = [r for r in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")
                if r.find_element(By.CSS_SELECTOR, ".op").text == "execute_tool web_search"][0]
    tool_row.click()
    details = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#waterfall .span-details"))
    text = details.text
    assert "gen_ai.tool.name" in text and "web_search" in text and "Events" in text and "attempt" in text
    screenshot(browser, "live-view-traces.png")
    # searching another agent's name as agent.name finds nothing of this one
    browser.find_element(By.ID, "search-tags").clear()
    browser.find_element(By.ID, "search-tags").send_keys("agent.name=coordinator")
    browser.find_element(By.ID, "search-button").click()
    wait.until(lambda d: "No stored trace matches." in d.find_element(By.ID, "search-message").text)
    _, (second, _) = view[1], view[2]

    def found(service, errors=False, minimum=""):
        Select(browser.find_element(By.ID, "search-service")).select_by_value(service)
        browser.find_element(By.ID, "search-tags").clear()
        if browser.find_element(By.ID, "search-errors").is_selected() != errors:
            browser.find_element(By.ID, "search-errors").click()
        browser.find_element(By.ID, "search-min").clear()
        browser.find_element(By.ID, "search-min").send_keys(minimum)
        browser.execute_script("document.getElementById('trace-rows').replaceChildren()")
        browser.find_element(By.ID, "search-button").click()
        wait.until(lambda d: attrs(d, "tr.trace-row", "data-trace-id") or "No stored trace" in d.find_element(By.ID, "search-message").text)
        return set(attrs(browser, "tr.trace-row", "data-trace-id"))

    # errors only: the first request's tool call failed, the second's did not
    assert trace_id in found("researcher", errors=True) and second not in found("researcher", errors=True)
    # minimum duration: the coordinator's root span lasted 900 ms
    assert {trace_id, second} <= found("coordinator", minimum="850ms")
    assert not {trace_id, second} & found("coordinator", minimum="950ms")


def test_live_view_shows_a_new_alert_within_the_refresh_interval_linking_its_trace(view, browser):
    col, _, _ = view
    browser.get(admin_url(col, "incidents"))
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("updated"))
    assert not [t for t in texts(browser, "#incident-rows tr") if RULE in t]
    trace_id, _ = send_swarm(col.endpoint, slow_tool=True)  # the tool span lasts 500 ms > duration_above 400ms
    sent = time.monotonic()
    rows = WebDriverWait(browser, REFRESH_S + 3, poll_frequency=0.1).until(
        lambda d: [t for t in texts(d, "#incident-rows tr") if RULE in t])
    seen = time.monotonic() - sent
    assert seen <= REFRESH_S + 1.5, "the alert appeared %.1f s after the span was sent" % seen
    assert "researcher" in rows[0] and "warning" in rows[0], rows[0]
    link = '#incident-rows a.trace-link[data-trace-id="%s"]' % trace_id
    assert attrs(browser, link, "data-trace-id")
    screenshot(browser, "live-view-incidents.png")
    stored(col, trace_id, 5)
    click(browser, link)
    wait.until(lambda d: texts(d, "#waterfall-title") == ["Trace " + trace_id])
    assert browser.find_element(By.ID, "panel-traces").is_displayed()


def test_jaeger_search_by_alert_mark_repeated_tags_and_trace_ids(view):
    """The mark threshold_triggers sets (`alert.rule`) is a tag Jaeger's query API finds; `tag=` repeats, `traceID=` repeats."""
    col, (first, _), (second, _) = view
    trace_id, _ = send_swarm(col.endpoint, slow_tool=True)
    stored(col, trace_id, 5)

    def search(query):
        r = col.admin_get("/api/traces?" + query)
        assert r.status == 200, r.body[:300]
        return [t["traceID"] for t in r.json()["data"]]

    marked = wait_for(lambda: search(urllib.parse.urlencode({"service": "researcher", "tags": json.dumps({"alert.rule": RULE})})),
                      what="a trace marked alert.rule=" + RULE)
    assert trace_id in marked and first not in marked and second not in marked
    both = search(urllib.parse.urlencode([("service", "researcher"), ("tag", "alert.rule:" + RULE), ("tag", "agent.name:researcher")]))
    assert trace_id in both
    assert search(urllib.parse.urlencode([("service", "researcher"), ("tag", "alert.rule:" + RULE), ("tag", "agent.name:coordinator")])) == []
    assert search(urllib.parse.urlencode([("traceID", second), ("traceID", first)])) == [second, first]


def test_live_view_renders_a_hostile_span_name_as_text(view, browser):
    col, (trace_id, spans), _ = view
    assert HOSTILE in [name for _, _, name in spans]
    browser.get(admin_url(col, "trace=" + trace_id))
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")) == len(spans))
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row .op")]
    assert HOSTILE in names
    hostile_row = [r for r in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row") if HOSTILE in r.text][0]
    hostile_row.click()
    wait.until(lambda d: "<script>alert(2)</script>" in d.find_element(By.CSS_SELECTOR, "#waterfall .span-details").text)
    # the operation list of the search form holds the name too
    Select(browser.find_element(By.ID, "search-service")).select_by_value("coordinator")
    wait.until(lambda d: HOSTILE in [o.text for o in Select(d.find_element(By.ID, "search-operation")).options])
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.find_elements(By.TAG_NAME, "script")[0].get_attribute("src").endswith("/ui/app.js")
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    no_alert_dialog(browser)


def test_live_view_collector_tab_shows_rates_queue_sampling_and_exporters(view, browser):
    col, _, _ = view
    browser.get(admin_url(col, "collector"))
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#exporter-rows tr.exporter"))
    # the first sample has no rate yet; spans sent now show as accepted spans per second at a later refresh
    wait.until(lambda d: texts(d, "#stat-accepted .value") == ["–"] or texts(d, "#stat-accepted .value") == ["0"])
    _, spans = send_swarm(col.endpoint)
    WebDriverWait(browser, 2 * REFRESH_S + 2, poll_frequency=0.1).until(
        lambda d: texts(d, "#stat-accepted .value")[0] not in ("", "–", "0"))
    assert float(texts(browser, "#stat-accepted .value")[0]) > 0
    [total] = texts(browser, "#stat-accepted-total .value")
    assert total not in ("0", "–")
    assert "%" in texts(browser, "#stat-queue .value")[0]
    assert texts(browser, "#stat-kept .value") == ["no tail_sampling"]
    exporters = dict(zip(attrs(browser, "#exporter-rows tr.exporter", "data-exporter"), texts(browser, "#exporter-rows tr.exporter")))
    assert {"file", "memory"} <= set(exporters), exporters
    assert all("healthy" in text for text in exporters.values()), exporters
    assert texts(browser, "#stat-stored .value")[0] not in ("0", "no memory exporter")
    screenshot(browser, "live-view-collector.png")


def test_live_view_is_behind_the_admin_token_and_works_with_it(start_collector, tmp_path, browser):
    col = start_collector.launch("view-auth", view_config(tmp_path, auth=True))
    for path in ("/", "/ui/app.js", "/?access_token=wrong"):
        assert h.http_request(col.admin, "GET", path).status == 401, path
    col.admin_headers = {"Authorization": "Bearer " + TOKEN}
    assert col.admin_get("/ui/app.js").status == 200
    trace_id, spans = send_swarm(col.endpoint)
    stored(col, trace_id, len(spans))
    browser.get(admin_url(col, "agents"))
    assert "missing or invalid bearer token" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(admin_url(col, "agents", token=TOKEN))
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: {"coordinator", "researcher"} <= set(attrs(d, "#graph g.node", "data-id")))
    # the script sends the token in the Authorization header to the JSON routes
    browser.get(admin_url(col, "trace=" + trace_id, token=TOKEN))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")) == len(spans))
