// spine-kp review: the page. Plain JS, no build step; it talks only to the server that served it.
//
// Coordinates: a landmark (x, y) is (column, row) in pixels of the full-resolution slice, pixel centres on integers
// (as the rest of spine_kp and matplotlib draw them). The slice is drawn in a transformed <g>; points and labels
// are drawn in screen space, so they keep their size when zooming. screen = (tx + x * s, ty + y * s).
//
// Saving: every edit schedules one PUT of the whole study (debounced). The server answers 409 when the study
// changed elsewhere (another tab); the page then reloads it and re-applies the landmarks this tab changed and the
// other did not (a three-way merge against the last state both agreed on), so no edit is lost silently.
"use strict";
(() => {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const SAVE_DELAY_MS = 250;
  const $ = (id) => document.getElementById(id);
  const NS = "http://www.w3.org/2000/svg";
  const svg = $("viewer");
  const S = {
    schema: null, list: [], filter: { state: "", level: "" }, study: null, base: null, z: 0, win: [0, 1],
    view: { s: 1, tx: 0, ty: 0 }, sel: null, undo: [], adding: null, showGt: true, cursorPut: null,
    listMs: 0, openMs: 0,
  };
  const save = { timer: null, dirty: false, pumping: null, count: 0, conflicts: 0, error: null };

  // ---- server ----
  async function api(method, path, body) {
    const init = { method, headers: { "X-Review-Token": TOKEN } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const data = await r.json().catch(() => ({}));
    return { status: r.status, data };
  }
  const studyPath = (uid) => `/api/study/${encodeURIComponent(uid)}`;
  const copy = (o) => JSON.parse(JSON.stringify(o));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  let bannerTimer = null;
  function banner(text, kind) {  // kind "info" fades after a while; errors and conflicts stay until dismissed
    $("banner-text").textContent = text;
    $("banner").className = kind || "";
    $("banner").hidden = !text;
    clearTimeout(bannerTimer);
    if (kind === "info") bannerTimer = setTimeout(() => banner(""), 4000);
  }

  // ---- saving ----
  function edited() {
    save.dirty = true;
    clearTimeout(save.timer);
    save.timer = setTimeout(() => { save.timer = null; pump(); }, SAVE_DELAY_MS);
    render();
  }

  function pump() {
    if (!save.pumping) {
      save.pumping = (async () => {
        while (save.dirty && S.study) { save.dirty = false; await putOnce(); }
      })().finally(() => { save.pumping = null; });
    }
    return save.pumping;
  }

  async function flush() {  // save now what is pending; resolves when the server has it
    clearTimeout(save.timer);
    save.timer = null;
    while (save.dirty || save.pumping) await pump();
  }

  async function putOnce() {
    const st = S.study;
    const body = { version: st.version, landmarks: copy(st.landmarks), state: st.state };
    const r = await api("PUT", studyPath(st.uid), body);
    save.error = r.status === 200 || r.status === 409 ? null : r.data.error || `error ${r.status}`;
    if (r.status === 200) {
      st.version = r.data.version;
      S.base = { landmarks: body.landmarks, state: body.state };
      save.count += 1;
      updateRow(st.uid, st.state);
    } else if (r.status === 409) {
      save.conflicts += 1;
      await merge(st.uid, body, r.data.error || "the study was changed elsewhere");
    } else {
      banner(`not saved: ${save.error}`);
    }
  }

  // Re-apply this tab's changes (mine vs base) on the server's state (theirs); a landmark both changed keeps theirs.
  async function merge(uid, mine, message) {
    const r = await api("GET", studyPath(uid));
    if (r.status !== 200) { banner(`${message}; reloading failed: ${r.data.error || r.status}`); return; }
    const theirs = r.data, base = S.base, key = (l) => (l ? JSON.stringify([l.x, l.y, l.z, l.grades]) : "-");
    const index = (ls) => new Map(ls.map((l) => [l.id, l]));
    const [b, m, t] = [index(base.landmarks), index(mine.landmarks), index(theirs.landmarks)];
    const kept = [], dropped = [], out = [];
    for (const { id } of S.schema.landmarks) {
      const [lb, lm, lt] = [b.get(id), m.get(id), t.get(id)];
      let pick = lt;
      if (key(lm) !== key(lb) && key(lm) !== key(lt)) {
        if (key(lt) === key(lb)) { pick = lm; kept.push(id); } else dropped.push(id);
      }
      if (pick) out.push(pick);
    }
    let state = theirs.state;
    if (mine.state !== base.state && theirs.state === base.state) { state = mine.state; kept.push("state"); }
    S.base = { landmarks: copy(theirs.landmarks), state: theirs.state };
    S.study = { ...theirs, landmarks: out, state };
    S.undo = [];
    let note = message + ": reloaded";
    if (kept.length) note += `; your changes re-applied (${kept.join(", ")})`;
    if (dropped.length) note += `; yours dropped where both tabs changed it (${dropped.join(", ")})`;
    banner(note);
    if (kept.length) save.dirty = true;  // the pump loop sends it with the new version
    render();
  }

  // ---- edits ----
  const snapshot = () => ({ landmarks: copy(S.study.landmarks), state: S.study.state });
  const pushUndo = () => { S.undo.push(snapshot()); if (S.undo.length > 200) S.undo.shift(); };
  const selected = () => S.study && S.study.landmarks.find((l) => l.id === S.sel);

  function undo() {
    const prev = S.undo.pop();
    if (!prev) return;
    Object.assign(S.study, prev);
    if (!selected()) S.sel = null;
    edited();
  }

  function toggleGrade(lm, grade) {
    pushUndo();
    const multi = (S.schema.kinds[lm.kind] || {}).multi_label !== false;
    const has = lm.grades.includes(grade);
    if (has) lm.grades = lm.grades.filter((g) => g !== grade);
    else if (!multi) lm.grades = [grade];
    else lm.grades = S.schema.kinds[lm.kind].grades.filter((g) => g === grade || lm.grades.includes(g));
    lm.edited = true;
    edited();
  }

  function deleteSelected() {
    if (!selected()) return;
    pushUndo();
    S.study.landmarks = S.study.landmarks.filter((l) => l.id !== S.sel);
    S.sel = null;
    edited();
  }

  function addAt(id, x, y) {
    const def = S.schema.landmarks.find((l) => l.id === id);
    pushUndo();
    const lm = { id, kind: def.kind, x, y, z: S.z, grades: [], score: null, edited: true };
    const order = S.schema.landmarks.map((l) => l.id);
    S.study.landmarks.push(lm);
    S.study.landmarks.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
    S.sel = id;
    S.adding = null;
    edited();
  }

  function setState(state) {
    if (S.study.state === state) return;
    pushUndo();
    S.study.state = state;
    edited();
  }

  // ---- study list ----
  async function loadList() {
    const q = new URLSearchParams();
    if (S.filter.state) q.set("state", S.filter.state);
    if (S.filter.level) q.set("level", S.filter.level);
    const r = await api("GET", "/api/studies?" + q);
    if (r.status !== 200) { banner(r.data.error || `list: error ${r.status}`); return; }
    S.list = r.data.studies;
    renderList();
  }

  function renderList() {
    const t0 = performance.now();
    const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
    const cur = S.study && S.study.uid;
    const rows = S.list.map((s, i) => {
      const score = s.min_score === null ? "" : s.min_score.toFixed(2);
      const cls = `row ${s.state}${s.uid === cur ? " current" : ""}`;
      const title = esc(`${s.uid}\nlowest score ${score || "-"}${s.flags.length ? "\n" + s.flags.join("\n") : ""}`);
      return `<div class="${cls}" data-uid="${esc(s.uid)}" title="${title}"><span>${i + 1}</span>` +
        `<span class="uid">${esc(s.uid)}</span><span class="unc">${s.uncertainty.toFixed(2)}</span>` +
        `<span class="flags">${s.flags.length ? "\u2691" + s.flags.length : ""}</span></div>`;
    });
    $("study-list").innerHTML = rows.join("");
    $("list-count").textContent = `${S.list.length} studies, least certain first`;
    void $("study-list").offsetHeight;  // force the layout so that the time below includes it
    S.listMs = performance.now() - t0;
  }

  function updateRow(uid, state) {
    const item = S.list.find((s) => s.uid === uid);
    if (item) item.state = state;
    const row = $("study-list").querySelector(`[data-uid="${CSS.escape(uid)}"]`);
    if (row) row.className = `row ${state}${S.study && uid === S.study.uid ? " current" : ""}`;
  }

  function neighbour(step) {  // the next / previous study of the list shown, else of the full ordering
    const i = S.list.findIndex((s) => s.uid === S.study.uid);
    if (i >= 0) return (S.list[i + step] || {}).uid || null;
    return step > 0 ? S.study.next : S.study.prev;
  }

  // ---- opening a study ----
  async function openStudy(uid) {
    if (!uid) return;
    await flush();
    app.loaded = null;
    const t0 = performance.now();
    const r = await api("GET", studyPath(uid));
    if (r.status !== 200) { banner(r.data.error || `study ${uid}: error ${r.status}`); return; }
    S.study = r.data;
    S.base = snapshot();
    S.undo = [];
    S.sel = null;
    S.adding = null;
    S.z = S.study.z_index;
    S.win = S.study.window.slice();
    setupWindowSliders();
    fit();
    await loadImage();
    S.openMs = performance.now() - t0;
    for (const row of $("study-list").querySelectorAll(".row.current")) row.classList.remove("current");
    const row = $("study-list").querySelector(`[data-uid="${CSS.escape(uid)}"]`);
    if (row) { row.classList.add("current"); row.scrollIntoView({ block: "nearest" }); }
    S.cursorPut = api("PUT", "/api/cursor", { uid, filter: S.filter });
    render();
    app.loaded = uid;
  }

  let imageTimer = null;
  function loadImage() {
    const st = S.study, img = $("slice");
    const q = new URLSearchParams({ z: S.z, wc: S.win[0].toFixed(3), ww: S.win[1].toFixed(3), token: TOKEN });
    return new Promise((resolve) => {
      img.onload = img.onerror = () => { app.imageReady = true; resolve(); };
      app.imageReady = false;
      img.setAttribute("href", `${studyPath(st.uid)}/image?${q}`);
    });
  }
  const reloadImage = () => { clearTimeout(imageTimer); imageTimer = setTimeout(loadImage, 60); };

  function setupWindowSliders() {
    const [c, w] = S.study.window;
    const span = Math.max(w, 1);
    Object.assign($("wl-center"), { min: c - 1.5 * span, max: c + 1.5 * span, value: c });
    Object.assign($("wl-width"), { min: span / 50, max: span * 4, value: w });
  }

  function setWindow(c, w) {
    S.win = [c, Math.max(w, 1e-3)];
    $("wl-center").value = S.win[0];
    $("wl-width").value = S.win[1];
    reloadImage();
  }

  function setSlice(z) {
    if (!S.study) return;
    const nz = Math.min(Math.max(z, 0), S.study.num_slices - 1);
    if (nz === S.z) return;
    S.z = nz;
    loadImage();
    render();
  }

  // ---- view ----
  function fit() {
    const r = svg.getBoundingClientRect(), st = S.study;
    const s = Math.min(r.width / st.width, r.height / st.height) * 0.96;
    S.view = { s, tx: (r.width - st.width * s) / 2 + 0.5 * s, ty: (r.height - st.height * s) / 2 + 0.5 * s };
    render();
  }

  function imageToClient(x, y) {
    const r = svg.getBoundingClientRect(), v = S.view;
    return { x: r.left + v.tx + x * v.s, y: r.top + v.ty + y * v.s };
  }

  function clientToImage(cx, cy) {
    const r = svg.getBoundingClientRect(), v = S.view;
    return { x: (cx - r.left - v.tx) / v.s, y: (cy - r.top - v.ty) / v.s };
  }

  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const meaning = (kind, g) => ((S.schema.kinds[kind] || {}).meanings || {})[g] || g;
  const gradeText = (lm) => lm.grades.map((g) => meaning(lm.kind, g).replace(/_/g, " ")).join("/");

  function render() {
    if (!S.study) return;
    const st = S.study, v = S.view;
    $("img-layer").setAttribute("transform", `translate(${v.tx} ${v.ty}) scale(${v.s})`);
    Object.entries({ x: -0.5, y: -0.5, width: st.width, height: st.height })
      .forEach(([k, val]) => $("slice").setAttribute(k, val));
    renderGt();
    const layer = $("lm-layer");
    layer.replaceChildren();
    for (const lm of st.landmarks) {
      const c = imageToClient(lm.x, lm.y), r = svg.getBoundingClientRect();
      const [x, y] = [c.x - r.left, c.y - r.top];
      const cls = `lm${lm.id === S.sel ? " sel" : ""}${lm.edited ? " edited" : ""}${lm.z !== S.z ? " off" : ""}`;
      const g = el("g", { class: cls, "data-id": lm.id });
      g.append(el("circle", { cx: x, cy: y, r: 6 }));
      const score = lm.score === null || lm.score === undefined ? "" : " " + lm.score.toFixed(2);
      g.append(el("text", { x: x + 9, y: y + 4 }, `${lm.id} ${gradeText(lm)}${score}`.replace(/\s+/g, " ")));
      layer.append(g);
    }
    svg.classList.toggle("adding", !!S.adding);
    $("viewer-hint").textContent = S.adding ? `click where ${S.adding} is (Esc cancels)` : "";
    renderSide();
  }

  function renderGt() {
    const layer = $("gt-layer"), st = S.study, v = S.view;
    layer.replaceChildren();
    if (!st.gt || !S.showGt) return;
    const r = svg.getBoundingClientRect(), [rx, ry] = st.radius_px;
    for (const g of st.gt) {
      const c = imageToClient(g.x, g.y), [x, y] = [c.x - r.left, c.y - r.top];
      const p = st.landmarks.find((l) => l.id === g.id);
      const inside = p && p.z === g.z && ((p.x - g.x) / rx) ** 2 + ((p.y - g.y) / ry) ** 2 <= 1;
      const grp = el("g", { class: "gt", "data-id": g.id });
      grp.append(el("ellipse", { cx: x, cy: y, rx: rx * v.s, ry: ry * v.s, class: inside ? "hit" : "miss" }));
      grp.append(el("path", { d: `M${x - 5} ${y}h10M${x} ${y - 5}v10` }));
      // label only what the evaluator would count against the prediction: a miss, or other grades
      const sameGrades = p && [...p.grades].sort().join() === [...g.grades].sort().join();
      if (!inside || !sameGrades || g.id === S.sel) {
        grp.append(el("text", { x: x - 9, y: y + 4, "text-anchor": "end" }, `${g.id} ${gradeText(g)}`.trim()));
      }
      layer.append(grp);
    }
  }

  function renderSide() {
    const st = S.study, n = S.list.findIndex((s) => s.uid === st.uid);
    $("study-title").textContent = st.uid;
    $("progress").textContent = `${S.list.filter((s) => s.state === "reviewed").length} reviewed of ${S.list.length}`;
    $("study-info").textContent =
      `${n >= 0 ? "#" + (n + 1) + " \u00b7 " : ""}state: ${st.state.replace("_", " ")} \u00b7 version ${st.version}`;
    $("flags").replaceChildren(...st.flags.map((f) => Object.assign(document.createElement("li"), { textContent: f })));
    $("z-label").textContent = `slice ${S.z + 1} / ${st.num_slices}${S.z === st.z_index ? " (predicted)" : ""}`;
    $("radius-mm").textContent = S.schema.radius_mm;
    $("gt-toggle").hidden = !st.gt;
    const lm = selected();
    $("sel-empty").hidden = !!lm;
    $("sel-body").hidden = !lm;
    if (lm) renderSelected(lm);
    renderTable();
    const have = new Set(st.landmarks.map((l) => l.id)), pick = $("add-id"), keep = pick.value;
    const missing = S.schema.landmarks.filter((l) => !have.has(l.id)).map((l) => l.id);
    pick.replaceChildren(...missing.map((id) => new Option(id, id)));
    if (missing.includes(keep)) pick.value = keep;
    $("b-add").disabled = !missing.length;
    $("b-add").classList.toggle("active", !!S.adding);
  }

  function renderSelected(lm) {
    const score = lm.score === null || lm.score === undefined ? "no score" : `score ${lm.score.toFixed(2)}`;
    $("sel-title").textContent = `${lm.id} (${lm.kind}) \u00b7 ${score} \u00b7 slice ${lm.z + 1}`;
    const kind = S.schema.kinds[lm.kind] || { grades: [] };
    const box = $("grades");
    box.replaceChildren(Object.assign(document.createElement("legend"), { textContent: "Grades" }));
    for (const g of kind.grades) {
      const label = document.createElement("label");
      const input = Object.assign(document.createElement("input"), { type: "checkbox" });
      input.checked = lm.grades.includes(g);
      input.dataset.grade = g;
      input.addEventListener("change", () => toggleGrade(lm, g));
      const small = Object.assign(document.createElement("small"), { textContent: ` ${g}` });
      label.append(input, ` ${meaning(lm.kind, g).replace(/_/g, " ")}`, small);
      box.append(label);
    }
    const gt = (S.study.gt || []).find((g) => g.id === lm.id);
    let text = "";
    if (gt) {
      const [rs, cs] = S.study.spacing;
      const mm = Math.hypot((lm.x - gt.x) * cs, (lm.y - gt.y) * rs);
      text = `ground truth: ${gradeText(gt) || "no grade"}; ${mm.toFixed(1)} mm away`;
      if (gt.z !== lm.z) text += " (other slice)";
    }
    $("sel-gt").textContent = text;
  }

  function renderTable() {
    const rows = S.study.landmarks.map((lm) => {
      const tr = document.createElement("tr");
      tr.className = lm.id === S.sel ? "sel" : "";
      tr.dataset.id = lm.id;
      const score = lm.score === null || lm.score === undefined ? "" : lm.score.toFixed(2);
      for (const [t, cls] of [[lm.id, ""], [gradeText(lm), ""], [score, "score"]]) {
        tr.append(Object.assign(document.createElement("td"), { textContent: t, className: cls }));
      }
      return tr;
    });
    $("lm-table").tBodies[0].replaceChildren(...rows);
  }

  // ---- mouse ----
  let drag = null;
  svg.addEventListener("pointerdown", (e) => {
    if (!S.study) return;
    const target = e.target.closest(".lm");
    const p = clientToImage(e.clientX, e.clientY);
    if (e.button === 2) drag = { mode: "window", x0: e.clientX, y0: e.clientY, win: S.win.slice() };
    else if (S.adding && e.button === 0) { addAt(S.adding, clampX(p.x), clampY(p.y)); return; }
    else if (target && e.button === 0) {
      S.sel = target.dataset.id;
      const lm = selected();
      drag = { mode: "point", lm, x0: e.clientX, y0: e.clientY, from: [lm.x, lm.y, lm.z], before: snapshot() };
      render();
    } else if (e.button === 0) drag = { mode: "pan", x0: e.clientX, y0: e.clientY, view: { ...S.view } };
    if (drag) svg.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  const clampX = (x) => Math.min(Math.max(x, 0), S.study.width - 1);
  const clampY = (y) => Math.min(Math.max(y, 0), S.study.height - 1);
  svg.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x0, dy = e.clientY - drag.y0;
    if (drag.mode === "point") {
      drag.lm.x = clampX(drag.from[0] + dx / S.view.s);
      drag.lm.y = clampY(drag.from[1] + dy / S.view.s);
      drag.moved = drag.moved || dx !== 0 || dy !== 0;
      render();
    } else if (drag.mode === "pan") {
      S.view = { ...drag.view, tx: drag.view.tx + dx, ty: drag.view.ty + dy };
      render();
    } else setWindow(drag.win[0] - dy * drag.win[1] * 0.005, drag.win[1] * Math.exp(dx * 0.005));
  });
  const endDrag = () => {
    if (drag && drag.mode === "point" && drag.moved) {
      S.undo.push(drag.before);
      drag.lm.z = S.z;
      drag.lm.edited = true;
      edited();
    }
    drag = null;
  };
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  svg.addEventListener("contextmenu", (e) => e.preventDefault());
  svg.addEventListener("wheel", (e) => {
    if (!S.study) return;
    e.preventDefault();
    const r = svg.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top, v = S.view;
    const f = Math.min(Math.max(Math.exp(-e.deltaY * 0.0015), 0.5), 2);
    S.view = { s: v.s * f, tx: px - (px - v.tx) * f, ty: py - (py - v.ty) * f };
    render();
  }, { passive: false });
  window.addEventListener("resize", () => S.study && render());

  // ---- commands ----
  async function go(step) {
    const uid = neighbour(step);
    if (uid) await openStudy(uid);
    else banner(step > 0 ? "this is the last study of the list" : "this is the first study of the list", "info");
  }

  async function finish(state) {  // accept / skip: save the state, then go on
    const nextUid = neighbour(1);
    setState(state);
    await flush();
    if (save.error) {  // refused (e.g. accepting a study without landmarks): stay, the banner says why
      S.study.state = S.base.state;
      render();
      return;
    }
    if (S.filter.state) await loadList();
    if (nextUid) await openStudy(nextUid);
    else { banner(`study ${state}; it was the last of the list`, "info"); render(); }
  }

  const commands = {
    n: () => go(1), p: () => go(-1), a: () => finish("reviewed"), s: () => finish("skipped"),
    "[": () => setSlice(S.z - 1), "]": () => setSlice(S.z + 1), f: () => fit(),
    g: () => { S.showGt = !S.showGt; $("show-gt").checked = S.showGt; render(); },
    "?": () => { $("help").hidden = !$("help").hidden; },
    Delete: deleteSelected, Backspace: deleteSelected,
    Escape: () => { $("help").hidden = true; S.adding = null; render(); },
  };
  document.addEventListener("keydown", (e) => {
    if (e.target.matches("select, input[type=range], input[type=text]") && e.key !== "Escape") return;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); if (S.study) undo(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const cmd = commands[e.key];
    if (cmd && (S.study || e.key === "?" || e.key === "Escape")) { e.preventDefault(); cmd(); }
  });

  $("b-prev").onclick = () => go(-1);
  $("b-next").onclick = () => go(1);
  $("b-accept").onclick = () => finish("reviewed");
  $("b-skip").onclick = () => finish("skipped");
  $("b-zdown").onclick = () => setSlice(S.z - 1);
  $("b-zup").onclick = () => setSlice(S.z + 1);
  $("b-fit").onclick = () => fit();
  $("b-undo").onclick = () => S.study && undo();
  $("b-delete").onclick = deleteSelected;
  $("add-id").onchange = (e) => e.target.blur();
  $("b-add").onclick = () => { S.adding = S.adding ? null : $("add-id").value || null; render(); };
  $("help-btn").onclick = commands["?"];
  $("help").onclick = () => { $("help").hidden = true; };
  $("banner-close").onclick = () => banner("");
  $("show-gt").onchange = (e) => { S.showGt = e.target.checked; render(); };
  $("wl-center").oninput = (e) => setWindow(+e.target.value, S.win[1]);
  $("wl-width").oninput = (e) => setWindow(S.win[0], +e.target.value);
  $("study-list").onclick = (e) => { const row = e.target.closest(".row"); if (row) openStudy(row.dataset.uid); };
  $("lm-table").onclick = (e) => { const tr = e.target.closest("tr"); if (tr) { S.sel = tr.dataset.id; render(); } };
  for (const [id, key] of [["f-state", "state"], ["f-level", "level"]]) {
    $(id).onchange = async (e) => {
      e.target.blur();  // give the keys back to the page (a focused <select> eats letters)
      S.filter[key] = e.target.value;
      await loadList();
      if (S.study) S.cursorPut = api("PUT", "/api/cursor", { uid: S.study.uid, filter: S.filter });
    };
  }

  // ---- start: schema, list, then the study the user was on (the server keeps the cursor across restarts) ----
  async function start() {
    const [schema, cursor] = await Promise.all([api("GET", "/api/schema"), api("GET", "/api/cursor")]);
    if (schema.status !== 200) {
      banner(schema.data.error || `error ${schema.status}: open the URL the server printed`);
      return;
    }
    S.schema = schema.data;
    for (const l of S.schema.landmarks) $("f-level").append(new Option(l.id, l.id));
    const f = (cursor.status === 200 && cursor.data.filter) || {};
    S.filter = { state: f.state || "", level: f.level || "" };
    $("f-state").value = S.filter.state;
    $("f-level").value = S.filter.level;
    await loadList();
    const uid = (cursor.status === 200 && cursor.data.uid) || (S.list[0] || {}).uid;
    if (uid) await openStudy(uid);
    else banner("no study matches the filter", "info");
  }

  // A small hook for the browser tests and the benchmark (not used by the page itself).
  const app = {
    imageToClient, flush, imageReady: false, loaded: null,
    study: () => (S.study ? copy(S.study) : null),
    list: () => S.list.map((s) => s.uid),
    get saves() { return save.count; },
    get conflicts() { return save.conflicts; },
    get listRenderMs() { return S.listMs; },
    get openMs() { return S.openMs; },
    idle: async () => {  // resolves when every edit and the cursor are on the server
      for (;;) {
        if (save.timer) await sleep(20);
        else if (save.dirty || save.pumping) await flush();
        else { await S.cursorPut; if (!save.timer && !save.dirty && !save.pumping) return save.count; }
      }
    },
    renderList, open: openStudy, reloadList: loadList,
  };
  window.reviewApp = app;
  app.ready = start();
})();
