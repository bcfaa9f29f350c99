"""The browser harness proves itself on pages that need no FL deployment: the UI serves this project's location,
``train_model``'s op graph is drawn, the Launchpad keeps pasted YAML, and a run page shows its run's status."""

from playwright.sync_api import Page

from flip_pipelines_tests.ui.harness import (
    UIStack,
    launchpad_yaml,
    open_job,
    open_launchpad,
    open_run,
    set_launchpad_yaml,
    shot,
    wait_for_ops,
    wait_for_run_status,
)

TRAIN_MODEL_OPS = ["resolve_backend", "validate_clients", "bundle", "presign", "submit", "monitor"]


def test_train_model_page_draws_its_op_graph(page: Page, ui_stack: UIStack) -> None:
    open_job(page, "train_model")
    shown = wait_for_ops(page, TRAIN_MODEL_OPS)
    assert sorted(shown) == sorted(TRAIN_MODEL_OPS), "the op graph shows exactly train_model's six ops"
    assert shot(page, "train_model-op-graph").stat().st_size > 10_000


def test_launchpad_keeps_pasted_nested_yaml(page: Page, ui_stack: UIStack) -> None:
    """A paste (``keyboard.insert_text``) keeps nested YAML as written; typed YAML would be auto-indented."""
    yaml_text = "ops:\n  monitor:\n    config:\n      deadline_seconds: 600.0\n"
    open_launchpad(page, "train_model")
    set_launchpad_yaml(page, yaml_text)
    assert launchpad_yaml(page) == yaml_text
    shot(page, "train_model-launchpad-pasted")


def test_run_page_shows_the_status_of_a_finished_run(page: Page, ui_stack: UIStack) -> None:
    """queue_watchdog needs no config or net: its run goes queued → started → success through the daemon."""
    run_id = ui_stack.launch("queue_watchdog")
    assert ui_stack.wait_for_run(run_id, timeout=120) == "SUCCESS"
    open_run(page, run_id)
    # the page may first draw the run as it was when the page asked: it catches up by polling
    assert wait_for_run_status(page, "Success", timeout=30) == "Success"
    assert page.get_by_text(run_id[:8], exact=True).first.is_visible(), "the header names the run by its short id"
    shot(page, "queue_watchdog-run-success")
