#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, clippy, every test.
#
#   scripts/test.sh
#
# It installs and starts what the tests need when it is missing:
#   - RabbitMQ (Debian's rabbitmq-server) on 127.0.0.1:5672, unless AMQP_ADDR
#     points at a broker that is already up;
#   - a Python virtualenv with the OpenTelemetry SDK and rotel (a Rust OTLP
#     collector shipped in a PyPI wheel), used as independent peers.
# It fails with a clear message when it cannot.
#
# Environment:
#   AMQP_ADDR          broker to use (default amqp://guest:guest@127.0.0.1:5672/%2f)
#   OTEL_TEST_VENV     where the virtualenv lives (default .venv in the repository)
#   CARGO_TARGET_DIR   honoured as usual (CI may point it at a cache)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# --- RabbitMQ ---------------------------------------------------------------

export AMQP_ADDR=${AMQP_ADDR:-amqp://guest:guest@127.0.0.1:5672/%2f}

amqp_host_port() {
    # amqp://user:pass@host:port/vhost -> host port
    local rest=${AMQP_ADDR#*://}
    rest=${rest#*@}
    rest=${rest%%/*}
    local host=${rest%%:*} port=5672
    [[ $rest == *:* ]] && port=${rest##*:}
    echo "$host" "$port"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_rabbitmq() {
    read -r host port < <(amqp_host_port)
    if port_open "$host" "$port"; then
        echo "RabbitMQ reachable at $host:$port"
        return
    fi
    if [[ $host != 127.0.0.1 && $host != localhost ]]; then
        die "AMQP_ADDR=$AMQP_ADDR is not reachable, and only a local broker can be started here"
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        step "installing rabbitmq-server (Debian)"
        command -v apt-get >/dev/null 2>&1 || die "rabbitmq-server is missing and apt-get is not available; install RabbitMQ or set AMQP_ADDR"
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo -n"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q rabbitmq-server >/tmp/rabbitmq-install.log 2>&1 || {
            DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q >>/tmp/rabbitmq-install.log 2>&1 &&
                DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q rabbitmq-server >>/tmp/rabbitmq-install.log 2>&1
        } || die "could not install rabbitmq-server (log: /tmp/rabbitmq-install.log); install RabbitMQ or set AMQP_ADDR"
        # The package may start a service bound to every interface; stop it and
        # run our own on loopback only.
        $sudo rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
    step "starting RabbitMQ on 127.0.0.1:$port"
    # Loopback only: AMQP, the Erlang port mapper and the distribution port.
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        rabbitmq-server -detached >/tmp/rabbitmq-start.log 2>&1 ||
        die "rabbitmq-server did not start (log: /tmp/rabbitmq-start.log)"
    for _ in $(seq 1 60); do
        if port_open 127.0.0.1 "$port" && rabbitmqctl -q status >/dev/null 2>&1; then
            echo "RabbitMQ is up"
            return
        fi
        sleep 1
    done
    die "RabbitMQ did not come up on 127.0.0.1:$port within 60 s (see /tmp/rabbitmq-start.log and /var/log/rabbitmq)"
}

# --- Python peers -------------------------------------------------------------

export OTEL_TEST_VENV=${OTEL_TEST_VENV:-$ROOT/.venv}
PY_PACKAGES=(opentelemetry-sdk opentelemetry-exporter-otlp opentelemetry-proto grpcio rotel prometheus-client)

ensure_python() {
    local py=$OTEL_TEST_VENV/bin/python
    if [[ -x $py ]] && "$py" -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp, opentelemetry.proto, grpc, rotel, prometheus_client.parser' 2>/dev/null; then
        echo "Python peers ready in $OTEL_TEST_VENV"
    else
        step "creating virtualenv $OTEL_TEST_VENV with ${PY_PACKAGES[*]}"
        command -v python3 >/dev/null 2>&1 || die "python3 is required for the interoperability tests"
        python3 -m venv "$OTEL_TEST_VENV" || die "could not create a virtualenv at $OTEL_TEST_VENV"
        "$py" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}" >/tmp/otel-test-pip.log 2>&1 ||
            die "pip could not install ${PY_PACKAGES[*]} (log: /tmp/otel-test-pip.log)"
    fi
    export OTEL_TEST_PYTHON=$py
    local agent
    agent=$("$py" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
    [[ -x $agent ]] || die "the rotel wheel has no executable rotel-agent at $agent"
    export ROTEL_AGENT=$agent
}

# --- Checks -------------------------------------------------------------------

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "lean feature sets build without warnings"
# What users get with default features off: no transport, one transport, no axum.
cargo clippy -p otel-export --no-default-features -- -D warnings
cargo clippy -p otel-export --no-default-features --features http -- -D warnings
cargo clippy -p otel-export --no-default-features --features grpc,tls -- -D warnings
cargo clippy -p otel-core --no-default-features -- -D warnings
cargo clippy -p otel-sampling --no-default-features -- -D warnings
cargo clippy -p otel-integrations --no-default-features --features http -- -D warnings
cargo clippy -p otel-collector --no-default-features -- -D warnings

step "cargo doc --workspace --no-deps, as docs.rs builds it (warnings are errors)"
RUSTDOC="$PWD/scripts/rustdoc-docsrs" RUSTDOCFLAGS="${RUSTDOCFLAGS:-} --cfg docsrs -D warnings" \
    cargo doc --workspace --no-deps --all-features --quiet
# Every feature-gated item says its feature.
doc_dir=${CARGO_TARGET_DIR:-target}/doc
for page in otel_integrations/reqwest/index.html:reqwest otel_integrations/grpc/index.html:grpc \
    otel_integrations/amqp/index.html:amqp otel_export/struct.RawCodec.html:grpc \
    otel_collector/sidecar/index.html:sidecar otel_core/testing/index.html:testing; do
    file=$doc_dir/${page%%:*}
    feature=${page##*:}
    grep -q "Available on <strong>crate feature <code>$feature</code></strong> only" "$file" ||
        die "$file does not show that it needs the \`$feature\` feature"
done

ensure_rabbitmq
ensure_python

step "cargo test --workspace"
cargo test --workspace --no-fail-fast

step "all checks passed"
