"""Install AlacGAN models into the krita_alac store: `python -m model_download`.

registry  models.json, the known models and their files (url, size, sha256)
urls      which URLs may be fetched (https; http on loopback only)
fetch     streamed, resumable, checked downloads into the store's partial folder
progress  the progress line on stderr
convert   checkpoints -> ONNX through the engine (weights_only loading)
install   fetch + convert + atomic registration in the store
cli       the command line
"""
