"""Demo models that really learn (NumPy only), used by tests, benchmarks and the local stack.

Each folder is exactly what a model owner uploads: ``flip-pipelines models upload MODEL_ID <folder>``.
"""

from pathlib import Path

DEMO_MODELS_DIR = Path(__file__).parent


def demo_model_dir(name: str) -> Path:
    path = DEMO_MODELS_DIR / name
    if not path.is_dir():
        raise FileNotFoundError(f"no demo model {name!r} in {DEMO_MODELS_DIR}")
    return path


def demo_model_files(name: str) -> dict[str, bytes]:
    root = demo_model_dir(name)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
