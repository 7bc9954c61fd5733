"""Registration with Krita: the Colorize docker and the Colorize action.

The action's default shortcut (Ctrl+Shift+K) and menu text come from
krita_alac.action, which Krita's plugin importer copies to its actions folder.
"""
from __future__ import annotations

from krita import DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

ACTION_ID = "krita_alac_colorize"
DOCKER_ID = "krita_alac_docker"


class ColorizeExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)

    def setup(self):
        pass

    def createActions(self, window):
        action = window.createAction(ACTION_ID, "Colorize Line Art", "tools/scripts")
        action.setToolTip("Colorize the line-art layer from the hint layer (krita_alac)")
        action.triggered.connect(self.colorize)

    def colorize(self):
        """Same as the docker's button; without a docker, run with its defaults."""
        from . import docker
        d = docker.current_docker()
        if d is not None:
            d.colorize()
        else:
            docker.colorize_without_docker()


def register():
    app = Krita.instance()
    from .docker import ColorizeDocker
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, ColorizeDocker))
    app.addExtension(ColorizeExtension(app))
