"""Openly licensed drawings and hints shared by training/ and bench/.

- `svg_render`: rsvg-convert rendering, and an SVG reduced to its strokes;
- `sources`: the public-domain / CC0 sources, their licenses, the
  evaluation list to leave out, and exact line art from vector strokes;
- `build`: renders every source into a training folder with a manifest;
- `strokes`: hints painted the way the docker's users paint them.

Depends on numpy/scipy/PIL and krita_alac's engine, never on training/ or bench/.
"""
