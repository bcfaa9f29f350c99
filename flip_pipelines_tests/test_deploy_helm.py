"""deploy/helm without a cluster: the values for Dagster's official chart by a YAML parser, against the chart's keys
and the compose deployment's instance, and the hub's own chart (deploy/helm/flip) linted and rendered by Helm's
own engine (Helm's Go SDK through helm-python-sdk; no helm binary)."""

import re

import pytest
import yaml

from flip_pipelines.local.production import interpolate
from flip_pipelines_tests.test_deploy import CHART, COMPOSE, DEPLOY, INSTANCE, PYPROJECT

HELM_VALUES = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_helm_values_configure_the_official_chart_as_the_instance_does() -> None:
    """Keys as the dagster/dagster chart reads them (checked against its values.yaml and values.schema.json),
    holding the same policies as the compose deployment's instance."""
    values = HELM_VALUES
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", PYPROJECT["tool"]["dagster"]["module_name"]]
    assert deployment["envSecrets"] == [{"name": "flip-pipelines-env"}]
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["envSecrets"] == deployment["envSecrets"]
    assert launcher["config"]["k8sRunLauncher"]["imagePullPolicy"], "the chart's schema requires it"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    runs = values["concurrency"]["runs"]
    assert values["concurrency"]["enabled"] and runs["tagConcurrencyLimits"] == \
        INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(coordinator), "limits set in one place only"
    assert (coordinator["dequeueUseThreads"], coordinator["dequeueNumWorkers"]) == \
        (INSTANCE["run_coordinator"]["config"]["dequeue_use_threads"],
         INSTANCE["run_coordinator"]["config"]["dequeue_num_workers"])
    daemon = values["dagsterDaemon"]
    assert daemon["sensors"] == {"useThreads": INSTANCE["sensors"]["use_threads"],
                                 "numWorkers": INSTANCE["sensors"]["num_workers"],
                                 "numSubmitWorkers": INSTANCE["sensors"]["num_submit_workers"]}
    assert daemon["runMonitoring"]["enabled"] and daemon["runMonitoring"]["maxResumeRunAttempts"] == 0
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": INSTANCE["run_retries"]["max_retries"],
                                    "retryOnAssetOrOpFailure": False}
    logs = values["computeLogManager"]
    compose_logs = INSTANCE["compute_logs"]
    assert logs["type"] == compose_logs["class"] == "S3ComputeLogManager", "run logs outlive each run's pod"
    s3 = logs["config"]["s3ComputeLogManager"]
    assert s3["bucket"] and (s3["prefix"], s3["uploadInterval"]) == \
        (compose_logs["config"]["prefix"], compose_logs["config"]["upload_interval"])
    kept = values["retention"]["sensor"]["purgeAfterDays"]
    assert values["retention"]["enabled"] and set(kept) == {"skipped", "failure", "success", "started"}
    assert {k: kept[k] for k in ("skipped", "failure", "success")} == \
        INSTANCE["retention"]["sensor"]["purge_after_days"]
    assert not [k for k in _keys(values) if re.fullmatch(r"(?i)(postgresql)?password|token|.*secretkey", k)], \
        "no password or key in the values: secrets are referenced by their Kubernetes secret's name"


def _keys(node: object) -> list[str]:
    if isinstance(node, dict):
        return [str(k) for k in node] + [k for v in node.values() for k in _keys(v)]
    if isinstance(node, list):
        return [k for v in node for k in _keys(v)]
    return []


def _rendered_chart(**values: object) -> dict[tuple[str, str], dict]:
    """deploy/helm/flip rendered by Helm's own engine (Helm's Go SDK, no cluster): kind and name → manifest."""
    import helm_python

    rendered = helm_python.Chart.load(str(CHART)).render(values or None, name="flip", namespace="flip",
                                                         is_install=True)
    documents = [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def test_the_hub_chart_lints_and_runs_the_hub_api_and_its_migration() -> None:
    """The hub's own chart (the hub API and `db upgrade`, which Dagster's chart cannot host) passes `helm lint
    --strict` and renders: the migration as a pre-install/pre-upgrade hook Job running the compose `migrate`
    command, the hub API Deployment running the compose `hub-api` command as the image's user, probed on
    /health, with its key's hash from its own secret, and a Service in front of it; every flip_pipelines process
    reads the same ConfigMap and secret, which the Dagster chart's values hand to the code location and runs."""
    import helm_python

    report = helm_python.lint(str(CHART), strict=True)
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    manifests = _rendered_chart()
    assert {kind for kind, _ in manifests} == {"ConfigMap", "Deployment", "Service", "Job"}

    settings = manifests[("ConfigMap", chart["configMapName"])]
    boto3 = {"AWS_ENDPOINT_URL_S3": "FLIP_S3_ENDPOINT_URL", "AWS_DEFAULT_REGION": "FLIP_S3_REGION"}
    assert settings["data"] == {**{k: str(v) for k, v in chart["settings"].items()},
                                **{k: str(chart["settings"][v]) for k, v in boto3.items()}}
    assert all(interpolate(COMPOSE["x-flip-env"][k], {v: "set"}) == "set" for k, v in boto3.items()), \
        "derived as compose derives them"

    [job] = [m for (kind, _), m in manifests.items() if kind == "Job"]
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}, \
        "the database is migrated before the hub API (which refuses an unmigrated one) starts or is upgraded"
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == COMPOSE["services"]["migrate"]["command"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert {"secretRef": {"name": chart["envSecret"]}} in migrate["envFrom"], "FLIP_DATABASE_URL"

    [deployment] = [m for (kind, _), m in manifests.items() if kind == "Deployment"]
    pod = deployment["spec"]["template"]
    [api] = pod["spec"]["containers"]
    command = COMPOSE["services"]["hub-api"]["command"]
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert version == PYPROJECT["project"]["version"], "the image's tag by default: the package's version"
    assert api["command"] == command and api["image"] == migrate["image"] == \
        f"{chart['image']['repository']}:{chart['image']['tag'] or version}"
    port = int(command[command.index("--port") + 1])
    assert api["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert api["readinessProbe"]["httpGet"] == api["livenessProbe"]["httpGet"] == {"path": "/health",
                                                                                   "port": "http"}
    assert api["envFrom"] == [{"configMapRef": {"name": chart["configMapName"]}},
                              {"secretRef": {"name": chart["envSecret"]}}]
    [key] = api["env"]
    assert key == {"name": chart["hubApi"]["keySecret"]["key"],
                   "valueFrom": {"secretKeyRef": chart["hubApi"]["keySecret"]}}
    useradd = re.search(r"useradd .*--uid (\d+) flip", (DEPLOY / "Dockerfile").read_text())
    uid = int(useradd.group(1))  # type: ignore[union-attr]
    for spec in (pod["spec"], job["spec"]["template"]["spec"]):
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == uid
        [container] = spec["containers"]
        assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                                 "capabilities": {"drop": ["ALL"]}}

    [service] = [m for (kind, _), m in manifests.items() if kind == "Service"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]

    refs = {"envConfigMaps": [{"name": chart["configMapName"]}], "envSecrets": [{"name": chart["envSecret"]}]}
    [deployment_values] = HELM_VALUES["dagster-user-deployments"]["deployments"]
    for where in (deployment_values, HELM_VALUES["runLauncher"]["config"]["k8sRunLauncher"],
                  HELM_VALUES["dagsterWebserver"], HELM_VALUES["dagsterDaemon"]):
        assert {k: where.get(k) for k in refs} == refs, "every Dagster pod reads the hub's settings and secret"


def test_the_hub_chart_refuses_to_render_without_an_image() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="image.repository"):
        _rendered_chart(image={"repository": ""})
