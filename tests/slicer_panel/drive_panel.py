"""Drive the unmodified ``plugins/slicer/DeepMCAT/DeepMCAT.py`` panel with real clicks against a real server.

    python -m tests.slicer_panel.drive_panel --server URL --studies STUDIES_DIR --out OUT_DIR

Runs on an X server (Xvfb): the panel is a real Qt window in an imitated Slicer main window, over
slicer-core's real MRML scene and readers (see ``slicer_shell.py``). The scenario runs inside Qt's event
loop, as a clinician's clicks would; modal error dialogs are read, photographed and closed by a timer. Every
check goes into ``OUT/results.json`` (the test asserts on it) and a screenshot of the panel is saved after
each step (``OUT/NN-step.png``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import traceback
from pathlib import Path

import nibabel

from tests.slicer_panel.slicer_shell import install

MODULE_DIR = Path(__file__).resolve().parents[2] / "plugins" / "slicer" / "DeepMCAT"
TOKEN = "harness-bearer-token-0123456789"


class ImitatedDicomDatabase:
    """``slicer.dicomDatabase`` answering the series of the instance UIDs the scenario gives volumes."""

    def __init__(self):
        self.series_of: dict[str, str] = {}

    def instanceValue(self, instance_uid: str, tag: str) -> str:
        return self.series_of.get(instance_uid, "") if tag.upper() == "0020,000E" else ""


class Scenario:
    def __init__(self, app, args):
        import qt
        import slicer

        import DeepMCAT

        self.qt, self.slicer, self.module = qt, slicer, DeepMCAT
        self.app, self.args, self.out = app, args, Path(args.out)
        self.results: dict = {"steps": [], "dialogs": [], "exceptions": [], "screenshots": []}
        self.window = qt.QMainWindow()
        self.window.objectName = "qSlicerMainWindow"  # what slicer.util.mainWindow() looks for
        self.window.windowTitle = "DeepMCAT panel (test harness)"
        panel = qt.QWidget()
        self.window.setCentralWidget(panel)
        DeepMCAT.DeepMCAT(type("ModuleParent", (), {})())
        self.widget = DeepMCAT.DeepMCATWidget(panel)
        self.widget.setup()
        self.window.resize(560, 940)
        self.window.show()
        slicer.dicomDatabase = self.database = ImitatedDicomDatabase()
        with open(Path(args.studies).parent / "labels.csv") as fh:
            self.truth = {r["path"].split(".nii")[0]: r["category"] for r in csv.DictReader(fh)}
        # 3-D studies: a 4-D NIfTI is a sequence for Slicer, whose Sequences module slicer-core does not bring
        self.volumes_3d = [i for i in sorted(self.truth)
                           if nibabel.load(Path(args.studies) / f"{i}.nii.gz").ndim == 3]

    # ------------------------------------------------------------------------------------------ helpers

    def check(self, name: str, ok: bool, detail: object = "") -> None:
        self.results["steps"].append({"check": name, "ok": bool(ok), "detail": str(detail)[:500]})

    def shot(self, name: str) -> None:
        path = self.out / f"{len(self.results['screenshots']):02d}-{name}.png"
        self.window.grab().save(str(path))
        self.results["screenshots"].append(path.name)

    def click(self, button) -> None:
        self.qt.QTest.mouseClick(button, self.qt.Qt.LeftButton)

    def wait(self, condition, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.app.processEvents()
            if condition():
                return True
            time.sleep(0.05)
        return False

    def close_unexpected_dialogs(self) -> None:
        """A modal dialog nobody expected would block the scenario forever: record it as a failure, close it."""
        dialog = self.qt.QApplication.activeModalWidget()
        if dialog is not None and not self.expecting:
            text = getattr(dialog, "text", "")
            self.check("no unexpected dialog", False, f"{dialog.windowTitle}: {text if isinstance(text, str) else ''}")
            dialog.done(0)
        self.qt.QTimer.singleShot(500, self.close_unexpected_dialogs)

    def click_expecting_dialog(self, button, name: str) -> str:
        """Click; the modal dialog it opens is photographed, its text recorded, and closed."""
        seen: list[str] = []

        def close_dialog():
            dialog = self.qt.QApplication.activeModalWidget()
            if dialog is None:
                self.qt.QTimer.singleShot(50, close_dialog)
                return
            path = self.out / f"{len(self.results['screenshots']):02d}-{name}-dialog.png"
            dialog.grab().save(str(path))
            self.results["screenshots"].append(path.name)
            seen.append(f"{dialog.windowTitle.strip()}: {dialog.text}")
            dialog.done(0)

        self.expecting = True
        self.qt.QTimer.singleShot(50, close_dialog)
        self.click(button)
        self.expecting = False
        self.results["dialogs"].append({"step": name, "text": seen[0] if seen else None})
        return seen[0] if seen else ""

    def load_study(self, image_id: str):
        return self.slicer.util.loadVolume(str(Path(self.args.studies) / f"{image_id}.nii.gz"))

    # ------------------------------------------------------------------------------------------ the steps

    def run(self) -> None:
        self.expecting = False
        self.close_unexpected_dialogs()
        try:
            for step in (self.connect, self.categorise_current, self.categorise_all, self.review_each_strategy,
                         self.submit_category, self.retrain, self.unreadable_volume, self.unreachable_server,
                         self.token_not_in_the_scene, self.self_test):
                step()
        except Exception:  # a broken step is a failed check, and the remaining results are still written
            self.check("scenario ran to the end", False, traceback.format_exc())
        finally:
            self.widget.cleanup()
            (self.out / "results.json").write_text(json.dumps(self.results, indent=1))
            self.app.quit()

    def connect(self) -> None:
        self.shot("start")
        self.widget.server_edit.clear()
        self.qt.QTest.keyClicks(self.widget.server_edit, self.args.server)
        self.qt.QTest.keyClicks(self.widget.token_edit, TOKEN)  # this server has no sign-in: it ignores the token
        self.click(self.widget.connect_button)
        self.check("the token goes to the client, hidden in the panel",
                   self.widget.logic.client.token == TOKEN and self.widget.token_edit.displayText != TOKEN)
        model = self.widget.model_label.text
        self.check("connect fills the model line", model.startswith("trained "), model)
        strategies = [self.widget.strategy_combo.itemText(i) for i in range(self.widget.strategy_combo.count)]
        self.check("connect lists the strategies", {"cluster_representative", "least_confident"} <= set(strategies),
                   strategies)
        self.shot("connected")

    def categorise_current(self) -> None:
        images = self.volumes_3d[:3]
        self.loaded = [self.load_study(i) for i in images]  # Slicer's reader (ITK) through the volumes logic
        self.check("studies load through Slicer's reader", all(n is not None for n in self.loaded))
        self.check("the table lists every loaded volume", self.widget.volumes_table.rowCount == len(self.loaded),
                   self.widget.volumes_table.rowCount)
        # the third volume came from Slicer's DICOM database: it carries instance UIDs of a series the server knows
        self.database.series_of["1.2.3.4.1"] = images[2]
        self.loaded[2].SetAttribute(self.module.INSTANCE_UIDS_ATTRIBUTE, "1.2.3.4.1 1.2.3.4.2")
        self.qt.QTest.mouseClick(self.widget.volumes_table.viewport(), self.qt.Qt.LeftButton,
                                 self.qt.Qt.NoModifier,
                                 self.widget.volumes_table.visualItemRect(self.widget.volumes_table.item(1, 0)).center())
        node = self.widget.volume_selector.currentNode()
        self.check("a click on a table row selects that volume", node is self.loaded[1], node.GetName())
        self.widget.rename_check.checked = True
        name = node.GetName()
        self.click(self.widget.categorise_button)
        category = node.GetAttribute(self.module.CATEGORY_ATTRIBUTE)
        self.check("categorise sets the node attributes", category and node.GetAttribute(
            self.module.CONFIDENCE_ATTRIBUTE) and node.GetAttribute(self.module.CLUSTER_ATTRIBUTE) is not None, category)
        self.check("categorise fills the top-k table", self.widget.topk_table.rowCount >= 1,
                   self.widget.topk_table.rowCount)
        self.check("categorise shows the answer", self.widget.result_label.text.startswith(category or "?"),
                   self.widget.result_label.text)
        self.check("rename prefixes the category", node.GetName() == f"{category} - {name}", node.GetName())
        self.widget.rename_check.checked = False
        self.shot("categorised")

    def categorise_all(self) -> None:
        synthetic = self.slicer.util.addVolumeFromArray(
            __import__("numpy").random.default_rng(0).random((6, 48, 48)).astype("float32") * 500, name="synthetic")
        self.click(self.widget.categorise_all_button)
        table = self.widget.volumes_table
        rows = [[table.item(r, c).text() for c in range(table.columnCount)] for r in range(table.rowCount)]
        self.check("categorise all fills every row", len(rows) == 4 and all(r[1] and r[2] and r[3] for r in rows), rows)
        self.check("categorise all answers the DICOM volume by its series",
                   self.loaded[2].GetAttribute(self.module.IMAGE_ID_ATTRIBUTE) == self.volumes_3d[2],
                   self.loaded[2].GetAttribute(self.module.IMAGE_ID_ATTRIBUTE))
        self.check("the progress bar is hidden when done", not self.widget.progress.visible)
        self.check("node attributes hold the table's category",
                   synthetic.GetAttribute(self.module.CATEGORY_ATTRIBUTE) == rows[3][1], rows[3])
        self.shot("categorised-all")

    def review_each_strategy(self) -> None:
        combo = self.widget.strategy_combo
        self.reviewed = {}
        for index in range(combo.count):
            combo.setCurrentIndex(index)
            strategy = combo.currentText
            before = len(self.module.DeepMCATLogic.volumes())
            self.click(self.widget.next_button)
            text = self.widget.sample_label.text
            node = self.widget.volume_selector.currentNode()
            if text == "nothing to review for this strategy":
                self.check(f"{strategy}: says when there is nothing to review", strategy == "label_conflict", text)
            else:
                image_id = node.GetAttribute(self.module.IMAGE_ID_ATTRIBUTE)
                self.reviewed[strategy] = image_id
                self.check(f"{strategy}: the suggested image is loaded and selected",
                           len(self.module.DeepMCATLogic.volumes()) == before + 1 and image_id in self.truth
                           and node.GetImageData() is not None and text.startswith(image_id), text)
            self.shot(f"next-{strategy}")

    def submit_category(self) -> None:
        self.strategy = "cluster_representative"
        self.widget.strategy_combo.setCurrentIndex(self.widget.strategy_combo.findText(self.strategy))
        self.click(self.widget.next_button)
        image_id = self.widget.volume_selector.currentNode().GetAttribute(self.module.IMAGE_ID_ATTRIBUTE)
        category = self.truth[image_id]
        self.widget.category_combo.setEditText(category)
        self.click(self.widget.submit_button)
        self.check("submit says it is saved", self.widget.sample_label.text.startswith(f"saved {image_id} as {category}"),
                   self.widget.sample_label.text)
        names = self.widget.logic.client.model_state()["cluster_names"]
        self.check("the submitted category names a cluster", category in names, names)
        options = [self.widget.category_combo.itemText(i) for i in range(self.widget.category_combo.count)]
        self.check("the category list offers the new name", category in options, options)
        self.results["submitted"] = {"image": image_id, "category": category}
        self.shot("submitted")

    def retrain(self) -> None:
        before = self.widget.model_label.text
        self.widget.timer.setInterval(500)  # the panel polls every 3 s; the harness does not wait that long
        self.click(self.widget.train_button)
        self.check("retrain starts", self.widget.train_label.text == "training started", self.widget.train_label.text)
        self.shot("training")
        done = self.wait(lambda: self.widget.train_label.text.startswith("training done"), timeout=300)
        self.check("retrain is followed to the end", done, self.widget.train_label.text)
        self.check("the model line shows the new model", self.widget.model_label.text != before,
                   self.widget.model_label.text)
        self.shot("retrained")

    def unreadable_volume(self) -> None:
        empty = self.slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no-image-data")
        self.widget.volume_selector.setCurrentNode(empty)
        text = self.click_expecting_dialog(self.widget.categorise_button, "unreadable-volume")
        self.check("an unreadable volume shows an error dialog", "no-image-data holds no image data" in text, text)
        self.check("no category is recorded on it", empty.GetAttribute(self.module.CATEGORY_ATTRIBUTE) is None)

    def unreachable_server(self) -> None:
        self.widget.server_edit.text = "http://127.0.0.1:9"  # the discard port: nothing listens
        text = self.click_expecting_dialog(self.widget.connect_button, "unreachable-server")
        self.check("an unreachable server shows an error dialog", "cannot reach the DeepMCAT server" in text, text)
        self.widget.server_edit.text = self.args.server
        self.click(self.widget.connect_button)
        self.shot("reconnected")

    def token_not_in_the_scene(self) -> None:
        scene = self.slicer.mrmlScene
        scene.SetSaveToXMLString(1)
        scene.Commit()
        xml = scene.GetSceneXMLString()
        self.check("the token is nowhere in the saved scene", len(xml) > 1000 and TOKEN not in xml, len(xml))

    def self_test(self) -> None:
        os.environ["DEEPMCAT_SERVER"] = self.args.server
        test = self.module.DeepMCATTest()
        try:
            test.runTest()
            self.check("DeepMCATTest.runTest passes", True)
        except Exception:
            self.check("DeepMCATTest.runTest passes", False, traceback.format_exc())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--studies", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    app = install()
    sys.path.insert(0, str(MODULE_DIR))
    scenario = Scenario(app, args)

    def record(kind, value, tb):  # PyQt5 aborts on an exception in a slot; PythonQt prints it and goes on
        scenario.results["exceptions"].append("".join(traceback.format_exception(kind, value, tb)))
        traceback.print_exception(kind, value, tb)

    sys.excepthook = record
    __import__("qt").QTimer.singleShot(0, scenario.run)
    app.exec_()


if __name__ == "__main__":
    main()
