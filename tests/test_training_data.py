"""`python -m training data`: sources, licenses, exact line art and the manifest."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from artdata.sources import DICEBEAR_DIR, TANGO

needs_rsvg = pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="needs rsvg-convert (librsvg2-bin)")


@needs_rsvg
@pytest.mark.skipif(not os.path.isdir(TANGO), reason="needs tango-icon-theme")
def test_tango_build_lists_every_file_with_license_and_lines(tmp_path):
    from training.__main__ import main
    out = str(tmp_path / "d")
    assert main(["data", "--out", out, "--sources", "tango", "--limit", "4", "--size", "128"]) == 0
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["count"] == len(m["images"]) >= 4 and m["size"] == 128
    s = m["sources"]["tango"]
    assert s["images"] == m["count"] and "public domain" in s["license"].lower()
    for it in m["images"]:
        assert it["origin"] == "tango" and it["license"].startswith("Public domain")
        rgb = np.asarray(Image.open(os.path.join(out, it["file"])))
        assert rgb.shape[2] == 3 and max(rgb.shape[:2]) <= 128
        if it["lines"]:
            ln = np.asarray(Image.open(os.path.join(out, it["lines"])))
            assert ln.shape == rgb.shape[:2] and (ln < 128).any()
    assert not any("tuxpaint" in it["source"].lower() for it in m["images"])


@needs_rsvg
@pytest.mark.skipif(not os.path.isdir(os.path.join(DICEBEAR_DIR, "node_modules", "@dicebear", "collection"))
                    or shutil.which("node") is None, reason="needs node and artdata/dicebear/node_modules (npm ci)")
def test_dicebear_avatars_are_cc0_deterministic_and_have_exact_lines(tmp_path):
    from artdata.build import build
    a = build(str(tmp_path / "a"), 128, ["dicebear"], dicebear_counts={"lorelei": 2, "openPeeps": 1, "thumbs": 1})
    b = build(str(tmp_path / "b"), 128, ["dicebear"], dicebear_counts={"lorelei": 2, "openPeeps": 1, "thumbs": 1})
    assert a["count"] == 4
    for x, y in zip(a["images"], b["images"]):
        assert x["file"] == y["file"] and x["license"].startswith("CC0 1.0")
        assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / x["file"])),
                              np.asarray(Image.open(tmp_path / "b" / y["file"])))     # same seed, same avatar
    lor = [it for it in a["images"] if it["source"].startswith("dicebear:lorelei")]
    assert all(it["lines"] for it in lor)
    rgb = np.asarray(Image.open(tmp_path / "a" / lor[0]["file"])).astype(int)
    ln = np.asarray(Image.open(tmp_path / "a" / lor[0]["lines"]))
    # The black outline shapes (0; fill boundaries are drawn at 40) are dark in the color image too.
    assert (rgb[ln < 20].max(axis=1) < 120).mean() > 0.8 and ((ln >= 20) & (ln < 60)).any()
    assert (rgb.max(axis=2) - rgb.min(axis=2) > 40).mean() > 0.05           # and the avatar has colors
