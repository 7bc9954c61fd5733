"""Draw the example line art and hint strokes (examples/lineart.png, examples/hints.png).

A house, a tree, a sun and hills in black anti-aliased lines on transparency,
with a few hint strokes of the kind an artist paints on a "Hints" layer.
"""
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
W, H, S = 960, 720, 2  # drawn at 2x, then reduced: anti-aliased lines


def lineart():
    im = Image.new("L", (W * S, H * S), 0)
    d = ImageDraw.Draw(im)
    k = lambda *v: [x * S for x in v]  # noqa: E731
    lw = 3 * S
    d.line(k(0, 520, 220, 470, 480, 500, 700, 455, 960, 490), fill=255, width=lw, joint="curve")   # hills
    d.rectangle(k(380, 330, 640, 560), fill=0)                                                        # hills go behind
    d.rectangle(k(150, 400, 185, 545), fill=0)
    d.rectangle(k(380, 330, 640, 560), outline=255, width=lw)                                        # house
    d.polygon(k(360, 335, 510, 200, 660, 335), outline=255, width=lw)                                # roof
    d.rectangle(k(480, 440, 545, 560), outline=255, width=lw)                                        # door
    d.rectangle(k(410, 370, 465, 420), outline=255, width=lw)                                        # window
    d.line(k(437, 370, 437, 420), fill=255, width=lw // 2)
    d.rectangle(k(570, 370, 620, 420), outline=255, width=lw)
    d.rectangle(k(150, 400, 185, 545), outline=255, width=lw)                                        # trunk
    d.ellipse(k(85, 250, 250, 410), outline=255, width=lw)                                           # crown
    d.ellipse(k(760, 60, 880, 180), outline=255, width=lw)                                           # sun
    d.line(k(0, 640, 960, 640), fill=255, width=lw)                                                   # path edge
    d.ellipse(k(300, 90, 420, 140), outline=255, width=lw)                                           # cloud
    small = im.resize((W, H), Image.Resampling.LANCZOS)
    out = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    out.putalpha(small)
    return out


def hints():
    im = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    strokes = [((120, 120, 300, 110), (110, 170, 240)),    # sky
               ((800, 110, 840, 120), (255, 205, 40)),     # sun
               ((330, 112, 390, 116), (250, 250, 250)),    # cloud
               ((100, 540, 300, 560), (90, 170, 70)),      # hills
               ((700, 560, 900, 580), (90, 170, 70)),
               ((150, 300, 200, 330), (40, 130, 50)),      # crown
               ((160, 460, 175, 510), (120, 80, 40)),      # trunk
               ((400, 480, 460, 500), (230, 210, 170)),    # wall
               ((440, 280, 580, 300), (180, 50, 40)),      # roof
               ((495, 480, 530, 520), (110, 70, 40)),      # door
               ((420, 390, 430, 410), (170, 220, 250)),    # windows
               ((447, 390, 457, 410), (170, 220, 250)),
               ((580, 390, 610, 400), (170, 220, 250)),
               ((200, 670, 700, 690), (200, 180, 140))]    # path
    for (x0, y0, x1, y1), c in strokes:
        d.line((x0, y0, x1, y1), fill=(*c, 255), width=8)
    return im


if __name__ == "__main__":
    lineart().save(os.path.join(HERE, "lineart.png"))
    hints().save(os.path.join(HERE, "hints.png"))
    print("wrote examples/lineart.png and examples/hints.png")
