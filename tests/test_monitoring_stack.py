"""The monitoring stack: its description and every config file it renders.

Files are rendered by the real renderer (infra.render) with the default configuration and then
checked by the programs that read them where one exists here: nginx (`nginx -t`, and a live run
against three stand-in Mimir nodes), promtool (every PromQL query of the dashboard and of the
Tempo datasource), `docker compose config`. Mimir, Loki, Tempo, Alloy and Grafana themselves
cannot run here (no images), so their files are checked for the keys the issue asks for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra import catalogue as cat
from infra.project import PROJECT_ROOT, Project
from infra.render import RenderedStack, render_stacks
from tests.support.rendering import compose_config, project_with, single_stack_project

from .conftest import require, require_program

STACK = "monitoring"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return single_stack_project(tmp_path_factory.mktemp(STACK), STACK)


@pytest.fixture(scope="module")
def rendered(project: Project) -> RenderedStack:
    return render_stacks(project, [STACK])[STACK]


def text(rendered: RenderedStack, relative: str) -> str:
    return rendered.files[relative]


def load(rendered: RenderedStack, relative: str) -> dict:
    return yaml.safe_load(rendered.files[relative])


# ---------------------------------------------------------------- the description


@pytest.mark.unit
def test_services_and_networks(project: Project) -> None:
    stack = project.catalogue[STACK]
    names = {s.name for s in stack.services}
    assert names == {"mimir-1", "mimir-2", "mimir-3", "mimir-lb", "grafana", "loki", "tempo",
                     "alloy", "cadvisor", "dozzle", "docker-api"}
    assert stack.network == "monitoring_default"
    assert set(stack.depends_on) == {"traefik", "minio"}
    for node in ("mimir-1", "mimir-2", "mimir-3"):  # ring identity survives recreation
        assert stack.service(node).compose.get("hostname") == node
    s3_users = {s.name for s in stack.services if "storage_s3" in s.networks}
    assert s3_users == {"mimir-1", "mimir-2", "mimir-3", "loki", "tempo"}


@pytest.mark.unit
def test_volume_owners_are_declared_not_init_containers(project: Project) -> None:
    stack = project.catalogue[STACK]
    owners = {(s.name, v.target): v.owner for s, v in cat.data_volumes(stack)}
    assert owners[("loki", "/loki")] == (10001, 10001)
    assert owners[("tempo", "/var/tempo")] == (10001, 10001)
    assert owners[("grafana", "/var/lib/grafana")] == (472, 0)
    for node in ("mimir-1", "mimir-2", "mimir-3"):
        assert owners[(node, "/data")] == (0, 0)
    assert not [s.name for s in stack.services if "init" in s.name or s.oneshot]


@pytest.mark.unit
def test_every_service_has_a_health_check(project: Project) -> None:
    for service in project.catalogue[STACK].services:
        assert service.health, service.name
        assert service.health.command or service.health.http, service.name
    by_name = {s.name: s for s in project.catalogue[STACK].services}
    # images without a shell or HTTP client are probed from outside
    for name, port, path in [("mimir-1", 8080, "/ready"), ("tempo", 3200, "/ready"),
                             ("alloy", 12345, "/-/ready")]:
        probe = by_name[name].health.http  # type: ignore[union-attr]
        assert (probe.port, probe.path) == (port, path), name
    assert by_name["loki"].health.command == ("CMD", "/usr/bin/loki", "-health")  # type: ignore
    assert by_name["dozzle"].health.command == ("CMD", "/dozzle", "healthcheck")  # type: ignore


@pytest.mark.unit
def test_routes_are_behind_sso(project: Project) -> None:
    routes = {r.host: (s.name, r) for s, r in project.catalogue[STACK].routes}
    assert set(routes) == {"grafana.localhost", "dozzle.localhost", "alloy.localhost"}
    assert all(r.auth == "sso" for _, r in routes.values())


@pytest.mark.unit
def test_published_ports_follow_the_settings(project: Project) -> None:
    config = project.config
    published = {(s.name, p.target): p.published
                 for s in project.catalogue[STACK].services for p in s.ports}
    assert published == {
        ("grafana", 3000): int(config["GRAFANA_PORT"]),
        ("mimir-lb", 9009): int(config["MIMIR_PORT"]),
        ("loki", 3100): int(config["LOKI_PORT"]),
        ("tempo", 3200): int(config["TEMPO_PORT"]),
        ("tempo", 4317): int(config["TEMPO_OTLP_GRPC_PORT"]),
        ("tempo", 4318): int(config["TEMPO_OTLP_HTTP_PORT"]),
        ("alloy", 12345): int(config["ALLOY_PORT"]),
    }


@pytest.mark.unit
def test_secrets_reach_containers_only_through_secret_files_or_env(project: Project) -> None:
    stack = project.catalogue[STACK]
    # S3 key: minio's
    assert [s.key for s in stack.secrets] == ["GRAFANA_ADMIN_PASSWORD", "GRAFANA_OIDC_SECRET"]
    by_name = {s.name: s for s in stack.services}
    grafana = by_name["grafana"]
    assert not grafana.secret_env
    files = {key: path for path, key in grafana.secret_files.items()}
    assert grafana.environment["GF_SECURITY_ADMIN_PASSWORD"] == (
        f"$__file{{{files['GRAFANA_ADMIN_PASSWORD']}}}")
    assert grafana.environment["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"] == (
        f"$__file{{{files['GRAFANA_OIDC_SECRET']}}}")
    for name in ("mimir-1", "mimir-2", "mimir-3", "loki", "tempo"):
        assert by_name[name].secret_env == {"S3_SECRET_KEY": "MINIO_SERVICE_PASSWORD"}, name
        assert "-config.expand-env=true" in (by_name[name].command or ()), name


# ---------------------------------------------------------------- rendered files


@pytest.mark.tools
def test_every_mounted_config_file_is_rendered(project: Project,
                                               rendered: RenderedStack) -> None:
    for service in project.catalogue[STACK].services:
        for volume in service.volumes:
            if volume.kind == "config":
                assert volume.source in rendered.files, (service.name, volume.source)


@pytest.mark.tools
def test_every_yaml_and_json_file_parses(rendered: RenderedStack) -> None:
    checked = 0
    for relative, content in rendered.files.items():
        if relative.endswith((".yaml", ".yml")):
            assert isinstance(yaml.safe_load(content), dict), relative
            checked += 1
        elif relative.endswith(".json"):
            assert isinstance(json.loads(content), dict), relative
            checked += 1
    assert checked >= 7


@pytest.mark.tools
def test_no_secret_value_in_any_rendered_file(project: Project,
                                              rendered: RenderedStack) -> None:
    secrets = project.config.secrets
    assert secrets["GRAFANA_ADMIN_PASSWORD"] and secrets["MINIO_SERVICE_PASSWORD"]
    for relative, content in rendered.files.items():
        if rendered.is_secret(relative):
            continue
        for key, value in secrets.items():
            assert value not in content, f"{key} leaks into {relative}"
    grafana_file = rendered.directory / "secrets" / "files" / "grafana" / "GRAFANA_ADMIN_PASSWORD"
    assert grafana_file.read_text() == secrets["GRAFANA_ADMIN_PASSWORD"]
    # readable by Grafana's uid in its container; no other host user enters secrets/ (0700)
    assert grafana_file.stat().st_mode & 0o777 == 0o444
    assert (rendered.directory / "secrets").stat().st_mode & 0o777 == 0o700
    loki_env = (rendered.directory / "secrets" / "loki.env").read_text()
    assert re.search(rf"^S3_SECRET_KEY=['\"]?{secrets['MINIO_SERVICE_PASSWORD']}", loki_env,
                     re.M)


@pytest.mark.tools
def test_mimir_config(rendered: RenderedStack, project: Project) -> None:
    config = load(rendered, "mimir/config.yaml")
    assert config["target"].split(",")[0] == "all"
    assert config["multitenancy_enabled"] is True
    s3 = config["common"]["storage"]
    assert s3["backend"] == "s3"
    assert s3["s3"]["endpoint"] == "minio:9000"
    assert s3["s3"]["bucket_name"] == "mimir"
    assert s3["s3"]["access_key_id"] == project.config["MINIO_SERVICE_USER"]
    assert s3["s3"]["secret_access_key"] == "${S3_SECRET_KEY}"
    assert config["blocks_storage"]["storage_prefix"] == "blocks"
    assert config["memberlist"]["join_members"] == [f"mimir-{n}:7946" for n in (1, 2, 3)]
    assert config["ingester"]["ring"]["replication_factor"] == 3
    assert config["limits"]["compactor_blocks_retention_period"] == "336h"
    assert config["ruler"]["rule_path"].startswith("/data/")
    assert config["alertmanager"]["data_dir"].startswith("/data/")
    assert config["blocks_storage"]["tsdb"]["dir"].startswith("/data/")


@pytest.mark.tools
def test_loki_config(rendered: RenderedStack) -> None:
    config = load(rendered, "loki/loki-config.yaml")
    schema = config["schema_config"]["configs"][0]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "s3")
    assert schema["index"]["period"] == "24h"
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "s3"
    limits = config["limits_config"]
    assert limits["retention_period"] == "168h"
    assert (limits["ingestion_rate_mb"], limits["ingestion_burst_size_mb"]) == (4, 6)
    s3 = config["common"]["storage"]["s3"]
    assert (s3["endpoint"], s3["bucketnames"]) == ("minio:9000", "loki")
    assert s3["secret_access_key"] == "${S3_SECRET_KEY}"
    # everything Loki writes locally lives in its owned volume
    assert config["common"]["path_prefix"] == "/loki"
    assert config["compactor"]["working_directory"].startswith("/loki/")


@pytest.mark.tools
def test_tempo_config(rendered: RenderedStack, project: Project) -> None:
    config = load(rendered, "tempo/tempo.yaml")
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert config["server"]["http_listen_port"] == 3200
    s3 = config["storage"]["trace"]["s3"]
    assert (s3["endpoint"], s3["bucket"], s3["secret_key"]) == ("minio:9000", "tempo",
                                                                "${S3_SECRET_KEY}")
    write = config["metrics_generator"]["storage"]["remote_write"][0]
    assert write["url"] == "http://mimir-lb:9009/api/v1/push"
    assert write["headers"] == {"X-Scope-OrgID": project.config["MIMIR_TENANT"]}


ALLOY_BLOCK = re.compile(r'^([a-z_][\w.]*) "([\w-]+)" \{', re.M)
ALLOY_REFERENCE = re.compile(r"\b((?:discovery|loki|prometheus|otelcol)\.[\w.]+?)\.([\w-]+)"
                             r"\.(targets|rules|receiver|input)\b")


@pytest.mark.tools
def test_alloy_pipelines(rendered: RenderedStack, project: Project) -> None:
    source = text(rendered, "alloy/config.alloy")
    code = re.sub(r"(^|\s)//.*", r"\1", source)  # comments, not URLs
    assert code.count("{") == code.count("}")
    defined = set(ALLOY_BLOCK.findall(code))
    # every component a pipeline forwards to or reads from is defined
    for kind, label, _ in ALLOY_REFERENCE.findall(code):
        assert (kind, label) in defined, f"{kind}.{label} is referenced but not defined"
    kinds = {kind for kind, _ in defined}
    assert {"discovery.docker", "loki.source.docker", "loki.write"} <= kinds  # logs
    assert {"prometheus.scrape", "prometheus.remote_write"} <= kinds  # metrics
    # traces: one path, applications -> Tempo's published OTLP ports; nothing listens in Alloy
    assert not {k for k in kinds if k.startswith("otelcol.")}
    tempo_ports = {p.target for p in project.catalogue[STACK].service("tempo").ports}
    assert {4317, 4318} <= tempo_ports
    tenant = project.config["MIMIR_TENANT"]
    assert f'"X-Scope-OrgID" = "{tenant}"' in code
    assert '"http://mimir-lb:9009/api/v1/push"' in code
    assert '"http://loki:3100/loki/api/v1/push"' in code
    assert '"cadvisor:8080"' in code
    assert '"zot:5000"' in code and "tls_config" not in code  # ZOT_TLS_ENABLED=false
    assert "registry_default" in project.catalogue[STACK].service("alloy").networks


@pytest.mark.tools
def test_alloy_scrapes_the_registry_over_tls_when_zot_serves_tls(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", tmp_path / "env" / "defaults.env")
    (tmp_path / "env" / "tls.env").write_text("ZOT_TLS_ENABLED=true\n")
    tls_project = project_with([STACK], tmp_path / "env", tmp_path / "build", "tls")
    files = render_stacks(tls_project, [STACK], write=False)[STACK].files
    code = files["alloy/config.alloy"]
    assert 'scheme          = "https"' in code
    assert 'server_name = "registry"' in code  # the name the registry certificate carries
    alloy = tls_project.catalogue[STACK].service("alloy")
    mounted = {v.target for v in alloy.volumes}
    for name in ("ca.pem", "registry-client.pem", "registry-client-key.pem"):
        assert f"/etc/alloy/certs/{name}" in mounted
        assert f'"/etc/alloy/certs/{name}"' in code


@pytest.mark.tools
def test_alloy_listens_on_all_addresses(project: Project) -> None:
    alloy = project.catalogue[STACK].service("alloy")
    assert "--server.http.listen-addr=0.0.0.0:12345" in (alloy.command or ())


def dollar_runs(content: str) -> set[int]:
    return {len(run) for run in re.findall(r"\$+", content)}


@pytest.mark.tools
def test_grafana_datasources(rendered: RenderedStack, project: Project) -> None:
    content = text(rendered, "grafana/provisioning/datasources/datasources.yaml")
    # Grafana expands $NAME in provisioning files: every literal dollar must be doubled
    assert dollar_runs(content) <= {2}
    sources = {d["uid"]: d for d in yaml.safe_load(content)["datasources"]}
    assert [uid for uid, d in sources.items() if d.get("isDefault")] == ["mimir"]
    mimir = sources["mimir"]
    assert mimir["url"] == "http://mimir-lb:9009/prometheus"
    assert mimir["jsonData"]["httpHeaderName1"] == "X-Scope-OrgID"
    assert mimir["secureJsonData"]["httpHeaderValue1"] == project.config["MIMIR_TENANT"]
    assert sources["loki"]["url"] == "http://loki:3100"
    tempo = sources["tempo"]
    assert tempo["url"] == "http://tempo:3200"
    assert tempo["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert tempo["jsonData"]["tracesToMetrics"]["datasourceUid"] == "mimir"


@pytest.mark.tools
def test_grafana_dashboard_provisioning(project: Project, rendered: RenderedStack) -> None:
    providers = load(rendered, "grafana/provisioning/dashboards/dashboards.yaml")["providers"]
    folder = providers[0]["options"]["path"]
    grafana = project.catalogue[STACK].service("grafana")
    mounted = {v.target for v in grafana.volumes if v.kind == "config"}
    dashboards = [t for t in mounted if t.startswith(folder + "/") and t.endswith(".json")]
    assert dashboards, f"no dashboard mounted under {folder}"
    env = grafana.environment
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_USER"] == project.config["GRAFANA_ADMIN_USER"]


def dashboard_queries(rendered: RenderedStack) -> dict[str, str]:
    board = json.loads(text(rendered, "grafana/dashboards/docker-registry.json"))
    return {f"{p['title']}/{t['refId']}": t["expr"] for p in board["panels"]
            for t in p["targets"] if p["datasource"]["type"] == "prometheus"}


@pytest.mark.tools
def test_dashboard_has_the_seed_panels(rendered: RenderedStack) -> None:
    board = json.loads(text(rendered, "grafana/dashboards/docker-registry.json"))
    assert board["title"] == "Docker Registry"
    exprs = " ".join(dashboard_queries(rendered).values())
    for metric in ("zot_http_requests_total", "zot_http_method_latency_seconds_bucket",
                   "zot_http_repo_latency_seconds_sum", "container_cpu_usage_seconds_total",
                   "container_memory_usage_bytes"):
        assert metric in exprs, metric
    assert "histogram_quantile(0.99" in exprs
    datasources = {p["datasource"]["uid"] for p in board["panels"]}
    assert datasources <= {"mimir", "loki"}


@pytest.mark.tools
def test_every_promql_query_parses(rendered: RenderedStack, tmp_path: Path) -> None:
    """promtool checks each query as a recording rule, after Grafana's variables are filled."""
    promtool = require_program("promtool")
    queries = dashboard_queries(rendered)
    sources = yaml.safe_load(text(rendered, "grafana/provisioning/datasources/datasources.yaml"))
    tempo = next(d for d in sources["datasources"] if d["uid"] == "tempo")
    for query in tempo["jsonData"]["tracesToMetrics"]["queries"]:
        # Grafana turns $$ into $, then replaces $__tags with the span's label matchers
        queries[query["name"]] = query["query"].replace("$$", "$")
    fill = {"$__rate_interval": "5m", "$__tags": 'service="checkout"', "$registry": "zot"}
    rules = []
    for index, expr in enumerate(queries.values()):
        for variable, value in fill.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"check:query_{index}", "expr": expr})
    path = tmp_path / "queries.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


# ---------------------------------------------------------------- the Mimir balancer (nginx)


def can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


@pytest.mark.tools
def test_mimir_balancer_passes_nginx_t(rendered: RenderedStack) -> None:
    """`nginx -t` on the unmodified file, with no name of a node resolvable: the balancer
    resolves the nodes when requests come (through Docker's DNS), never once at start."""
    nginx = require_program("nginx")
    conf = rendered.directory / "mimir-lb" / "nginx.conf"
    result = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert not re.search(r"^\s*upstream\s", conf.read_text(), re.M)  # no names fixed at start


BALANCER_CHECK = r'''
import http.server, json, socket, struct, subprocess, sys, threading, time, urllib.request

# Docker's embedded DNS server, as the balancer sees it: 127.0.0.11:53 answers each node's name
# and "mimir" with the address of every node (the network alias the three nodes share).
RECORDS = {"mimir": ["127.0.0.2", "127.0.0.3", "127.0.0.4"], "mimir-1": ["127.0.0.2"],
           "mimir-2": ["127.0.0.3"], "mimir-3": ["127.0.0.4"]}

def serve_dns(sock):
    while True:
        data, peer = sock.recvfrom(512)
        offset, labels = 12, []
        while data[offset]:
            labels.append(data[offset + 1:offset + 1 + data[offset]].decode())
            offset += 1 + data[offset]
        question = data[12:offset + 5]
        qtype = struct.unpack(">H", data[offset + 1:offset + 3])[0]
        name = ".".join(labels)
        found = name in RECORDS
        answers = list(RECORDS[name]) if found and qtype == 1 else []
        header = data[:2] + struct.pack(">HHHHH", 0x8180 | (0 if found else 3), 1,
                                        len(answers), 0, 0)
        body = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4) + socket.inet_aton(a)
                        for a in answers)
        sock.sendto(header + question + body, peer)

dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("127.0.0.11", 53))
threading.Thread(target=serve_dns, args=(dns,), daemon=True).start()

class Node(http.server.BaseHTTPRequestHandler):
    def answer(self):
        if self.path == "/ready" and self.server.name in DOWN:
            self.send_response(503); self.end_headers(); return
        if self.command == "POST" and self.server.name in FAIL_POST:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(503); self.send_header("Content-Length", "0")
            self.end_headers(); return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps({"node": self.server.name, "path": self.path,
                           "method": self.command, "size": len(self.rfile.read(length)),
                           "tenant": self.headers.get("X-Scope-OrgID")}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass

def start(name, address):
    server = http.server.ThreadingHTTPServer((address, 8080), Node)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

DOWN, FAIL_POST = set(), set()
nodes = {f"mimir-{n}": start(f"mimir-{n}", f"127.0.0.{n + 1}") for n in (1, 2, 3)}
nginx = subprocess.Popen([sys.argv[1], "-c", sys.argv[2], "-g", "daemon off;"])

def call(path, tenant=None, data=None):
    request = urllib.request.Request("http://127.0.0.1:9009" + path, data=data)
    if tenant:
        request.add_header("X-Scope-OrgID", tenant)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}

try:
    for _ in range(100):
        try:
            call("/ready"); break
        except OSError:
            time.sleep(0.05)
    report = {"queries": [call("/prometheus/api/v1/query", "7") for _ in range(30)]}
    # mimir-1 goes away (connection refused) and mimir-2 answers pushes with 503 after reading
    # them: every push (POST) is sent on to mimir-3, none lost
    nodes["mimir-1"].shutdown(); nodes["mimir-1"].server_close()
    FAIL_POST.add("mimir-2")
    report["pushes"] = [call("/api/v1/push", "7", b"x" * 100) for _ in range(6)]
    # mimir-1 is recreated at another address: the balancer finds it without a restart
    RECORDS["mimir"] = ["127.0.0.5", "127.0.0.3", "127.0.0.4"]
    RECORDS["mimir-1"] = ["127.0.0.5"]
    nodes["mimir-1"] = start("mimir-1", "127.0.0.5")
    time.sleep(7)  # the balancer keeps an answer 5 s
    FAIL_POST.clear()
    report["after_recreate"] = [call("/prometheus/api/v1/query", "7") for _ in range(30)]
    DOWN.update({"mimir-2", "mimir-3"})
    report["ready_one_up"] = [call("/ready")[0] for _ in range(6)]
    DOWN.add("mimir-1")
    report["ready_none_up"] = call("/ready")[0]
    print(json.dumps(report))
finally:
    nginx.terminate(); nginx.wait(10)
'''


@pytest.mark.tools
def test_mimir_balancer_round_robins_retries_and_follows_a_recreated_node(
        rendered: RenderedStack, tmp_path: Path) -> None:
    """The rendered nginx.conf, run for real in private mount/net/pid namespaces.

    mimir-1..3 are three tiny HTTP servers on 127.0.0.2-4:8080 behind a tiny DNS server on
    127.0.0.11 (Docker's address for it); the pid namespace ends every process the test
    started when it returns.
    """
    nginx = require_program("nginx")
    require(can_unshare(), "root and unshare (private network namespace)")
    private = tmp_path / "private"
    private.mkdir()
    (private / "check.py").write_text(BALANCER_CHECK)
    conf = rendered.directory / "mimir-lb" / "nginx.conf"
    shutil.copy(conf, private / "nginx.conf")
    # The config keeps its pid and temp files in /tmp: give it a private /tmp. The base
    # interpreter (stdlib only) runs the check: a checkout's virtualenv under /tmp is hidden.
    python = os.path.realpath(sys.executable)
    script = (f'mount --bind "{private}" /tmp && ip link set lo up && '
              f'exec "{python}" -I /tmp/check.py "{nginx}" /tmp/nginx.conf')
    result = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "sh", "-c",
                             script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    statuses = {status for status, _ in report["queries"]}
    nodes = [body["node"] for _, body in report["queries"]]
    assert statuses == {200}
    assert set(nodes) == {"mimir-1", "mimir-2", "mimir-3"}, nodes  # spread over the nodes
    assert max(nodes.count(n) for n in set(nodes)) <= 20, nodes
    assert {body["tenant"] for _, body in report["queries"]} == {"7"}  # header passes through
    assert {body["path"] for _, body in report["queries"]} == {"/prometheus/api/v1/query"}
    pushes = report["pushes"]
    assert [status for status, _ in pushes] == [200] * 6, pushes  # retried on another node
    assert {b["method"] for _, b in pushes} == {"POST"} and {b["size"] for _, b in pushes} == {100}
    assert {b["node"] for _, b in pushes} == {"mimir-3"}
    after = report["after_recreate"]
    assert {status for status, _ in after} == {200}
    assert {b["node"] for _, b in after} == {"mimir-1", "mimir-2", "mimir-3"}, after
    # mimir-1 answered at its new address: the old one has no server any more
    assert report["ready_one_up"] == [200] * 6  # a 503 from a node is retried on the next
    assert report["ready_none_up"] >= 500


# ---------------------------------------------------------------- compose


@pytest.mark.tools
def test_compose_file_is_valid(rendered: RenderedStack) -> None:
    services = compose_config(rendered)
    assert services["cadvisor"]["privileged"] is True  # the documented exception, only there
    assert [n for n, s in services.items() if s.get("privileged")] == ["cadvisor"]
    # config files are mounted from the rendered folder, read-only
    grafana_mounts = {m["target"]: m for m in services["grafana"]["volumes"]}
    source = grafana_mounts["/etc/grafana/dashboards/docker-registry.json"]
    assert source["read_only"] is True
    assert Path(source["source"]).is_file()
