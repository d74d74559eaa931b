"""The modules ``qt`` and ``ctk`` as a Slicer scripted module sees them, imitated over PyQt5.

Slicer's Python talks to Qt through PythonQt, which differs from PyQt5 in what a module relies on:

- Qt properties are attributes: ``label.text`` is the text and ``label.text = "x"`` sets it (PyQt5 has
  methods). Resolved per instance (``__getattribute__``/``__setattr__``) through the object's meta-object,
  so a property shadows a method of the same name, as in PythonQt.
- Signals connect by signature: ``button.connect("clicked(bool)", slot)``.
- ``ctk.ctkMessageBox`` is CTK's message box (a QMessageBox with a "don't show again" option).

Every Qt class the module (or ``slicer.util``) names is offered with that behaviour; the widgets are real
Qt widgets. Written from PythonQt's and CTK's documented behaviour, not from their sources.
"""

from __future__ import annotations

import types

from PyQt5 import QtCore, QtGui, QtTest, QtWidgets


class PythonQtBehaviour:
    """Mixed into a PyQt5 class: Qt properties as attributes, connections by signature."""

    def __getattribute__(self, name: str):
        if not name.startswith("_"):
            meta = QtCore.QObject.metaObject(self)
            index = meta.indexOfProperty(name)
            if index >= 0:
                return meta.property(index).read(self)
        return super().__getattribute__(name)

    def __setattr__(self, name: str, value) -> None:
        if not name.startswith("_"):
            meta = QtCore.QObject.metaObject(self)
            index = meta.indexOfProperty(name)
            if index >= 0 and meta.property(index).isWritable():
                meta.property(index).write(self, value)
                return
        super().__setattr__(name, value)

    def connect(self, signature: str, slot) -> None:
        """``obj.connect("clicked(bool)", slot)``: the slot gets as many arguments as it takes, as in PythonQt
        (a slot without arguments on ``clicked(bool)`` is called with none)."""
        name = signature.split("(", 1)[0]
        signal = super().__getattribute__(name)
        wanted = _argument_count(slot)
        signal.connect(slot if wanted is None else (lambda *args: slot(*args[:wanted])))


def _argument_count(slot) -> int | None:
    code = getattr(slot, "__code__", None)
    if code is None:
        return None
    bound = 1 if isinstance(slot, types.MethodType) else 0
    return code.co_argcount - bound


def _with_behaviour(base: type) -> type:
    return type(base.__name__, (PythonQtBehaviour, base), {})


WIDGETS = ["QWidget", "QLabel", "QLineEdit", "QPushButton", "QCheckBox", "QComboBox", "QTableWidget", "QDialog",
           "QMessageBox", "QMainWindow", "QProgressBar", "QProgressDialog", "QGroupBox", "QScrollArea",
           "QFormLayout", "QHBoxLayout", "QVBoxLayout", "QGridLayout", "QHeaderView", "QAbstractItemView"]
CORE = ["QTimer", "QObject", "QSettings"]


def qt_module() -> types.ModuleType:
    """The ``qt`` module: PythonQt-behaving classes for what modules build, PyQt5's own for the rest."""
    qt = types.ModuleType("qt", "PythonQt's qt module, imitated over PyQt5 (tests/slicer_panel/pythonqt.py)")
    for module in (QtCore, QtGui, QtWidgets, QtTest):
        for name in dir(module):
            if name.startswith("Q") or name == "Qt":
                setattr(qt, name, getattr(module, name))
    for name in WIDGETS:
        setattr(qt, name, _with_behaviour(getattr(QtWidgets, name)))
    for name in CORE:
        setattr(qt, name, _with_behaviour(getattr(QtCore, name)))
    qt.QTableWidgetItem = QtWidgets.QTableWidgetItem
    return qt


class ctkMessageBox(PythonQtBehaviour, QtWidgets.QMessageBox):
    """CTK's message box; its "don't show again" settings key is accepted and not used here."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.dontShowAgainSettingsKey = ""


def ctk_module() -> types.ModuleType:
    ctk = types.ModuleType("ctk", "CTK's Python module, imitated: ctkMessageBox only")
    ctk.ctkMessageBox = ctkMessageBox
    return ctk
