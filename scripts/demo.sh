#!/usr/bin/env bash
# The quickstart: builds nothing itself (make demo builds bin/auditwatch) and
# runs the main job on the embedded default over the bundled demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
bin/auditwatch version
