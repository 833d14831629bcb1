"""The deployment files under deploy/ against the code: every YAML parses, every variable they set
is one the node reads, the probes, users and commands are the ones the services need, and the
example alerts use only metrics the services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from kiungo.backend.errors import ErrorCode
from kiungo.backend.metrics import LIQUIDITY_KINDS, BackendMetrics
from kiungo.config import ConfigError, Environment, Settings
from kiungo.connector.metrics import Metrics
from kiungo.runtime.group_metrics import PROCESSES_METRIC

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NODES = ("alpha", "beta")
# The services, their ports (the defaults of kiungo.config) and the commands that run them.
PORTS = {
    "backend": Settings().admin_port,
    "connector": Settings().connector_port,
    "auth": Settings().auth_port,
}
# The services on Postgres alone (the authorization server uses no Redis).
POSTGRES_ONLY = {"auth"}
SECRETS = {"DATABASE_URL", "REDIS_URL", "STREAM_SECRET", "ADMIN_API_SECRET", "SIGNATURE_SECRET"}


class _Recorder(Mapping[str, str]):
    """An empty environment that notes every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _setting_names() -> frozenset[str]:
    recorder = _Recorder()
    Settings.from_env(recorder)
    # HOME only locates the default KIUNGO_DATA_DIR; it is not a setting of ours.
    return frozenset(recorder.names - {"HOME"})


SETTINGS = _setting_names()


def _documents(path: Path) -> list[Any]:
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def _one(path: Path) -> dict[str, Any]:
    (doc,) = _documents(path)
    assert isinstance(doc, dict)
    return doc


def test_settings_are_found() -> None:
    assert {"DATABASE_URL", "REDIS_URL", "STREAM_SECRET", "NODE_ENV", "WORKER_INTERVAL_MS"} <= (
        SETTINGS
    )
    assert len(SETTINGS) >= 30


def test_every_yaml_file_parses() -> None:
    paths = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    names = {str(p.relative_to(DEPLOY)) for p in paths}
    assert {"compose.yaml", "prometheus-rules.yaml", "k8s/config.yaml"} <= names
    for path in paths:
        docs = _documents(path)
        assert docs, f"{path} holds no YAML document"
        assert all(isinstance(doc, dict) for doc in docs), path


# Compose


def _compose() -> dict[str, Any]:
    return _one(DEPLOY / "compose.yaml")


def _kiungo_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def test_compose_has_two_nodes_on_one_postgres_and_redis() -> None:
    services = _compose()["services"]
    expected = {"postgres", "redis"} | {
        f"{node}-{part}" for node in NODES for part in ("migrate", "backend", "connector", "auth")
    }
    assert set(services) == expected
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert set(_kiungo_services(_compose())) == expected - {"postgres", "redis"}


def test_compose_sets_only_settings_the_code_reads() -> None:
    for name, service in _kiungo_services(_compose()).items():
        env = service["environment"]
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        assert set(env) <= SETTINGS, f"{name} sets unknown variables {set(env) - SETTINGS}"
        interpolated = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", repr(service)))
        assert interpolated <= SETTINGS, f"{name} interpolates {interpolated - SETTINGS}"


def test_compose_nodes_are_valid_production_nodes_apart_from_each_other() -> None:
    services = _kiungo_services(_compose())
    settings = {}
    for node in NODES:
        envs = [
            services[f"{node}-{part}"]["environment"]
            for part in ("migrate", "backend", "connector", "auth")
        ]
        assert all(env == envs[0] for env in envs), f"{node}'s services differ in settings"
        env = {key: str(value) for key, value in envs[0].items()}
        settings[node] = Settings.from_env(env)
        assert settings[node].env is Environment.PRODUCTION
        assert settings[node].admin_api_secret, "the backend listens beyond loopback"
        assert env["ILP_CONNECTOR_URL"] == f"http://{node}-connector:{PORTS['connector']}"
        # Wallets reach each node's authorization server at its service name.
        assert settings[node].auth_server_grant_url == f"http://{node}-auth:{PORTS['auth']}"
        assert settings[node].auth_port == PORTS["auth"]
    alpha, beta = settings["alpha"], settings["beta"]
    assert alpha.database_url != beta.database_url
    assert alpha.redis_url == beta.redis_url
    assert alpha.redis_key_prefix != beta.redis_key_prefix
    assert alpha.ilp_address != beta.ilp_address
    assert alpha.stream_secret != beta.stream_secret
    assert alpha.admin_api_secret != beta.admin_api_secret


def test_compose_creates_each_nodes_database() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    created = {postgres["environment"]["POSTGRES_DB"]}
    for volume in postgres["volumes"]:
        source, _, target = volume.partition(":")
        if target.startswith("/docker-entrypoint-initdb.d/"):
            sql = (DEPLOY / source).read_text()
            created |= set(re.findall(r"CREATE DATABASE (\w+)", sql, re.IGNORECASE))
    for name, service in _kiungo_services(compose).items():
        database = service["environment"]["DATABASE_URL"].rsplit("/", 1)[1]
        assert database in created, f"{name} uses database {database}, never created"


def test_compose_commands_health_and_order() -> None:
    services = _compose()["services"]
    for node in NODES:
        migrate = services[f"{node}-migrate"]
        assert migrate["command"] == ["migrate"]
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        for part, port in PORTS.items():
            service = services[f"{node}-{part}"]
            assert service["command"] == [part, "--host", "0.0.0.0"]
            assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
            assert any(p.endswith(f":{port}") for p in service["ports"])
            depends = service["depends_on"]
            assert depends[f"{node}-migrate"]["condition"] == "service_completed_successfully"
            assert depends["postgres"]["condition"] == "service_healthy"
            if part in POSTGRES_ONLY:
                assert "redis" not in depends
            else:
                assert depends["redis"]["condition"] == "service_healthy"
    for store in ("postgres", "redis"):
        assert services[store]["healthcheck"]["test"]


def test_compose_file_passes_the_compose_specification_schema() -> None:
    schema = json.loads((ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(_compose())]
    assert errors == []
    # The check itself: a key the specification does not know is refused.
    broken = _compose()
    broken["services"]["redis"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken))


# TigerBeetle (issue 16): a Compose override file and a Kubernetes manifest.


def _tigerbeetle_compose() -> dict[str, Any]:
    return _one(DEPLOY / "compose.tigerbeetle.yaml")


def test_tigerbeetle_override_passes_the_compose_schema_and_merges_onto_the_nodes() -> None:
    schema = json.loads((ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json").read_text())
    override = _tigerbeetle_compose()
    assert list(jsonschema.Draft7Validator(schema).iter_errors(override)) == []
    base = _kiungo_services(_compose())
    replicas = {
        name: service
        for name, service in override["services"].items()
        if str(service.get("image", "")).startswith("ghcr.io/tigerbeetle/tigerbeetle:")
    }
    assert set(replicas) == {f"{node}-tigerbeetle" for node in NODES}
    for name, replica in replicas.items():
        # The server release the pinned client speaks to.
        assert replica["image"].endswith(":" + metadata.version("tigerbeetle"))
        (volume,) = replica["volumes"]
        assert volume.split(":")[0] in override["volumes"] and volume.endswith(":/data")
        assert "seccomp=unconfined" in replica["security_opt"], name
    for node in NODES:
        for part in ("backend", "connector"):
            service = override["services"][f"{node}-{part}"]
            assert f"{node}-{part}" in base, "the override names a service compose.yaml has"
            env = {**base[f"{node}-{part}"]["environment"], **service["environment"]}
            assert set(env) <= SETTINGS
            settings = Settings.from_env({key: str(value) for key, value in env.items()})
            assert settings.use_tigerbeetle
            # Each node its own replica, named by service (Kiungo resolves the name).
            assert settings.tigerbeetle_replica_addresses == f"{node}-tigerbeetle:3000"
            assert f"{node}-tigerbeetle" in service["depends_on"]
        assert "environment" not in override["services"].get(f"{node}-migrate", {})


def _fake_tigerbeetle(tmp_path: Path) -> Path:
    """A stand-in for the server binary that logs its calls; ``format`` makes the file (and
    refuses one that exists)."""
    fake = tmp_path / "tigerbeetle"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/calls\n'
        # Like the real one, format refuses a file that exists.
        'if [ "$1" = format ]; then eval last=\\${$#}; [ -e "$last" ] && exit 1;'
        ' echo formatted > "$last"; fi\n'
    )
    fake.chmod(0o755)
    return fake


def _run_script(script: str, tmp_path: Path) -> list[str]:
    """Runs a replica's shell script with /tigerbeetle and /data moved under ``tmp_path``."""
    fake = _fake_tigerbeetle(tmp_path)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    local = script.replace("/tigerbeetle ", f"{fake} ").replace("/data/", f"{data}/")
    (tmp_path / "calls").unlink(missing_ok=True)
    subprocess.run(["/bin/sh", "-c", local], check=True, timeout=10)
    calls = tmp_path / "calls"
    return [line.split()[0] for line in calls.read_text().splitlines()] if calls.exists() else []


def test_tigerbeetle_compose_replica_formats_once_then_starts(tmp_path: Path) -> None:
    replica = _tigerbeetle_compose()["services"]["alpha-tigerbeetle"]
    assert replica["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = replica["command"]
    assert _run_script(script, tmp_path) == ["format", "start"]
    assert (tmp_path / "data" / "0_0.tigerbeetle").read_text() == "formatted\n"
    assert _run_script(script, tmp_path) == ["start"]
    # An interrupted format (a partial file under the temporary name) is redone, not started.
    (tmp_path / "data" / "0_0.tigerbeetle").unlink()
    (tmp_path / "data" / "0_0.tigerbeetle.new").write_text("partial")
    assert _run_script(script, tmp_path) == ["format", "start"]


def test_tigerbeetle_k8s_replica_formats_once_then_starts_on_a_volume(tmp_path: Path) -> None:
    objects = _k8s()
    replica = objects[("StatefulSet", "kiungo-tigerbeetle")]["spec"]
    pod = replica["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    for container in (init, server):
        assert container["image"].endswith(":" + metadata.version("tigerbeetle"))
        assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert [claim["metadata"]["name"] for claim in replica["volumeClaimTemplates"]] == ["data"]
    (script,) = init["args"]
    assert _run_script(script, tmp_path) == ["format"]
    assert _run_script(script, tmp_path) == []
    assert server["args"][0] == "start" and server["args"][-1] == "/data/0_0.tigerbeetle"
    port = {p["name"]: p["containerPort"] for p in server["ports"]}["tigerbeetle"]
    assert f"--addresses=0.0.0.0:{port}" in server["args"]
    service = objects[("Service", "kiungo-tigerbeetle")]["spec"]
    (service_port,) = service["ports"]
    assert service_port["targetPort"] == "tigerbeetle"
    # The settings its header tells the operator to add are real and point at the Service.
    header = (DEPLOY / "k8s" / "tigerbeetle.yaml").read_text().split("apiVersion", 1)[0]
    told = dict(re.findall(r"^#   ([A-Z_]+): \"?([^\"\n]+)\"?$", header, re.M))
    assert set(told) == {
        "USE_TIGERBEETLE",
        "TIGERBEETLE_CLUSTER_ID",
        "TIGERBEETLE_REPLICA_ADDRESSES",
    }
    assert set(told) <= SETTINGS
    assert told["TIGERBEETLE_REPLICA_ADDRESSES"] == f"kiungo-tigerbeetle:{service_port['port']}"
    # Only the connector and the backend reach it.
    (rule,) = _policy_for(_pod_labels("StatefulSet", "kiungo-tigerbeetle"))["spec"]["ingress"]
    components = sorted(
        s["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for s in rule["from"]
    )
    assert components == ["backend", "connector"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_compose_config_validates() -> None:
    version = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        pytest.skip("the docker client has no compose plugin here (`docker compose` is unknown)")
    result = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


# Kubernetes


def _k8s() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in _documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            assert "namespace" not in doc["metadata"], f"{key} names a namespace"
            objects[key] = doc
    return objects


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for (k, _), doc in _k8s().items() if k == kind]


def _append_only(args: list[str]) -> bool:
    """Whether redis-server's command-line ``args`` turn on append-only persistence, synced to
    disk at least each second (``no`` leaves it to the kernel: tens of seconds)."""
    options = dict(zip(args[::2], args[1::2], strict=False))
    return options.get("--appendonly") == "yes" and options.get("--appendfsync") in (
        "everysec",
        "always",
    )


def test_compose_redis_is_append_only() -> None:
    redis = _compose()["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert _append_only(command[1:]), command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_k8s_redis_is_append_only_on_a_volume() -> None:
    objects = _k8s()
    redis = objects[("StatefulSet", "kiungo-redis")]["spec"]
    pod = redis["template"]["spec"]
    _check_pod(pod, objects)
    (container,) = pod["containers"]
    assert _append_only(container["args"]), container["args"]
    (claim,) = redis["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    (service,) = [
        doc
        for doc in _of_kind("Service")
        if doc["spec"]["selector"].items() <= redis["template"]["metadata"]["labels"].items()
    ]
    url = _k8s()[("Secret", "kiungo-secrets")]["stringData"]["REDIS_URL"]
    assert f"@{service['metadata']['name']}:6379/" in url


def _check_pod(pod: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert ("ConfigMap", source["configMapRef"]["name"]) in objects
            else:
                assert ("Secret", source["secretRef"]["name"]) in objects


def test_k8s_objects() -> None:
    kinds = sorted(kind for kind, _ in _k8s())
    assert kinds == [
        "ConfigMap", "Deployment", "Deployment", "Deployment", "Job", "NetworkPolicy",
        "NetworkPolicy", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget",
        "PodDisruptionBudget", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service",
        "Service", "Service", "Service", "StatefulSet", "StatefulSet",
    ]  # fmt: skip


def _pod_labels(kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = _k8s()[(kind, name)]["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector["matchLabels"].items() <= labels.items())


def test_k8s_disruption_budgets_keep_a_replica_of_each_service() -> None:
    budgets = _of_kind("PodDisruptionBudget")
    for part in PORTS:
        deployment = _k8s()[("Deployment", f"kiungo-{part}")]
        labels = _pod_labels("Deployment", f"kiungo-{part}")
        (budget,) = [b for b in budgets if _selects(b["spec"]["selector"], labels)]
        # Evictions leave at least one replica, and can still evict one (a drain completes).
        assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    # None on the single Redis replica: it would block every node drain.
    redis = _pod_labels("StatefulSet", "kiungo-redis")
    assert not [b for b in budgets if _selects(b["spec"]["selector"], redis)]


def _policy_for(labels: dict[str, str]) -> dict[str, Any]:
    (policy,) = [p for p in _of_kind("NetworkPolicy") if _selects(p["spec"]["podSelector"], labels)]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    return policy


def test_k8s_network_policies_open_only_the_connector_and_the_authorization_server() -> None:
    connector = _pod_labels("Deployment", "kiungo-connector")
    backend = _pod_labels("Deployment", "kiungo-backend")
    # Peers and wallets reach the connector; wallets reach the authorization server.
    for public in (connector, _pod_labels("Deployment", "kiungo-auth")):
        (rule,) = _policy_for(public)["spec"]["ingress"]
        assert "from" not in rule and rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    # The admin API: only pods of the namespace, only its port.
    (rule,) = _policy_for(backend)["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    # Redis: only the connector's and the backend's pods, only its port.
    (rule,) = _policy_for(_pod_labels("StatefulSet", "kiungo-redis"))["spec"]["ingress"]
    sources = [source["podSelector"] for source in rule["from"]]
    assert len(sources) == 2
    assert all(set(source) == {"matchLabels"} for source in sources)
    assert sorted(s["matchLabels"]["app.kubernetes.io/component"] for s in sources) == [
        "backend",
        "connector",
    ]
    assert any(_selects(source, backend) for source in sources)
    assert any(_selects(source, connector) for source in sources)
    assert rule["ports"] == [{"protocol": "TCP", "port": "redis"}]


def test_k8s_config_holds_only_settings_and_secrets_only_in_the_secret() -> None:
    (config_map,) = _of_kind("ConfigMap")
    secret = _k8s()[("Secret", "kiungo-secrets")]
    config, secrets = config_map["data"], secret["stringData"]
    assert set(config) <= SETTINGS, set(config) - SETTINGS
    assert set(secrets) <= SETTINGS, set(secrets) - SETTINGS
    assert not set(config) & SECRETS
    assert {"DATABASE_URL", "REDIS_URL", "STREAM_SECRET", "ADMIN_API_SECRET"} <= set(secrets)
    # Wallet address documents name a public authorization server, not the default loopback.
    assert config["AUTH_SERVER_GRANT_URL"].startswith("https://")
    # The placeholders must not make a runnable node: start-up names the secret to replace.
    with pytest.raises(ConfigError, match="STREAM_SECRET"):
        Settings.from_env({**config, **secrets})


def test_k8s_deployments_probe_livez_and_readyz_as_non_root() -> None:
    objects = _k8s()
    deployments = {doc["metadata"]["name"]: doc for doc in _of_kind("Deployment")}
    assert set(deployments) == {f"kiungo-{part}" for part in PORTS}
    for part, port in PORTS.items():
        spec = deployments[f"kiungo-{part}"]["spec"]
        assert spec["replicas"] == 2
        template = spec["template"]
        labels = template["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        pod = template["spec"]
        _check_pod(pod, objects)
        (container,) = pod["containers"]
        assert container["args"] == [part, "--host", "0.0.0.0"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        # Liveness must not depend on the stores: restarting a replica cures no store outage.
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert ports.get(get["port"], get["port"]) == port
        (service,) = [
            doc for doc in _of_kind("Service") if doc["spec"]["selector"].items() <= labels.items()
        ]
        (service_port,) = service["spec"]["ports"]
        assert ports.get(service_port["targetPort"], service_port["targetPort"]) == port


def test_k8s_job_runs_migrate() -> None:
    (job,) = _of_kind("Job")
    pod = job["spec"]["template"]["spec"]
    _check_pod(pod, _k8s())
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]


# Prometheus rules


def _exported_metrics() -> dict[str, set[str]]:
    """Every series name the services expose, with its label names."""
    exported: dict[str, set[str]] = {}
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    for holder in (Metrics(), BackendMetrics()):
        for metric in vars(holder).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            (family,) = metric.describe()
            labels = set(metric._labelnames)
            for suffix in suffixes[family.type]:
                exported[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return exported


def _label_values_in_code() -> set[str]:
    values = {code.value for code in ErrorCode} | {"fulfilled"}
    for path in (ROOT / "services").rglob("*.py"):
        values |= set(re.findall(r"\.labels\(\"([a-z_]+)\"\)", path.read_text()))
    return values


def test_rules_use_only_exported_metrics() -> None:
    exported = _exported_metrics()
    assert "kiungo_ilp_packets_total" in exported
    assert exported["kiungo_liquidity"] == {"kind", "id", "asset"}
    assert {"kiungo_pending_holds", "kiungo_oldest_pending_hold_seconds"} <= set(exported)
    known_values = _label_values_in_code()
    groups = _one(DEPLOY / "prometheus-rules.yaml")["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    assert len(alerts) >= 3
    for rule in alerts:
        assert rule["alert"] and rule["annotations"]["summary"]
        selectors = re.findall(r"\b(kiungo_[a-z0-9_]+)(\{[^}]*\})?", rule["expr"])
        assert selectors, f"{rule['alert']} uses no Kiungo metric"
        for name, matchers in selectors:
            assert name in exported, f"{rule['alert']}: {name} is not exported"
            for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
                assert label in exported[name], f"{rule['alert']}: {name} has no {label}"
                if op == "=" and label == "outcome" and not re.fullmatch(r"[TFR]\d\d", value):
                    assert value in known_values, f"{rule['alert']}: no outcome {value!r}"
                if op == "=" and name == "kiungo_liquidity" and label == "kind":
                    assert value in LIQUIDITY_KINDS, f"{rule['alert']}: no kind {value!r}"
    used = {name for rule in alerts for name in re.findall(r"\b(kiungo_[a-z0-9_]+)", rule["expr"])}
    # The example alerts of issue 7: reject rate, liquidity low, pending holds.
    assert {
        "kiungo_ilp_packets_total",
        "kiungo_liquidity",
        "kiungo_oldest_pending_hold_seconds",
    } <= used


def test_guide_documents_every_metric_and_no_other() -> None:
    guide = (DEPLOY / "README.md").read_text()
    section = guide.split("\n## Metrics and alerts\n", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(kiungo_[a-z0-9_]+)` \|", section, re.MULTILINE))
    names = {PROCESSES_METRIC}  # --processes N only
    for holder in (Metrics(), BackendMetrics()):
        for metric in vars(holder).values():
            if isinstance(metric, MetricWrapperBase):
                (family,) = metric.describe()
                names.add(family.name + ("_total" if family.type == "counter" else ""))
    assert rows == names, (names - rows, rows - names)


def test_guide_documents_every_setting_and_no_other() -> None:
    guide = (DEPLOY / "README.md").read_text()
    section = guide.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.MULTILINE))
    assert rows == SETTINGS, (SETTINGS - rows, rows - SETTINGS)
    for name in SECRETS:
        assert re.search(rf"^\| `{name}` \|.*\*\*yes\*\*", section, re.MULTILINE), name


# Dockerfile


def test_dockerfile_builds_a_non_root_image_for_every_command() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    stages = [line for line in instructions if line.startswith("FROM ")]
    assert len(stages) >= 2, "a multi-stage build"
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in instructions
    assert stages[-1] == "FROM ${PYTHON_IMAGE}"
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric uid, which runAsNonRoot can verify"
    (expose,) = [line for line in instructions if line.startswith("EXPOSE ")]
    assert set(expose.split()[1:]) == {str(port) for port in PORTS.values()}
    assert 'ENTRYPOINT ["kiungo"]' in instructions
    assert "embedded" not in " ".join(instructions)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for needed in ("pyproject.toml", "README.md", "shared/", "services/"):
        assert f"!{needed}" in ignore
