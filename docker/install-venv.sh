#!/bin/sh
# Fill /opt/venv in docker/Dockerfile's builder stages, from the sources they
# copy to /src (the working directory):
#
#   install-venv.sh core                           the venv, with shared/core
#   install-venv.sh <runtime>[extras] [REQ...]     add runtimes/<runtime> (and REQs)
#
# pip runs from a venv of its own (/opt/pip) and installs into /opt/venv with
# --python, so the venv the image ships holds the runtime's dependencies and
# nothing else: no pip, no setuptools. Non-editable installs, versions pinned by
# constraints.txt, no pip cache; the packages' own test suites and C headers go.
# A runtime names the core as ./shared/core (shared/build-backend), so its
# install builds the core again from the same sources; the core's dependencies
# are already in the venv.
set -eu
PIP_VERSION=26.3

target="$1"
shift
name="${target%%\[*}"
extras="${target#"$name"}"
if [ "$name" = core ]; then
    python3.11 -m venv /opt/pip
    /opt/pip/bin/python -m pip install --no-cache-dir --quiet "pip==$PIP_VERSION"
    python3.11 -m venv --without-pip /opt/venv
    source=shared/core
else
    source="runtimes/$name"
fi
/opt/pip/bin/python -m pip --python /opt/venv/bin/python install --no-cache-dir \
    -c constraints.txt "./$source$extras" "$@"

site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
find "$site" -depth -type d -name tests -exec rm -rf {} +
find "$site" -mindepth 2 -maxdepth 2 -type d -name include -exec rm -rf {} +
