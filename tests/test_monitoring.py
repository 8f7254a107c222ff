"""The monitoring kit (docs/prometheus/, docs/grafana/, docker/compose.monitoring.yaml): promtool (Debian's
prometheus package) checks the rules and the config, runs the rules' unit tests and parses every dashboard
query; every metric and label the dashboard and the rules name must appear in a real /metrics scrape of a
running pipeline (test:// source, the shipped model, a real webhook sink that fails once), so they cannot
drift from the code; the compose file must point at files that exist and at each other's service names."""

import json
import os
import re
import shutil
import subprocess

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support.daemon import REPO, wait_until

from firedetd.config import build_config, host_port
from firedetd.httpserver import HttpEndpoint
from firedetd.modelspec import load_spec
from firedetd.pipeline import Pipeline
from firedetd.receiver import AlertReceiver

PROMETHEUS_DIR = os.path.join(REPO, "docs", "prometheus")
DASHBOARD = os.path.join(REPO, "docs", "grafana", "firedetd.json")
COMPOSE = os.path.join(REPO, "docker", "compose.monitoring.yaml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing (apt-get install prometheus)")

METRIC = re.compile(r"\b((?:firedetd|process)_[a-z0-9_]+|up(?=\s*\{))\s*(\{[^}]*\})?")
MATCHER_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
FROM_PROMETHEUS = {"instance", "job"}  # labels the scrape adds


def promtool(*args):
    result = subprocess.run([PROMTOOL] + list(args), cwd=PROMETHEUS_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=120)
    return result.returncode, result.stdout.decode("utf-8", "replace")


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def dashboard_queries():
    """{where: PromQL} for every panel target, annotation and template variable of the dashboard."""
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries["panel %d (%s) %s" % (panel["id"], panel["title"], target["refId"])] = target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            queries["annotation %s" % annotation["name"]] = annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(SELECTOR, label) is Grafana's; its selector is PromQL
            queries["variable %s" % variable["name"]] = re.match(r"label_values\((.*),\s*\w+\)$",
                                                                variable["definition"]).group(1)
    return queries


def rule_queries():
    return {"rule %s" % rule["alert"]: rule["expr"]
            for group in load_yaml(os.path.join(PROMETHEUS_DIR, "firedetd-rules.yml"))["groups"]
            for rule in group["rules"]}


def as_promql(query):
    """Grafana's variables replaced by values Prometheus accepts."""
    return query.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$camera", ".*")


@needs_promtool
def test_alerting_rules_pass_promtool_check():
    code, output = promtool("check", "rules", "firedetd-rules.yml")
    assert code == 0, output
    assert "SUCCESS: 6 rules found" in output


@needs_promtool
def test_alerting_rules_fire_when_and_only_when_their_unit_tests_say():
    code, output = promtool("test", "rules", "firedetd-rules.test.yml")
    assert code == 0, output


@needs_promtool
def test_prometheus_config_and_the_rules_it_loads_pass_promtool_check():
    code, output = promtool("check", "config", "prometheus.yml")
    assert code == 0, output
    assert "1 rule files found" in output


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path):
    queries = dashboard_queries()
    wheres = sorted(queries)
    # each query becomes a recording rule: promtool parses its PromQL; a failure names the rule's index in `wheres`
    rules = [{"record": "dashboard:query_%d" % i, "expr": as_promql(queries[where])} for i, where in enumerate(wheres)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    code, output = promtool("check", "rules", str(path))
    assert code == 0, "%s\nqueries by index: %s" % (output, list(enumerate(wheres)))
    assert len(queries) >= 25


def test_every_panel_uses_the_datasource_variable_and_has_a_unique_id():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "firedetd" and dashboard["schemaVersion"] >= 36
    for panel in dashboard["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{sample name: set of label names} from /metrics of a running pipeline that decided frames, raised alerts
    and saw a delivery fail once."""
    spec = load_spec(os.path.join(REPO, "engines", "firedetd.json"))
    with AlertReceiver() as receiver:
        receiver.fail_next(1)
        config = build_config({
            "cameras": [{"name": "cam", "source": "test://?pattern=ball&fps=15"}],
            "detection": {"fire": {"on": 0.0, "off": 0.0, "raise_frames": 1},
                          "smoke": {"on": 0.0, "off": 0.0, "raise_frames": 1}},
            "alerts": {"webhooks": [{"url": receiver.url, "name": "hook"}], "outbox": {"retry_initial_s": 0.05}},
            "state_dir": str(tmp_path_factory.mktemp("state"))})
        pipeline = Pipeline(config, spec)
        pipeline.start()
        http = HttpEndpoint("127.0.0.1", 0, pipeline.metrics.registry, pipeline.health)
        http.start()
        try:
            url = "http://127.0.0.1:%d/metrics" % http.port
            text = wait_until(lambda: _complete(requests.get(url, timeout=5).text), 60,
                              message="a delivery after a failure, and a first fps measurement")
        finally:
            pipeline.stop(5)
            http.stop()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def _complete(text):
    """The scrape once the metrics that need time have a sample: a delivery (after the failure), the fps (~2 s)."""
    delivered = re.search(r"^firedetd_alerts_delivered_total\{.*\} [1-9]", text, re.M)
    return text if delivered and re.search(r"^firedetd_fps\{", text, re.M) else None


def test_dashboard_and_rules_name_only_metrics_and_labels_the_daemon_exports(exported):
    known = dict(exported, up=set())
    problems = []
    for where, query in sorted(dict(dashboard_queries(), **rule_queries()).items()):
        used = METRIC.findall(query)
        labels_in_query = set(FROM_PROMETHEUS) | {"le"}
        for name, matchers in used:
            if name not in known:
                problems.append("%s: metric %s is not exported" % (where, name))
                continue
            labels_in_query |= known[name]
            unknown = set(MATCHER_LABEL.findall(matchers)) - known[name] - FROM_PROMETHEUS
            if unknown:
                problems.append("%s: %s has no label %s" % (where, name, ", ".join(sorted(unknown))))
        for group in GROUPING.findall(query):
            unknown = {label.strip() for label in group.split(",") if label.strip()} - labels_in_query
            if unknown:
                problems.append("%s: grouping by unknown label %s" % (where, ", ".join(sorted(unknown))))
        if not used:
            problems.append("%s: names no metric" % where)
    assert not problems, "\n".join(problems)


def test_compose_mounts_the_files_in_docs_and_services_find_each_other():
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    docker_dir = os.path.dirname(COMPOSE)
    mounts = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert os.path.exists(os.path.join(docker_dir, source)), volume
                mounts[os.path.normpath(os.path.join(docker_dir, source))] = target
    assert mounts[PROMETHEUS_DIR] == "/etc/prometheus"
    assert services["prometheus"]["command"][0] == "--config.file=/etc/prometheus/prometheus.yml"
    provider = load_yaml(os.path.join(docker_dir, "grafana", "provisioning", "dashboards", "firedetd.yaml"))
    assert provider["providers"][0]["options"]["path"] == mounts[os.path.dirname(DASHBOARD)]
    datasource = load_yaml(os.path.join(docker_dir, "grafana", "provisioning", "datasources", "prometheus.yaml"))
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    scrape = load_yaml(os.path.join(PROMETHEUS_DIR, "prometheus.yml"))["scrape_configs"][0]
    firedetd = services["firedetd"]
    listen = firedetd["command"][firedetd["command"].index("--metrics-addr") + 1]
    assert scrape["job_name"] == "firedetd"
    assert scrape["static_configs"][0]["targets"] == ["firedetd:%d" % host_port(listen, "--metrics-addr")[1]]
    assert firedetd["build"]["dockerfile"] == "docker/Dockerfile"
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))


def test_the_demo_config_of_the_compose_file_is_valid(tmp_path):
    config = build_config(load_yaml(os.path.join(REPO, "docker", "monitoring", "firedetd.yaml")), environ={},
                          cwd=str(tmp_path))
    assert config.cameras[0].source.loop and config.cameras[0].source.realtime
