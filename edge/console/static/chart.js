// A small live chart of messages in and out per second, summed over the
// edges, drawn on a canvas (no library).

// drawRates draws the edges' rate samples (each edge's .rates, oldest
// first, one per second) on canvas.
export function drawRates(canvas, edges) {
  const byTime = new Map(); // second -> {in, out}
  for (const e of edges) {
    for (const s of e.rates || []) {
      const k = Math.round(s.t / 1000);
      const v = byTime.get(k) || { in: 0, out: 0 };
      v.in += s.in;
      v.out += s.out;
      byTime.set(k, v);
    }
  }
  const keys = [...byTime.keys()].sort((a, b) => a - b);
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(200, canvas.clientWidth || 800);
  const h = Math.max(100, canvas.clientHeight || 180);
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const styles = getComputedStyle(canvas);
  const fg = styles.getPropertyValue("--fg").trim() || "#222";
  const cin = styles.getPropertyValue("--in").trim() || "#2a7de1";
  const cout = styles.getPropertyValue("--out").trim() || "#e1802a";
  const pad = { l: 40, r: 8, t: 8, b: 18 };
  const max = Math.max(1, ...keys.map((k) => Math.max(byTime.get(k).in, byTime.get(k).out)));
  const top = niceCeil(max);
  ctx.strokeStyle = fg;
  ctx.globalAlpha = 0.25;
  ctx.beginPath();
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + ((h - pad.t - pad.b) * i) / 4;
    ctx.moveTo(pad.l, y);
    ctx.lineTo(w - pad.r, y);
  }
  ctx.stroke();
  ctx.globalAlpha = 1;
  ctx.fillStyle = fg;
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right";
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + ((h - pad.t - pad.b) * i) / 4;
    ctx.fillText(String(Math.round((top * (4 - i)) / 4)), pad.l - 4, y + 4);
  }
  ctx.textAlign = "left";
  const secs = keys.length ? keys[keys.length - 1] - keys[0] : 0;
  ctx.fillText(keys.length ? `last ${secs < 120 ? secs + " s" : Math.round(secs / 60) + " min"}` : "no samples yet", pad.l, h - 4);
  if (keys.length < 2) return;
  const x0 = keys[0];
  const span = Math.max(1, keys[keys.length - 1] - x0);
  const line = (field, color) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    keys.forEach((k, i) => {
      const x = pad.l + ((w - pad.l - pad.r) * (k - x0)) / span;
      const y = pad.t + (h - pad.t - pad.b) * (1 - byTime.get(k)[field] / top);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  };
  line("in", cin);
  line("out", cout);
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
