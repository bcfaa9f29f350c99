"""Reviewing a training in the Dagster UI, as a user does it in a real browser: launch ``train_model`` by picking
the model, read its per-round metrics on the global model, follow the declared lineage, and read a broken
model's failure in one screen."""

import re
import shutil
from pathlib import Path

from playwright.sync_api import Page

from flip_pipelines.demo_models import demo_model_dir
from flip_pipelines.local.processes import wait_until
from flip_pipelines_tests.ui.harness import (
    UIStack,
    asset_path,
    goto,
    new_name,
    open_launchpad,
    open_run,
    shot,
    wait_for_run_status,
    wait_for_text,
    wait_visible,
)

PARTITIONS_QUERY = """{ assetNodeOrError(assetKey: {path: ["flip", "global_model"]}) {
  ... on AssetNode { partitionKeysByDimension { partitionKeys } } } }"""


def register_model(ui_stack: UIStack, files: Path, prefix: str) -> str:
    """A model registered and uploaded through the CLI; returns its name once the queue sensor made it a
    partition (what the Launchpad's picker lists)."""
    project = new_name("project")
    ui_stack.cli("projects", "add", project, "--query", "SELECT * FROM cohort")
    name = new_name(prefix)
    model_id = ui_stack.cli("models", "add", name, "--project", project).stdout.strip()
    ui_stack.cli("models", "upload", model_id, str(files))

    def listed() -> bool | None:
        node = ui_stack.graphql(PARTITIONS_QUERY)["assetNodeOrError"]
        return name in [k for dimension in node["partitionKeysByDimension"] for k in dimension["partitionKeys"]] \
            or None

    wait_until(listed, timeout=60, interval=1, what=f"{name} to become a partition")
    return name


def test_train_model_launched_by_picking_the_model_shows_per_round_metrics(
    page: Page, ui_stack: UIStack, ui_nets: dict[str, str]
) -> None:
    name = register_model(ui_stack, demo_model_dir("flower_logreg"), "flower-demo")
    open_launchpad(page, "train_model")
    page.get_by_placeholder("Partition").click()
    page.keyboard.insert_text(name)
    page.get_by_role("menuitem", name=name).click()
    shot(page, "launchpad-model-picked")
    page.get_by_role("button", name=re.compile("Launch Run")).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=30_000)
    run_id = page.url.rsplit("/runs/", 1)[1].split("?")[0]
    assert wait_for_run_status(page, "Success", "Failure", timeout=300) == "Success"
    assert ui_stack.run(run_id)["tags"] and {t["key"]: t["value"] for t in ui_stack.run(run_id)["tags"]}[
        "flip/model"] == name
    shot(page, "train_model-run-success")

    goto(page, f"{asset_path(['flip', 'global_model'])}?partition={name}")
    wait_for_text(page, "final_val_loss")
    row = page.locator("tr").filter(has=page.locator("td", has_text=re.compile(r"^\s*metrics\s*$")))
    wait_visible(row, what="the metrics row")
    row.first.scroll_into_view_if_needed()
    text = row.first.inner_text()
    shot(page, "global_model-round-metrics")
    header = next(line for line in text.splitlines() if line.startswith("round"))
    assert {"round", "trust", "train_loss", "val_accuracy", "val_loss"} <= set(header.split("\t")), header
    rounds = [line.split("\t")[:2] for line in text.splitlines() if re.match(r"^\d+\t", line)]
    assert rounds == [["1", "Trust_1"], ["1", "Trust_2"], ["2", "Trust_1"], ["2", "Trust_2"]], text


def test_lineage_shows_the_training_chain_with_its_edges(page: Page, ui_stack: UIStack) -> None:
    goto(page, "/asset-groups/flip_training")
    for asset in ("model_files", "training_bundle", "fl_job", "global_model"):
        wait_visible(page.locator("svg foreignObject [class*='AssetNode_assetName']").filter(
            has_text=re.compile(rf"^\s*{asset}\s*$")), what=f"the {asset} node")
    shot(page, "flip_training-lineage")
    assert page.locator("svg path[marker-end]").count() >= 3, "model files → bundle → FL job → global model"


def test_a_broken_models_run_page_gives_the_plain_reason(page: Page, ui_stack: UIStack, ui_nets: dict[str, str],
                                                        tmp_path: Path) -> None:
    files = tmp_path / "broken"
    shutil.copytree(demo_model_dir("flower_logreg"), files)
    (files / "client_app.py").unlink()
    name = register_model(ui_stack, files, "broken")
    run_id = ui_stack.launch("train_model", tags={"dagster/partition": name})
    open_run(page, run_id)
    assert wait_for_run_status(page, "Failure", "Success", timeout=120) == "Failure"
    reason = f"Training failed: Model {name} cannot train: its files suit no registered backend"
    wait_for_text(page, re.compile(re.escape(reason)), exact=False)
    shot(page, "broken-model-run-failure")
    assert "dagster._core" not in page.inner_text("body"), "no exception class path on the run page"
