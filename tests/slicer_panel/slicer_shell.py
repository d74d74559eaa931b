"""The parts of 3D Slicer a scripted module touches that PyPI's ``slicer-core`` does not bring (they are Qt):
``slicer.app``, its IO manager, ``slicer.mrmlScene``, ``slicer.qMRMLNodeComboBox`` and
``slicer.ScriptedLoadableModule``. The scene, nodes, volume logic and NRRD/ITK readers and writers under
them are slicer-core's real ones; ``slicer.util`` is Slicer's own file. What is imitated follows Slicer's
documented behaviour; the main window, slice views and module selector are not there.
"""

from __future__ import annotations

import sys
import types
import unittest
from pathlib import Path

import slicer  # slicer-core: MRML, logic and slicer.util
from PyQt5 import QtWidgets
from vtkmodules.vtkCommonCore import vtkCommand

from tests.slicer_panel.pythonqt import PythonQtBehaviour, ctk_module, qt_module


#: vtkSlicerVolumesLogic::AddArchetypeVolume's loading options: loadVolume property, bit
LOADING_OPTIONS = (("labelmap", 1), ("center", 2), ("singleFile", 4), ("autoWindowLevel", 8), ("discardOrientation", 16))


class CoreIOManager:
    """``qSlicerCoreIOManager`` for volumes: reading through ``vtkSlicerVolumesLogic`` (ITK/NRRD readers),
    writing through the node's default storage node."""

    def __init__(self, scene):
        self.scene = scene
        self.application = slicer.vtkSlicerApplicationLogic()  # the module logics' registry, as in Slicer
        self.application.SetMRMLScene(scene)
        self.colors = slicer.vtkSlicerColorLogic()  # volumes get their default colour table from it
        self.colors.SetMRMLApplicationLogic(self.application)
        self.colors.SetMRMLScene(scene)
        self.application.SetModuleLogic("Colors", self.colors)
        self.volumes = slicer.vtkSlicerVolumesLogic()
        self.volumes.SetMRMLApplicationLogic(self.application)
        self.volumes.SetMRMLScene(scene)
        self.sequences = slicer.vtkSlicerSequencesLogic()
        self.sequences.SetMRMLApplicationLogic(self.application)
        self.sequences.SetMRMLScene(scene)

    def fileType(self, filename: str) -> str:
        return "VolumeFile"

    def _load_sequence(self, path: str, name: str):
        """What Slicer's sequence reader does: read the file into a sequence node (slicer-core's volume
        sequence storage node), and browse it with a browser node whose proxy volume shows one frame."""
        sequence = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
        storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
        storage.SetFileName(path)
        sequence.SetAndObserveStorageNodeID(storage.GetID())
        if not storage.ReadData(sequence) or sequence.GetNumberOfDataNodes() == 0:
            self.scene.RemoveNode(sequence)
            return None
        browser = self.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        self.sequences.UpdateProxyNodesFromSequences(browser)
        return sequence

    def fileWriterFileType(self, node) -> str:
        return "VolumeFile"

    def loadNodes(self, filetype, properties, loaded, messages) -> bool:
        path = properties["fileName"]
        name = properties.get("name") or Path(path).name.split(".")[0] or "volume"
        # loading options as Slicer's volumes IO passes them; a NIfTI/NRRD/MHA file holds a whole volume, so
        # its neighbours with similar numbered names are not read as more slices of it ("single file")
        defaults = {"autoWindowLevel": True, "singleFile": path.endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha"))}
        options = sum(bit for key, bit in LOADING_OPTIONS if properties.get(key, defaults.get(key, False)))
        if filetype == "SequenceFile":
            node = self._load_sequence(path, name)
        else:
            node = self.volumes.AddArchetypeVolume(path, name, options)
        if node is None:
            messages.AddMessage(3, f"could not read a volume from {path}")  # vtkCommand::ErrorEvent-like level
            return False
        loaded.AddItem(node)
        return True

    def saveNodes(self, filetype, properties, messages) -> bool:
        node = self.scene.GetNodeByID(properties["nodeID"])
        storage = node.CreateDefaultStorageNode()
        storage.SetFileName(properties["fileName"])
        return bool(storage.WriteData(node))


class SlicerApplication(PythonQtBehaviour, QtWidgets.QApplication):
    """``slicer.app``: a QApplication with the few qSlicerApplication methods slicer.util calls."""

    applicationName_ = "3D Slicer (DeepMCAT test harness)"

    def __init__(self, scene):
        super().__init__(sys.argv[:1])
        self.setApplicationName(self.applicationName_)
        self._io = CoreIOManager(scene)
        self.testing = False

    def testingEnabled(self) -> bool:
        return self.testing

    def coreIOManager(self) -> CoreIOManager:
        return self._io


class qMRMLNodeComboBox(PythonQtBehaviour, QtWidgets.QComboBox):
    """Slicer's node selector: the scene's nodes of ``nodeTypes``, kept up to date as nodes are added,
    removed or renamed; ``currentNode()`` / ``setCurrentNode()``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.nodeTypes: list[str] = []
        self.noneEnabled = False
        self.addEnabled = False
        self.removeEnabled = False
        self._scene = None
        self._observers: list[int] = []
        self._watched: set[str] = set()

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent):
            self._observers.append(scene.AddObserver(event, lambda *args: self._refresh()))
        self._refresh()

    def _nodes(self) -> list:
        if self._scene is None:
            return []
        nodes = []
        for i in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(i)
            if any(node.IsA(kind) for kind in self.nodeTypes) and not node.GetHideFromEditors():
                nodes.append(node)
        return nodes

    def _refresh(self) -> None:
        current = self.currentData  # PythonQt: Qt properties are attributes here too
        self.blockSignals(True)
        self.clear()
        if self.noneEnabled:
            self.addItem("None", "")
        for node in self._nodes():
            self.addItem(node.GetName(), node.GetID())
            if node.GetID() not in self._watched:
                node.AddObserver(vtkCommand.ModifiedEvent, lambda caller, event: self._rename(caller))
                self._watched.add(node.GetID())
        index = self.findData(current) if current else -1
        self.setCurrentIndex(index if index >= 0 else self.count - 1)
        self.blockSignals(False)

    def _rename(self, node) -> None:
        index = self.findData(node.GetID())
        if index >= 0 and self.itemText(index) != node.GetName():
            self.setItemText(index, node.GetName())

    def currentNode(self):
        node_id = self.currentData
        return self._scene.GetNodeByID(node_id) if node_id and self._scene is not None else None

    def setCurrentNode(self, node) -> None:
        self._refresh()
        index = self.findData(node.GetID()) if node is not None else -1
        if index >= 0:
            self.setCurrentIndex(index)


def scripted_loadable_module(qt) -> types.ModuleType:
    """``slicer.ScriptedLoadableModule``'s base classes, as much as a module's own code calls."""
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            parent.title = type(self).__name__

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent if parent is not None else qt.QWidget()
            self.layout = self.parent.layout() or qt.QVBoxLayout(self.parent)
            self.developerMode = False

        def setup(self) -> None:
            pass

        def cleanup(self) -> None:
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=100):
            slicer.util.delayDisplay(message, msec)

        def runTest(self):
            pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    return module


def install() -> SlicerApplication:
    """Make ``import qt``, ``import ctk``, ``slicer.app``, ``slicer.mrmlScene``, ``slicer.qMRMLNodeComboBox``
    and ``from slicer.ScriptedLoadableModule import ...`` work; returns the application."""
    qt = qt_module()
    sys.modules["qt"], sys.modules["ctk"] = qt, ctk_module()
    scene = slicer.vtkMRMLScene()
    app = SlicerApplication(scene)
    slicer.app, slicer.mrmlScene, slicer.qMRMLNodeComboBox = app, scene, qMRMLNodeComboBox
    sys.modules["slicer.ScriptedLoadableModule"] = slicer.ScriptedLoadableModule = scripted_loadable_module(qt)
    return app
