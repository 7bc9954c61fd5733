// node render.mjs OUT_DIR STYLE COUNT [FIRST_SEED]
//
// Writes COUNT deterministic avatars of one DiceBear style as SVG pairs:
//   STYLE-NNNNNN.svg        colored, with a palette drawn from the seed
//   STYLE-NNNNNN_lines.svg  the same avatar with every palette color white,
//                           so only its black outline shapes remain (exact line art)
// and prints one JSON line per avatar.  Only styles whose meta.license is CC0 are
// accepted: the training data must carry no obligations.
import { createAvatar } from '@dicebear/core';
import * as collection from '@dicebear/collection';
import fs from 'node:fs';
import path from 'node:path';

const [outDir, styleName, countArg, firstArg] = process.argv.slice(2);
const style = collection[styleName];
if (!style) throw new Error(`unknown style ${styleName}`);
const license = (style.meta && style.meta.license && style.meta.license.name) || '';
if (!license.startsWith('CC0')) throw new Error(`${styleName} is licensed ${license}, not CC0`);

// A small seeded PRNG (mulberry32): the palette must depend on the seed only.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const hex = (r, g, b) => [r, g, b].map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
function hsl(h, s, l) {
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return hex(255 * f(0), 255 * f(8), 255 * f(4));
}
// Natural skin tones most of the time, any color sometimes (fantasy characters).
const SKIN = ['ffdbb4', 'edb98a', 'd08b5b', 'ae5d29', '694d3d', 'f2d3b1', 'c68642', 'e0ac69', '8d5524', 'ffe0bd'];
const HAIR = ['2c1b18', '4a312c', '724133', 'a55728', 'b58143', 'd6b370', 'e8e1e1', 'c93305', 'f59797', '000000'];
const anyColor = (r) => hsl(360 * r(), 0.35 + 0.6 * r(), 0.3 + 0.5 * r());
const pick = (r, list) => list[Math.floor(r() * list.length)];

// The style options that take colors, per style; the others keep their defaults.
const COLOR_OPTIONS = {
  lorelei: ['skinColor', 'hairColor', 'hairAccessoriesColor', 'earringsColor', 'glassesColor'],
  openPeeps: ['skinColor', 'headContrastColor', 'clothingColor'],
  thumbs: ['shapeColor'],
};

function palette(r, name) {
  const out = {};
  for (const opt of COLOR_OPTIONS[name] || []) {
    let c;
    if (opt === 'skinColor') c = r() < 0.75 ? pick(r, SKIN) : anyColor(r);
    else if (opt === 'hairColor' || opt === 'headContrastColor') c = r() < 0.5 ? pick(r, HAIR) : anyColor(r);
    else c = anyColor(r);
    out[opt] = [c];
  }
  return out;
}

const count = Number(countArg);
const first = Number(firstArg || 0);
fs.mkdirSync(outDir, { recursive: true });
for (let i = first; i < first + count; i++) {
  const seed = `${styleName}-${i}`;
  const r = prng(i * 2654435761 + styleName.length);
  const colors = palette(r, styleName);
  const base = { seed, backgroundColor: [] };
  const name = `${styleName}-${String(i).padStart(6, '0')}`;
  fs.writeFileSync(path.join(outDir, `${name}.svg`), createAvatar(style, { ...base, ...colors }).toString());
  const white = Object.fromEntries(Object.keys(colors).map((k) => [k, ['ffffff']]));
  const hasLines = Object.keys(colors).length > 0 && styleName !== 'thumbs';  // thumbs has no outlines
  if (hasLines) fs.writeFileSync(path.join(outDir, `${name}_lines.svg`), createAvatar(style, { ...base, ...white }).toString());
  const creator = (style.meta && style.meta.creator) || '';
  console.log(JSON.stringify({ name, seed, style: styleName, license, creator, colors, lines: hasLines }));
}
