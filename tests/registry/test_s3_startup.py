"""The s3 backend refuses to start on a bucket that does not exist, or with credentials the
endpoint refuses: one line naming the bucket and the endpoint, exit status 1, instead of a
registry that answers 500 to everything. moto_server stands in for S3 (one with its IAM checks
on, for the credentials). A bucket that exists starts as before: test_processes.py's s3 tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.registry.conftest import MotoServer, wait_for_port
from tests.registry.test_processes import IN_CONFIG, s3_config


def start_registry(tmp_path: Path, config: str) -> subprocess.CompletedProcess:
    config_file = tmp_path / "registry.toml"
    config_file.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "dockyard", "registry", "--config", str(config_file),
         "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip


def assert_one_line_refusal(result: subprocess.CompletedProcess, *wanted: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in wanted:
        assert text in lines[0]


def test_a_missing_bucket_stops_the_start(tmp_path, moto_server):
    bucket = f"dockyard-missing-{uuid.uuid4().hex[:12]}"
    result = start_registry(tmp_path, s3_config(moto_server, bucket, tmp_path / "state"))
    assert_one_line_refusal(result, bucket, moto_server.endpoint, "does not exist")
    # gc, which builds the same backend, refuses alike.
    config_file = tmp_path / "registry.toml"
    gc = subprocess.run(
        [sys.executable, "-m", "dockyard", "registry", "--config", str(config_file), "gc"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    assert_one_line_refusal(gc, bucket, "does not exist")


def test_refused_credentials_stop_the_start(tmp_path):
    executable = shutil.which("moto_server")
    if executable is None:
        pytest.fail("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    with open(tmp_path / "moto.log", "wb") as log:
        # With no unauthenticated actions allowed, moto checks keys as S3 does.
        process = subprocess.Popen(
            [executable, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        )  # fmt: skip
    try:
        wait_for_port(port, timeout=30, process=process)
        moto = MotoServer(f"http://127.0.0.1:{port}")
        credentials = IN_CONFIG.replace('"testing"', '"wrong"')
        result = start_registry(
            tmp_path, s3_config(moto, "dockyard-any", tmp_path / "state", credentials=credentials)
        )
        assert_one_line_refusal(result, "dockyard-any", moto.endpoint, "refused our credentials")
    finally:
        process.terminate()
        process.wait(10)
