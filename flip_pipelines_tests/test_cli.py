"""The ``flip-pipelines`` command as users run it: a real subprocess against real databases."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from flip_pipelines.cli import cli, main
from flip_pipelines.db.engine import make_engine
from flip_pipelines.demo_models import demo_model_dir
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.flip_hub.flip_job_templates import flip_shaped_templates, write_templates

EXE = str(Path(sys.executable).parent / "flip-pipelines")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def ok(args: list[str], env: dict[str, str], cwd: Path) -> str:
    result = run(args, env, cwd)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout.strip()


def table_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = ["fl_nets", "fl_scheduler", "trust", "fl_kit_slot", "projects", "model", "fl_job", "fl_job_trust",
                      "model_trust_intersect", "fl_logs", "site_config"]
            return {t: connection.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
    finally:
        engine.dispose()


@pytest.fixture(params=["default-sqlite", "postgres"])
def cli_env(request: pytest.FixtureRequest, tmp_path: Path, s3_server: LocalS3) -> tuple[dict[str, str], str]:
    """Environment for the CLI and the database URL it will use (the embedded default, or FLIP_DATABASE_URL), with
    the session's S3 server and a fresh model bucket (enqueue checks the model's files there)."""
    env = {k: v for k, v in os.environ.items() if k != "FLIP_DATABASE_URL"}
    env["FLIP_DATA_DIR"] = str(tmp_path / "data")
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    env.update(FLIP_S3_ENDPOINT_URL=s3_server.endpoint_url, AWS_ACCESS_KEY_ID=s3_server.access_key,
               AWS_SECRET_ACCESS_KEY=s3_server.secret_key, FLIP_MODEL_BUCKET=bucket)
    if request.param == "postgres":
        server_url = request.getfixturevalue("postgres_server_url")
        from flip_pipelines.local.postgres import create_database

        url = create_database(server_url, f"cli_{uuid.uuid4().hex[:10]}")
        env["FLIP_DATABASE_URL"] = url
        return env, url
    return env, f"sqlite:///{tmp_path / 'data' / 'flip.db'}"


def in_process(env: dict[str, str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``ok`` without a new interpreter per command: the same ``main`` with the same environment and folder."""
    for key in [k for k in os.environ if k.startswith(("FLIP_", "AWS_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith(("FLIP_", "AWS_")):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)

    def call(args: list[str]) -> str:
        code = main(args)
        captured = capsys.readouterr()
        assert code == 0, f"{args}: {captured.err}"
        return captured.out.strip()

    return call


def test_cli_flow_from_empty_database(cli_env: tuple[dict[str, str], str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The installed command for the first and the queue-changing steps, ``main`` in-process for the rest."""
    env, url = cli_env
    assert "revision 0002" in ok(["db", "upgrade"], env, tmp_path)
    run_main = in_process(env, tmp_path, monkeypatch, capsys)
    run_main(["nets", "add", "net-a", "--endpoint", "http://127.0.0.1:18101", "--backend", "nvflare"])
    run_main(["nets", "add", "net-b", "--endpoint", "http://127.0.0.1:18102", "--backend", "FLOWER"])
    run_main(["trusts", "add", "Trust_1", "--slot", "site-1"])
    run_main(["trusts", "add", "Trust_2", "--slot", "site-2"])
    run_main(["projects", "add", "proj", "--query", "SELECT * FROM cohort"])
    model_id = uuid.UUID(run_main(["models", "add", "m1", "--project", "proj"]))
    run_main(["models", "upload", str(model_id), str(demo_model_dir("nvflare_logreg"))])
    check = run_main(["models", "check", str(model_id)]).splitlines()
    assert check[0] == f"model m1 ({model_id})" and check[1].startswith("  nvflare: OK — nvflare/standard bundle")
    assert check[2:] == ["  flower: NOT OK",
                         "    - Missing required files for job type standard on flower: client_app.py"]
    checked = json.loads(run_main(["models", "check", str(model_id), "--backend", "nvflare", "--json"]))
    assert [(b["backend"], b["ok"], b["net_registered"]) for b in checked["backends"]] == [("nvflare", True, True)]
    # net-a bundles from a folder of its own (FLIP's FL_APP_BASE_DIR shape) that has no standard template
    folder = write_templates(tmp_path / "fl-apps", {k: v for k, v in flip_shaped_templates().items()
                                                    if "/standard/" not in k})
    monkeypatch.setenv("FLIP_NET_OPTIONS", json.dumps({"net-a": {"preset": "flip", "base_app_source": str(folder)}}))
    assert main(["models", "check", str(model_id), "--backend", "nvflare"]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  nvflare: NOT OK",
        f"    - no nvflare base application for job type 'standard' (base applications in {folder})"]
    monkeypatch.delenv("FLIP_NET_OPTIONS")
    job_id = uuid.UUID(ok(["enqueue", str(model_id), "--trust", "Trust_1", "--trust", "Trust_2"], env, tmp_path))

    state = json.loads(run_main(["queue", "--json"]))
    assert state["queued"] == [
        {"position": 1, "fl_job_id": str(job_id), "model_id": str(model_id), "created": state["queued"][0]["created"]}
    ]
    assert [(n["name"], n["fl_backend"], n["status"]) for n in state["nets"]] == [
        ("net-a", "nvflare", "AVAILABLE"),
        ("net-b", "flower", "AVAILABLE"),
    ]
    table = run_main(["queue"])
    assert str(job_id) in table and "net-b" in table and "AVAILABLE" in table
    nets = json.loads(run_main(["nets", "list", "--json"]))
    assert {n["name"] for n in nets} == {"net-a", "net-b"}

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            model_key = model_id.hex if url.startswith("sqlite") else model_id
            row = connection.execute(sa.text("SELECT status FROM fl_job WHERE model_id = :m"), {"m": model_key}).one()
            trusts = connection.execute(sa.text("SELECT count(*) FROM fl_job_trust")).scalar_one()
    finally:
        engine.dispose()
    assert row.status == "QUEUED" and trusts == 2


def test_cli_bad_input_exits_with_one_line_and_writes_nothing(
    cli_env: tuple[dict[str, str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env, url = cli_env
    for key in ("FLIP_DATABASE_URL", "FLIP_DATA_DIR", "FLIP_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "FLIP_MODEL_BUCKET"):
        monkeypatch.delenv(key, raising=False)
        if key in env:
            monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(tmp_path)

    def invoke(args: list[str]) -> tuple[int, str, str]:
        code = main(args)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    for args in (
        ["db", "upgrade"],
        ["nets", "add", "net-a", "--endpoint", "http://127.0.0.1:18101", "--backend", "nvflare"],
        ["trusts", "add", "Trust_1"],
        ["projects", "add", "proj", "--query", "SELECT 1"],
    ):
        assert invoke(args)[0] == 0, args
    code, model_id, _ = invoke(["models", "add", "m1", "--project", "proj"])
    model_id = model_id.strip()
    assert invoke(["models", "upload", model_id, str(demo_model_dir("flower_logreg"))])[0] == 0
    assert invoke(["trusts", "add", "Trust_2"])[0] == 0, "registered after m1: not approved for it"
    before = table_counts(url)
    cases = [
        (["enqueue", str(uuid.uuid4()), "--trust", "Trust_1"], "not found"),
        (["enqueue", model_id, "--trust", "Trust_1", "--trust", "Nobody"], "unknown trust(s): Nobody"),
        (["enqueue", "not-a-uuid", "--trust", "Trust_1"], "not a UUID"),
        (["enqueue"], "Missing argument 'MODEL_ID'"),
        (["enqueue", model_id, "--trust", "Trust_2"], "not approved for model m1: Trust_2"),
        (["models", "approve", model_id, "--trust", "Nobody"], "unknown trust(s): Nobody"),
        (["enqueue", model_id, "--trust", "Trust_1"],
         "model m1 cannot be queued: its files suit no registered backend (nvflare: Missing required files for job "
         "type standard on nvflare: trainer.py, validator.py)"),
        (["models", "check", model_id, "--backend", "nvflare"], "model m1 suits none of: nvflare"),
        (["models", "check", str(uuid.uuid4())], "not found"),
        (["nets", "add", "net-a", "--endpoint", "http://127.0.0.1:1", "--backend", "nvflare"], "already exists"),
        (["nets", "add", "net-z", "--endpoint", "http://127.0.0.1:18101", "--backend", "flower"], "endpoint"),
        (["nets", "add", "net-z", "--endpoint", "http://127.0.0.1:2", "--backend", "tensorflow"], "unknown FL backend"),
        (["nets", "add", "net-z", "--endpoint", "ftp://host", "--backend", "flower"], "not an http(s) URL"),
        (["trusts", "add", "Trust_1"], "already exists"),
        (["models", "add", "m2", "--project", "nope"], "project 'nope' not found"),
        (["projects", "add", "proj", "--query", "SELECT 2"], "already exists"),
    ]
    for args, reason in cases:
        code, _, err = invoke(args)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1, (args, err)
        assert lines[0].startswith("error: ") and reason in lines[0], (args, err)
    monkeypatch.setenv("FLIP_NET_OPTIONS", '{"net-a": {"preset": "flip", "base_app_source": "fl-apps"}}')
    code, _, err = invoke(["models", "check", model_id])
    assert code == 1 and err.splitlines() == ["error: FLIP_NET_OPTIONS: net 'net-a': base_app_source must be package, "
                                              "s3://bucket/prefix or an absolute folder path, not 'fl-apps'"], err
    monkeypatch.delenv("FLIP_NET_OPTIONS")
    assert table_counts(url) == before
    # the same through the installed command, once: a real exit status and stderr
    result = run(["enqueue", model_id, "--trust", "Nobody"], env, tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == "error: unknown trust(s): Nobody"
    assert table_counts(url) == before


def test_cli_refuses_unmigrated_database(tmp_path: Path) -> None:
    env = {**os.environ, "FLIP_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = run(["queue"], env, tmp_path)
    assert result.returncode == 1
    assert "'flip-pipelines db upgrade'" in result.stderr and not (tmp_path / 'empty.db').exists()


def _all_command_paths(group: click.Group, prefix: list[str]) -> list[list[str]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += _all_command_paths(command, [*prefix, name])
        else:
            paths.append([*prefix, name])
    return paths


def test_every_command_has_help() -> None:
    runner = CliRunner()
    paths = _all_command_paths(cli, [])
    assert ["nets", "add"] in paths and ["enqueue"] in paths and ["dev"] in paths
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path
        assert len(result.output.splitlines()) > 3, path


def test_main_returns_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["nets", "add"]) == 2
    assert "see 'flip-pipelines nets add --help'" in capsys.readouterr().err


def test_a_command_run_where_no_database_is_says_which_it_looked_for_and_creates_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIP_")}
    result = run(["queue"], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no queue database at {tmp_path / '.flip' / 'flip.db'}: run this in the folder 'make dev' runs in "
        f"(the data folder, $FLIP_DATA_DIR, is {tmp_path / '.flip'} here), point FLIP_DATABASE_URL at it, or "
        "create it with 'flip-pipelines db upgrade'"]
    assert list(tmp_path.iterdir()) == [], "looking for the database created nothing"
