"""Shared fixtures of the binding tests: the repository's fixtures, the `edgevl` CLI (the other
implementation every test compares with) and the models.

The CLI is `$EDGEVL_BIN`, else `${CARGO_TARGET_DIR:-target}/debug/edgevl` (the test profile's
binary, which scripts/test-python.sh builds). SmolLM2 is fetched by scripts/fetch-smollm2.sh.
"""

import os
import subprocess
from pathlib import Path

import pytest

import edgevl

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"
# The threads every comparison uses on both sides (the CI machine has 2 cores).
THREADS = 2


def fixture(rel: str) -> str:
    return str(FIXTURES / rel)


TINY_LLM = fixture("tiny-llama-spm/model.gguf")
TINY_MMPROJ = fixture("tiny-vlm/mmproj.gguf")
# 900x500: relaxed matching tiles it (3x2 + a global view).
WIDE_PNG = fixture("vision/pipeline/input.png")


def edgevl_bin() -> str:
    if os.environ.get("EDGEVL_BIN"):
        return os.environ["EDGEVL_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    path = target / "debug" / "edgevl"
    if not path.exists():
        pytest.fail(f"{path} is missing: build it with `cargo build --profile test -p edgevl-cli` "
                    "(scripts/test-python.sh does) or set EDGEVL_BIN")
    return str(path)


def cli(*args: str, stdin: str | None = None) -> str:
    """stdout of `edgevl ARGS...` (stderr is shown when it fails)."""
    r = subprocess.run([edgevl_bin(), *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"edgevl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    r = subprocess.run([str(REPO / "scripts" / "fetch-smollm2.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"scripts/fetch-smollm2.sh failed:\n{r.stderr}")
    return r.stdout.strip()


@pytest.fixture(scope="session")
def smollm2(smollm2_path: str) -> edgevl.Model:
    return edgevl.Model(smollm2_path, threads=THREADS, ctx=2048)


@pytest.fixture(scope="session")
def vlm() -> edgevl.Model:
    """The tiny VLM: the tiny llama (width 64) with the tiny SigLIP-shaped mmproj (this project's
    layout); 4096 positions so a tiled image fits."""
    return edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=4096)
