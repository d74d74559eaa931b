"""HTTP client for the DeepMCAT MONAI Label app, standard library only (it runs inside Slicer's Python).

It speaks MONAI Label's REST API (the same endpoints as ``monailabel.client.MONAILabelClient``) and turns
answers into plain dicts, and failures into :class:`DeepMCATError` carrying the server's message.
"""

from __future__ import annotations

import json
import mimetypes
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

MODEL = "deepmcat"


class DeepMCATError(RuntimeError):
    """A request failed: ``status`` is the HTTP status (0 when the server could not be reached)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


@dataclass
class Category:
    """One answer of ``POST /infer/deepmcat``, ready to show."""

    category: str
    cluster: int
    confidence: float
    topk: list[dict]
    units: list[dict]
    model: dict
    #: like no category the model learned ("category" is then "unknown"; the nearest cluster is topk[0])
    novel: bool = False
    #: the category a clinician named this datastore image with (None: not named, or an upload)
    label: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> "Category":
        label = data.get("label")
        return cls(str(data["category"]), int(data["cluster"]), float(data["confidence"]), list(data["topk"]),
                   list(data.get("units", [])), dict(data.get("model", {})), bool(data.get("novel", False)),
                   str(label) if label else None)

    def summary(self) -> str:
        if self.novel:
            text = f"{self.category}: like no learned category (nearest: {self.topk[0]['category']})"
        else:
            alternatives = ", ".join(f"{t['category']} {t['confidence']:.0%}" for t in self.topk[1:])
            text = f"{self.category} ({self.confidence:.0%})" + (f"; next: {alternatives}" if alternatives else "")
        if self.label and self.label != self.category:
            return f"labelled {self.label}; the model says {text}"
        return text + ("; labelled so" if self.label else "")


class DeepMCATClient:
    def __init__(self, server_url: str = "http://127.0.0.1:8000", timeout: float = 120.0, token: str = ""):
        self.server_url = server_url.rstrip("/")
        self.timeout = timeout
        self.token = token  # MONAI Label's bearer token when the server has authentication on; kept in memory only

    # ------------------------------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.server_url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise DeepMCATError(f"{method} {path}: {exc.code} {_detail(exc.read())}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeepMCATError(f"cannot reach the DeepMCAT server at {self.server_url}: {exc}") from None

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = self._request(method, path, body, headers)
        return json.loads(data) if data else {}

    def _multipart(self, method: str, path: str, fields: dict[str, str], files: dict[str, str]) -> Any:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, path_ in files.items():
            filename = os.path.basename(path_)
            kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            with open(path_, "rb") as fh:
                content = fh.read()
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"'
                         f"\r\nContent-Type: {kind}\r\n\r\n".encode() + content + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        data = self._request(method, path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        return json.loads(data) if data else {}

    # ------------------------------------------------------------------------------------------ the API

    def info(self) -> dict:
        return self._json("GET", "/info/")

    def model_state(self) -> dict:
        """``{"trained": bool, "version", "trained_at", "cluster_names": [...]}`` of the deepmcat model."""
        model = self.info().get("models", {}).get(MODEL)
        if model is None:
            raise DeepMCATError(f"the server at {self.server_url} has no '{MODEL}' model (is it the DeepMCAT app?)")
        return model.get("deepmcat", {"trained": False})

    def category_names(self) -> list[str]:
        """Names a clinician can choose from: the model's cluster names that are not placeholders."""
        names = self.model_state().get("cluster_names", [])
        return sorted({n for n in names if not n.startswith("cluster_")})

    def categorise_file(self, path: str) -> Category:
        """Upload a volume file (NRRD/NIfTI/DICOM) and return its category."""
        return Category.from_json(self._multipart("POST", f"/infer/{MODEL}?output=json", {"params": "{}"},
                                                  {"file": path}))

    def categorise_image(self, image_id: str) -> Category:
        query = urllib.parse.urlencode({"image": image_id, "output": "json"})
        return Category.from_json(self._multipart("POST", f"/infer/{MODEL}?{query}", {"params": "{}"}, {}))

    def next_sample(self, strategy: str) -> dict:
        """``{"id", "cluster", "confidence", "reason", ...}`` of the next image to review; {} when none."""
        return self._json("POST", f"/activelearning/{urllib.parse.quote(strategy)}", {})

    def strategies(self) -> list[str]:
        return sorted(self.info().get("strategies", {}))

    def download_image(self, image_id: str, folder: str | None = None) -> str:
        """Fetch a datastore image into ``folder`` (a temp folder by default); returns the local path."""
        query = urllib.parse.urlencode({"image": image_id})
        data = self._request("GET", f"/datastore/image?{query}")
        info = self._json("GET", f"/datastore/image/info?{query}")
        name = os.path.basename(info.get("name") or info.get("path") or f"{image_id}.nii.gz")
        folder = folder or tempfile.mkdtemp(prefix="deepmcat-")
        path = os.path.join(folder, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    def submit_category(self, image_id: str, category: str) -> dict:
        """Save a clinician's category as the image's final label; answers its cluster and any conflict."""
        category = category.strip()
        if not category:
            raise DeepMCATError("the category is empty")
        with tempfile.TemporaryDirectory() as tmp:
            label = os.path.join(tmp, f"{image_id}.json")
            with open(label, "w") as fh:
                json.dump({"category": category}, fh)
            query = urllib.parse.urlencode({"image": image_id, "tag": "final"})
            return self._multipart("PUT", f"/datastore/label?{query}", {"params": json.dumps({"category": category})},
                                   {"label": label})

    def remove_label(self, image_id: str) -> None:
        """Remove the image's final label (needs the admin role when authentication is on)."""
        self._request("DELETE", "/datastore/label?" + urllib.parse.urlencode({"id": image_id, "tag": "final"}))

    def train(self, **params) -> dict:
        return self._json("POST", f"/train/{MODEL}", params)

    def train_status(self) -> dict:
        """The latest training task (``status``: SUBMITTED/RUNNING/DONE/ERROR/STOPPED) with the per-epoch stats;
        ``{"status": "NONE"}`` before any training."""
        try:
            task = self._json("GET", "/train/")
        except DeepMCATError as exc:
            if exc.status == 404:
                return {"status": "NONE"}
            raise
        stats = self.info().get("train_stats", {}).get(MODEL, {})
        return {"status": task.get("status"), "epoch": stats.get("epoch"), "total_epochs": stats.get("total_epochs"),
                "stats": stats}

    def stop_training(self) -> dict:
        return self._json("DELETE", "/train/")


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
        return str(data.get("detail", data)) if isinstance(data, dict) else str(data)
    except ValueError:
        return body.decode(errors="replace")[:300]
