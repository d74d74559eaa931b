"""Datastores that check what a client names before anything is read or written.

Image ids and label tags must match a plain pattern and resolve inside the studies folder (MONAI Label's
local datastore joins them to its root, so ``/abs/path`` or ``../..`` would write anywhere); files reached
through a symlink out of the folder are not served. A label must be for a known image and carry a category
(params ``{"category": ...}`` or a JSON file ``{"category": ...}``). DICOMweb image ids must be series UIDs
the PACS listed. A refusal is a 4xx answer, leaves the datastore as it was and deletes the upload.
"""

from __future__ import annotations

import json
import os
import re

from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

from lib.uploads import discard

MAX_LABEL_BYTES = 64 * 1024
#: the image info key holding an image's score under the current model: written by the server only
SCORE_KEY = "deepmcat"
IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LABEL_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SERIES_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
CATEGORY_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


def checked_image_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not IMAGE_ID.fullmatch(image_id) or ".." in image_id:
        raise HTTPException(status_code=400, detail=f"image id {str(image_id)[:40]!r} is not valid (letters, digits, "
                                                    "'.', '_' and '-', at most 128 characters)")
    return image_id


def checked_tag(tag: str) -> str:
    if not isinstance(tag, str) or not LABEL_TAG.fullmatch(tag):
        raise HTTPException(status_code=400, detail=f"label tag {str(tag)[:40]!r} is not valid (letters, digits, "
                                                    "'_' and '-', at most 64 characters)")
    return tag


def inside(root: str, path: str) -> bool:
    """Whether ``path`` (links resolved) lies inside ``root``."""
    root = os.path.realpath(root)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


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
    if len(category) > 128 or CATEGORY_FORBIDDEN.search(category):
        raise HTTPException(status_code=400, detail=f"category {category[:40]!r} is not a valid name "
                                                    "(at most 128 characters, no slashes or control characters)")
    return category


class CategoryLocalDatastore(LocalDatastore):
    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        try:
            name = os.path.basename(image_filename)
            if not any(name.endswith(ext.replace("*", "")) for ext in self._extensions):
                raise HTTPException(status_code=415, detail=f"the datastore keeps {', '.join(self._extensions)} files")
            if image_id:
                checked_image_id(image_id)
            info = {k: v for k, v in (image_info or {}).items() if k != SCORE_KEY}  # a client cannot forge scores
            return super().add_image(image_id, image_filename, info)
        finally:
            discard(image_filename)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        try:
            checked_tag(label_tag)
            if image_id not in self._datastore.objects:
                raise HTTPException(status_code=404, detail=f"image {str(image_id)[:80]!r} is not in the datastore")
            if label_tag == DefaultLabelTag.FINAL.value:
                label_info = dict(label_info or {}, category=checked_category(label_filename, label_info))
            return super().save_label(image_id, label_filename, label_tag, label_info)
        finally:
            discard(label_filename)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        checked_tag(label_tag)
        if not self.get_label_uri(label_id, label_tag):
            raise HTTPException(status_code=404, detail=f"no {label_tag!r} label for image {str(label_id)[:80]!r}")
        super().remove_label(label_id, label_tag)

    def get_image_uri(self, image_id: str) -> str:
        path = super().get_image_uri(image_id)
        return path if path and inside(self._datastore.image_path(), path) else ""

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        if not isinstance(label_tag, str) or not LABEL_TAG.fullmatch(label_tag):
            return ""
        path = super().get_label_uri(label_id, label_tag)
        return path if path and inside(self._datastore.label_path(label_tag), path) else ""


class CategoryDICOMWebDatastore(DICOMWebDatastore):
    def get_image_uri(self, image_id: str) -> str:
        """The cached series folder of a series the PACS listed; anything else is not an image here."""
        if not isinstance(image_id, str) or len(image_id) > 64 or not SERIES_UID.fullmatch(image_id) \
                or image_id not in self.list_images():
            return ""
        return super().get_image_uri(image_id)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict, label_id: str = ""):
        discard(label_filename)
        raise HTTPException(status_code=501, detail="categories cannot be saved into a DICOMweb PACS yet: "
                                                    "label series served from a studies folder")
