"""The Krita side: everything that imports `krita` or `PyQt5`, and nothing else does.

It runs in Krita's own Python, which may lack numpy: it reads layers to bytes,
sends one request to the worker (krita_alac.engine.worker) and writes the answer
back as a layer. From the engine it imports only plain-Python modules
(errors, limits, store paths).
"""
