/**
 * Rendered images for the generated chart, document and science-diagram questions
 * (models/synthetic-task-questions.ts), so that the vision features of the richer model have
 * something to learn from: the real images we may use are a few hundred photos, without one chart,
 * page or diagram among them. Each is an SVG drawn from a seed and rendered by sharp (librsvg with
 * the DejaVu fonts of the build machine; other fonts give other bytes), written to a folder the
 * build owns and removes.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";
import { createRandom, type Random } from "../src/util/random.js";

export type RenderedGroup = "chart" | "document" | "science";

const FONT = "DejaVu Sans, sans-serif";
const WORDS = [
  "total",
  "revenue",
  "report",
  "annual",
  "date",
  "invoice",
  "amount",
  "market",
  "share",
  "growth",
  "survey",
  "results",
  "company",
  "address",
  "phone",
  "members",
  "committee",
  "meeting",
  "budget",
  "summary",
  "page",
  "section",
  "table",
  "figure",
  "percent",
  "value",
  "year",
  "office",
  "program",
];
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"];

const pick = <T>(r: Random, xs: readonly T[]): T => xs[r.int(xs.length)];
const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
const text = (x: number, y: number, size: number, s: string, extra = "") =>
  `<text x="${x}" y="${y}" font-family="${FONT}" font-size="${size}" fill="#111" ${extra}>${escapeXml(s)}</text>`;
const phrase = (r: Random, n: number) => Array.from({ length: n }, () => pick(r, WORDS)).join(" ");

function chartSvg(r: Random, w: number, h: number): string {
  const parts = [
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    text(40, 40, 22, phrase(r, 4), 'font-weight="bold"'),
  ];
  const kind = r.int(3);
  const left = 70;
  const bottom = h - 60;
  const top = 80;
  parts.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333" stroke-width="2"/>`);
  parts.push(
    `<line x1="${left}" y1="${bottom}" x2="${w - 30}" y2="${bottom}" stroke="#333" stroke-width="2"/>`,
  );
  for (let t = 0; t <= 4; t++) {
    const y = bottom - ((bottom - top) * t) / 4;
    parts.push(text(20, y + 5, 14, String(t * 25)));
    parts.push(`<line x1="${left}" y1="${y}" x2="${w - 30}" y2="${y}" stroke="#ddd"/>`);
  }
  const n = 4 + r.int(6);
  const step = (w - left - 50) / n;
  if (kind === 2) {
    // a pie chart with a legend instead of axes
    parts.length = 2;
    let angle = 0;
    const cx = w / 3;
    const cy = h / 2 + 20;
    const rad = Math.min(w, h) / 3.2;
    for (let k = 0; k < n; k++) {
      const share = (1 + r.next()) / (n * 1.5);
      const a1 = Math.min(2 * Math.PI, angle + share * 2 * Math.PI);
      const large = a1 - angle > Math.PI ? 1 : 0;
      const p0 = [cx + rad * Math.cos(angle), cy + rad * Math.sin(angle)];
      const p1 = [cx + rad * Math.cos(a1), cy + rad * Math.sin(a1)];
      parts.push(
        `<path d="M${cx},${cy} L${p0[0].toFixed(1)},${p0[1].toFixed(1)} A${rad},${rad} 0 ${large} 1 ${p1[0].toFixed(1)},${p1[1].toFixed(1)} Z" fill="${COLOURS[k % COLOURS.length]}"/>`,
      );
      parts.push(
        `<rect x="${(w * 2) / 3}" y="${90 + k * 26}" width="16" height="16" fill="${COLOURS[k % COLOURS.length]}"/>`,
      );
      parts.push(text((w * 2) / 3 + 24, 104 + k * 26, 15, `${pick(r, WORDS)} ${Math.round(share * 100)}%`));
      angle = a1;
    }
    return parts.join("");
  }
  let prev: [number, number] | undefined;
  for (let k = 0; k < n; k++) {
    const v = 0.1 + 0.85 * r.next();
    const x = left + 10 + k * step;
    const y = bottom - v * (bottom - top);
    if (kind === 0)
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(step * 0.7).toFixed(1)}" height="${(bottom - y).toFixed(1)}" fill="${pick(r, COLOURS)}"/>`,
      );
    else {
      if (prev)
        parts.push(
          `<line x1="${prev[0]}" y1="${prev[1]}" x2="${x.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#1f77b4" stroke-width="3"/>`,
        );
      parts.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" fill="#1f77b4"/>`);
      prev = [Number(x.toFixed(1)), Number(y.toFixed(1))];
    }
    parts.push(text(x, bottom + 22, 13, String(2010 + k)));
    if (r.next() < 0.5) parts.push(text(x, y - 6, 12, `${Math.round(v * 100)}`));
  }
  return parts.join("");
}

function documentSvg(r: Random, w: number, h: number): string {
  const parts = [`<rect width="100%" height="100%" fill="${pick(r, ["#ffffff", "#f7f5ee", "#fbfbf8"])}"/>`];
  parts.push(text(50, 60, 26, phrase(r, 3).toUpperCase(), 'font-weight="bold"'));
  let y = 110;
  while (y < h - 40) {
    if (r.next() < 0.15) {
      y += 18;
      parts.push(text(50, y, 18, `${phrase(r, 2)}:`, 'font-weight="bold"'));
    } else {
      const words = 5 + r.int(8);
      parts.push(text(50, y, 14, `${phrase(r, words)} ${r.int(1000)}`));
    }
    y += 22 + r.int(8);
  }
  if (r.next() < 0.5)
    parts.push(`<rect x="${w - 220}" y="${h - 120}" width="170" height="70" fill="none" stroke="#333"/>`);
  return parts.join("");
}

function scienceSvg(r: Random, w: number, h: number): string {
  const parts = [`<rect width="100%" height="100%" fill="#ffffff"/>`];
  const n = 3 + r.int(4);
  const cx = w / 2;
  const cy = h / 2;
  const rad = Math.min(w, h) / 3;
  const points: [number, number][] = [];
  for (let k = 0; k < n; k++) {
    const a = (2 * Math.PI * k) / n;
    points.push([cx + rad * Math.cos(a), cy + rad * Math.sin(a)]);
  }
  const shape = r.int(3);
  if (shape === 0)
    for (let k = n; k >= 1; k--)
      parts.push(
        `<circle cx="${cx}" cy="${cy}" r="${((rad * k) / n).toFixed(1)}" fill="${pick(r, COLOURS)}" fill-opacity="0.5" stroke="#333"/>`,
      );
  points.forEach(([x, y], k) => {
    const [nx, ny] = points[(k + 1) % n];
    if (shape !== 0)
      parts.push(
        `<line x1="${x.toFixed(1)}" y1="${y.toFixed(1)}" x2="${nx.toFixed(1)}" y2="${ny.toFixed(1)}" stroke="#333" stroke-width="2" marker-end="url(#a)"/>`,
      );
    if (shape === 1)
      parts.push(
        `<ellipse cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" rx="34" ry="22" fill="${pick(r, COLOURS)}"/>`,
      );
    if (shape === 2)
      parts.push(
        `<rect x="${(x - 30).toFixed(1)}" y="${(y - 20).toFixed(1)}" width="60" height="40" fill="#eee" stroke="#333"/>`,
      );
    parts.push(text(x + 30, y - 24, 18, String.fromCharCode(65 + k), 'font-weight="bold"'));
    if (r.next() < 0.6)
      parts.push(
        text(
          x - 30,
          y + 40,
          13,
          pick(r, ["egg", "larva", "pupa", "adult", "sun", "plant", "water", "cloud", "rain"]),
        ),
      );
  });
  return `<defs><marker id="a" markerWidth="10" markerHeight="10" refX="8" refY="3" orient="auto"><path d="M0,0 L0,6 L9,3 z" fill="#333"/></marker></defs>${parts.join("")}`;
}

/** Renders `perGroup` images of each group into `dir`; returns their paths by group. Same seed, same SVGs. */
export async function renderTaskImages(
  dir: string,
  perGroup: number,
  seed: number,
): Promise<Record<RenderedGroup, string[]>> {
  await mkdir(dir, { recursive: true });
  const r = createRandom(seed);
  const out: Record<RenderedGroup, string[]> = { chart: [], document: [], science: [] };
  const draw = { chart: chartSvg, document: documentSvg, science: scienceSvg };
  for (const group of ["chart", "document", "science"] as const)
    for (let i = 0; i < perGroup; i++) {
      const w = 480 + 40 * r.int(8);
      const h = group === "document" ? Math.round(w * 1.3) : 360 + 40 * r.int(5);
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${draw[group](r, w, h)}</svg>`;
      const path = join(dir, `${group}-${i}.png`);
      await writeFile(path, await sharp(Buffer.from(svg)).png().toBuffer());
      out[group].push(path);
    }
  return out;
}
