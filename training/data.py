"""The training set: public-domain / CC0 drawings, built by artdata.

`python -m training data --out DIR` runs artdata.build: Openclipart, Tango
icons and CC0 DiceBear avatars rendered to PNG (with exact line art where the
vector has outlines) and DIR/manifest.json with each file's source and license.
The quality benchmark's evaluation images are left out.  Nothing here is committed.
"""
from __future__ import annotations

from artdata.build import SOURCES, build  # noqa: F401
from artdata.sources import eval_exclusions  # noqa: F401
