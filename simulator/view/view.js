/* tickprop view: scrub a saved run through time. No network, no libraries.
 *
 * The payload (simulator/view/data.py) is embedded as JSON in #tickprop-data.
 * One canvas holds the whole picture, so "export PNG" saves exactly what is
 * seen: the raster (rows = layers or vertices, bottom first; columns = ticks)
 * with a cursor at the current tick, the neuron strips of x and δ at the
 * cursor, the per-row bars (mismatch, error) and the colour keys.
 * #readout carries the current tick's arrays as JSON in data-values (what
 * "export CSV" writes), for scripts and tests.
 */
(function () {
  "use strict";

  var P = JSON.parse(document.getElementById("tickprop-data").textContent);
  var DTYPES = { f8: Float64Array, f4: Float32Array, i4: Int32Array, u1: Uint8Array };
  var PAL = P.palette.rgb;       // simulator/analysis/palette.py: the PNGs' colours
  function hex(c) {
    return "#" + c.map(function (v) { return (v < 16 ? "0" : "") + v.toString(16); }).join("");
  }
  var C = {
    fwd: PAL.red, bwd: PAL.blue, both: PAL.purple, none: PAL.empty,
    zero: [200, 200, 200], nan: [255, 255, 255], over: [255, 0, 255],
    ls: hex(PAL.ls), cursor: hex(PAL.cursor), sync: hex(PAL.sync), text: "#1d1d1d",
    faint: "#777777", grid: "#cccccc"
  };
  var VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                 [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  var NEG = PAL.signed[0], MID = PAL.signed[1], POS = PAL.signed[2];
  var MISMATCH_H = [96, 180];   // the mismatch-over-time panel's height, least and most (px)
  var SPEEDS = [0.5, 1, 2, 5, 10, 20, 50, 100];
  var ZOOMS = [50, 100, 200, 400, 1000];
  var FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

  function decode(rec) {
    if (!rec) { return null; }
    var bin = atob(rec.b64), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) { bytes[i] = bin.charCodeAt(i); }
    return new DTYPES[rec.dtype](bytes.buffer);
  }

  function rowScales(a, F, R, N) {
    var s = new Float64Array(R);
    for (var f = 0; f < F; f++) {
      for (var r = 0; r < R; r++) {
        for (var j = 0; j < N; j++) {
          var v = Math.abs(a[(f * R + r) * N + j]);
          if (v > s[r]) { s[r] = v; }
        }
      }
    }
    return s;
  }

  function logRange(a) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < a.length; i++) {
      var v = a[i];
      if (v > 0 && isFinite(v)) { if (v < lo) { lo = v; } if (v > hi) { hi = v; } }
    }
    if (!isFinite(hi)) { return [-1, 0]; }
    hi = Math.log10(hi);
    lo = Math.max(Math.log10(lo), hi - 12);
    if (hi - lo < 1e-9) { lo = hi - 1; }
    return [lo, hi];
  }

  var F = P.ticks.length;
  var views = P.views.map(function (v) {
    var R = v.rows.length, V = { spec: v, R: R, fields: {}, tags: {} };
    Object.keys(v.fields).forEach(function (k) { V.fields[k] = decode(v.fields[k]); });
    Object.keys(v.tags || {}).forEach(function (k) { V.tags[k] = decode(v.tags[k]); });
    V.wave = decode(v.wave);
    V.colours = {};
    Object.keys(v.colours || {}).forEach(function (k) { V.colours[k] = decode(v.colours[k]); });
    V.curves = ["mismatch_cos", "mismatch_rel"].filter(function (k) {
      return V.fields[k] && V.fields[k].some(function (x) { return isFinite(x); });
    });
    if (V.fields.mismatch_rel) { V.relRange = logRange(V.fields.mismatch_rel); }
    V.stream = decode(v.stream_frame);
    if (v.states) {
      V.N = v.states.x.shape[2];
      V.x = decode(v.states.x);
      V.d = decode(v.states.delta);
      V.index = v.states.index;
      V.xs = rowScales(V.x, F, R, V.N);
      V.ds = rowScales(V.d, F, R, V.N);
    }
    if (v.raster.mode === "magnitude") { V.range = logRange(V.fields[v.raster.field]); }
    if (v.bars && v.bars.log) { V.barRange = logRange(V.fields[v.bars.field]); }
    return V;
  });

  var S = { view: P.default_view || 0, frame: 0, playing: false, speed: 10, zoom: 0,
            raster: "layers", selection: null, acc: 0, last: 0, overlay: true,
            colour: "magnitude", curve: "mismatch_cos" };
  var canvas = document.getElementById("canvas"), ctx = canvas.getContext("2d");
  var hoverBox = document.getElementById("hover"), readout = document.getElementById("readout");
  var L = null;          // the layout of the current picture
  var rasterImage = null;

  function V() { return views[S.view]; }
  function clamp(v, a, b) { return Math.max(a, Math.min(b, v)); }
  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) { return "—"; }
    if (!isFinite(v)) { return v > 0 ? "overflow (∞)" : "−∞"; }
    if (v === 0) { return "0"; }
    return String(Number(v.toPrecision(6)));
  }
  function power(e) { return Math.pow(10, e).toExponential(1).replace("e+", "e"); }
  function rgb(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function mixc(a, b, t) {
    return [Math.round(a[0] + (b[0] - a[0]) * t), Math.round(a[1] + (b[1] - a[1]) * t),
            Math.round(a[2] + (b[2] - a[2]) * t)];
  }
  function viridis(t) {
    t = clamp(t, 0, 1) * (VIRIDIS.length - 1);
    var i = Math.min(Math.floor(t), VIRIDIS.length - 2);
    return mixc(VIRIDIS[i], VIRIDIS[i + 1], t - i);
  }
  function magnitude(v, range) {
    if (Number.isNaN(v)) { return C.nan; }
    if (!isFinite(v)) { return C.over; }
    if (v === 0) { return C.zero; }
    return viridis((Math.log10(Math.abs(v)) - range[0]) / (range[1] - range[0]));
  }
  function diverging(v, scale) {
    if (Number.isNaN(v)) { return null; }
    var t = scale > 0 ? clamp(v / scale, -1, 1) : 0;
    return t < 0 ? mixc(MID, NEG, -t) : mixc(MID, POS, t);
  }

  // ---------------------------------------------------------------- rows
  function selected(V, r) {
    // the embedded neuron columns of row r that the selection draws
    if (!V.index || !V.index[r]) { return []; }
    var out = [];
    V.index[r].forEach(function (n, j) {
      if (S.selection === null || S.selection.has(n)) { out.push(j); }
    });
    return out;
  }

  function rasterRows() {
    // The rows the raster draws: the view's layers, or the neurons of one layer.
    var Vw = V(), spec = Vw.spec;
    if (S.raster === "layers" || !Vw.x) {
      return spec.rows.map(function (row, r) {
        return { name: row.label || row.name, row: r, sync: row.sync, identity: row.identity,
                 cells: selected(Vw, r) };
      });
    }
    var parts = S.raster.split(":"), which = parts[0], r0 = parseInt(parts[1], 10);
    return selected(Vw, r0).map(function (j) {
      return { name: "n" + Vw.index[r0][j], row: r0, neuron: j, which: which,
               sync: false, identity: false, cells: [j] };
    });
  }

  function waveLabels() {
    // what the wave bits mean: the payload's words (a schedules run), else the waves'
    return V().spec.wave_labels || {
      forward: "forward wave: x carries a frame", backward: "backward wave: δ ≠ 0",
      both: "both: red-blue neuron", none: "empty",
      overlay: "g pairs x and δ of one stream frame", toggle: "sync overlay",
      overlay_cell: "g pairs x and δ of the same stream frame (synchronized)",
      cells: ["neither wave", "forward frame, δ = 0", "δ ≠ 0, no forward frame yet",
              "forward frame and δ ≠ 0 (both waves)"] };
  }

  function rowLabel(r) { var row = V().spec.rows[r]; return row.label || row.name; }

  function rowName(r) {
    var row = V().spec.rows[r], kind = V().spec.row_label.split(" ")[0];
    return kind + " " + (row.label || row.name);
  }

  function cellValue(Vw, a, f, r, j) { return a[(f * Vw.R + r) * Vw.N + j]; }

  function buildRasterImage(rows) {
    var Vw = V(), spec = Vw.spec, n = rows.length;
    var off = document.createElement("canvas");
    off.width = Math.max(F, 1);
    off.height = Math.max(n, 1);
    var octx = off.getContext("2d"), img = octx.createImageData(off.width, off.height);
    for (var i = 0; i < n; i++) {
      var row = rows[i], y = n - 1 - i;
      for (var f = 0; f < F; f++) {
        var c;
        if (row.neuron !== undefined) {
          var a = row.which === "x" ? Vw.x : Vw.d, sc = row.which === "x" ? Vw.xs : Vw.ds;
          c = diverging(cellValue(Vw, a, f, row.row, row.neuron), sc[row.row]) || C.nan;
        } else if (spec.raster.mode === "waves") {
          var at = (f * Vw.R + row.row) * 3, rgbs = Vw.colours[S.colour];
          c = [rgbs[at], rgbs[at + 1], rgbs[at + 2]];
        } else {
          c = magnitude(Vw.fields[spec.raster.field][f * Vw.R + row.row], Vw.range);
        }
        var k = (y * off.width + f) * 4;
        img.data[k] = c[0]; img.data[k + 1] = c[1]; img.data[k + 2] = c[2]; img.data[k + 3] = 255;
      }
    }
    octx.putImageData(img, 0, 0);
    return off;
  }

  // -------------------------------------------------------------- layout
  function measure(text, size, bold) {
    ctx.font = (bold ? "bold " : "") + size + "px " + FONT;
    return ctx.measureText(text).width;
  }

  function relayout() {
    // Fit the picture to the window: the raster takes the width the label column,
    // strips and bars leave, the rows the height the panels below leave (the colour
    // keys' height, which wrap at the picture's width, from a dry run).
    hoverBox.hidden = true;                   // a box about the old picture would be stale
    document.getElementById("colourbox").hidden = !Object.keys(V().colours).length ||
      S.raster !== "layers";                  // the neuron rasters have their own colours
    var rows = rasterRows();
    L = layout(rows, 80);
    L = layout(rows, drawKeys() - L.keyTop);
    L.Hc = drawKeys() + 6;                    // draw() paints over the dry runs
    var dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(L.W * dpr);
    canvas.height = Math.round(L.Hc * dpr);
    canvas.style.width = L.W + "px";
    canvas.style.height = L.Hc + "px";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    rasterImage = buildRasterImage(rows);
  }

  function layout(rows, keysH) {
    var Vw = V(), spec = Vw.spec, n = Math.max(rows.length, 1);
    var left = canvas.getBoundingClientRect().left + window.scrollX;      // the body's margin
    var room = Math.max(document.documentElement.clientWidth - 2 * left, 560);
    var tall = window.innerHeight - canvas.getBoundingClientRect().top - window.scrollY;
    var curves = Vw.curves.length > 0, hasStates = !!Vw.x;
    var below = 24 + (curves ? MISMATCH_H[0] + 16 : 0) + 44 + keysH + 6 + 40;   // + readout
    var rowH = clamp(Math.floor(clamp(tall - 52 - below, 150, 560) / n), 6, 36);
    var plotH = curves ? MISMATCH_H[0] + clamp(tall - 52 - below - n * rowH, 0,
                                                MISMATCH_H[1] - MISMATCH_H[0]) : 0;
    var plot = curves ? plotH + 16 : 0;
    var font = clamp(rowH - 2, 9, 13);
    var labelW = 16;
    rows.forEach(function (row) {
      labelW = Math.max(labelW, measure(row.name, font, row.sync) + 14);
    });
    labelW = Math.ceil(Math.min(labelW, 170, room / 7)) + 22;   // + the row-axis title
    var graph = spec.edges && spec.edges.some(function (e) { return e[2] !== 1; }) &&
      S.raster === "layers";
    var stripW = graph ? 40 : 0, x0 = labelW + stripW;
    var win = S.zoom > 0 && S.zoom < F ? S.zoom : F;
    var maxCells = 0;
    rows.forEach(function (row) { maxCells = Math.max(maxCells, row.cells.length); });
    var head = Math.ceil(measure("δ at cursor", 12, true)) + 10;
    var cellN = hasStates && maxCells ? clamp(Math.floor(room / 6 / maxCells), 1, 16) : 0;
    var stripPanel = hasStates ? Math.max(maxCells * cellN, head) : 150;
    var showBars = S.raster === "layers" && spec.bars;
    var barW = showBars ? clamp(Math.floor(room / 9), 90, 140) : 0;
    var barTitle = showBars ? measure(spec.bars.label + " at cursor", 12, true) : 0;
    var barsRoom = showBars ? Math.max(barW + 70, barTitle + 12) : 0;
    var right = 26 + (hasStates ? 2 * stripPanel + 12 : stripPanel) + 30 + barsRoom;
    var rasterW = Math.floor(clamp(room - x0 - right, 200, Math.max(win * 24, 560)));
    var sx = x0 + rasterW + 26;
    var sd = sx + (hasStates ? stripPanel + 12 : 0);
    var bx = (hasStates ? sd + stripPanel : sx + stripPanel) + 30;
    var W = Math.ceil(Math.min(Math.max(bx + barsRoom, x0 + rasterW + 40), room));
    var top = 52, H = n * rowH;
    var mTop = top + H + 24;                  // the mismatch panel, under the tick numbers
    var keyTop = mTop + plot + 44;
    return { rows: rows, n: n, rowH: rowH, font: font, labelW: labelW, stripW: stripW, x0: x0,
             rasterW: rasterW, win: win, top: top, H: H, sx: sx, sd: sd, cellN: cellN,
             stripPanel: stripPanel, hasStates: hasStates, bx: bx, barW: barW,
             showBars: showBars, W: W, keyTop: keyTop, Hc: keyTop + keysH,
             mismatch: plot ? { x: x0, y: mTop, w: rasterW, h: plotH } : null };
  }

  function windowStart() {
    return clamp(S.frame - Math.floor(L.win / 2), 0, Math.max(F - L.win, 0));
  }

  // ---------------------------------------------------------------- draw
  function text(s, x, y, opts) {
    opts = opts || {};
    ctx.font = (opts.bold ? "bold " : "") + (opts.italic ? "italic " : "") +
      (opts.size || 12) + "px " + FONT;
    ctx.fillStyle = opts.colour || C.text;
    ctx.textAlign = opts.align || "left";
    ctx.textBaseline = opts.base || "middle";
    ctx.fillText(s, x, y);
    if (L.texts && !opts.turned) {            // its box, for tests that no two texts overlap
      var w = ctx.measureText(s).width, h = opts.size || 12;
      L.texts.push({ text: s, w: w, h: h, y: ctx.textBaseline === "middle" ? y - h / 2 : y,
                     x: ctx.textAlign === "right" ? x - w : ctx.textAlign === "center" ?
                       x - w / 2 : x });
    }
  }

  function rowY(i) { return L.top + L.H - (i + 1) * L.rowH; }

  function niceStep(x) {
    var p = Math.pow(10, Math.floor(Math.log10(Math.max(x, 1e-9)))), m = x / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function draw() {
    var Vw = V(), spec = Vw.spec, f = S.frame, f0 = windowStart(), cw = L.rasterW / L.win;
    L.texts = [];
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, L.W, L.Hc);
    // title
    var head = P.name + (P.views.length > 1 ? " · " + spec.label : "") + " — " +
      P.tick_label + " " + P.ticks[f] + (Vw.stream ? " (stream frame " + Vw.stream[f] + ")" : "");
    text(head, 8, 14, { bold: true, size: 14 });
    var sub = S.raster === "layers" ? (spec.raster.mode === "waves" ?
      "raster: forward and backward waves, colour by " + S.colour :
      "raster: " + spec.raster.label + " (log colour)") :
      "raster: " + (S.raster[0] === "x" ? "x" : "δ") + " of " +
        rowName(parseInt(S.raster.split(":")[1], 10)) + ", per neuron";
    text(sub, 8, 34, { size: 12, colour: C.faint });
    // row labels and axis title
    var every = Math.max(1, Math.ceil(11 / L.rowH));
    L.rows.forEach(function (row, i) {
      if (i % every && !row.sync) { return; }
      text(row.name, L.labelW - 6, rowY(i) + L.rowH / 2, {
        align: "right", size: L.font, bold: row.sync, italic: row.identity,
        colour: row.sync ? C.ls : row.identity ? C.faint : C.text });
    });
    ctx.save();
    ctx.translate(10, L.top + L.H / 2);
    ctx.rotate(-Math.PI / 2);
    text(S.raster === "layers" ? spec.row_label : "neuron", 0, 0, { align: "center", size: 11,
      turned: true,
      colour: C.faint });
    ctx.restore();
    if (L.stripW) { drawEdges(); }
    // raster
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(rasterImage, f0, 0, L.win, rasterImage.height, L.x0, L.top, L.rasterW, L.H);
    ctx.strokeStyle = C.grid;
    ctx.lineWidth = 1;
    ctx.strokeRect(L.x0 - 0.5, L.top - 0.5, L.rasterW + 1, L.H + 1);
    if (S.overlay && Vw.wave && S.raster === "layers") { drawSyncOverlay(f0, cw); }
    L.rows.forEach(function (row, i) {
      if (!row.sync) { return; }
      ctx.strokeStyle = C.ls;
      ctx.lineWidth = 2;
      ctx.strokeRect(L.x0 - 1, rowY(i), L.rasterW + 2, L.rowH);
    });
    tickAxis(L.top + L.H, f0, cw, !L.mismatch);
    // cursor
    var cx = L.x0 + (f - f0 + 0.5) * cw;
    ctx.fillStyle = C.cursor;
    ctx.fillRect(cx - 1, L.top - 6, 2, L.H + 6);
    ctx.beginPath();
    ctx.moveTo(cx - 5, L.top - 10); ctx.lineTo(cx + 5, L.top - 10); ctx.lineTo(cx, L.top - 3);
    ctx.fill();
    if (L.mismatch) { drawMismatch(f0, cw, cx); }
    drawStrips();
    if (L.showBars) { drawBars(); }
    drawKeys();
  }

  function tickAxis(y, f0, cw, titled) {
    // tick marks and numbers under a panel whose columns start at frame f0
    var step = Math.max(1, niceStep(L.win / 8));
    for (var g = f0; g < f0 + L.win; g++) {
      if (g % step) { continue; }
      var gx = L.x0 + (g - f0 + 0.5) * cw;
      ctx.fillStyle = C.faint;
      ctx.fillRect(gx, y + 1, 1, 4);
      text(String(P.ticks[g]), gx, y + 13, { align: "center", size: 11 });
    }
    if (titled) {
      text(P.tick_label + (L.win < F ? " (a window of " + L.win + " columns around the cursor)" :
           ""), L.x0 + L.rasterW / 2, y + 29, { align: "center", size: 11, colour: C.faint });
    }
  }

  function curveY(v) {
    // y of a mismatch value in the panel (NaN: none); cos linear in [−1, 1], the
    // relative error on a log scale above 0 on the bottom edge
    var M = L.mismatch, t;
    if (Number.isNaN(v)) { return NaN; }
    if (S.curve === "mismatch_cos") {
      t = (clamp(v, -1, 1) + 1) / 2;
    } else {
      var r = V().relRange;
      t = v > 0 ? 0.16 + 0.84 * clamp((Math.log10(v) - r[0]) / (r[1] - r[0]), 0, 1) : 0;
    }
    return M.y + M.h - t * M.h;
  }

  function curveColour(i, k) {
    // the ls row amber (as mismatch.png), the others along viridis, bottom to top
    return V().spec.rows[i].sync ? C.ls : rgb(viridis(k));
  }

  function curveRows() {
    var Vw = V(), a = Vw.fields[S.curve], out = [];
    Vw.spec.rows.forEach(function (row, r) {
      for (var f = 0; f < F; f++) {
        if (isFinite(a[f * Vw.R + r])) { out.push(r); return; }
      }
    });
    return out;
  }

  function drawMismatch(f0, cw, cx) {
    // Per-layer gradient mismatch against backprop over the same ticks as the
    // raster, with the cursor's line: where each layer's g becomes exact.
    var Vw = V(), M = L.mismatch, a = Vw.fields[S.curve], rows = curveRows();
    var cos = S.curve === "mismatch_cos";
    ctx.fillStyle = "#fafafa";
    ctx.fillRect(M.x, M.y, M.w, M.h);
    ctx.strokeStyle = C.grid;
    ctx.lineWidth = 1;
    ctx.strokeRect(M.x - 0.5, M.y - 0.5, M.w + 1, M.h + 1);
    var marks = cos ? [[1, "1"], [0, "0"], [-1, "−1"]] :
      [[Math.pow(10, Vw.relRange[1]), power(Vw.relRange[1])],
       [Math.pow(10, Vw.relRange[0]), power(Vw.relRange[0])], [0, "0"]];
    marks.forEach(function (m, j) {
      var y = j === 2 && !cos ? M.y + M.h : curveY(m[0]);
      ctx.fillStyle = C.grid;
      ctx.fillRect(M.x, Math.round(y), M.w, 1);
      text(m[1], M.x - 4, y, { align: "right", size: 10, colour: C.faint });
    });
    ctx.save();
    ctx.translate(10, M.y + M.h / 2);
    ctx.rotate(-Math.PI / 2);
    text(cos ? "cos(g, ∇)" : "‖g − ∇‖/‖∇‖", 0, 0, { align: "center", size: 11, colour: C.faint,
                                                turned: true });
    ctx.restore();
    ctx.save();
    ctx.beginPath();
    ctx.rect(M.x, M.y - 2, M.w, M.h + 4);
    ctx.clip();
    rows.forEach(function (r, k) {
      ctx.strokeStyle = curveColour(r, rows.length > 1 ? k / (rows.length - 1) : 0);
      ctx.lineWidth = Vw.spec.rows[r].sync ? 2.2 : 1.4;
      ctx.beginPath();
      var open = false;
      for (var g = f0; g < Math.min(f0 + L.win, F); g++) {
        var y = curveY(a[g * Vw.R + r]), x = M.x + (g - f0 + 0.5) * cw;
        if (Number.isNaN(y)) { open = false; continue; }
        if (open) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); open = true; }
      }
      ctx.stroke();
    });
    ctx.restore();
    ctx.fillStyle = C.cursor;
    ctx.fillRect(cx - 1, M.y, 2, M.h);
    tickAxis(M.y + M.h, f0, cw, true);
    drawCurveKey(rows);
  }

  function drawCurveKey(rows) {
    // the layers' line colours, in columns right of the panel (the ls row bold)
    var M = L.mismatch, x = L.sx, y = M.y + 24, colW = 0;
    text((S.curve === "mismatch_cos" ? "cos(g, backprop)" : "‖g − backprop‖ / ‖backprop‖") +
         " per layer", x, M.y + 6, { size: 12, bold: true });
    rows.forEach(function (r) { colW = Math.max(colW, measure(rowLabel(r), 11) + 30); });
    var perCol = Math.max(1, Math.floor((M.h - 18) / 14)), cols = Math.max(1, Math.floor(
      (L.W - x - 4) / Math.max(colW, 1))), every = Math.ceil(rows.length / (perCol * cols));
    rows.filter(function (r, k) { return k % every === 0; }).forEach(function (r, k) {
      var cx = x + Math.floor(k / perCol) * colW, cy = y + (k % perCol) * 14;
      ctx.fillStyle = curveColour(r, rows.length > 1 ? rows.indexOf(r) / (rows.length - 1) : 0);
      ctx.fillRect(cx, cy - 1, 20, V().spec.rows[r].sync ? 3 : 2);
      text(rowLabel(r), cx + 25, cy, { size: 11, bold: V().spec.rows[r].sync });
    });
  }

  function drawSyncOverlay(f0, cw) {
    // A dark bar in the lower part of each cell whose g pairs x and δ of one
    // stream frame: a solid line where a layer stays synchronized (ls at h = 1).
    var Vw = V(), h = Math.max(2, Math.round(L.rowH / 6));
    ctx.fillStyle = C.sync;
    L.rows.forEach(function (row, i) {
      var y = rowY(i) + L.rowH - h - Math.max(1, Math.round(L.rowH / 8)), start = -1;
      for (var g = f0; g <= f0 + L.win; g++) {
        var on = g < f0 + L.win && (Vw.wave[g * Vw.R + row.row] & 4);
        if (on && start < 0) { start = g; }
        if (!on && start >= 0) {
          ctx.fillRect(L.x0 + (start - f0) * cw, y, (g - start) * cw, h);
          start = -1;
        }
      }
    });
  }

  function drawEdges() {
    var right = L.x0 - 4;
    V().spec.edges.forEach(function (e) {
      var y1 = rowY(e[0]) + L.rowH / 2, y2 = rowY(e[1]) + L.rowH / 2, gap = e[2];
      ctx.strokeStyle = gap > 1 ? "#222222" : "#9a9a9a";
      ctx.lineWidth = gap > 1 ? 1.6 : 1;
      ctx.beginPath();
      ctx.moveTo(right, y1);
      ctx.quadraticCurveTo(right - 6 - 7 * Math.min(gap, 4), (y1 + y2) / 2, right, y2);
      ctx.stroke();
    });
  }

  function drawStrips() {
    var Vw = V();
    if (!L.hasStates) {
      text("no neuron states", L.sx, L.top + 8, { size: 12, colour: C.faint, base: "top" });
      text("in this run", L.sx, L.top + 24, { size: 12, colour: C.faint, base: "top" });
      return;
    }
    text("x at cursor", L.sx, L.top - 12, { size: 12, bold: true });
    text("δ at cursor", L.sd, L.top - 12, { size: 12, bold: true });
    var f = S.frame;
    L.rows.forEach(function (row, i) {
      var y = rowY(i) + 1, h = Math.max(L.rowH - 2, 1);
      if (!Vw.index[row.row] || !Vw.index[row.row].length) {
        text("not recorded", L.sx, y + h / 2, { size: 10, colour: C.faint });
        return;
      }
      row.cells.forEach(function (j, c) {
        var xc = diverging(cellValue(Vw, Vw.x, f, row.row, j), Vw.xs[row.row]);
        var dc = diverging(cellValue(Vw, Vw.d, f, row.row, j), Vw.ds[row.row]);
        if (xc) { ctx.fillStyle = rgb(xc); ctx.fillRect(L.sx + c * L.cellN, y, L.cellN, h); }
        if (dc) { ctx.fillStyle = rgb(dc); ctx.fillRect(L.sd + c * L.cellN, y, L.cellN, h); }
      });
      ctx.strokeStyle = row.sync ? C.ls : C.grid;
      ctx.lineWidth = row.sync ? 2 : 1;
      var w = row.cells.length * L.cellN;
      if (w) {
        ctx.strokeRect(L.sx - 0.5, y - 0.5, w + 1, h + 1);
        ctx.strokeRect(L.sd - 0.5, y - 0.5, w + 1, h + 1);
      }
    });
  }

  function barPos(v) {
    var b = V().spec.bars;
    if (b.log) {
      var r = V().barRange;
      if (!(v > 0)) { return 0; }
      return clamp((Math.log10(v) - r[0]) / (r[1] - r[0]), 0, 1) * L.barW;
    }
    return clamp((v - b.lo) / (b.hi - b.lo), 0, 1) * L.barW;
  }

  function drawBars() {
    var Vw = V(), b = Vw.spec.bars, a = Vw.fields[b.field], f = S.frame;
    text(b.label + " at cursor", L.bx, L.top - 12, { size: 12, bold: true });
    var zero = b.log ? 0 : barPos(0);
    ctx.fillStyle = "#fafafa";
    ctx.fillRect(L.bx, L.top, L.barW, L.H);
    ctx.fillStyle = C.grid;
    ctx.fillRect(L.bx + zero, L.top, 1, L.H);
    ctx.fillRect(L.bx + L.barW, L.top, 1, L.H);
    L.rows.forEach(function (row, i) {
      var v = a[f * Vw.R + row.row], y = rowY(i) + 2, h = Math.max(L.rowH - 4, 1);
      if (!Number.isNaN(v)) {
        var p = barPos(v);
        ctx.fillStyle = row.sync ? C.ls : "#4d4d4d";
        ctx.fillRect(L.bx + Math.min(zero, p), y, Math.max(Math.abs(p - zero), 1), h);
      }
      if (L.rowH >= 9) {
        text(fmt(v), L.bx + L.barW + 6, y + h / 2, { size: clamp(L.rowH - 3, 9, 11) });
      }
    });
    var lo = b.log ? power(Vw.barRange[0]) : String(b.lo);
    var hi = b.log ? power(Vw.barRange[1]) : String(b.hi);
    text(lo, L.bx, L.top + L.H + 13, { size: 11, align: "left" });
    text(hi, L.bx + L.barW, L.top + L.H + 13, { size: 11, align: "right" });
    if (!b.log && b.lo < 0 && b.hi > 0) {         // a zero inside the range, marked
      text("0", L.bx + zero, L.top + L.H + 13, { size: 11, align: "center" });
    }
  }

  var K = { x: 8, y: 0 };      // where the next colour key goes (wraps at the canvas edge)
  function keySpace(w) {
    if (K.x > 8 && K.x + w > L.W - 8) { K.x = 8; K.y += 24; }
    var at = K.x;
    K.x += w + 16;
    return at;
  }

  function swatch(c, label) {
    var x = keySpace(19 + measure(label, 12)), y = K.y;
    ctx.fillStyle = rgb(c);
    ctx.fillRect(x, y - 7, 14, 14);
    ctx.strokeStyle = "#999";
    ctx.lineWidth = 1;
    ctx.strokeRect(x + 0.5, y - 6.5, 13, 13);
    text(label, x + 19, y, { size: 12 });
  }

  function gradient(x, y, w, colourAt, left, mid, right, caption) {
    for (var i = 0; i < w; i++) {
      ctx.fillStyle = rgb(colourAt(i / (w - 1)));
      ctx.fillRect(x + i, y - 7, 1, 14);
    }
    ctx.strokeStyle = "#999";
    ctx.strokeRect(x + 0.5, y - 6.5, w - 1, 13);
    text(left, x, y + 17, { size: 11, align: "left" });
    if (mid) { text(mid, x + w / 2, y + 17, { size: 11, align: "center" }); }
    text(right, x + w, y + 17, { size: 11, align: "right" });
    text(caption, x + w + 10, y, { size: 12 });
  }

  function drawKeys() {
    var Vw = V(), spec = Vw.spec;
    K.x = 8;
    K.y = L.keyTop;
    if (S.raster !== "layers") {
      gradient(8, K.y, 160, function (t) { return diverging(2 * t - 1, 1); }, "−max", "0", "+max",
               "value ÷ the layer's largest |value| over the run");
      return K.y + 28;
    }
    if (spec.raster.mode === "waves") {
      var by = S.colour + ": " + spec.colour_labels[S.colour];
      text(by, 8, K.y, { size: 12, colour: C.faint });
      K.x = 16 + measure(by, 12);
      var W = waveLabels();
      swatch(C.fwd, W.forward);
      swatch(C.bwd, W.backward);
      swatch(C.both, W.both);
      swatch(C.none, W.none);
      if (S.overlay) {
        var label = W.overlay, x = keySpace(28 + measure(label, 12));
        ctx.fillStyle = C.sync;
        ctx.fillRect(x, K.y + 3, 22, 3);
        text(label, x + 28, K.y, { size: 12 });
      }
      if (spec.sync_label) {
        var ls = spec.sync_label + " (synchronized)", at = keySpace(32 + measure(ls, 12, true));
        ctx.strokeStyle = C.ls;
        ctx.lineWidth = 2;
        ctx.strokeRect(at, K.y - 7, 26, 14);
        text(ls, at + 32, K.y, { size: 12, colour: C.ls, bold: true });
      }
    } else {
      var r = Vw.range, cap = spec.raster.label + " (log scale)";
      gradient(keySpace(200 + 10 + measure(cap, 12)), K.y, 200, function (t) { return viridis(t); },
               power(r[0]), "", power(r[1]), cap);
      swatch(C.zero, "exactly 0");
      swatch(C.over, "overflow");
    }
    if (L.hasStates) {
      gradient(8, K.y + 38, 160, function (t) { return diverging(2 * t - 1, 1); }, "−max", "0",
               "+max", "neuron strips: value ÷ the layer's largest |value| over the run");
      return K.y + 66;
    }
    return K.y + 20;
  }

  // ------------------------------------------------------------- readout
  function current() {
    var Vw = V(), spec = Vw.spec, f = S.frame, R = Vw.R, out = {
      kind: P.kind, view: spec.label, frame: f, tick: P.ticks[f],
      rows: spec.rows.map(function (r) { return r.name; }),
      columns: spec.rows.map(function (r) { return r.column; }),
      levels: spec.rows.map(function (r) { return r.level; }),
      fields: {}, tags: {}
    };
    if (Vw.stream) { out.stream_frame = Vw.stream[f]; }
    Object.keys(Vw.fields).forEach(function (k) {
      out.fields[k] = Array.from(Vw.fields[k].subarray(f * R, (f + 1) * R));
    });
    Object.keys(Vw.tags).forEach(function (k) {
      out.tags[k] = Array.from(Vw.tags[k].subarray(f * R, (f + 1) * R));
    });
    if (Vw.wave) { out.wave = Array.from(Vw.wave.subarray(f * R, (f + 1) * R)); }
    if (Vw.x) {
      out.neurons = { index: [], x: [], delta: [] };
      for (var r = 0; r < R; r++) {
        var cols = selected(Vw, r);
        out.neurons.index.push(cols.map(function (j) { return Vw.index[r][j]; }));
        out.neurons.x.push(cols.map(function (j) { return cellValue(Vw, Vw.x, f, r, j); }));
        out.neurons.delta.push(cols.map(function (j) { return cellValue(Vw, Vw.d, f, r, j); }));
      }
    }
    return out;
  }

  function csvValue(v) {
    if (typeof v === "number") { return Number.isNaN(v) ? "nan" : isFinite(v) ? String(v) : (v > 0 ? "inf" : "-inf"); }
    return /[",\n]/.test(String(v)) ? "\"" + String(v).replace(/"/g, "\"\"") + "\"" : String(v);
  }

  function csv() {
    // The current tick's arrays, one value a line: tick, row, level, quantity, neuron, value.
    var c = current(), lines = ["tick,row,level,quantity,neuron,value"];
    function line(r, q, n, v) {
      lines.push([c.tick, c.rows[r], c.levels[r], q, n, v].map(csvValue).join(","));
    }
    c.rows.forEach(function (name, r) {
      Object.keys(c.fields).forEach(function (k) { line(r, k, "", c.fields[k][r]); });
      Object.keys(c.tags).forEach(function (k) { line(r, "tag_" + k, "", c.tags[k][r]); });
      if (c.neurons) {
        c.neurons.index[r].forEach(function (n, j) {
          line(r, "x", n, c.neurons.x[r][j]);
          line(r, "delta", n, c.neurons.delta[r][j]);
        });
      }
    });
    return lines.join("\n") + "\n";
  }

  function fileStem() {
    return (P.name || "tickprop").replace(/[^A-Za-z0-9_.-]+/g, "_") + "_" +
      P.tick_label.replace(/ /g, "_") + P.ticks[S.frame];
  }

  function download(blob, name) {
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 2000);
  }

  function exportPNG(callback) {
    canvas.toBlob(function (blob) {
      if (callback) { callback(blob); } else { download(blob, fileStem() + ".png"); }
    }, "image/png");
  }

  function exportCSV(callback) {
    var blob = new Blob([csv()], { type: "text/csv" });
    if (callback) { callback(blob); } else { download(blob, fileStem() + ".csv"); }
  }

  // ------------------------------------------------------------- control
  var slider = document.getElementById("slider"), playBtn = document.getElementById("play");

  function setFrame(f) {
    S.frame = clamp(Math.round(f), 0, F - 1);
    slider.value = String(S.frame);
    var Vw = V();
    document.getElementById("ticklabel").textContent = P.tick_label + " " + P.ticks[S.frame] +
      "  (" + (S.frame + 1) + " / " + F + ")";
    draw();
    var c = current();
    readout.dataset.frame = String(S.frame);
    readout.dataset.tick = String(P.ticks[S.frame]);
    readout.dataset.view = String(S.view);
    readout.dataset.values = JSON.stringify(c);
    readout.textContent = P.tick_label + " " + c.tick +
      (Vw.stream ? ", stream frame " + c.stream_frame : "") + " · hover a cell for its values";
  }

  function setPlaying(on) {
    S.playing = on && F > 1;
    playBtn.innerHTML = S.playing ? "&#10074;&#10074; pause" : "&#9654; play";
    playBtn.dataset.playing = S.playing ? "1" : "0";
    if (S.playing) {
      if (S.frame >= F - 1) { setFrame(0); }
      S.acc = 0;
      S.last = performance.now();
      requestAnimationFrame(tick);
    }
  }

  function tick(now) {
    if (!S.playing) { return; }
    S.acc += Math.max(now - S.last, 0) * S.speed / 1000;
    S.last = now;
    if (S.acc >= 1) {
      var n = Math.floor(S.acc);
      S.acc -= n;
      var next = S.frame + n;
      if (next >= F - 1) { setFrame(F - 1); setPlaying(false); return; }
      setFrame(next);
    }
    requestAnimationFrame(tick);
  }

  function parseSelection(s) {
    s = s.trim().toLowerCase();
    if (s === "" || s === "all") { return null; }
    var set = new Set();
    var parts = s.split(/[\s,]+/).filter(Boolean);
    for (var i = 0; i < parts.length; i++) {
      var m = /^(\d+)(?:-(\d+))?$/.exec(parts[i]);
      if (!m) { throw new Error("expected 'all' or indices and ranges such as 0-7, 12"); }
      var a = parseInt(m[1], 10), b = m[2] === undefined ? a : parseInt(m[2], 10);
      if (b < a || b - a > 100000) { throw new Error("range " + parts[i] + " is empty or too long"); }
      for (var k = a; k <= b; k++) { set.add(k); }
    }
    return set;
  }

  function setNeurons(s) {
    var msg = document.getElementById("neuronmsg");
    try {
      var sel = parseSelection(s), Vw = V(), any = false;
      if (sel !== null && Vw.index) {
        Vw.index.forEach(function (idx) { idx.forEach(function (n) { if (sel.has(n)) { any = true; } }); });
        if (!any) { throw new Error("none of these neurons is embedded in this view"); }
      }
      S.selection = sel;
      msg.textContent = "";
    } catch (e) {
      msg.textContent = e.message;
      return;
    }
    relayout();
    setFrame(S.frame);
  }

  function fillSelect(el, options, value) {
    el.innerHTML = "";
    options.forEach(function (o) {
      var opt = document.createElement("option");
      opt.value = String(o[0]);
      opt.textContent = o[1];
      el.appendChild(opt);
    });
    el.value = String(value);
  }

  function fillRasterModes() {
    var Vw = V(), el = document.getElementById("rastermode"), opts = [["layers", Vw.spec.label]];
    if (Vw.x) {
      Vw.spec.rows.forEach(function (row, r) {
        if (Vw.index[r] && Vw.index[r].length) {
          opts.push(["x:" + r, "x of " + rowName(r) + ", per neuron"]);
          opts.push(["d:" + r, "δ of " + rowName(r) + ", per neuron"]);
        }
      });
    }
    fillSelect(el, opts, "layers");
    S.raster = "layers";
    document.getElementById("rasterbox").hidden = !Vw.x;
    document.getElementById("overlaybox").hidden = !Vw.wave;
    document.getElementById("overlayname").textContent = waveLabels().toggle;
    document.getElementById("overlaybox").title = "mark the cells where " + waveLabels().overlay;
    var keys = Object.keys(Vw.colours);
    fillSelect(document.getElementById("colour"), keys.map(function (k) {
      return [k, k === "tag" ? "frame tag" : k];
    }), keys.indexOf(S.colour) < 0 ? keys[0] : S.colour);
    if (keys.length) { S.colour = document.getElementById("colour").value; }
    fillSelect(document.getElementById("curve"), Vw.curves.map(function (k) {
      return [k, k === "mismatch_cos" ? "cosine" : "relative error"]; }),
      Vw.curves.indexOf(S.curve) < 0 ? Vw.curves[0] : S.curve);
    if (Vw.curves.length) { S.curve = document.getElementById("curve").value; }
    document.getElementById("curvebox").hidden = !Vw.curves.length;
    document.getElementById("neuronbox").hidden = !Vw.x;
  }

  function setView(i) {
    S.view = clamp(i, 0, views.length - 1);
    document.getElementById("view").value = String(S.view);
    fillRasterModes();
    relayout();
    setFrame(S.frame);
  }

  function frameAt(mx) {
    // the viewer frame of canvas x ``mx`` over the raster's columns, or −1
    if (mx < L.x0 || mx >= L.x0 + L.rasterW) { return -1; }
    var f = windowStart() + Math.floor((mx - L.x0) / (L.rasterW / L.win));
    return f < F ? f : -1;
  }

  function curveText(mx, my) {
    // the mismatch panel: every layer's value at the hovered tick
    var M = L.mismatch, f = frameAt(mx), Vw = V();
    if (!M || f < 0 || my < M.y || my >= M.y + M.h) { return null; }
    var label = Vw.spec.field_labels[S.curve] || S.curve;
    return [P.tick_label + " " + P.ticks[f] + " · " + label].concat(curveRows().map(function (r) {
      return rowName(r) + " = " + fmt(Vw.fields[S.curve][f * Vw.R + r]);
    })).join("\n");
  }

  function hoverText(mx, my) {
    var Vw = V(), spec = Vw.spec, f0 = windowStart(), cw = L.rasterW / L.win;
    var curve = curveText(mx, my);
    if (curve !== null) { return curve; }
    if (my < L.top || my >= L.top + L.H) { return null; }
    var i = L.n - 1 - Math.floor((my - L.top) / L.rowH);
    var row = L.rows[i];
    if (!row) { return null; }
    var r = row.row, lines;
    if (mx >= L.x0 && mx < L.x0 + L.rasterW) {
      var f = f0 + Math.floor((mx - L.x0) / cw);
      if (f < 0 || f >= F) { return null; }
      lines = [P.tick_label + " " + P.ticks[f] + " · " + rowName(r) +
               (spec.rows[r].sync ? " (" + spec.sync_label + ")" : "")];
      if (row.neuron !== undefined) {
        var a = row.which === "x" ? Vw.x : Vw.d;
        lines.push((row.which === "x" ? "x" : "δ") + "[" + Vw.index[r][row.neuron] + "] = " +
                   fmt(cellValue(Vw, a, f, r, row.neuron)));
        return lines.join("\n");
      }
      Object.keys(Vw.fields).forEach(function (k) {
        lines.push((spec.field_labels[k] || k) + " = " + fmt(Vw.fields[k][f * Vw.R + r]));
      });
      Object.keys(Vw.tags).forEach(function (k) {
        var t = Vw.tags[k][f * Vw.R + r];
        lines.push((spec.tag_labels[k] || k) + ": " + (t >= 0 ? t : "none"));
      });
      if (Vw.wave) {
        var w = Vw.wave[f * Vw.R + r];
        if (w & 4) { lines.push(waveLabels().overlay_cell || waveLabels().overlay); }
        lines.push(waveLabels().cells[w & 3]);
      }
      return lines.join("\n");
    }
    var fc = S.frame;
    if (L.hasStates && (mx >= L.sx && mx < L.sx + L.stripPanel || mx >= L.sd && mx < L.sd + L.stripPanel)) {
      var isX = mx < L.sd - 6, c = Math.floor((mx - (isX ? L.sx : L.sd)) / L.cellN);
      var j = row.cells[c];
      if (j === undefined) { return null; }
      var v = cellValue(Vw, isX ? Vw.x : Vw.d, fc, r, j);
      return P.tick_label + " " + P.ticks[fc] + " · " + rowName(r) + "\n" +
        (isX ? "x" : "δ") + "[" + Vw.index[r][j] + "] = " + fmt(v);
    }
    if (L.showBars && mx >= L.bx && mx < L.bx + L.barW + 78) {
      return P.tick_label + " " + P.ticks[fc] + " · " + rowName(r) + "\n" +
        spec.bars.label + " = " + fmt(Vw.fields[spec.bars.field][fc * Vw.R + r]);
    }
    return null;
  }

  function onMove(ev) {
    var rect = canvas.getBoundingClientRect();
    var mx = ev.clientX - rect.left, my = ev.clientY - rect.top, t = hoverText(mx, my);
    if (!t) { hoverBox.hidden = true; return; }
    hoverBox.textContent = t;
    hoverBox.hidden = false;
    var x = mx + 16, y = my + 14;
    if (x + hoverBox.offsetWidth > L.W) { x = Math.max(mx - hoverBox.offsetWidth - 12, 0); }
    if (y + hoverBox.offsetHeight > L.Hc) { y = Math.max(my - hoverBox.offsetHeight - 10, 0); }
    hoverBox.style.left = x + "px";
    hoverBox.style.top = y + "px";
  }

  function cellBox(frame, i) {
    // CSS-pixel box of raster cell (viewer frame, raster row i) in the canvas, or null.
    var f0 = windowStart(), cw = L.rasterW / L.win;
    if (frame < f0 || frame >= f0 + L.win || i < 0 || i >= L.n) { return null; }
    return { x: L.x0 + (frame - f0) * cw, y: rowY(i), w: cw, h: L.rowH };
  }

  // --------------------------------------------------------------- start
  document.getElementById("title").textContent = P.name + " · " + P.kind;
  document.getElementById("subtitle").textContent = P.title;
  var notes = document.getElementById("notes");
  P.notes.forEach(function (n) {
    var li = document.createElement("li");
    li.textContent = n;
    notes.appendChild(li);
  });
  slider.max = String(Math.max(F - 1, 0));
  fillSelect(document.getElementById("speed"), SPEEDS.map(function (s) {
    return [s, s + " ticks/s"]; }), S.speed);
  var zooms = [[0, "all " + F + " ticks"]];
  ZOOMS.forEach(function (z) { if (z < F) { zooms.push([z, z + " ticks"]); } });
  S.zoom = F > 250 ? 200 : 0;
  fillSelect(document.getElementById("zoom"), zooms, S.zoom);
  fillSelect(document.getElementById("view"), P.views.map(function (v, i) { return [i, v.label]; }),
             S.view);
  document.getElementById("viewbox").hidden = P.views.length < 2;

  slider.addEventListener("input", function () { setFrame(parseInt(slider.value, 10)); });
  playBtn.addEventListener("click", function () { setPlaying(!S.playing); });
  document.getElementById("back").addEventListener("click", function () {
    setPlaying(false); setFrame(S.frame - 1); });
  document.getElementById("fwd").addEventListener("click", function () {
    setPlaying(false); setFrame(S.frame + 1); });
  document.getElementById("speed").addEventListener("change", function (e) {
    S.speed = parseFloat(e.target.value); });
  document.getElementById("zoom").addEventListener("change", function (e) {
    S.zoom = parseInt(e.target.value, 10); relayout(); setFrame(S.frame); });
  document.getElementById("view").addEventListener("change", function (e) {
    setView(parseInt(e.target.value, 10)); });
  document.getElementById("rastermode").addEventListener("change", function (e) {
    S.raster = e.target.value; relayout(); setFrame(S.frame); });
  document.getElementById("neurons").addEventListener("change", function (e) {
    setNeurons(e.target.value); });
  document.getElementById("png").addEventListener("click", function () { exportPNG(); });
  document.getElementById("csv").addEventListener("click", function () { exportCSV(); });
  document.getElementById("overlay").addEventListener("change", function (e) {
    S.overlay = e.target.checked; setFrame(S.frame); });
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("click", function (ev) {     // a click on a column moves the cursor
    var f = frameAt(ev.clientX - canvas.getBoundingClientRect().left);
    if (f >= 0) { setPlaying(false); setFrame(f); }
  });
  window.addEventListener("resize", function () { relayout(); setFrame(S.frame); });
  document.getElementById("colour").addEventListener("change", function (e) {
    S.colour = e.target.value; relayout(); setFrame(S.frame); });
  document.getElementById("curve").addEventListener("change", function (e) {
    S.curve = e.target.value; relayout(); setFrame(S.frame); });
  canvas.addEventListener("mouseleave", function () { hoverBox.hidden = true; });
  document.addEventListener("keydown", function (e) {
    if (e.target && (e.target.tagName === "INPUT" && e.target.type === "text" ||
                     e.target.tagName === "SELECT")) { return; }
    if (e.key === "ArrowLeft") { setPlaying(false); setFrame(S.frame - 1); e.preventDefault(); }
    else if (e.key === "ArrowRight") { setPlaying(false); setFrame(S.frame + 1); e.preventDefault(); }
    else if (e.key === " ") { setPlaying(!S.playing); e.preventDefault(); }
  });

  function choose(id, value) {
    // as a reader would: set the control, then its change event
    var el = document.getElementById(id);
    el.value = String(value);
    el.dispatchEvent(new Event("change"));
  }

  setView(S.view);
  window.tickpropView = {
    payload: P, setFrame: setFrame, frame: function () { return S.frame; },
    play: function () { setPlaying(true); }, pause: function () { setPlaying(false); },
    setSpeed: function (s) { S.speed = s; }, setView: setView, setNeurons: setNeurons,
    setRaster: function (m) { choose("rastermode", m); },
    setColour: function (c) { choose("colour", c); },
    setCurve: function (c) { choose("curve", c); },
    cellBox: cellBox, current: current, csv: csv, exportPNG: exportPNG, exportCSV: exportCSV,
    layout: function () { return L; }, loadMs: performance.now()
  };
}());
