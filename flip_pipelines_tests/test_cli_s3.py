"""CLI commands that write to S3, against the session's real S3 server."""

import os
import uuid
from pathlib import Path

import pytest

from flip_pipelines.cli import main
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import list_keys


@pytest.fixture
def s3_env(s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch) -> str:
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("FLIP_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("FLIP_MODEL_BUCKET", bucket)
    return bucket


def _model_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "lib").mkdir(parents=True)
    (folder / "trainer.py").write_text("def train(w, c):\n    return w, 1, {}\n")
    (folder / "config.json").write_text("{}")
    (folder / "lib" / "util.py").write_text("X = 1\n")
    return folder


def test_models_upload_puts_the_folder_under_the_model_id(
    s3_env: str, s3_server: LocalS3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_id = str(uuid.uuid4())
    client = s3_server.client()
    client.put_object(Bucket=s3_env, Key=f"{model_id}/stale.py", Body=b"old")
    assert main(["models", "upload", model_id, str(_model_folder(tmp_path))]) == 0
    assert "uploaded 3 file(s)" in capsys.readouterr().out
    keys = list_keys(client, s3_env, f"{model_id}/")
    assert sorted(keys) == [f"{model_id}/config.json", f"{model_id}/lib/util.py", f"{model_id}/trainer.py"]
    body = client.get_object(Bucket=s3_env, Key=f"{model_id}/lib/util.py")["Body"].read()
    assert body == b"X = 1\n"


@pytest.mark.parametrize("problem", ["symlink", "too-big", "empty", "missing"])
def test_models_upload_refuses_and_uploads_nothing(
    problem: str, s3_env: str, s3_server: LocalS3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_id = str(uuid.uuid4())
    folder = _model_folder(tmp_path)
    args = ["models", "upload", model_id, str(folder)]
    if problem == "symlink":
        os.symlink("/etc/hostname", folder / "lib" / "link.py")
        expected = "refusing symlinks in the model folder: lib/link.py"
    elif problem == "too-big":
        (folder / "weights.bin").write_bytes(b"\0" * 2048)
        args += ["--max-file-bytes", "1024"]
        expected = "weights.bin (2048 bytes)"
    elif problem == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
        args[3] = str(folder)
        expected = "holds no files"
    else:
        args[3] = str(tmp_path / "nowhere")
        expected = "is not a folder"
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
    assert list_keys(s3_server.client(), s3_env, f"{model_id}/") == {}


def test_templates_sync_writes_every_packaged_template(s3_env: str, s3_server: LocalS3) -> None:
    bucket = f"base-{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="apps/nvflare/standard/stale.json", Body=b"{}")
    assert main(["templates", "sync", f"s3://{bucket}/apps"]) == 0
    keys = set(list_keys(client, bucket, "apps/"))
    assert "apps/nvflare/standard/meta.json" in keys
    assert "apps/nvflare/_common/app_client/custom/flip_executor.py" in keys
    assert "apps/flower/standard/pyproject.toml" in keys and "apps/flower/_common/server_app.py" in keys
    assert "apps/nvflare/standard/stale.json" not in keys
