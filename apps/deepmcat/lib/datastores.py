"""Datastores that check a clinician's label before anything is written: the image must exist and the label
must carry a category (params ``{"category": ...}`` or a JSON file ``{"category": ...}``). A refused label
is a 4xx answer and leaves the datastore as it was."""

from __future__ import annotations

import json

from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

MAX_LABEL_BYTES = 64 * 1024


def label_file_category(path: str) -> str | None:
    """The ``category`` of a small JSON label file, or None when it is not one."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_LABEL_BYTES + 1)
        if len(data) > MAX_LABEL_BYTES:
            return None
        value = json.loads(data).get("category")
    except (OSError, ValueError, AttributeError):
        return None
    return value.strip() or None if isinstance(value, str) else None


def checked_category(label_filename: str, label_info: dict | None) -> str:
    value = (label_info or {}).get("category")
    category = value.strip() if isinstance(value, str) else None
    category = category or label_file_category(label_filename)
    if not category:
        raise HTTPException(status_code=400, detail='a DeepMCAT label needs a category: send params '
                                                    '{"category": "..."} or a JSON file {"category": "..."}')
    if len(category) > 128 or any(c in category for c in "/\\\0\n"):
        raise HTTPException(status_code=400, detail=f"category {category[:40]!r}... is not a valid name "
                                                    "(at most 128 characters, no slashes or newlines)")
    return category


class CategoryLocalDatastore(LocalDatastore):
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"image {image_id!r} is not in the datastore")
        if label_tag == DefaultLabelTag.FINAL.value:
            label_info = dict(label_info or {}, category=checked_category(label_filename, label_info))
        return super().save_label(image_id, label_filename, label_tag, label_info)


class CategoryDICOMWebDatastore(DICOMWebDatastore):
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict, label_id: str = ""):
        raise HTTPException(status_code=501, detail="categories cannot be saved into a DICOMweb PACS yet: "
                                                    "label series served from a studies folder")
