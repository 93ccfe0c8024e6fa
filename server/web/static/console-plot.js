// Line plots in inline SVG for the console: no library, no CDN, works offline.
// draw(svg, series) with series = [{name, points: [[t_ms, value], ...]}, ...] draws one
// polyline per series on shared axes, a legend, the y range and the time span.
"use strict";

const ManorPlot = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const WIDTH = 600;
  const HEIGHT = 180;
  const PAD = { left: 48, right: 8, top: 8, bottom: 34 };
  const COLORS = ["#b8860b", "#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#00838f",
                  "#ef6c00", "#4e342e", "#ad1457", "#37474f"];
  const LEGEND_MAX = 8; // series named under the plot; the rest are drawn unnamed

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function label(value) {
    if (Math.abs(value) >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (Math.abs(value) >= 1e3) return (value / 1e3).toFixed(1) + "k";
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }

  function draw(svg, series) {
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    svg.replaceChildren();
    const points = series.flatMap((s) => s.points);
    const x0 = PAD.left, x1 = WIDTH - PAD.right, y0 = HEIGHT - PAD.bottom, y1 = PAD.top;
    svg.append(el("line", { class: "axis", x1: x0, y1: y0, x2: x1, y2: y0 }));
    svg.append(el("line", { class: "axis", x1: x0, y1: y0, x2: x0, y2: y1 }));
    if (points.length === 0) {
      svg.append(el("text", { x: x0 + 8, y: (y0 + y1) / 2 }, "waiting for data…"));
      svg.dataset.lines = "0";
      return;
    }
    const tMin = Math.min(...points.map((p) => p[0]));
    const tMax = Math.max(...points.map((p) => p[0]), tMin + 1);
    const vMin = Math.min(0, ...points.map((p) => p[1]));
    const vMax = Math.max(1, ...points.map((p) => p[1]));
    const sx = (t) => x0 + ((t - tMin) / (tMax - tMin)) * (x1 - x0);
    const sy = (v) => y0 - ((v - vMin) / (vMax - vMin)) * (y0 - y1);
    svg.append(el("text", { x: 2, y: y1 + 8 }, label(vMax)));
    svg.append(el("text", { x: 2, y: y0 }, label(vMin)));
    svg.append(el("text", { x: x1 - 60, y: y0 + 12 },
      `last ${Math.round((tMax - tMin) / 1000)} s`));
    let lines = 0;
    series.forEach((s, i) => {
      if (s.points.length === 0) return;
      const color = COLORS[i % COLORS.length];
      const coords = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`);
      if (s.points.length === 1) coords.push(`${x1},${sy(s.points[0][1]).toFixed(1)}`);
      const line = el("polyline", { points: coords.join(" "), stroke: color });
      line.dataset.series = s.name;
      line.append(el("title", {}, s.name));
      svg.append(line);
      lines += 1;
      if (i < LEGEND_MAX) {
        const x = x0 + (i % 4) * 135, y = HEIGHT - 14 + Math.floor(i / 4) * 11;
        svg.append(el("rect", { x, y: y - 7, width: 8, height: 8, fill: color }));
        const last = s.points[s.points.length - 1][1];
        svg.append(el("text", { x: x + 11, y }, `${s.name} ${label(last)}`));
      }
    });
    svg.dataset.lines = String(lines);
  }

  return { draw };
})();
