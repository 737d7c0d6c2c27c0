"""`backend serve` prints one shell line with the endpoint, dummy credentials and region (issue 12).

A tool that ignores AWS_ENDPOINT_URL then fails to authenticate on AWS instead of using a
student's real credentials.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from cloudlab.backend.serve import shell_export_line


def test_the_export_line_sets_endpoint_dummy_credentials_and_region():
    words = shlex.split(shell_export_line("http://127.0.0.1:4321"))
    assert words[0] == "export"
    assert dict(word.split("=", 1) for word in words[1:]) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4321", "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def test_serve_prints_it_and_a_shell_using_it_reaches_the_emulator(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CLOUDLAB_ENDPOINT"}
    env["CLOUDLAB_STATE_DIR"] = str(tmp_path)
    env["AWS_SESSION_TOKEN"] = "a-real-looking-token"  # what a student's shell may hold
    server = subprocess.Popen([sys.executable, "-m", "cloudlab", "backend", "serve"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        while not any(line.startswith("export ") for line in lines):
            line = server.stdout.readline()
            assert line, f"serve ended before printing an export line: {lines}"
            lines.append(line)
        export = next(line for line in lines if line.startswith("export "))
        assert sum(line.startswith("export ") for line in lines) == 1
        url = dict(word.split("=", 1) for word in shlex.split(export)[1:])["AWS_ENDPOINT_URL"]
        assert "--endpoint-url " + url in server.stdout.readline()
        script = (f"{export.strip()}; {shlex.quote(sys.executable)} -c "
                  + shlex.quote("import boto3; s3 = boto3.client('s3'); s3.create_bucket(Bucket='from-a-shell'); "
                                "print([b['Name'] for b in s3.list_buckets()['Buckets']])"))
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "from-a-shell" in done.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
