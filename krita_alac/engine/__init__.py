"""The engine: numpy, scipy and ONNX Runtime; never Krita or Qt.

It runs in the worker process, the command line and the tests. Torch code lives
in krita_alac.convert and is imported only inside functions, when a .pth model
or an export asks for it.
"""
