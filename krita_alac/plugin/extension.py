"""Registration with Krita: the Colorize docker and its two actions.

The actions' default shortcuts (Ctrl+Shift+K for Colorize, none for Extract
Line Art) and menu texts come from krita_alac.action, which Krita's plugin
importer copies to its actions folder.
"""
from __future__ import annotations

from krita import DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

ACTION_ID = "krita_alac_colorize"
LINES_ACTION_ID = "krita_alac_extract_lines"
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
        lines = window.createAction(LINES_ACTION_ID, "Extract Line Art", "tools/scripts")
        lines.setToolTip("Extract line art (XDoG) from the active layer into a new layer above it (krita_alac)")
        lines.triggered.connect(self.extract_lines)

    def colorize(self):
        """Same as the docker's button; without a docker, run with its defaults."""
        from . import docker
        d = docker.current_docker()
        if d is not None:
            d.colorize()
        else:
            docker.colorize_without_docker()

    def extract_lines(self):
        """Same as the docker's Extract line art button (the active layer)."""
        from . import docker
        d = docker.current_docker()
        if d is not None:
            d.extract_lines()
        else:
            docker.extract_lines_without_docker()


def register():
    app = Krita.instance()
    from .docker import ColorizeDocker
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, ColorizeDocker))
    app.addExtension(ColorizeExtension(app))
