"""Datastores that check what a client names before anything is read or written.

Image ids and label tags must match a plain pattern and resolve inside the studies folder (MONAI Label's
local datastore joins them to its root, so ``/abs/path`` or ``../..`` would write anywhere); files reached
through a symlink out of the folder are not served. A label must be for a known image and carry a category
(params ``{"category": ...}`` or a JSON file ``{"category": ...}``). DICOMweb image ids must be series UIDs
the PACS listed, and their categories are kept beside the server, not in the PACS. A refusal is a 4xx
answer, leaves the datastore as it was and deletes the upload.
"""

from __future__ import annotations

import json
import os
import re
import time

from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.exception import ImageNotFoundException

from deepmcat.jsonstore import JsonStore

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
    """A DICOMweb PACS as datastore, read-only: MONAI Label would store a final label in the PACS as a DICOM
    SEG, which a category is not. Categories and image scores are kept beside the server instead, in two
    small JSON files keyed by SeriesInstanceUID (:class:`deepmcat.jsonstore.JsonStore`: atomic, shared with
    the training subprocess); the PACS is only searched and retrieved from."""

    def __init__(self, *args, store_dir: str | os.PathLike, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = JsonStore(os.path.join(store_dir, "labels.json"))
        self.infos = JsonStore(os.path.join(store_dir, "image-info.json"))

    def listed(self, image_id: str) -> bool:
        return isinstance(image_id, str) and len(image_id) <= 64 and bool(SERIES_UID.fullmatch(image_id)) \
            and image_id in self.list_images()

    def get_image_uri(self, image_id: str) -> str:
        """The cached series folder of a series the PACS listed; anything else is not an image here."""
        return super().get_image_uri(image_id) if self.listed(image_id) else ""

    def get_image_info(self, image_id: str) -> dict:
        if not self.listed(image_id):
            return {}
        return dict(self.infos.read().get(image_id, {}), SeriesInstanceUID=image_id)

    def update_image_info(self, image_id: str, info: dict) -> None:
        self.update_image_infos({image_id: info})

    def update_image_infos(self, infos: dict[str, dict]) -> None:
        """Several images' info in one write (scoring a whole archive would otherwise rewrite it per image)."""
        unknown = [i for i in infos if not self.listed(i)]
        if unknown:
            raise ImageNotFoundException(f"series {unknown[0][:80]!r} is not listed by the PACS")
        with self.infos.updating() as data:
            for image_id, info in infos.items():
                data.setdefault(image_id, {}).update(info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict, label_id: str = ""):
        try:
            checked_tag(label_tag)
            if label_tag != DefaultLabelTag.FINAL.value:
                raise HTTPException(status_code=400, detail="with a DICOMweb PACS only final category labels are kept")
            if not self.listed(image_id):
                raise HTTPException(status_code=404, detail=f"series {str(image_id)[:80]!r} is not listed by the PACS")
            category = checked_category(label_filename, label_info)
            with self.labels.updating() as data:
                data[image_id] = {"category": category, "ts": int(time.time())}
            return image_id
        finally:
            discard(label_filename)

    def _categories(self) -> dict[str, dict]:
        """Labels of the series the PACS still lists (a series deleted from it is no longer an image)."""
        listed = set(self.list_images())
        return {k: v for k, v in self.labels.read().items() if k in listed}

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return sorted(self._categories()) if label_tag in (None, DefaultLabelTag.FINAL.value) else []

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        labelled = set(self.get_labeled_images(label_tag))
        return [i for i in self.list_images() if i not in labelled]

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        return {DefaultLabelTag.FINAL.value: image_id} if image_id in self._categories() else {}

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        return self.get_labels_by_image_id(image_id).get(tag, "")

    def get_label_info(self, label_id: str, label_tag: str) -> dict:
        return dict(self._categories().get(label_id, {})) if label_tag == DefaultLabelTag.FINAL.value else {}

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        return ""  # a category has no label file to download: GET /datastore/label/info holds it

    def remove_label(self, label_id: str, label_tag: str) -> None:
        with self.labels.updating() as data:
            if label_tag != DefaultLabelTag.FINAL.value or data.pop(label_id, None) is None:
                raise HTTPException(status_code=404, detail=f"no {str(label_tag)[:20]!r} label for series "
                                                            f"{str(label_id)[:80]!r}")

    def update_label_info(self, label_id: str, label_tag: str, info: dict) -> None:
        raise HTTPException(status_code=403, detail="a category is changed by saving a new label")

    def datalist(self, full_path: bool = True) -> list[dict]:
        """The labelled series and their categories (MONAI Label's would download DICOM SEG series)."""
        return [{"image": k, "category": v["category"]} for k, v in sorted(self._categories().items())]

    def status(self) -> dict:
        labelled = len(self._categories())
        return {"total": len(self.list_images()), "completed": labelled,
                "label_tags": {DefaultLabelTag.FINAL.value: labelled} if labelled else {}}

    def json(self) -> dict:
        """Every listed series with its info and category, shaped like the local datastore's answer."""
        labels, infos = self._categories(), self.infos.read()
        objects = {}
        for image_id in self.list_images():
            entry = {"image": {"info": dict(infos.get(image_id, {}), SeriesInstanceUID=image_id)}, "labels": {}}
            if image_id in labels:
                entry["labels"][DefaultLabelTag.FINAL.value] = {"info": labels[image_id]}
            objects[image_id] = entry
        return {"name": self.name(), "objects": objects}
