// The operator's view of GET /v1/cluster, drawn as SVG: shard fill and the treasury.
import { Client } from "./vendor/canistry-client.js";
import { describe, gatewayUrl, say } from "./common.js";

const gateway = gatewayUrl();
const api = new Client(gateway);
const NS = "http://www.w3.org/2000/svg";
const COLORS = { active: "#2f6fed", full: "#c2410c", unknown: "#9aa3b5" };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = (n) => Number(n).toLocaleString("en-US");

function drawShards(svg, view) {
  const width = svg.clientWidth || 900;
  const height = 240;
  const top = 24, bottom = 40, left = 76;
  const plot = height - top - bottom;
  const shards = view.shards;
  const most = Math.max(1, ...shards.map((s) => s.capacity || s.users));
  const slot = Math.min(90, (width - left - 10) / Math.max(1, shards.length));
  const parts = [el("line", { x1: left, y1: top + plot, x2: width - 10, y2: top + plot, stroke: "#d9dee8" })];
  for (const tick of [0, 0.5, 1]) {
    const y = top + plot - tick * plot;
    parts.push(el("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, fmt(Math.round(tick * most))));
  }
  if (view.soft_limit > 0 && view.soft_limit <= most) {
    const y = top + plot - (view.soft_limit / most) * plot;
    parts.push(el("line", { x1: left, y1: y, x2: width - 10, y2: y, stroke: "#c2410c", "stroke-dasharray": "4 4" }));
    parts.push(el("text", { x: width - 12, y: y - 4, "text-anchor": "end", fill: "#c2410c" }, `soft limit ${fmt(view.soft_limit)}`));
  }
  shards.forEach((s, i) => {
    const x = left + i * slot + slot * 0.15;
    const w = slot * 0.7;
    const capH = ((s.capacity || 0) / most) * plot;
    const useH = s.users > 0 ? Math.max(2, (s.users / most) * plot) : 0;
    const g = el("g", { class: "shard", "data-shard": s.id, "data-users": s.users, "data-capacity": s.capacity });
    g.append(
      el("rect", { x, y: top + plot - capH, width: w, height: capH, fill: "#eef1f7", stroke: "#d9dee8" }),
      el("rect", { x, y: top + plot - useH, width: w, height: useH, fill: COLORS[s.state] ?? COLORS.unknown }),
      el("text", { x: x + w / 2, y: top + plot - Math.max(useH, capH) - 6, "text-anchor": "middle" }, `${fmt(s.users)} / ${fmt(s.capacity)}`),
      el("text", { x: x + w / 2, y: top + plot + 16, "text-anchor": "middle" }, s.id),
      el("text", { x: x + w / 2, y: top + plot + 31, "text-anchor": "middle", fill: "#5b6478" }, s.state),
    );
    parts.push(g);
  });
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren(...parts);
}

function bar(y, label, part, whole, color, id) {
  // Anything above zero stays visible however small its share.
  const share = whole > 0 ? part / whole : 0;
  const pct = (100 * share).toPrecision(3);
  return (width) => [
    el("text", { x: 10, y: y - 8 }, `${label}: ${fmt(part)} of ${fmt(whole)} (${pct}%)`),
    el("rect", { x: 10, y, width: width - 20, height: 22, fill: "#eef1f7", stroke: "#d9dee8", rx: 4 }),
    el("rect", { id, x: 10, y, width: part > 0 ? Math.max(3, share * (width - 20)) : 0, height: 22, fill: color, rx: 4 }),
  ];
}

function drawTreasury(svg, view) {
  const width = svg.clientWidth || 900;
  svg.setAttribute("viewBox", `0 0 ${width} 110`);
  svg.replaceChildren(
    ...bar(24, "granted by the treasury, of the cap", view.total_granted, view.cap, "#2f6fed", "granted")(width),
    ...bar(80, "staked by users (as shards last reported), of what was granted", view.total_staked, view.total_granted, "#1f9d55", "staked")(width),
  );
}

async function refresh() {
  try {
    const view = await api.cluster();
    drawShards(document.getElementById("shards"), view);
    drawTreasury(document.getElementById("treasury"), view);
    document.getElementById("updated").textContent = `${view.shards.length} shard(s); updated ${new Date().toLocaleTimeString()}`;
    say("");
    document.body.dataset.state = "drawn";
  } catch (error) {
    say(describe(error, gateway));
  }
}

await refresh();
setInterval(refresh, 2000);
