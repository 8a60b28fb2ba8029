#!/usr/bin/env bash
# Prints requirements.lock for the environment of the given python: every installed distribution at its exact
# version (pip freeze, the project itself left out). Local build labels are dropped (torch 2.13.0+cpu is
# locked as 2.13.0), so the same lock serves CPU Linux, CUDA Linux and macOS, where pip picks the build.
set -euo pipefail
python=${1:?usage: tools/write-lock.sh PYTHON}
echo "# The exact versions the test suite last passed with ($(uname -s) $(uname -m), Python $("$python" -c 'import platform; print(platform.python_version())')), written by"
echo "# \`make upgrade\`. \`make demo\`, \`make test\` and CI install with it as pip constraints (-c): a package the"
echo "# platform does not need is not installed. pyproject.toml keeps the ranges for installs into your own environment."
"$python" -m pip freeze --exclude-editable | grep -v '^-e ' | sed -E 's/\+[A-Za-z0-9.]+$//' | LC_ALL=C sort -f
