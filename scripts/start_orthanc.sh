#!/usr/bin/env bash
# Start Debian's Orthanc with its DICOMweb plugin as a PACS for DeepMCAT, in the foreground:
#   bash scripts/start_orthanc.sh [HTTP_PORT] [STORAGE_DIR]
# HTTP (REST + DICOMweb at http://127.0.0.1:PORT/dicom-web) answers only this machine (RemoteAccessAllowed
# false), needs no credentials there, and the DICOM port is off. Storage and config live in STORAGE_DIR
# (default: a new temporary folder). A series is announced stable (what `deepmcat watch` waits for) after
# ORTHANC_STABLE_AGE seconds without a new instance (default 60, Orthanc's own). The series metadata that
# `deepmcat watch` writes (DeepMCATCategory, DeepMCATConfidence, DeepMCATModel, DeepMCATError) is declared.
# Install first: apt-get install -y orthanc orthanc-dicomweb
set -euo pipefail
PORT=${1:-8042}
STORAGE=${2:-$(mktemp -d -t deepmcat-orthanc-XXXXXX)}
STABLE_AGE=${ORTHANC_STABLE_AGE:-60}
PLUGIN=${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}
command -v Orthanc >/dev/null || { echo "Orthanc is not installed: apt-get install -y orthanc orthanc-dicomweb" >&2; exit 2; }
[ -f "$PLUGIN" ] || { echo "the DICOMweb plugin is missing ($PLUGIN): apt-get install -y orthanc-dicomweb" >&2; exit 2; }
mkdir -p "$STORAGE/db"
cat > "$STORAGE/orthanc.json" <<JSON
{
  "Name": "DeepMCAT-PACS",
  "StorageDirectory": "$STORAGE/db",
  "IndexDirectory": "$STORAGE/db",
  "HttpPort": $PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "HttpCompressionEnabled": false,
  "StableAge": $STABLE_AGE,
  "UserMetadata": {"DeepMCATCategory": 4601, "DeepMCATConfidence": 4602, "DeepMCATModel": 4603, "DeepMCATError": 4604},
  "Plugins": ["$PLUGIN"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "Host": "127.0.0.1", "Ssl": false}
}
JSON
echo "Orthanc on http://127.0.0.1:$PORT (DICOMweb: http://127.0.0.1:$PORT/dicom-web), storage $STORAGE"
exec Orthanc "$STORAGE/orthanc.json"
