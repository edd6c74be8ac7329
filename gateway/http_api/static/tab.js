// Live ASCII tablature: note events (string, fret, start) drawn as tab lines per part.
"use strict";

const TabView = (() => {
  const CELLS_PER_SECOND = 8;   // one column per 1/8 s
  const CELLS_PER_LINE = 48;    // 6 s of music per line

  // A part being drawn: its tuning (from the `part` event) and the notes so far.
  function newPart(name, tuning) {
    return { name, tuning: tuning || null, notes: [], finalUntil: 0 };
  }

  function stringNames(part) {
    if (part.tuning && part.tuning.string_names) return part.tuning.string_names;
    const strings = part.name === "bass" ? 4 : 6;
    let top = 0;
    for (const n of part.notes) top = Math.max(top, n.string + 1);
    return Array.from({ length: Math.max(strings, top) }, (_, i) => String(i + 1));
  }

  // Text of the whole tab so far: blocks of CELLS_PER_LINE columns, highest string on top.
  function render(part) {
    const names = stringNames(part);
    const strings = names.length;
    let end = 0;
    for (const n of part.notes) end = Math.max(end, n.start);
    const cells = Math.max(CELLS_PER_LINE, Math.ceil((end + 0.01) * CELLS_PER_SECOND) + 1);
    const grid = Array.from({ length: strings }, () => new Array(cells).fill("-"));
    for (const n of part.notes) {
      if (n.string < 0 || n.string >= strings || n.fret < 0) continue;
      const col = Math.round(n.start * CELLS_PER_SECOND);
      grid[n.string][col] = String(n.fret);
    }
    const width = Math.max(...names.map((s) => s.length));
    // Every column is one wider than the widest fret, so "10" and "12" never run together.
    let cell = 2;
    for (const row of grid) for (const c of row) cell = Math.max(cell, c.length + 1);
    const blocks = [];
    for (let from = 0; from < cells; from += CELLS_PER_LINE) {
      const to = Math.min(cells, from + CELLS_PER_LINE);
      const lines = [`${(from / CELLS_PER_SECOND).toFixed(0)} s`];
      for (let s = strings - 1; s >= 0; s--) {
        const row = grid[s].slice(from, to).map((c) => c.padEnd(cell, "-")).join("");
        lines.push(`${names[s].padEnd(width)}|${row}|`);
      }
      blocks.push(lines.join("\n"));
    }
    return blocks.join("\n\n");
  }

  return { newPart, render };
})();
