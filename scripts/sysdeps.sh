#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use (dcmtk as modality and
# workstation, Orthanc as the benchmark peer, Chromium for the viewer's browser tests), when
# they are missing and we are root.
set -eu
need=()
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc orthanc-dicomweb)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package starts a system Orthanc on 4242/8042; we run our own on free ports.
  (service orthanc stop || pkill -x Orthanc || true) >/dev/null 2>&1
else
  echo "missing Debian packages: ${need[*]} (install with: sudo apt-get install ${need[*]})" >&2
fi
