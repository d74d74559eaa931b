#!/usr/bin/env bash
# Start Debian's Orthanc with its DICOMweb plugin as a PACS for DeepMCAT, in the foreground:
#   bash scripts/start_orthanc.sh [HTTP_PORT] [STORAGE_DIR]
# HTTP (REST + DICOMweb at http://127.0.0.1:PORT/dicom-web) answers only this machine (RemoteAccessAllowed
# false), needs no credentials there, and the DICOM port is off. Storage and config live in STORAGE_DIR
# (default: a new temporary folder). Install first: apt-get install -y orthanc orthanc-dicomweb
set -euo pipefail
PORT=${1:-8042}
STORAGE=${2:-$(mktemp -d -t deepmcat-orthanc-XXXXXX)}
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
  "Plugins": ["$PLUGIN"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "Host": "127.0.0.1", "Ssl": false}
}
JSON
echo "Orthanc on http://127.0.0.1:$PORT (DICOMweb: http://127.0.0.1:$PORT/dicom-web), storage $STORAGE"
exec Orthanc "$STORAGE/orthanc.json"
