#!/usr/bin/env bash
# Real LocalStack (localstack-core 4.14.0) in host mode, without Docker, for `make test-localstack`.
#
#   .ci/localstack.sh install          create .venv-localstack from .ci/localstack-requirements.txt
#   .ci/localstack.sh run CMD [ARG..]  start LocalStack on a free loopback port, run CMD with
#                                      CLOUDLAB_BACKEND=localstack and LOCALSTACK_HOST set, stop it
#
# LocalStack keeps its state and log in .cloudlab-localstack/ under the checkout, and is stopped by
# its pid whatever CMD does; when CMD fails, the end of LocalStack's log is printed.
# How LocalStack runs here, and what it does not serve: README, section "LocalStack".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv-localstack
REQUIREMENTS=$ROOT/.ci/localstack-requirements.txt
STATE=$ROOT/.cloudlab-localstack
# Services LocalStack serves for the course; Lambda, IAM, DynamoDB and Logs come from cloudlab's
# embedded emulator under CLOUDLAB_BACKEND=localstack (see cloudlab/backend/__init__.py).
# events: notebook 04's EventBridge rule delivers to a queue in LocalStack's SQS, so the rule must
# live in LocalStack too (moto's EventBridge could not reach that queue).
SERVICES=s3,sqs,sns,sts,cloudwatch,ec2,secretsmanager,events
START_TIMEOUT=${LOCALSTACK_START_TIMEOUT:-90}

die() { echo "localstack.sh: $*" >&2; exit 1; }

python313() {
    if [ -n "${LOCALSTACK_PYTHON:-}" ]; then
        "$LOCALSTACK_PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null \
            || die "LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON is not a Python 3.13 (LocalStack 4.14 needs 3.13)"
        echo "$LOCALSTACK_PYTHON"; return
    fi
    local prefix
    if command -v pyenv >/dev/null 2>&1 && prefix=$(pyenv prefix 3.13.0 2>/dev/null) && [ -x "$prefix/bin/python3.13" ]; then
        echo "$prefix/bin/python3.13"; return
    fi
    if command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
        command -v python3.13; return
    fi
    die "LocalStack 4.14 needs Python 3.13, and none was found (tried \$LOCALSTACK_PYTHON, \`pyenv prefix 3.13.0\`, python3.13 on PATH).
Install it (\`pyenv install 3.13.0\`) or set LOCALSTACK_PYTHON=/path/to/python3.13."
}

install() {
    local python
    python=$(python313)
    echo "localstack.sh: installing localstack-core 4.14.0 into .venv-localstack with $python ($("$python" --version))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    # Every package pinned; pip's "WARNING: Location ... is ignored" lines about this machine's
    # local indexes are noise.
    # --no-compile: byte-compiling all ~500 MB costs more than compiling the few modules LocalStack imports.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile -r "$REQUIREMENTS" 2>&1 \
        | { grep -v "^WARNING: Location" || true; }
    "$VENV/bin/python" -c 'import localstack.runtime.main, localstack.version; print("localstack.sh: localstack-core", localstack.version.__version__, "installed")' \
        || die "the install finished but localstack does not import; see the pip output above"
    touch "$VENV/.installed-stamp"
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

healthy() {
    "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/_localstack/health", timeout=2).close()' "$1" 2>/dev/null
}

LOCALSTACK_PID=
stop() {
    if [ -n "$LOCALSTACK_PID" ] && kill -0 "$LOCALSTACK_PID" 2>/dev/null; then
        kill "$LOCALSTACK_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$LOCALSTACK_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$LOCALSTACK_PID" 2>/dev/null || true
        wait "$LOCALSTACK_PID" 2>/dev/null || true
        echo "localstack.sh: LocalStack (pid $LOCALSTACK_PID) stopped"
    fi
    LOCALSTACK_PID=
}

dump_log() {
    echo "---- last 80 lines of LocalStack's log ($STATE/localstack.log) ----" >&2
    tail -n 80 "$STATE/localstack.log" >&2 || true
    echo "---- end of LocalStack's log ----" >&2
}

run() {
    [ $# -gt 0 ] || die "run needs a command"
    [ -x "$VENV/bin/python" ] || die ".venv-localstack is missing: run \`.ci/localstack.sh install\` (make test-localstack does)"
    rm -rf "$STATE" && mkdir -p "$STATE/home"
    local port
    port=$(free_port)
    trap 'stop' EXIT INT TERM
    # A clean environment: nothing of the course's AWS_* settings leaks into LocalStack.
    # OVERRIDE_IN_DOCKER=0: this machine has /.dockerenv, and LocalStack would otherwise write to
    # /var/lib/localstack. S3_SKIP_SIGNATURE_VALIDATION=0: presigned URLs are checked, as on AWS.
    (cd "$STATE" && exec env -i PATH="$PATH" HOME="$STATE/home" LANG=C.UTF-8 \
        GATEWAY_LISTEN="127.0.0.1:$port" SERVICES="$SERVICES" FILESYSTEM_ROOT="$STATE/fs" \
        OVERRIDE_IN_DOCKER=0 DISABLE_EVENTS=1 LOCALSTACK_TELEMETRY_DISABLED=1 SKIP_SSL_CERT_DOWNLOAD=1 \
        DNS_ADDRESS=0 S3_SKIP_SIGNATURE_VALIDATION=0 \
        "$VENV/bin/python" -m localstack.runtime.main) > "$STATE/localstack.log" 2>&1 &
    LOCALSTACK_PID=$!
    echo "$LOCALSTACK_PID" > "$STATE/pid"
    local url="http://127.0.0.1:$port" started=$SECONDS
    until healthy "$url"; do
        if ! kill -0 "$LOCALSTACK_PID" 2>/dev/null; then
            dump_log; LOCALSTACK_PID=; die "LocalStack exited during start-up (log above)"
        fi
        if [ $((SECONDS - started)) -ge "$START_TIMEOUT" ]; then
            dump_log; die "LocalStack did not answer $url/_localstack/health within $START_TIMEOUT s (log above)"
        fi
        sleep 0.25
    done
    echo "localstack.sh: LocalStack up at $url (pid $LOCALSTACK_PID) in $((SECONDS - started)) s"
    local status=0
    CLOUDLAB_BACKEND=localstack LOCALSTACK_HOST="127.0.0.1:$port" "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        dump_log
        echo "localstack.sh: \`$*\` failed (exit $status)" >&2
    fi
    stop
    return "$status"
}

case "${1:-}" in
    install) install ;;
    run) shift; run "$@" ;;
    *) die "usage: $0 install | run CMD [ARG...]" ;;
esac
