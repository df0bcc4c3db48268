"""Static checks of deploy/: no container engine or cluster runs here, so files are parsed and cross-checked.

What needs an optional tool skips with the reason when the tool is absent: PyYAML (add ``pyyaml`` and
``types-PyYAML`` to the dev extras), ``kubernetes-validate`` (JSON schemas of the Kubernetes API),
``systemd-analyze``, ``kubectl`` (kustomize), ``shellcheck``. ``promtool`` is not optional: the Prometheus
rules are checked and unit-tested with it, and deploy/system-packages.sh (run by ``make install``)
installs it. The partition-assignment script, the Dockerfile, the systemd unit and the example settings
are checked without any of them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import textwrap
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orbitwatch.metrics import DaemonMetrics
from orbitwatch.settings import Settings, load_settings
from storage.retention import archive_root

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CONTRACT = ROOT.parent / "shared" / "contract"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
STATEFULSET = DEPLOY / "kubernetes" / "statefulset.yaml"
UNIT = DEPLOY / "systemd" / "orbitwatch.service"
ALERTS = DEPLOY / "prometheus" / "orbitwatch-alerts.yaml"
ALERTS_TEST = DEPLOY / "prometheus" / "orbitwatch-alerts.test.yaml"
K8S_VERSION = "1.30.0"  # oldest Kubernetes these manifests target; kubernetes-validate ships its schemas
SHARDS, PARTITIONS = 3, 12


# ---- helpers ------------------------------------------------------------------------------------


def yaml_module() -> ModuleType:
    """PyYAML, or a skip that says what to add to the dev extras."""
    reason = "PyYAML is not installed: add pyyaml and types-PyYAML to the dev extras"
    module: ModuleType = pytest.importorskip("yaml", reason=reason)
    return module


def load_docs(path: Path) -> list[dict[str, Any]]:
    """All YAML documents of a file, each a mapping."""
    docs = [d for d in yaml_module().safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"
    return docs


def k8s_docs() -> list[dict[str, Any]]:
    """The Kubernetes objects of deploy/kubernetes (the kustomization excluded)."""
    paths = sorted(p for p in (DEPLOY / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml")
    return [doc for path in paths for doc in load_docs(path)]


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, config: Path | None = None) -> Settings:
    """Load settings as the daemon would, with ``env`` as the only ORBITWATCH_* variables."""
    for key in list(os.environ):
        if key.startswith("ORBITWATCH_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORBITWATCH_REGISTRY__CONTRACT_DIR", str(CONTRACT))  # /app/contract exists only in images
    return load_settings(config)


def systemd_sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys may repeat, so configparser does not fit)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not Key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def partition_script() -> str:
    """The ``sh -c`` script of the StatefulSet's container, read as a YAML block scalar without PyYAML."""
    lines = STATEFULSET.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "command:")
    assert [line.strip() for line in lines[start + 1 : start + 4]] == ["- sh", "- -c", "- |"], "command: [sh, -c, |]"
    indent = len(lines[start + 3]) - len(lines[start + 3].lstrip())
    body: list[str] = []
    for line in lines[start + 4 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n"


def run_partition_script(pod_name: str, tmp_path: Path, shards: int = SHARDS) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint with ``sh``; a stand-in ``orbitwatch`` prints its arguments and the derived settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "orbitwatch"
    fake.write_text(
        "#!/bin/sh\n"
        'printf \'{"argv": "%s", "partitions": "%s", "path": "%s"}\\n\' '
        '"$*" "$ORBITWATCH_KAFKA__STATIC_PARTITIONS" "$ORBITWATCH_STORAGE__PATH"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "POD_NAME": pod_name,
        "SHARDS": str(shards),
        "PARTITIONS": str(PARTITIONS),
    }
    return subprocess.run(
        ["sh", "-c", partition_script()], env=env, capture_output=True, text=True, timeout=10, check=False
    )


def check_query_and_retention(settings: Settings, writable: list[Path]) -> None:
    """The query service stays on loopback unless a token guards it; the archive (which the daemon's DuckDB
    sandbox confines it to) lies under a directory the daemon may write."""
    assert settings.query.enabled
    assert settings.query.host in {"127.0.0.1", "::1", "localhost"} or settings.query.token is not None, (
        "a query service on a non-loopback host needs query.token"
    )
    assert settings.retention.enabled
    root = archive_root(settings.storage.path, settings.retention.archive_dir)
    assert any(root.is_relative_to(d) for d in writable), f"archive {root} is outside the writable {writable}"


def metric_names() -> set[str]:
    """The metric names the daemon exposes, as Prometheus shows them (counters with ``_total``)."""
    return {f"{f.name}_total" if f.type == "counter" else f.name for f in DaemonMetrics().registry.collect()}


# ---- the partition-assignment entrypoint (no optional tools needed) ------------------------------


def test_partition_script_gives_each_ordinal_a_disjoint_share_covering_all_partitions(tmp_path: Path) -> None:
    owned: dict[int, list[int]] = {}
    for ordinal in range(SHARDS):
        done = run_partition_script(f"orbitwatch-{ordinal}", tmp_path)
        assert done.returncode == 0, done.stderr
        printed = json.loads(done.stdout)
        assert printed["argv"] == "run"
        assert printed["path"] == f"/data/shard-{ordinal}.duckdb"
        owned[ordinal] = json.loads(printed["partitions"])
        assert owned[ordinal] == [p for p in range(PARTITIONS) if p % SHARDS == ordinal]
    every = [p for partitions in owned.values() for p in partitions]
    assert sorted(every) == list(range(PARTITIONS)), "together the shards read every partition exactly once"


def test_partition_script_output_is_accepted_by_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    printed = json.loads(run_partition_script("orbitwatch-2", tmp_path).stdout)
    env = {"ORBITWATCH_KAFKA__STATIC_PARTITIONS": printed["partitions"], "ORBITWATCH_STORAGE__PATH": printed["path"]}
    settings = settings_from_env(env, monkeypatch)
    assert settings.kafka.static_partitions == [2, 5, 8, 11]
    assert settings.storage.path == Path("/data/shard-2.duckdb")


@pytest.mark.parametrize("pod_name", ["orbitwatch-3", "orbitwatch-x", "orbitwatch"])
def test_partition_script_refuses_a_pod_it_cannot_place(pod_name: str, tmp_path: Path) -> None:
    done = run_partition_script(pod_name, tmp_path)
    assert done.returncode != 0
    assert done.stdout == ""
    assert "orbitwatch:" in done.stderr


def test_partition_script_passes_shellcheck(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    script = tmp_path / "entrypoint.sh"
    script.write_text(partition_script())
    for path in (script, DEPLOY / "build-image.sh"):
        done = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout


# ---- example settings ------------------------------------------------------------------------------


def test_compose_example_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_env({}, monkeypatch, DEPLOY / "compose" / "orbitwatch.toml")
    assert settings.kafka.topic == "rack-telemetry"
    assert settings.storage.path == Path("/data/orbitwatch.duckdb")
    assert settings.daemon.liveness_file == Path("/data/orbitwatch.alive")
    assert settings.daemon.metrics_host == "0.0.0.0", "in a container metrics must listen on all interfaces"
    check_query_and_retention(settings, [Path("/archive")])  # the orbitwatch-archive volume


def test_systemd_example_settings_and_env_file_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_file(DEPLOY / "systemd" / "orbitwatch.env")
    assert all(key.startswith("ORBITWATCH_") for key in env)
    settings = settings_from_env(env, monkeypatch, DEPLOY / "systemd" / "orbitwatch.toml")
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_password is not None
    assert settings.storage.path.parent == Path("/var/lib/orbitwatch")
    assert settings.daemon.liveness_file is not None
    assert settings.daemon.liveness_file.parent == Path("/var/lib/orbitwatch")
    writable = [Path(p) for values in systemd_sections(UNIT)["Service"]["ReadWritePaths"] for p in values.split()]
    check_query_and_retention(settings, writable)


# ---- systemd --------------------------------------------------------------------------------------


def test_systemd_unit_has_the_service_and_hardening_settings() -> None:
    unit = systemd_sections(UNIT)
    service = {key: values[-1] for key, values in unit["Service"].items()}
    expected = {
        "Type": "simple",
        "User": "orbitwatch",
        "Group": "orbitwatch",
        "DynamicUser": "no",
        "ExecStart": "/opt/orbitwatch/.venv/bin/orbitwatch run --config /etc/orbitwatch/orbitwatch.toml",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "60s",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/orbitwatch",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "EnvironmentFile": "/etc/orbitwatch/orbitwatch.env",
    }
    assert {key: service.get(key) for key in expected} == expected
    for key in ("RestartSec", "MemoryMax", "LimitNOFILE"):
        assert service.get(key), f"{key} is not set"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("name", ["orbitwatch.service", "orbitwatch-web.service"])
def test_systemd_unit_passes_systemd_analyze(name: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify checks that ExecStart exists; point it at a stand-in executable.
    fake = tmp_path / "orbitwatch"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = tmp_path / name
    unit.write_text((DEPLOY / "systemd" / name).read_text().replace("/opt/orbitwatch/.venv/bin/orbitwatch", str(fake)))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == "", verify.stderr
    # Exposure 0 (locked down) .. 10 (unprotected); this unit scores about 1.5.
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=25", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


def test_the_web_unit_runs_the_web_view_read_only_beside_the_daemon() -> None:
    unit = systemd_sections(DEPLOY / "systemd" / "orbitwatch-web.service")
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["ExecStart"] == "/opt/orbitwatch/.venv/bin/orbitwatch web --config /etc/orbitwatch/orbitwatch.toml"
    assert service["ReadOnlyPaths"] == "/var/lib/orbitwatch"
    assert "ReadWritePaths" not in service
    assert service["User"] == "orbitwatch"
    assert "orbitwatch.service" in unit["Unit"]["After"][-1]


# ---- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    steps = dockerfile_instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["python:3.11-slim AS builder", "python:3.11-slim AS runtime"]
    runtime = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    final = dict(runtime)  # the last of each instruction in the runtime stage
    assert final["USER"] == "10001:10001"
    assert final["WORKDIR"] == "/data"
    assert json.loads(final["ENTRYPOINT"]) == ["orbitwatch"]
    assert json.loads(final["CMD"]) == ["run"]
    assert "ORBITWATCH_REGISTRY__CONTRACT_DIR=/app/contract" in final["ENV"]
    copies = [args for word, args in runtime if word == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    assert "deploy/contract /app/contract" in copies
    assert any("pip install ." in args for word, args in steps if word == "RUN")


def test_dockerfile_copies_only_what_exists_in_the_build_context() -> None:
    """Every COPY source (the repository root is the context) exists, or is the contract the build script copies."""
    for word, args in dockerfile_instructions():
        if word != "COPY" or args.startswith("--from="):
            continue
        *sources, _dest = args.split()
        for source in sources:
            if source == "deploy/contract":
                assert "deploy/contract" in (DEPLOY / "build-image.sh").read_text()
                continue
            assert list(ROOT.glob(source)) or "[" in source, f"COPY source {source} is not in the repository"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    packages = ("ingest/", "processing/", "storage/", "orbitwatch/", "simulator/")
    for needed in ("pyproject.toml", "deploy/contract/", *packages):
        assert f"!{needed}" in ignore, f"{needed} is excluded from the build context"


def test_every_yaml_file_parses() -> None:
    paths = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(paths) >= 7
    for path in paths:
        assert load_docs(path), f"{path} is empty"


# ---- Compose ------------------------------------------------------------------------------------


def test_compose_file_structure() -> None:
    (compose,) = load_docs(COMPOSE)
    services: dict[str, Any] = compose["services"]
    assert {"kafka", "kafka-init", "orbitwatch"} <= services.keys()
    for name, service in services.items():
        image = service.get("image", "")
        if "build" not in service:
            repo, _, tag = image.rpartition(":")
            assert repo, f"{name}: image {image!r} has no tag"
            assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: image {image!r} is not pinned to x.y.z"
        assert "latest" not in image, f"{name}: no latest tags"

    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a base64url UUID"
    assert "healthcheck" in kafka

    init = services["kafka-init"]
    command = init["command"]
    assert command[0].endswith("kafka-topics.sh")
    assert command[command.index("--topic") + 1] == "rack-telemetry"
    assert command[command.index("--partitions") + 1] == str(PARTITIONS)
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"

    daemon = services["orbitwatch"]
    assert (COMPOSE.parent / daemon["build"]["context"] / daemon["build"]["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )
    assert daemon["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "kafka-init": {"condition": "service_completed_successfully"},
    }
    assert daemon["healthcheck"]["test"] == ["CMD", "orbitwatch", "health", "--max-age", "30"]
    assert daemon["ports"] == ["127.0.0.1:9464:9464"]
    assert all(str(port).startswith("127.0.0.1:") for s in services.values() for port in s.get("ports", []))
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in daemon["volumes"]}
    assert {"/data", "/archive", "/etc/orbitwatch/orbitwatch.toml"} <= mounts.keys()
    assert (COMPOSE.parent / mounts["/etc/orbitwatch/orbitwatch.toml"]).is_file()
    assert mounts["/data"] in compose["volumes"]
    assert mounts["/archive"] in compose["volumes"]
    assert daemon["environment"]["ORBITWATCH_CONFIG"] == "/etc/orbitwatch/orbitwatch.toml"
    assert daemon["stop_grace_period"] == "60s"
    config = tomllib.loads((COMPOSE.parent / mounts["/etc/orbitwatch/orbitwatch.toml"]).read_text())
    assert config["retention"]["archive_dir"] == "/archive", "retention.archive_dir must be the archive volume"


# ---- Kubernetes ---------------------------------------------------------------------------------


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    validator = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed: add kubernetes-validate to the dev extras"
    )
    docs = k8s_docs()
    assert {d["kind"] for d in docs} == {"StatefulSet", "Service", "ConfigMap", "Secret"}
    for doc in docs:
        validator.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError naming the field


def test_kubernetes_manifests_are_namespace_agnostic_and_listed_in_the_kustomization() -> None:
    for doc in k8s_docs():
        assert doc["apiVersion"] in {"v1", "apps/v1"}
        assert doc["metadata"]["name"]
        assert "namespace" not in doc["metadata"], f"{doc['kind']} {doc['metadata']['name']} pins a namespace"
    (kustomization,) = load_docs(DEPLOY / "kubernetes" / "kustomization.yaml")
    files = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert "namespace" not in kustomization


def test_statefulset_structure() -> None:
    sts = k8s_object("StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == SHARDS
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    headless = k8s_object("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    for service in (d for d in k8s_docs() if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items(), f"{service['metadata']['name']} selects no pod"

    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHARDS"]["value"] == str(spec["replicas"]), "SHARDS must equal replicas"
    assert env["PARTITIONS"]["value"] == str(PARTITIONS)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["command"][:2] == ["sh", "-c"]
    assert container["command"][2] == partition_script(), "the text extraction and YAML agree"
    assert "args" not in container

    health = ["orbitwatch", "health", "--max-age", "60"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["exec"]["command"] == health, probe
    resources = container["resources"]
    assert resources["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert resources["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001, "PVCs are root-owned without fsGroup"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    (claim,) = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = k8s_object("ConfigMap", volumes["config"]["configMap"]["name"])
    assert f"{mounts['config']}/orbitwatch.toml" == env["ORBITWATCH_CONFIG"]["value"]
    assert "orbitwatch.toml" in config_map["data"]
    (secret_ref,) = container["envFrom"]
    k8s_object("Secret", secret_ref["secretRef"]["name"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == 9464


def test_kubernetes_configmap_settings_are_valid_with_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "orbitwatch.toml"
    config.write_text(k8s_object("ConfigMap")["data"]["orbitwatch.toml"])
    secret: dict[str, str] = k8s_object("Secret")["stringData"]
    assert set(secret) == {"ORBITWATCH_KAFKA__SASL_USERNAME", "ORBITWATCH_KAFKA__SASL_PASSWORD"}
    printed = json.loads(run_partition_script("orbitwatch-0", tmp_path).stdout)
    env = {**secret, "ORBITWATCH_KAFKA__STATIC_PARTITIONS": printed["partitions"]}
    env["ORBITWATCH_STORAGE__PATH"] = printed["path"]
    settings = settings_from_env(env, monkeypatch, config)
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.static_partitions == [0, 3, 6, 9]
    assert settings.daemon.metrics_host == "0.0.0.0"
    assert settings.daemon.liveness_file == Path("/data/orbitwatch.alive")
    (container,) = k8s_object("StatefulSet")["spec"]["template"]["spec"]["containers"]
    writable = [Path(m["mountPath"]) for m in container["volumeMounts"] if not m.get("readOnly")]
    check_query_and_retention(settings, [d for d in writable if d != Path("/tmp")])  # /tmp: an emptyDir


def test_kustomize_renders_the_manifests() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed; kustomize rendering not checked")
    done = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    kinds = sorted(re.findall(r"^kind: (\w+)$", done.stdout, flags=re.MULTILINE))
    assert kinds == ["ConfigMap", "Secret", "Service", "Service", "StatefulSet"]


# ---- Prometheus rules and the operations guide ---------------------------------------------------


def test_alert_rules_are_complete_and_use_real_metrics() -> None:
    (doc,) = load_docs(ALERTS)
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {
        "OrbitwatchConsumerLagHigh",
        "OrbitwatchDeadLetterRateHigh",
        "OrbitwatchBatchLatencyP99High",
        "OrbitwatchNoBatchCommitted",
        "OrbitwatchNotificationBacklog",
        "OrbitwatchSatelliteStale",
        "OrbitwatchBrokerUnreachable",
    } <= names
    known = metric_names()
    for rule in rules:
        assert rule["expr"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        for used in re.findall(r"\borbitwatch_[a-z_]+", rule["expr"]):
            family = re.sub(r"_(bucket|count|sum)$", "", used)
            assert family in known, f"{rule['alert']} uses {used}, which the daemon does not expose"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Prometheus's own rule checker (Debian package prometheus, installed by deploy/system-packages.sh)."""
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is not installed: run deploy/system-packages.sh as root (make install does)"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, cwd=ALERTS.parent)


def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", ALERTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(load_docs(ALERTS)[0]['groups'][0]['rules'])} rules found" in done.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    """Each rule fires when it should and not before, with the labels and annotations it promises."""
    done = promtool("test", "rules", ALERTS_TEST.name)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    rules = {rule["alert"] for group in load_docs(ALERTS)[0]["groups"] for rule in group["rules"]}
    assert tested == rules, f"rules without a promtool unit test: {sorted(rules - tested)}"


def test_operations_guide_names_every_metric_and_existing_files() -> None:
    guide = (DEPLOY / "README.md").read_text()
    for name in metric_names():
        assert name in guide, f"deploy/README.md does not mention {name}"
    assert "TBD" not in guide, "the sizing table still has placeholders"
    for referenced in set(re.findall(r"deploy/[\w./-]+\w", guide)):
        assert (ROOT / referenced).exists() or referenced == "deploy/contract", f"{referenced} does not exist"
