"""3D Slicer module: ask a DeepMCAT MONAI Label server "what is this series?", review and name series.

The panel is thin: every request and answer goes through ``DeepMCATLib.DeepMCATClient`` (plain Python,
tested outside Slicer); ``DeepMCATLogic`` adds only what needs Slicer (saving a volume node to a temporary
file, loading a downloaded image, writing the category onto the node).
"""

import logging
import os
import shutil
import tempfile

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

from DeepMCATLib import DeepMCATClient, DeepMCATError

#: node attributes the module sets (Slicer shows them with the node's properties)
CATEGORY_ATTRIBUTE = "DeepMCAT.Category"
CONFIDENCE_ATTRIBUTE = "DeepMCAT.Confidence"
CLUSTER_ATTRIBUTE = "DeepMCAT.Cluster"
IMAGE_ID_ATTRIBUTE = "DeepMCAT.ImageId"
#: what Slicer's DICOM module writes on a volume it loaded, and the tag its database answers the series by
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
SERIES_UID_TAG = "0020,000E"
DEFAULT_SERVER = "http://127.0.0.1:8000"
VOLUME_COLUMNS = ["volume", "category", "confidence", "cluster"]


class DeepMCAT(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DeepMCAT"
        self.parent.categories = ["Active Learning"]
        self.parent.dependencies = []
        self.parent.contributors = ["DeepMCAT developers"]
        self.parent.helpText = (
            "Categorise the loaded series with a DeepMCAT MONAI Label server (unsupervised deep clustering of "
            "cardiac MR and other series), review the series the server suggests, name categories and retrain."
        )
        self.parent.acknowledgementText = (
            "Method: Kart, Bai, Glocker and Rueckert, DeepMCAT: Large-Scale Deep Clustering for Medical Image "
            "Categorization (MICCAI workshops 2021). Served by MONAI Label."
        )


class DeepMCATLogic(ScriptedLoadableModuleLogic):
    """Slicer-side steps around the plain client."""

    def __init__(self, server_url=DEFAULT_SERVER, token=""):
        ScriptedLoadableModuleLogic.__init__(self)
        self.client = DeepMCATClient(server_url, token=token)

    def set_server(self, server_url, token=""):
        """The token stays in this client object: it is never written to the scene or the settings."""
        self.client = DeepMCATClient(server_url, token=token)

    @staticmethod
    def series_uid(volume_node):
        """The SeriesInstanceUID of a volume loaded from Slicer's DICOM database, else None."""
        instances = (volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not instances or database is None:
            return None
        return database.instanceValue(instances[0], SERIES_UID_TAG) or None

    def categorise_volume(self, volume_node, rename=False):
        """Ask by SeriesInstanceUID when the server's datastore has the series (a PACS datastore does), else
        write the volume to a temporary NRRD and upload it; record the category on the node."""
        series = self.series_uid(volume_node)
        answer = None
        if series:
            try:
                answer = self.client.categorise_image(series)
                volume_node.SetAttribute(IMAGE_ID_ATTRIBUTE, series)
            except DeepMCATError as exc:
                if exc.status != 404:
                    raise
        if answer is None:
            answer = self._categorise_upload(volume_node)
        volume_node.SetAttribute(CATEGORY_ATTRIBUTE, answer.category)
        volume_node.SetAttribute(CONFIDENCE_ATTRIBUTE, f"{answer.confidence:.4f}")
        volume_node.SetAttribute(CLUSTER_ATTRIBUTE, str(answer.cluster))
        if rename:
            volume_node.SetName(f"{answer.category} - {volume_node.GetName()}")
        return answer

    @staticmethod
    def load_image(path):
        """A volume; a 4-D image (a cine stack over time) loads as a sequence, and its proxy volume (the frame
        the views show) is returned."""
        try:
            return slicer.util.loadVolume(path)
        except RuntimeError:
            sequence = slicer.util.loadSequence(path)
        for browser in slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode"):
            if browser.GetMasterSequenceNode() is sequence and browser.GetProxyNode(sequence) is not None:
                return browser.GetProxyNode(sequence)
        raise DeepMCATError(f"{os.path.basename(path)} loaded as a sequence without a volume to show")

    def _categorise_upload(self, volume_node):
        folder = tempfile.mkdtemp(prefix="deepmcat-")
        try:
            path = os.path.join(folder, "volume.nrrd")
            if volume_node.GetImageData() is None:
                raise DeepMCATError(f"{volume_node.GetName()} holds no image data to categorise")
            if not slicer.util.saveNode(volume_node, path):
                raise DeepMCATError(f"could not write {volume_node.GetName()} to {path}")
            return self.client.categorise_file(path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def volumes():
        """Every scalar volume in the scene, in the order it was loaded."""
        return [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if not node.GetHideFromEditors()]

    def load_next(self, strategy):
        """Load the next image the strategy suggests; returns (sample dict, volume node) or ({}, None)."""
        sample = self.client.next_sample(strategy)
        if not sample.get("id"):
            return {}, None
        path = self.client.download_image(sample["id"])
        node = self.load_image(path)
        node.SetAttribute(IMAGE_ID_ATTRIBUTE, sample["id"])
        node.SetName(sample["id"])
        return sample, node


def _row(*widgets):
    """Widgets side by side, as one form row."""
    row = qt.QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row


class DeepMCATWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = DeepMCATLogic()
        self.current_image_id = None
        form = qt.QFormLayout()
        box = qt.QWidget()
        box.setLayout(form)
        self.layout.addWidget(box)

        self.server_edit = qt.QLineEdit(DEFAULT_SERVER)
        self.connect_button = qt.QPushButton("Connect")
        form.addRow("Server:", _row(self.server_edit, self.connect_button))
        self.token_edit = qt.QLineEdit()
        self.token_edit.echoMode = qt.QLineEdit.Password
        self.token_edit.placeholderText = "only when the server requires sign-in (kept in memory, never saved)"
        form.addRow("Token:", self.token_edit)
        self.model_label = qt.QLabel("not connected")
        self.model_label.wordWrap = True
        form.addRow("Model:", self.model_label)

        self.volume_selector = slicer.qMRMLNodeComboBox()
        self.volume_selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.volume_selector.noneEnabled = False
        self.volume_selector.addEnabled = False
        self.volume_selector.removeEnabled = False
        self.volume_selector.setMRMLScene(slicer.mrmlScene)
        form.addRow("Volume:", self.volume_selector)
        self.rename_check = qt.QCheckBox("Prefix the volume's name with its category")
        form.addRow(self.rename_check)
        self.categorise_button = qt.QPushButton("Categorise current volume")
        form.addRow(self.categorise_button)
        self.result_label = qt.QLabel("")
        self.result_label.wordWrap = True
        form.addRow("Category:", self.result_label)
        self.topk_table = qt.QTableWidget(0, 2)
        self.topk_table.setHorizontalHeaderLabels(["category", "confidence"])
        self.topk_table.setMaximumHeight(110)
        self.topk_table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)
        form.addRow(self.topk_table)

        self.volumes_table = qt.QTableWidget(0, len(VOLUME_COLUMNS))
        self.volumes_table.setHorizontalHeaderLabels(VOLUME_COLUMNS)
        self.volumes_table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        self.volumes_table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        self.volumes_table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        self.volumes_table.horizontalHeader().setSectionResizeMode(0, qt.QHeaderView.Stretch)
        form.addRow("Loaded volumes:", self.volumes_table)
        self.categorise_all_button = qt.QPushButton("Categorise all")
        self.progress = qt.QProgressBar()
        self.progress.visible = False
        form.addRow(_row(self.categorise_all_button, self.progress))

        self.strategy_combo = qt.QComboBox()
        self.next_button = qt.QPushButton("Next series to review")
        form.addRow("Strategy:", _row(self.strategy_combo, self.next_button))
        self.sample_label = qt.QLabel("")
        self.sample_label.wordWrap = True
        form.addRow(self.sample_label)

        self.category_combo = qt.QComboBox()
        self.category_combo.editable = True
        self.submit_button = qt.QPushButton("Submit category")
        form.addRow("Category:", _row(self.category_combo, self.submit_button))

        self.train_button = qt.QPushButton("Retrain")
        self.train_label = qt.QLabel("")
        form.addRow(self.train_button, self.train_label)
        self.layout.addStretch(1)

        self.timer = qt.QTimer()
        self.timer.setInterval(3000)
        self.timer.connect("timeout()", self.on_poll_training)
        self.connect_button.connect("clicked(bool)", self.on_connect)
        self.categorise_button.connect("clicked(bool)", self.on_categorise)
        self.next_button.connect("clicked(bool)", self.on_next)
        self.submit_button.connect("clicked(bool)", self.on_submit)
        self.train_button.connect("clicked(bool)", self.on_train)
        self.categorise_all_button.connect("clicked(bool)", self.on_categorise_all)
        self.volumes_table.connect("cellClicked(int,int)", self.on_volume_row)
        self.volume_rows = []
        self.scene_observers = [slicer.mrmlScene.AddObserver(event, self.on_scene_changed)
                                for event in (slicer.mrmlScene.NodeAddedEvent, slicer.mrmlScene.NodeRemovedEvent)]
        self.refresh_volumes()

    def cleanup(self):
        self.timer.stop()
        for observer in self.scene_observers:
            slicer.mrmlScene.RemoveObserver(observer)

    def on_scene_changed(self, caller=None, event=None):
        self.refresh_volumes()

    def refresh_volumes(self):
        """One row per loaded volume: its name and the category recorded on it (blank until categorised)."""
        self.volume_rows = self.logic.volumes()
        self.volumes_table.setRowCount(len(self.volume_rows))
        for row, node in enumerate(self.volume_rows):
            values = [node.GetName(), node.GetAttribute(CATEGORY_ATTRIBUTE) or "",
                      node.GetAttribute(CONFIDENCE_ATTRIBUTE) or "", node.GetAttribute(CLUSTER_ATTRIBUTE) or ""]
            for column, value in enumerate(values):
                self.volumes_table.setItem(row, column, qt.QTableWidgetItem(value))

    def on_volume_row(self, row, column=0):
        """A click on a row selects that volume for the buttons below."""
        if 0 <= row < len(self.volume_rows):
            self.volume_selector.setCurrentNode(self.volume_rows[row])

    def on_categorise_all(self):
        """Categorise every loaded volume, one request each, with progress; a failure is shown and stops."""
        volumes = self.logic.volumes()
        if not volumes:
            slicer.util.errorDisplay("Load a volume first.")
            return
        self.progress.setRange(0, len(volumes))
        self.progress.value = 0
        self.progress.visible = True
        rename = self.rename_check.checked
        for done, node in enumerate(volumes, 1):
            if self._run(lambda: self.logic.categorise_volume(node, rename=rename)) is None:
                break
            self.progress.value = done
            self.refresh_volumes()
            slicer.app.processEvents()
        self.progress.visible = False
        self.refresh_volumes()

    def _run(self, action):
        """Run a request; show its error instead of raising into Qt."""
        try:
            with slicer.util.tryWithErrorDisplay("DeepMCAT request failed", waitCursor=True):
                return action()
        except DeepMCATError as exc:
            logging.error(str(exc))
            return None

    def on_connect(self):
        self.logic.set_server(self.server_edit.text.strip() or DEFAULT_SERVER, token=self.token_edit.text.strip())

        def connect():
            state = self.logic.client.model_state()
            self.strategy_combo.clear()
            for name in self.logic.client.strategies():
                self.strategy_combo.addItem(name)
            self._refresh_categories()
            if state.get("trained"):
                self.model_label.text = (f"trained {state.get('trained_at')}, {state.get('clusters')} clusters, "
                                         f"{state.get('units')} units")
            else:
                self.model_label.text = "no model trained yet: press Retrain"

        self._run(connect)

    def _refresh_categories(self):
        current = self.category_combo.currentText
        self.category_combo.clear()
        for name in self.logic.client.category_names():
            self.category_combo.addItem(name)
        self.category_combo.setEditText(current)

    def on_categorise(self):
        node = self.volume_selector.currentNode()
        if node is None:
            slicer.util.errorDisplay("Load a volume first.")
            return
        answer = self._run(lambda: self.logic.categorise_volume(node, rename=self.rename_check.checked))
        if answer is None:
            return
        self.result_label.text = answer.summary()
        self.topk_table.setRowCount(len(answer.topk))
        for row, item in enumerate(answer.topk):
            self.topk_table.setItem(row, 0, qt.QTableWidgetItem(item["category"]))
            self.topk_table.setItem(row, 1, qt.QTableWidgetItem(f"{item['confidence']:.1%}"))
        self.current_image_id = node.GetAttribute(IMAGE_ID_ATTRIBUTE)
        self.refresh_volumes()

    def on_next(self):
        result = self._run(lambda: self.logic.load_next(self.strategy_combo.currentText))
        if result is None:
            return
        sample, node = result
        if node is None:
            self.sample_label.text = "nothing to review for this strategy"
            return
        self.current_image_id = sample["id"]
        self.volume_selector.setCurrentNode(node)
        self.sample_label.text = f"{sample['id']}: {sample.get('reason', '')}"
        self.category_combo.setEditText(sample.get("category", ""))
        self.refresh_volumes()

    def on_submit(self):
        node = self.volume_selector.currentNode()
        image_id = (node.GetAttribute(IMAGE_ID_ATTRIBUTE) if node else None) or self.current_image_id
        if not image_id:
            slicer.util.errorDisplay("Only images from the server's datastore can be labelled: "
                                     "use 'Next series to review' first.")
            return
        category = self.category_combo.currentText.strip()
        answer = self._run(lambda: self.logic.client.submit_category(image_id, category))
        if answer is None:
            return
        text = f"saved {image_id} as {category}"
        if answer.get("conflict"):
            text += f" (its cluster is named {answer.get('cluster_name')})"
        self.sample_label.text = text
        self._run(self._refresh_categories)

    def on_train(self):
        if self._run(self.logic.client.train) is not None:
            self.train_label.text = "training started"
            self.timer.start()

    def on_poll_training(self):
        try:
            status = self.logic.client.train_status()
        except DeepMCATError as exc:
            self.train_label.text = str(exc)
            self.timer.stop()
            return
        if status["status"] in ("SUBMITTED", "RUNNING"):
            self.train_label.text = f"training: epoch {status.get('epoch')} of {status.get('total_epochs')}"
            return
        self.timer.stop()
        self.train_label.text = f"training {str(status['status']).lower()}"
        self.on_connect()


class DeepMCATTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer against a running DeepMCAT server with a trained model:
    ``DEEPMCAT_SERVER=http://127.0.0.1:8000`` (the default), e.g. the one ``bash scripts/run_demo.sh`` serves."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.logic = DeepMCATLogic(os.environ.get("DEEPMCAT_SERVER", DEFAULT_SERVER))

    def runTest(self):
        self.setUp()
        self.test_categorise_a_volume()
        self.test_review_and_name_a_series()

    def test_categorise_a_volume(self):
        import numpy as np

        self.delayDisplay("Categorising a synthetic volume")
        state = self.logic.client.model_state()
        self.assertTrue(state.get("trained"), "the server has no trained model")
        rng = np.random.default_rng(0)
        node = slicer.util.addVolumeFromArray(rng.random((8, 96, 96)).astype("float32") * 1000, name="test")
        answer = self.logic.categorise_volume(node, rename=True)
        self.assertEqual(node.GetAttribute(CATEGORY_ATTRIBUTE), answer.category)
        self.assertTrue(0.0 <= answer.confidence <= 1.0)
        self.assertTrue(node.GetName().startswith(answer.category))
        self.delayDisplay(f"Category: {answer.summary()}")

    def test_review_and_name_a_series(self):
        self.delayDisplay("Loading the next series to review")
        sample, node = self.logic.load_next("cluster_representative")
        self.assertTrue(sample.get("id"), "the server suggested nothing")
        self.assertIsNotNone(node)
        try:
            answer = self.logic.client.submit_category(sample["id"], "slicer_selftest")
            self.assertEqual(answer["category"], "slicer_selftest")
        finally:
            self.logic.client.remove_label(sample["id"])  # leave the clinicians' labels as they were
        self.delayDisplay("Test passed")
