"""deploy/: the container image, the compose stack, the Kubernetes manifests, Prometheus and Grafana
provisioning, and the production configuration they all run.

No Docker engine or cluster runs here, so what can be checked without one is checked for real:

  * every YAML and JSON file parses, and `agenttrace validate` accepts every configuration: the ones in
    deploy/, the one compose mounts, the one the Kubernetes ConfigMap carries (which must be
    deploy/agenttrace.yaml unchanged);
  * the production configuration runs end to end: agents' spans in, sampled traces out to a fake
    Jaeger v2 (OTLP/gRPC) and a fake Zipkin, alerts to a webhook, and a real Prometheus, started with
    deploy/prometheus/prometheus.yml (target rewritten to the collector on loopback), scraping it;
  * `promtool check config` on that Prometheus configuration;
  * every PromQL query of the Grafana dashboard names only metrics the running collector exposes,
    and returns data from that Prometheus; the Infinity queries (node graph, alerts table) get the
    fields they declare from the collector's admin API;
  * the Dockerfile's stages, packages, user, ports and health check, its HEALTHCHECK command run
    against a live and a dead admin port, and its runtime packages against the shared libraries the
    built binary needs (`readelf`/`ldd`, `dpkg -S`);
  * the wiring between files: ports, paths, service names, datasource uids, volume mounts.
"""

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time

import pytest

import fakes
import interop_helpers as h
from conftest import _Collectors

try:
    import yaml
except ImportError:  # PyYAML is in Tests/Interop/requirements.txt
    yaml = None

DEPLOY = os.path.join(h.REPO_ROOT, "deploy")
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_ERROR = 2

# The runtime image's packages as Debian 12 names them (deploy/Dockerfile's final stage).
RUNTIME_PACKAGES = {"libprotobuf-c1", "libnghttp2-14", "ca-certificates"}
BUILD_PACKAGES = {"libprotobuf-c-dev", "libnghttp2-dev", "zlib1g-dev", "pkg-config"}


@pytest.fixture(scope="module", autouse=True)
def need_pyyaml():
    if yaml is None:
        pytest.fail("missing prerequisite: PyYAML (scripts/install-deps --test installs it into .venv/)",
                    pytrace=False)


def deploy_path(*parts):
    return os.path.join(DEPLOY, *parts)


def read(*parts):
    with open(deploy_path(*parts), encoding="utf-8") as f:
        return f.read()


def load_yaml(*parts):
    return yaml.safe_load(read(*parts))


def load_all_yaml(*parts):
    return [d for d in yaml.safe_load_all(read(*parts)) if d is not None]


def k8s_objects():
    """Every Kubernetes object in deploy/k8s/*.yaml except the kustomization, as {(kind, name): object}."""
    out = {}
    for name in sorted(os.listdir(deploy_path("k8s"))):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            for doc in load_all_yaml("k8s", name):
                out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def production_config():
    return load_yaml("agenttrace.yaml")


def validate(agenttrace_bin, config_path, config_dir, data_dir):
    env = dict(os.environ, AGENTTRACE_CONFIG_DIR=config_dir, AGENTTRACE_DATA_DIR=str(data_dir))
    return subprocess.run([agenttrace_bin, "validate", "--config", config_path], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


def configmap_files(tmp_path):
    """The ConfigMap's files written to a folder, as Kubernetes mounts them; returns the folder."""
    cm = k8s_objects()[("ConfigMap", "agenttrace-config")]
    folder = tmp_path / "configmap"
    folder.mkdir()
    for key, text in cm["data"].items():
        (folder / key).write_text(text)
    return str(folder)


# ---------------------------------------------------------------------------
# 1. Every file parses; every configuration validates
# ---------------------------------------------------------------------------

def test_every_yaml_and_json_file_in_deploy_parses():
    parsed, problems = [], []
    for root, dirs, files in os.walk(DEPLOY):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, DEPLOY)
            try:
                if name.endswith((".yaml", ".yml")):
                    docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
                    if not docs:
                        problems.append("%s: no YAML document" % rel)
                    for d in docs:
                        # YAML files embedded in ConfigMaps parse too
                        if isinstance(d, dict) and d.get("kind") == "ConfigMap":
                            for key, text in d.get("data", {}).items():
                                if key.endswith((".yaml", ".yml")):
                                    yaml.safe_load(text)
                elif name.endswith(".json"):
                    json.load(open(path, encoding="utf-8"))
                else:
                    continue
            except (yaml.YAMLError, ValueError) as e:
                problems.append("%s: %s" % (rel, e))
            parsed.append(rel)
    assert not problems, "\n".join(problems)
    want = {"agenttrace.yaml", "agents.yaml", "compose.yaml", "prometheus/prometheus.yml",
            "grafana/provisioning/datasources/agenttrace.yaml", "grafana/provisioning/dashboards/agenttrace.yaml",
            "grafana/dashboards/agenttrace.json", "k8s/configmap.yaml", "k8s/statefulset.yaml", "k8s/service.yaml",
            "k8s/kustomization.yaml", "k8s/loadbalancer.yaml", "k8s/loadbalancer-otelcol.yaml", "agenttrace-router.yaml",
            "compose.scale-out.yaml"}
    assert want <= set(parsed), "deploy/ lacks %s" % sorted(want - set(parsed))


def test_compose_mounts_the_production_config_and_k8s_carries_it_unchanged():
    svc = load_yaml("compose.yaml")["services"]["agenttrace"]
    config = svc["command"][svc["command"].index("--config") + 1]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"] if m.startswith("./")}
    assert mounts.get(config) == "./agenttrace.yaml", \
        "compose runs --config %s, mounted from %s; want deploy/agenttrace.yaml" % (config, mounts.get(config))
    cm = k8s_objects()[("ConfigMap", "agenttrace-config")]
    for key in ("agenttrace.yaml", "agents.yaml"):
        assert cm["data"].get(key) == read(key), (
            "deploy/k8s/configmap.yaml's %s differs from deploy/%s: paste the file into the ConfigMap "
            "(indented by four spaces under `%s: |`)" % (key, key, key))


def test_validate_accepts_every_configuration_in_deploy(agenttrace_bin, tmp_path):
    compose = load_yaml("compose.yaml")["services"]["agenttrace"]
    compose_config = next(m.split(":")[0] for m in compose["volumes"]
                          if m.split(":")[1] == compose["command"][compose["command"].index("--config") + 1])
    configs = [(deploy_path(n), DEPLOY) for n in sorted(os.listdir(DEPLOY))
               if n.startswith("agenttrace") and n.endswith(".yaml")]
    configs.append((os.path.normpath(os.path.join(DEPLOY, compose_config)), DEPLOY))
    cm_dir = configmap_files(tmp_path)
    configs.append((os.path.join(cm_dir, "agenttrace.yaml"), cm_dir))
    for i, (path, config_dir) in enumerate(configs):
        r = validate(agenttrace_bin, path, config_dir, tmp_path / ("data-%d" % i))
        assert r.returncode == 0 and "configuration is valid" in r.stdout, \
            "agenttrace validate --config %s (AGENTTRACE_CONFIG_DIR=%s) exited %d\nstdout: %s\nstderr: %s" % (
                path, config_dir, r.returncode, r.stdout, r.stderr)

    # The metadata file is really read: without agents.yaml next to it the production config fails,
    # naming the key.
    empty = tmp_path / "no-agents"
    empty.mkdir()
    r = validate(agenttrace_bin, deploy_path("agenttrace.yaml"), str(empty), tmp_path / "data-x")
    assert r.returncode != 0 and "processors.agent_enrichment.metadata_file" in r.stderr, \
        "validate without agents.yaml exited %d: %s%s" % (r.returncode, r.stdout, r.stderr)


def test_production_config_configures_every_processor():
    cfg = production_config()
    pipeline = cfg["service"]["pipelines"]["traces"]
    assert pipeline["processors"] == ["agent_enrichment", "anomaly_detection", "threshold_triggers", "service_graph", "tail_sampling", "batch"], \
        "the pipeline should enrich, learn anomalies, alert, graph, sample, then batch: %s" % pipeline["processors"]
    for name in pipeline["processors"]:
        assert cfg["processors"].get(name), "processors.%s has no settings" % name
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert cfg["service"]["admin"]["endpoint"] == "0.0.0.0:8888"
    # every network exporter keeps its queue on the data volume
    for name, exporter in cfg["exporters"].items():
        if name.split("/")[0] in ("otlp", "zipkin", "jaeger"):
            storage = exporter.get("sending_queue", {}).get("storage", "")
            assert storage.startswith("${env:AGENTTRACE_DATA_DIR:-/var/lib/agenttrace}/"), \
                "exporters.%s.sending_queue.storage %r is not under the data volume" % (name, storage)
    rules = {r["name"] for r in cfg["processors"]["threshold_triggers"]["rules"]}
    policies = {p["name"] for p in cfg["processors"]["tail_sampling"]["policies"]}
    assert {"alerted", "anomalies", "errors"} <= policies, policies
    assert {"error_burst", "critical_agent_error", "slow_llm_call"} <= rules, rules


# ---------------------------------------------------------------------------
# 2. Compose wiring
# ---------------------------------------------------------------------------

def unescape_compose(value):
    """Compose interpolates ${VAR} in its file; `$$` is a literal `$`."""
    return value.replace("$$", "$")


def test_compose_stack_wiring():
    compose = load_yaml("compose.yaml")
    services = compose["services"]
    assert {"agenttrace", "jaeger", "zipkin", "prometheus", "grafana"} <= set(services), sorted(services)
    at = services["agenttrace"]
    cfg = production_config()

    context = os.path.normpath(os.path.join(DEPLOY, at["build"]["context"]))
    assert os.path.isfile(os.path.join(context, at["build"]["dockerfile"])), at["build"]
    assert os.path.isfile(os.path.join(context, "Package.swift")), "the build context %s is not the repository" % context

    # every bind mount of every service exists in deploy/
    for name, svc in services.items():
        for m in svc.get("volumes", []):
            source = m.split(":")[0]
            if source.startswith("."):
                assert os.path.exists(os.path.normpath(os.path.join(DEPLOY, source))), \
                    "services.%s mounts %s, which does not exist" % (name, source)
            else:
                assert source in (compose.get("volumes") or {}), "services.%s: volume %s is not declared" % (name, source)

    env = at["environment"]
    # the persistent queue: a named volume at the data directory the config's queues live under
    data_mounts = [m for m in at["volumes"] if m.split(":")[1] == env["AGENTTRACE_DATA_DIR"]]
    assert data_mounts and not data_mounts[0].startswith("."), \
        "no named volume at AGENTTRACE_DATA_DIR=%s: %s" % (env["AGENTTRACE_DATA_DIR"], at["volumes"])
    config_mounts = {m.split(":")[1] for m in at["volumes"]}
    assert os.path.join(env["AGENTTRACE_CONFIG_DIR"], "agents.yaml") in config_mounts, \
        "agents.yaml is not mounted in AGENTTRACE_CONFIG_DIR=%s" % env["AGENTTRACE_CONFIG_DIR"]

    # listening on 0.0.0.0 inside the network, published on the host
    published = {int(p.split(":")[-1]) for p in at["ports"]}
    assert published == {port_of(cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]),
                         port_of(cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"]),
                         port_of(cfg["service"]["admin"]["endpoint"])} == {4317, 4318, 8888}, at["ports"]

    # exporters reach the compose services: Jaeger v2 over OTLP/gRPC, Zipkin's span API
    jaeger_host, jaeger_port = env["JAEGER_OTLP_ENDPOINT"].rsplit(":", 1)
    assert jaeger_host == "jaeger" and jaeger_port == "4317", env["JAEGER_OTLP_ENDPOINT"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2."), "Jaeger v2 all-in-one, not v1"
    assert services["jaeger"]["environment"].get("JAEGER_LISTEN_HOST") == "0.0.0.0", \
        "Jaeger v2's OTLP receivers listen on localhost unless JAEGER_LISTEN_HOST says otherwise"
    assert env["ZIPKIN_ENDPOINT"] == "http://zipkin:9411/api/v2/spans", env["ZIPKIN_ENDPOINT"]
    assert cfg["exporters"]["otlp/jaeger"]["endpoint"] == "${env:JAEGER_OTLP_ENDPOINT:-jaeger:4317}"
    assert cfg["exporters"]["zipkin"]["endpoint"] == "${env:ZIPKIN_ENDPOINT:-http://zipkin:9411/api/v2/spans}"

    # the health check is the image's, and others wait for it
    test = at["healthcheck"]["test"]
    assert test[0] == "CMD" and [unescape_compose(a) for a in test[1:]] == dockerfile_healthcheck(), \
        "compose's healthcheck differs from deploy/Dockerfile's HEALTHCHECK:\n%s\n%s" % (test, dockerfile_healthcheck())
    assert services["prometheus"]["depends_on"]["agenttrace"]["condition"] == "service_healthy"

    # Prometheus runs deploy/prometheus/prometheus.yml, which scrapes the agenttrace service's admin port
    prom_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["prometheus"]["volumes"]}
    config_flag = next(a.split("=", 1)[1] for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    assert prom_mounts.get(config_flag) == "./prometheus/prometheus.yml", (config_flag, prom_mounts)
    targets = [t for job in load_yaml("prometheus", "prometheus.yml")["scrape_configs"] if job["job_name"] == "agenttrace"
               for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["agenttrace:%d" % port_of(cfg["service"]["admin"]["endpoint"])], targets

    # Grafana: provisioning, the dashboards folder its provider reads, the Infinity plugin
    graf = services["grafana"]
    graf_mounts = {m.split(":")[1]: m.split(":")[0] for m in graf["volumes"]}
    assert graf_mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning", graf_mounts
    provider = load_yaml("grafana", "provisioning", "dashboards", "agenttrace.yaml")["providers"][0]
    assert graf_mounts.get(provider["options"]["path"]) == "./grafana/dashboards", (provider, graf_mounts)
    assert "yesoreyeram-infinity-datasource" in graf["environment"]["GF_PLUGINS_PREINSTALL"]
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == os.path.join(provider["options"]["path"], "agenttrace.json"), home


def readme_deploy_section():
    with open(os.path.join(h.REPO_ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("## Deploy")
    return text[start:text.index("\n## ", start + 1) if "\n## " in text[start + 1:] else len(text)]


def test_compose_file_is_the_stack_the_readme_describes():
    """README "Deploy": `docker compose -f deploy/compose.yaml up --build` (from the repository root) starts
    AgentTrace (OTLP on 4317 and 4318, admin on 8888, the queues on the `agenttrace-data` volume), Jaeger v2
    all-in-one (16686), Zipkin (9411), Prometheus (9090) and Grafana (3000). Everything short of running
    Docker: the file parses, each service has a pinned image or a build whose context and Dockerfile exist,
    publishes the ports the README names on the same container ports, and mounts files that exist."""
    section = readme_deploy_section()
    assert "docker compose -f deploy/compose.yaml up --build" in section, section[:400]
    compose = load_yaml("compose.yaml")
    services = compose["services"]
    readme_ports = {
        "agenttrace": {4317, 4318, 8888}, "jaeger": {16686}, "zipkin": {9411}, "prometheus": {9090}, "grafana": {3000},
    }
    for port in sorted(p for ports in readme_ports.values() for p in ports):
        assert re.search(r"[:`]%d\b" % port, section), "README's Deploy section does not name port %d" % port
    problems = []
    for name, want in readme_ports.items():
        svc = services.get(name)
        if svc is None:
            problems.append("compose has no service %s" % name)
            continue
        published = {}
        for p in svc.get("ports", []):
            host, container = str(p).rsplit(":", 1)[0].split(":")[-1], str(p).rsplit(":", 1)[1]
            published[int(host)] = int(container.split("/")[0])
        if set(published) != want or any(h_ != c for h_, c in published.items()):
            problems.append("services.%s publishes %s, README says %s on the same container ports"
                            % (name, svc.get("ports"), sorted(want)))
        image = svc.get("image", "")
        if "build" in svc:
            build = svc["build"]
            # Relative paths in a compose file resolve against the file's own folder (deploy/), whatever the
            # directory `docker compose -f` is run from.
            context = os.path.normpath(os.path.join(DEPLOY, build["context"]))
            if not os.path.isfile(os.path.join(context, build.get("dockerfile", "Dockerfile"))):
                problems.append("services.%s: build %s has no Dockerfile" % (name, build))
        elif not re.match(r"^[\w./-]+:[\w.-]+$", image) or image.endswith(":latest"):
            problems.append("services.%s: image %r is not pinned to a tag" % (name, image))
        for m in svc.get("volumes", []):
            source = m.split(":")[0]
            if source.startswith(".") and not os.path.exists(os.path.normpath(os.path.join(DEPLOY, source))):
                problems.append("services.%s mounts %s, which does not exist" % (name, source))
    if services.get("jaeger", {}).get("image", "").split(":")[-1].split(".")[0] != "2":
        problems.append("README says Jaeger v2; compose runs %r" % services.get("jaeger", {}).get("image"))
    if "agenttrace-data" not in (compose.get("volumes") or {}) or \
            not any(m.startswith("agenttrace-data:") for m in services["agenttrace"].get("volumes", [])):
        problems.append("README puts the queues on the agenttrace-data volume; compose does not")
    command = services["agenttrace"].get("command", [])
    config_path = command[command.index("--config") + 1] if "--config" in command else None
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["agenttrace"].get("volumes", [])}
    if mounts.get(config_path) != "./agenttrace.yaml":
        problems.append("agenttrace runs --config %s, but deploy/agenttrace.yaml is mounted at %s" % (config_path, mounts))
    assert not problems, "\n".join(problems)


def test_promtool_checks_the_prometheus_config(promtool):
    r = subprocess.run([promtool, "check", "config", deploy_path("prometheus", "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "promtool check config exited %d:\n%s%s" % (r.returncode, r.stdout, r.stderr)


def test_scale_out_compose_is_two_tiers_routed_by_trace_id(promtool):
    """compose.scale-out.yaml: an AgentTrace router running deploy/agenttrace-router.yaml resolves the
    `agenttrace` service (one A record per replica) and owns the published ports; the replicas publish none
    (so they scale); Prometheus scrapes every replica by DNS."""
    services = load_yaml("compose.scale-out.yaml")["services"]
    router, replicas = services["router"], services["agenttrace"]
    config = router["command"][router["command"].index("--config") + 1]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in router["volumes"] if m.startswith("./")}
    assert mounts[config] == "./agenttrace-router.yaml"
    assert router["environment"]["AGENTTRACE_REPLICAS_HOSTNAME"] == "agenttrace"
    assert {p.split(":")[-1] for p in router["ports"]} >= {"4317", "4318"}
    assert "ports" not in replicas, "replicas publishing host ports cannot be scaled"
    replica_config = replicas["command"][replicas["command"].index("--config") + 1]
    assert {m.split(":")[1]: m.split(":")[0] for m in replicas["volumes"]}[replica_config] == "./agenttrace.yaml"
    prometheus_config = next(m.split(":")[0] for m in services["prometheus"]["volumes"] if m.startswith("./prometheus/"))
    scrape = yaml.safe_load(read(prometheus_config[2:]))
    names = [n for job in scrape["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    assert "agenttrace" in names and "router" in names
    r = subprocess.run([promtool, "check", "config", deploy_path(prometheus_config[2:])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "promtool check config exited %d:\n%s%s" % (r.returncode, r.stdout, r.stderr)


# ---------------------------------------------------------------------------
# 3. Grafana: provisioned datasources and the dashboard
# ---------------------------------------------------------------------------

def datasources():
    return {d["uid"]: d for d in load_yaml("grafana", "provisioning", "datasources", "agenttrace.yaml")["datasources"]}


def dashboard():
    with open(deploy_path("grafana", "dashboards", "agenttrace.json"), encoding="utf-8") as f:
        return json.load(f)


def data_panels(dash):
    return [p for p in dash["panels"] if p["type"] != "row"]


def prometheus_exprs(dash):
    """(panel title, expr) for every PromQL target of the dashboard."""
    ds = datasources()
    return [(p["title"], t["expr"]) for p in data_panels(dash) for t in p.get("targets", [])
            if ds[t.get("datasource", p["datasource"])["uid"]]["type"] == "prometheus"]


def infinity_targets(dash):
    ds = datasources()
    return [(p, t) for p in data_panels(dash) for t in p.get("targets", [])
            if ds[t.get("datasource", p["datasource"])["uid"]]["type"] == "yesoreyeram-infinity-datasource"]


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                   "offset", "inf", "nan"}


def promql_metric_names(expr):
    """The metric names a PromQL expression selects (functions, keywords, labels, strings, ranges and
    Grafana's $variables left out)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if m.start() > 0 and (s[m.start() - 1] in "$." or s[m.start() - 1].isdigit()):
            continue
        if s[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def test_promql_metric_names_finds_the_selected_metrics():
    assert promql_metric_names('histogram_quantile(0.95, sum by (le, server) (rate(a_b_bucket{x=~"m|t"}[$__rate_interval])))') == {"a_b_bucket"}
    assert promql_metric_names("sum by (server) (rate(c_total[5m])) / on (server) group_left (x) sum(d)") == {"c_total", "d"}
    assert promql_metric_names("max by (p) (e_size / e_capacity) > bool 0.8") == {"e_size", "e_capacity"}
    assert promql_metric_names('sum(increase(f_total[$__range])) or vector(0)') == {"f_total"}


def test_grafana_datasources_point_at_the_compose_services():
    ds = datasources()
    compose = load_yaml("compose.yaml")["services"]
    assert len(ds) == len(load_yaml("grafana", "provisioning", "datasources", "agenttrace.yaml")["datasources"]), \
        "datasource uids are not unique"
    by_type = {d["type"]: d for d in ds.values()}
    assert set(by_type) == {"prometheus", "jaeger", "zipkin", "yesoreyeram-infinity-datasource"}, sorted(by_type)
    want = {"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686", "zipkin": "http://zipkin:9411",
            "yesoreyeram-infinity-datasource": "http://agenttrace:%d" % port_of(production_config()["service"]["admin"]["endpoint"])}
    for typ, url in want.items():
        assert by_type[typ]["url"] == url, "%s datasource url %s, want %s" % (typ, by_type[typ]["url"], url)
        assert url.split("//")[1].split(":")[0] in compose, "%s: no compose service %s" % (typ, url)
    infinity = by_type["yesoreyeram-infinity-datasource"]
    assert infinity["jsonData"]["allowedHosts"] == [infinity["url"]], infinity["jsonData"]
    assert sum(1 for d in ds.values() if d.get("isDefault")) == 1


def test_grafana_dashboard_is_an_importable_dashboard():
    dash = dashboard()
    ds = datasources()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36, \
        (dash.get("uid"), dash.get("title"), dash.get("schemaVersion"))
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat: %s" % ids
    problems = []
    for p in dash["panels"]:
        g = p["gridPos"]
        if not (0 <= g["x"] and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["y"] >= 0):
            problems.append("%s: gridPos %s outside the 24-column grid" % (p["title"], g))
        if p["type"] == "row":
            continue
        if p["type"] not in ("timeseries", "stat", "nodeGraph", "table"):
            problems.append("%s: unexpected panel type %s" % (p["title"], p["type"]))
        if not p.get("targets"):
            problems.append("%s: no queries" % p["title"])
        for t in [p] + p.get("targets", []):
            ref = t.get("datasource")
            if ref is None:
                continue
            d = ds.get(ref.get("uid"))
            if d is None or d["type"] != ref.get("type"):
                problems.append("%s: datasource %s is not a provisioned datasource" % (p["title"], ref))
        for t in p.get("targets", []):
            if ds[t.get("datasource", p["datasource"])["uid"]]["type"] == "prometheus" and not t.get("expr", "").strip():
                problems.append("%s: a Prometheus target without expr" % p["title"])
    assert not problems, "\n".join(problems)
    assert len({t["refId"] for p in data_panels(dash) for t in p["targets"]}) >= 1

    # the node graph: Infinity, two queries in the node-graph formats, on /api/service-graph
    graphs = [p for p in dash["panels"] if p["type"] == "nodeGraph"]
    assert len(graphs) == 1, "want one nodeGraph panel"
    g = graphs[0]
    assert ds[g["datasource"]["uid"]]["type"] == "yesoreyeram-infinity-datasource"
    fmt = {t["format"]: t for t in g["targets"]}
    assert set(fmt) == {"node-graph-nodes", "node-graph-edges"}, sorted(fmt)
    for f, root, required in (("node-graph-nodes", "nodes", {"id", "title", "mainstat", "secondarystat", "arc__success", "arc__failed"}),
                              ("node-graph-edges", "edges", {"id", "source", "target"})):
        t = fmt[f]
        assert t["type"] == "json" and t["source"] == "url" and t["root_selector"] == root, t
        assert t["url"].split("?")[0] == "/api/service-graph", t["url"]
        declared = {c["text"] for c in t["columns"]}
        assert all(c["selector"] == c["text"] for c in t["columns"]), "node-graph fields are named as served"
        assert required <= declared, "%s lacks %s" % (f, sorted(required - declared))

    # a panel for each thing the issue asks for
    exprs = " ".join(e for _, e in prometheus_exprs(dash))
    for needle in ("rate(traces_service_graph_request_total", "traces_service_graph_request_failed_total",
                   "histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,",
                   "agenttrace_triggers_fired_total", "agenttrace_receiver_accepted_spans_total",
                   "agenttrace_receiver_refused_spans_total", "agenttrace_exporter_sent_spans_total",
                   "agenttrace_pipeline_queue_size / agenttrace_pipeline_queue_capacity",
                   "agenttrace_exporter_queue_size / agenttrace_exporter_queue_capacity"):
        assert needle in exprs, "no dashboard query has %r" % needle
    assert any(t["url"].startswith("/api/alerts") for _, t in infinity_targets(dash)), "no recent-alerts table"


# ---------------------------------------------------------------------------
# 4. Kubernetes
# ---------------------------------------------------------------------------

def test_kubernetes_manifests_fit_together():
    objs = k8s_objects()
    cfg = production_config()
    sts = objs[("StatefulSet", "agenttrace")]
    spec = sts["spec"]["template"]["spec"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    admin_port = port_of(cfg["service"]["admin"]["endpoint"])
    assert ports == {"otlp-grpc": port_of(cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]),
                     "otlp-http": port_of(cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"]),
                     "admin": admin_port}, ports
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, c["readinessProbe"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}, c["livenessProbe"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), c["resources"]
    env = {e["name"]: e.get("value") for e in c["env"]}

    # the ConfigMap at AGENTTRACE_CONFIG_DIR, the config it carries is the one run
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == "agenttrace-config" and ("ConfigMap", "agenttrace-config") in objs
    assert mounts[config_volume]["mountPath"] == env["AGENTTRACE_CONFIG_DIR"]
    assert c["args"] == ["serve", "--config", os.path.join(env["AGENTTRACE_CONFIG_DIR"], "agenttrace.yaml")], c["args"]

    # the persistent queue: a PVC per pod at AGENTTRACE_DATA_DIR
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]]["mountPath"] == env["AGENTTRACE_DATA_DIR"]
    assert claim["spec"]["resources"]["requests"]["storage"]

    # non-root, as the image's USER
    uid, gid = dockerfile_user()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (uid, gid)
    assert spec["securityContext"]["fsGroup"] == gid, "the data volume must be writable by the image's group"

    # Services: 4317/4318/8888 to the named container ports; the headless one is the StatefulSet's
    for name in ("agenttrace", "agenttrace-headless"):
        svc = objs[("Service", name)]
        assert svc["spec"]["selector"].items() <= pod_labels.items(), name
        got = {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]}
        assert got == {4317: "otlp-grpc", 4318: "otlp-http", 8888: "admin"}, (name, got)
    assert objs[("Service", "agenttrace-headless")]["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == "agenttrace-headless"

    # the kustomization lists files that exist
    kust = load_yaml("k8s", "kustomization.yaml")
    for f in kust["resources"]:
        assert os.path.isfile(deploy_path("k8s", f)), f

    # trace-id routing in front: the loadbalancing exporter keyed by trace id onto the headless Service,
    # in an AgentTrace router (loadbalancer.yaml, carrying deploy/agenttrace-router.yaml unchanged) or in the
    # OpenTelemetry Collector (loadbalancer-otelcol.yaml)
    router_cm = objs[("ConfigMap", "agenttrace-router-config")]["data"]
    assert router_cm.get("agenttrace-router.yaml") == read("agenttrace-router.yaml"), \
        "deploy/k8s/loadbalancer.yaml's ConfigMap differs from deploy/agenttrace-router.yaml"
    router_sts = objs[("StatefulSet", "agenttrace-router")]["spec"]["template"]["spec"]
    (router_container,) = router_sts["containers"]
    assert router_container["args"] == ["serve", "--config", "/etc/agenttrace/agenttrace-router.yaml"]
    assert router_container["image"] == c["image"], "the router runs the replicas' image"
    router_env = {e["name"]: e.get("value") for e in router_container["env"]}
    router_mounts = {m["name"]: m["mountPath"] for m in router_container["volumeMounts"]}
    assert router_mounts[objs[("StatefulSet", "agenttrace-router")]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]] \
        == router_env["AGENTTRACE_DATA_DIR"], "the router's disk queues live on its claim"
    for config_text in (router_cm["agenttrace-router.yaml"],
                        objs[("ConfigMap", "agenttrace-router-otelcol-config")]["data"]["otelcol.yaml"]):
        router = yaml.safe_load(config_text)
        lb = router["exporters"]["loadbalancing"]
        assert lb["routing_key"] == "traceID", lb
        hostname = lb["resolver"]["dns"]["hostname"]
        assert hostname.split(".")[0] == "agenttrace-headless" or hostname.endswith(":-agenttrace-headless}"), hostname
        assert lb["resolver"]["dns"]["port"] == 4317
        assert router["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing"]
    assert router_env["AGENTTRACE_REPLICAS_HOSTNAME"] == "agenttrace-headless"
    for name in ("agenttrace-router", "agenttrace-router-otelcol"):
        got = {p["port"] for p in objs[("Service", name)]["spec"]["ports"]}
        assert {4317, 4318} <= got, (name, got)
    readme = read("k8s", "README.md")
    assert "routing_key: traceID" in readme and "loadbalancing" in readme and "loadbalancer-otelcol.yaml" in readme


def test_kustomize_renders_the_manifests():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed: the manifests were checked by parsing only")
    r = subprocess.run([kubectl, "kustomize", deploy_path("k8s")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(r.stdout) if d)
    assert kinds == [("ConfigMap", "agenttrace-config"), ("Service", "agenttrace"), ("Service", "agenttrace-headless"),
                     ("StatefulSet", "agenttrace")], kinds


# ---------------------------------------------------------------------------
# 5. The Dockerfile
# ---------------------------------------------------------------------------

def dockerfile_instructions():
    """[(INSTRUCTION, arguments)] with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in read("Dockerfile").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def dockerfile_stages():
    """[{"from": image (ARGs substituted), "as": name, "instructions": [...]}]."""
    args, stages = {}, []
    for word, rest in dockerfile_instructions():
        if word == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            stages.append({"from": image, "as": parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None,
                           "instructions": []})
        else:
            stages[-1]["instructions"].append((word, rest))
    return stages


def apt_installed(run_args):
    """The packages an `apt-get install` in a RUN line installs."""
    m = re.search(r"apt-get install ([^&;]*)", run_args)
    if not m:
        return set()
    return {w for w in m.group(1).split() if not w.startswith("-")}


def dockerfile_healthcheck():
    hc = [rest for word, rest in dockerfile_stages()[-1]["instructions"] if word == "HEALTHCHECK"]
    assert len(hc) == 1, hc
    cmd = hc[0][hc[0].index("CMD") + 3:].strip()
    return json.loads(cmd)


def dockerfile_user():
    users = [rest for word, rest in dockerfile_stages()[-1]["instructions"] if word == "USER"]
    assert users, "the runtime stage has no USER"
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid or uid)


def test_dockerfile_builds_with_swift_and_runs_on_slim_debian_as_non_root():
    stages = dockerfile_stages()
    assert len(stages) == 2, [s["from"] for s in stages]
    build, runtime = stages
    # build: the official Swift image on Debian 12, the C libraries' headers, a release build with the
    # Swift runtime linked in
    assert re.fullmatch(r"swift:\d+\.\d+(\.\d+)?-bookworm", build["from"]) and build["as"] == "build", build["from"]
    version = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout \
        if shutil.which("swift") else ""
    m = re.search(r"Swift version (\d+\.\d+)", version)
    if m:
        assert build["from"].startswith("swift:%s" % m.group(1)), \
            "the image builds with %s, this machine (where the build was checked) has Swift %s" % (build["from"], m.group(1))
    tools = re.search(r"swift-tools-version:\s*(\d+\.\d+)", open(os.path.join(h.REPO_ROOT, "Package.swift")).read()).group(1)
    assert tuple(map(int, build["from"].split(":")[1].split("-")[0].split(".")[:2])) >= tuple(map(int, tools.split("."))), \
        "Package.swift needs Swift %s" % tools
    runs = [rest for word, rest in build["instructions"] if word == "RUN"]
    assert any(BUILD_PACKAGES <= apt_installed(r) for r in runs), "the build stage lacks %s" % sorted(BUILD_PACKAGES)
    builds = [r for r in runs if "swift build" in r]
    assert builds and all(f in builds[0] for f in ("-c release", "--static-swift-stdlib", "--product agenttrace")), builds

    # runtime: Debian 12 slim, only the runtime libraries, non-root, the ports, the health check
    assert runtime["from"] == "debian:bookworm-slim", runtime["from"]
    installs = [apt_installed(rest) for word, rest in runtime["instructions"] if word == "RUN" and "apt-get install" in rest]
    assert installs == [RUNTIME_PACKAGES], "the runtime stage installs %s, want exactly %s" % (installs, sorted(RUNTIME_PACKAGES))
    assert all("--no-install-recommends" in rest for word, rest in runtime["instructions"]
               if word == "RUN" and "apt-get install" in rest)
    uid, gid = dockerfile_user()
    assert uid != 0 and gid != 0, "USER must not be root"
    exposed = {int(p.split("/")[0]) for word, rest in runtime["instructions"] if word == "EXPOSE" for p in rest.split()}
    assert exposed == {4317, 4318, 8888}, exposed
    assert any(w == "COPY" and r.startswith("--from=build ") for w, r in runtime["instructions"]), "no COPY --from=build"
    hc = dockerfile_healthcheck()
    assert "/healthz" in " ".join(hc), hc
    entry = [json.loads(r) for w, r in runtime["instructions"] if w == "ENTRYPOINT"]
    cmd = [json.loads(r) for w, r in runtime["instructions"] if w == "CMD"]
    assert entry == [["agenttrace"]] and cmd and cmd[-1][:2] == ["serve", "--config"], (entry, cmd)
    copied = " ".join(r for w, r in runtime["instructions"] if w == "COPY")
    config_dir = os.path.dirname(cmd[-1][2])
    assert "deploy/agenttrace.yaml" in copied and "deploy/agents.yaml" in copied and config_dir + "/" in copied, copied
    envs = " ".join(r for w, r in runtime["instructions"] if w == "ENV")
    assert "AGENTTRACE_CONFIG_DIR=%s" % config_dir in envs, envs

    # .dockerignore keeps the build folders out and lets in what the Dockerfile copies
    ignore = [ln.strip() for ln in open(os.path.join(h.REPO_ROOT, ".dockerignore")) if ln.strip() and not ln.startswith("#")]
    assert ".build" in ignore and ".git" in ignore, ignore
    for needed in ("Package.swift", "Sources", "Tests", "deploy"):
        assert needed not in ignore, "%s is copied by the Dockerfile but ignored" % needed


def needed_libraries(path):
    r = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


def test_runtime_packages_cover_the_libraries_the_binary_needs(agenttrace_bin):
    """Every shared library the binary needs, except the Swift runtime (which --static-swift-stdlib links
    into the image's binary), comes from a package the runtime stage installs or that debian:bookworm-slim
    has (libc6, and the dependencies of dpkg and apt). The Swift runtime's own libraries are followed too:
    linked statically, their needs (FoundationNetworking's libcurl, say) become the binary's."""
    ldd = subprocess.run(["ldd", agenttrace_bin], capture_output=True, text=True, timeout=30)
    assert ldd.returncode == 0, ldd.stderr
    where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd.stdout, re.MULTILINE))
    swift_dir = os.path.dirname(where.get("libswiftCore.so", "/nonexistent/x"))
    packages, seen, todo = {}, set(), [agenttrace_bin]
    while todo:
        for lib in needed_libraries(todo.pop()):
            if lib in seen or lib.startswith("ld-linux"):
                continue
            seen.add(lib)
            path = where.get(lib)
            assert path, "ldd does not resolve %s" % lib
            if os.path.dirname(path) == swift_dir:
                todo.append(path)
                continue
            real = os.path.realpath(path)
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            if owner.returncode != 0:
                owner = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
            assert owner.returncode == 0, "no Debian package owns %s" % path
            packages[lib] = owner.stdout.split(":")[0]
    base = {"libc6"}
    deps = subprocess.run(["dpkg-query", "-W", "-f", "${Pre-Depends}, ${Depends}\n", "dpkg", "apt"],
                          capture_output=True, text=True)
    assert deps.returncode == 0, deps.stderr
    base |= {d.strip().split()[0] for d in deps.stdout.replace("\n", ",").split(",") if d.strip()}
    missing = {lib: pkg for lib, pkg in packages.items() if pkg not in RUNTIME_PACKAGES | base}
    assert not missing, ("the binary needs %s, which the runtime image neither installs nor has in "
                         "debian:bookworm-slim" % missing)
    assert {"libprotobuf-c1", "libnghttp2-14"} <= set(packages.values()), packages
    assert dockerfile_stages()[-1]["from"] == "debian:bookworm-slim" and \
        open("/etc/os-release").read().count('VERSION_ID="12"') == 1, "package names were checked on Debian 12"


class _Answer503(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def run_healthcheck(port):
    env = dict(os.environ, AGENTTRACE_ADMIN_PORT=str(port))
    return subprocess.run(dockerfile_healthcheck(), env=env, capture_output=True, text=True, timeout=10)


def test_the_image_health_check_asks_the_admin_port_for_healthz(start_collector):
    col = start_collector("healthcheck", exporter="nop", admin_endpoint="127.0.0.1:0")
    host, port = h.split_address(col.admin)
    assert host == "127.0.0.1"
    r = run_healthcheck(port)
    assert r.returncode == 0, "HEALTHCHECK %s against a running collector exited %d: %s" % (
        shlex.join(dockerfile_healthcheck()), r.returncode, r.stderr)
    # nothing listening, and a server answering 503: unhealthy
    assert run_healthcheck(h.free_port()).returncode != 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert run_healthcheck(server.server_address[1]).returncode != 0
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------
# 6. The production stack end to end, with a real Prometheus and the dashboard's queries
# ---------------------------------------------------------------------------

def loopback_production_config():
    """deploy/agenttrace.yaml as a collector on loopback runs it: the listeners on 127.0.0.1:0, all else as shipped."""
    cfg = production_config()
    for proto in cfg["receivers"]["otlp"]["protocols"].values():
        proto["endpoint"] = "127.0.0.1:0"
    cfg["service"]["admin"]["endpoint"] = "127.0.0.1:0"
    return cfg


def loopback_prometheus_config(admin_address):
    """deploy/prometheus/prometheus.yml with the agenttrace target rewritten to the collector on loopback,
    Prometheus' own target to itself, and 1 s intervals so rates have samples within seconds."""
    def config(own_address):
        prom = load_yaml("prometheus", "prometheus.yml")
        prom["global"]["scrape_interval"] = prom["global"]["evaluation_interval"] = "1s"
        for job in prom["scrape_configs"]:
            job["scrape_interval"] = job["scrape_timeout"] = "1s"
            for sc in job["static_configs"]:
                sc["targets"] = [admin_address if job["job_name"] == "agenttrace" else own_address]
        return yaml.safe_dump(prom, sort_keys=False)
    return config


def agent_traffic():
    """Traces of an agent platform: a coordinator delegating to research and coder agents, chat calls to a
    model, a tool call; one coordinator error (critical_agent_error), a safety block (safety_block), and a
    health check that tail sampling drops. Returns (tagged spans, {what: trace id})."""
    spans, ids = [], {}
    for i in range(4):
        t = h.Trace(base_ns=time.time_ns() - 5_000_000_000)
        root = t.span("coordinator-main", "POST /tasks", KIND_SERVER, dur_s=3.0, attrs={"url.path": "/tasks"},
                      status=STATUS_ERROR if i == 0 else None)
        call = t.span("coordinator-main", "delegate research", KIND_CLIENT, parent=root, start_s=0.1, dur_s=2.0)
        srv = t.span("research-agent", "research", KIND_SERVER, parent=call, start_s=0.15, dur_s=1.8)
        t.span("research-agent", "chat gpt-4o", KIND_CLIENT, parent=srv, start_s=0.2, dur_s=1.2,
               attrs={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                      "gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 400})
        t.span("research-agent", "execute_tool web_search", KIND_INTERNAL, parent=srv, start_s=1.5, dur_s=0.2,
               attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_search"})
        code = t.span("coordinator-main", "delegate coding", KIND_CLIENT, parent=root, start_s=2.1, dur_s=0.8)
        t.span("coder-agent", "write code", KIND_SERVER, parent=code, start_s=2.15, dur_s=0.7,
               status=STATUS_ERROR if i == 1 else None)
        spans += t.spans
        ids["coordinator error" if i == 0 else "task %d" % i] = t.trace_id
    t = h.Trace(base_ns=time.time_ns() - 5_000_000_000)
    t.span("safety-agent", "moderate answer", KIND_INTERNAL, dur_s=0.05, attrs={"safety.action": "block"})
    spans += t.spans
    ids["safety block"] = t.trace_id
    t = h.Trace(base_ns=time.time_ns() - 5_000_000_000)
    t.span("research-agent", "GET /healthz", KIND_SERVER, dur_s=0.001, attrs={"url.path": "/healthz"}, status=STATUS_ERROR)
    spans += t.spans
    ids["health check"] = t.trace_id
    return spans, ids


def resolve_grafana_variables(expr):
    return expr.replace("$__rate_interval", "30s").replace("$__range", "5m")


@pytest.fixture
def stack(agenttrace_bin, tmp_path, monkeypatch):
    """The production config running against a fake Jaeger v2 (OTLP/gRPC), a fake Zipkin and an alert receiver."""
    jaeger, zipkin, alerts = fakes.OTLPGrpcFake().start(), fakes.ZipkinFake().start(), h.AlertReceiver()
    monkeypatch.setenv("AGENTTRACE_CONFIG_DIR", DEPLOY)
    monkeypatch.setenv("AGENTTRACE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JAEGER_OTLP_ENDPOINT", jaeger.address)
    monkeypatch.setenv("ZIPKIN_ENDPOINT", zipkin.url)
    monkeypatch.setenv("AGENTTRACE_ALERT_WEBHOOK_URL", alerts.url("/hook"))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", alerts.url("/slack"))
    monkeypatch.delenv("PD_ROUTING_KEY", raising=False)
    cs = _Collectors(agenttrace_bin, tmp_path)
    cfg = loopback_production_config()
    col = cs.launch("production", cfg, text=yaml.safe_dump(cfg, sort_keys=False))
    try:
        yield col, jaeger, zipkin, alerts
    finally:
        problems = cs.stop_all()
        for f in (jaeger, zipkin):
            f.close()
        alerts.close()
        assert not problems, "\n\n".join(problems)


def test_production_stack_end_to_end_with_prometheus_and_the_dashboard(stack, prometheus_bin, tmp_path):
    col, jaeger, zipkin, alerts = stack
    spans, ids = agent_traffic()
    body = json.dumps(h.otlp_request(spans)).encode()
    r = col.post_traces(body, "application/json")
    assert r.status == 200, "POST /v1/traces answered %d: %r" % (r.status, r.body[:300])

    prom = h.Prometheus(prometheus_bin, tmp_path / "prometheus", config_text=loopback_prometheus_config(col.admin))
    try:
        prom.wait_ready()

        # alerts fire as the spans arrive: a webhook and a Slack message each, and /api/alerts lists them
        for rule in ("critical_agent_error", "safety_block"):
            alerts.wait("/hook", rule=rule, timeout=15)
            alerts.wait("/slack", rule=rule, timeout=15)
        listed = {a["rule"] for a in col.admin_get("/api/alerts").json()["alerts"]}
        assert {"critical_agent_error", "safety_block"} <= listed, listed

        # tail sampling: the error and alerted traces reach Jaeger (OTLP) and Zipkin, the health check never
        want = {ids["coordinator error"], ids["safety block"], ids["task 1"]}
        for fake in (jaeger, zipkin):
            ok = fake.wait_for(lambda f: want <= {s.key[0] for s in f.accepted_spans()}, timeout=30)
            assert ok, "sampled traces did not reach %s:\n%s" % (fake.name, fake.describe())
            assert fake.violations == [], fake.violations
        time.sleep(1.0)
        for fake in (jaeger, zipkin):
            got = {s.key[0] for s in fake.accepted_spans()}
            assert ids["health check"] not in got, "%s got the health-check trace tail sampling drops" % fake.name

        # Prometheus scraped the collector: every span accepted, counted once
        q = "sum(agenttrace_receiver_accepted_spans_total)"
        deadline = time.monotonic() + 30
        while True:
            res = prom.query(q)
            if (res and float(res[0]["value"][1]) == len(spans)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert res and float(res[0]["value"][1]) == len(spans), \
            "Prometheus %s = %s, want %d\ntargets: %s" % (q, res, len(spans), prom.targets())
        up = prom.query('up{job="agenttrace"}')
        assert [float(x["value"][1]) for x in up] == [1.0], up

        # the dashboard: every metric it names is on /metrics, and every query returns data
        exposed = col.scrape().names()
        problems = []
        exprs = prometheus_exprs(dashboard())
        assert len(exprs) >= 20, "the dashboard has only %d PromQL queries" % len(exprs)
        for title, expr in exprs:
            for name in sorted(promql_metric_names(expr)):
                if name not in exposed:
                    problems.append("panel %r: %s is not on AgentTrace's /metrics" % (title, name))
        assert not problems, "\n".join(problems) + "\n/metrics has: %s" % sorted(exposed)
        empty = exprs
        deadline = time.monotonic() + 45
        while empty and time.monotonic() < deadline:
            empty = [(t, e) for t, e in empty if not prom.query(resolve_grafana_variables(e))]
            if empty:
                time.sleep(1.0)
        assert not empty, "dashboard queries without data from Prometheus:\n%s" % "\n".join(
            "  %s: %s" % te for te in empty)

        # the Infinity queries: the node graph and the alerts table get the fields they declare
        for panel, target in infinity_targets(dashboard()):
            path = target["url"].replace("${__range_s}", "900")
            r = col.admin_get(path)
            assert r.status == 200, "%s: GET %s answered %d: %r" % (panel["title"], path, r.status, r.body[:200])
            rows = r.json()[target["root_selector"]]
            assert rows, "%s: GET %s has no %s" % (panel["title"], path, target["root_selector"])
            for column in target["columns"]:
                assert any(column["selector"] in row for row in rows), \
                    "%s: no %s in %s of GET %s: %s" % (panel["title"], column["selector"], target["root_selector"], path, rows[0])
            if target["format"] == "node-graph-nodes":
                assert all({"id", "title"} <= set(row) for row in rows)
                nodes = {row["id"]: row for row in rows}
                assert nodes["research-agent"]["detail__agent_team"] == "knowledge", nodes["research-agent"]
            if target["format"] == "node-graph-edges":
                assert all({"id", "source", "target"} <= set(row) for row in rows)
                edges = {(row["source"], row["target"]) for row in rows}
                assert {("coordinator-main", "research-agent"), ("coordinator-main", "coder-agent"),
                        ("research-agent", "gpt-4o"), ("research-agent", "web_search")} <= edges, edges
    finally:
        prom.stop()
