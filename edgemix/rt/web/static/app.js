// edgemix web surface: one WebSocket, the desk's state, meters at the server's rate.
// Protocol: edgemix/rt/web/server.py.  No framework, no build step.
"use strict";

const S = {
  ws: null, seq: 0, schema: null, specs: {}, n: 0, strips: [], state: null,
  backoff: 250, timer: null, pending: new Map(), flushQueued: false, rid: 0,
  meters: null, drawQueued: false, detail: null, scenes: [],
};

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// ---- numbers ---------------------------------------------------------------------------
function fmtDb(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "\u2212\u221e";
  if (S.schema && v <= S.schema.off_db) return "\u2212\u221e";
  const s = v.toFixed(digits);
  return v > 0 ? "+" + s : s.replace("-", "\u2212");
}
function dataValue(v) { return (v === null || v === undefined) ? "-inf" : String(v); }
function fmtPan(p) {
  const k = Math.round(Math.abs(p) * 100);
  return k === 0 ? "C" : (p < 0 ? "L" : "R") + k;
}
// the fader's travel: piecewise linear in dB between the schema's breakpoints (X-Air law)
function posToDb(u) {
  const t = S.schema.fader_taper;
  u = Math.min(1, Math.max(0, u));
  for (let i = 1; i < t.length; i++) {
    if (u <= t[i][0]) {
      const [u0, d0] = t[i - 1], [u1, d1] = t[i];
      return d0 + (u - u0) * (d1 - d0) / (u1 - u0);
    }
  }
  return t[t.length - 1][1];
}
function dbToPos(db) {
  const t = S.schema.fader_taper;
  if (db <= t[0][1]) return 0;
  for (let i = 1; i < t.length; i++) {
    if (db <= t[i][1]) {
      const [u0, d0] = t[i - 1], [u1, d1] = t[i];
      return u0 + (db - d0) * (u1 - u0) / (d1 - d0);
    }
  }
  return 1;
}
function clampSpec(name, v) {
  const s = S.specs[name];
  return s ? Math.min(s.max, Math.max(s.min, v)) : v;
}

// ---- the connection --------------------------------------------------------------------
function connect() {
  clearTimeout(S.timer);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  let ws;
  try { ws = new WebSocket(url); } catch (e) { return retry(); }
  S.ws = ws;
  link("connecting");
  ws.onopen = () => { S.backoff = 250; link("live"); };
  ws.onmessage = (ev) => { if (ws === S.ws) receive(ev.data); };
  ws.onclose = () => { if (ws === S.ws) { S.ws = null; link("offline"); retry(); } };
  ws.onerror = () => {};  // onclose follows and reconnects
}
function retry() {
  clearTimeout(S.timer);
  S.timer = setTimeout(connect, S.backoff * (0.75 + 0.5 * Math.random()));
  S.backoff = Math.min(5000, S.backoff * 2);
}
function link(state) {
  const el = $("#link");
  el.dataset.state = state;
  el.textContent = state;
  document.body.dataset.link = state;
}
function send(obj) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) { S.ws.send(JSON.stringify(obj)); return true; }
  return false;
}
function request(obj) { obj.id = ++S.rid; send(obj); return obj.id; }

function receive(text) {
  let m;
  try { m = JSON.parse(text); } catch (e) { return; }
  switch (m.type) {
    case "hello": hello(m); break;
    case "snapshot": snapshot(m.state); break;
    case "changes": changes(m); break;
    case "meters": S.meters = m; if (!S.drawQueued) { S.drawQueued = true; requestAnimationFrame(draw); } break;
    case "info": info(m); break;
    case "scenes": S.scenes = m.scenes; renderScenes(); break;
    case "error": toast(m.message, true); break;
    case "ok": if (m.scenes) { S.scenes = m.scenes; renderScenes(); } break;
  }
}

function hello(m) {
  S.schema = m.schema;
  S.specs = {};
  for (const s of m.schema.channel) S.specs[s.name] = s;
  for (const s of m.schema.master) S.specs[s.name] = s;
  document.documentElement.dataset.client = m.client;
}

// ---- state -------------------------------------------------------------------------------
function snapshot(state) {
  document.body.dataset.snapshots = String(+(document.body.dataset.snapshots || 0) + 1);
  S.state = state;
  S.seq = state.seq;
  if (state.n_channels !== S.n) build(state.n_channels);
  for (const ch of state.channels) renderChannel(ch);
  document.body.dataset.seq = S.seq;
  if (S.detail) renderDetail();
}
// a batch covers seq from..to with the newest change of each parameter in that range
function changes(m) {
  if (m.to <= S.seq) return;                                         // all known already
  if (m.from > S.seq + 1) { send({ type: "resync" }); return; }      // a gap: start over
  for (const c of m.changes) if (c.seq > S.seq) apply(c);
  S.seq = m.to;
  document.body.dataset.seq = S.seq;
  if (S.detail) renderDetail();
}
function apply(c) {
  if (!S.state) return;
  if (c.channel === "master") {
    S.state.master.params[c.param] = c.value;
    S.state.master.owner[c.param] = c.owner;
    return;
  }
  const ch = S.state.channels[c.channel - 1];
  if (!ch) return;
  if (c.param === "automation" || c.param === "name" || c.param === "colour" || c.param === "role") {
    ch[c.param] = c.value;
  } else {
    ch.params[c.param] = c.value;
    ch.owner[c.param] = c.owner;
  }
  renderChannel(ch);
}
function info(m) {
  if (!S.state) return;
  const ch = S.state.channels[m.channel - 1];
  if (!ch) return;
  ch.explanations = m.explanations;
  ch.recognised_role = m.recognised_role;
  ch.role_probability = m.role_probability;
  renderChannel(ch);
  if (S.detail === m.channel) renderDetail();
}

// ---- building the strips -------------------------------------------------------------------
function build(n) {
  const main = $("#strips");
  main.textContent = "";
  S.strips = [];
  S.n = n;
  const tpl = $("#strip-tpl");
  for (let i = 1; i <= n; i++) {
    const el = tpl.content.firstElementChild.cloneNode(true);
    el.dataset.channel = String(i);
    $(".num", el).textContent = String(i);
    const strip = {
      el, channel: i, fader: $(".fader", el), cap: $(".cap", el), db: $(".db", el),
      own: $(".own", el), readout: $(".readout", el), pan: $(".pan", el),
      panVal: $(".pan-val", el), mute: $(".mute", el), auto: $(".automation", el),
      autoVal: $(".auto-val", el), why: $(".why", el), name: $(".name", el),
      role: $(".role-name", el), prob: $(".prob", el), dragging: false, faderDb: 0,
      meters: {}, lastMeter: {},
    };
    for (const m of $$("[data-meter]", el)) {
      strip.meters[m.dataset.meter] = { el: m, bar: m.firstElementChild };
    }
    scale(strip);
    wireFader(strip);
    strip.pan.addEventListener("input", () => {
      strip.pan.setAttribute("value", strip.pan.value);
      strip.panVal.textContent = fmtPan(+strip.pan.value);
      queueSet(i, "pan", +strip.pan.value);
    });
    strip.pan.addEventListener("dblclick", () => { setInput(strip.pan, 0); queueSet(i, "pan", 0); });
    strip.auto.addEventListener("input", () => {
      strip.auto.setAttribute("value", strip.auto.value);
      strip.autoVal.textContent = String(Math.round(+strip.auto.value * 100));
      queueSet(i, "automation", +strip.auto.value);
    });
    strip.mute.addEventListener("click", () => {
      const on = strip.mute.value === "1" ? 0 : 1;
      setMute(strip, on);
      queueSet(i, "mute_on", on);
    });
    strip.readout.addEventListener("click", () => {
      if (strip.readout.classList.contains("person")) request({ type: "release", channel: i, what: "fader" });
    });
    $(".head", el).addEventListener("click", () => openDetail(i));
    main.appendChild(el);
    S.strips.push(strip);
  }
}
function scale(strip) {
  const sc = $(".scale", strip.el);
  for (const db of [10, 5, 0, -5, -10, -20, -30, -40, -60]) {
    const t = document.createElement("span");
    t.style.setProperty("--pos", dbToPos(db).toFixed(4));
    t.textContent = db > 0 ? "+" + db : String(db);
    if (db === 0) t.className = "zero";
    sc.appendChild(t);
  }
  const inf = document.createElement("span");
  inf.style.setProperty("--pos", "0");
  inf.textContent = "\u221e";
  sc.appendChild(inf);
}

// a fader moves by how far the finger moved (not to where it landed), like a real one
function wireFader(strip) {
  const f = strip.fader;
  let startY = 0, startPos = 0, travel = 1;
  f.addEventListener("pointerdown", (e) => {
    f.setPointerCapture(e.pointerId);
    strip.dragging = true;
    f.classList.add("active");
    startY = e.clientY;
    startPos = dbToPos(strip.faderDb);
    travel = f.getBoundingClientRect().height - strip.cap.offsetHeight;
    e.preventDefault();
  });
  f.addEventListener("pointermove", (e) => {
    if (!strip.dragging) return;
    const fine = e.shiftKey ? 0.25 : 1;
    const u = startPos + fine * (startY - e.clientY) / Math.max(1, travel);
    moveFader(strip, Math.round(posToDb(u) * 10) / 10);
  });
  const end = () => {
    if (!strip.dragging) return;
    strip.dragging = false;
    f.classList.remove("active");
    flush();
    const ch = S.state && S.state.channels[strip.channel - 1];
    if (ch) renderChannel(ch);
  };
  f.addEventListener("pointerup", end);
  f.addEventListener("pointercancel", end);
  f.addEventListener("lostpointercapture", end);
  f.addEventListener("dblclick", () => moveFader(strip, 0));
  f.addEventListener("keydown", (e) => {
    const step = { ArrowUp: 0.5, ArrowDown: -0.5, PageUp: 3, PageDown: -3 }[e.key];
    if (step === undefined) return;
    e.preventDefault();
    moveFader(strip, Math.round((Math.max(strip.faderDb, -60) + step) * 10) / 10);
  });
}
function moveFader(strip, db) {
  db = clampSpec("fader_db", db);
  showFader(strip, db);
  queueSet(strip.channel, "fader_db", db);
}
function showFader(strip, db) {
  strip.faderDb = db;
  strip.fader.setAttribute("value", String(db));
  strip.fader.setAttribute("aria-valuenow", String(db));
  strip.fader.style.setProperty("--pos", dbToPos(db).toFixed(4));
  strip.db.textContent = fmtDb(db);
}
// a range input's value, as its property and its attribute (the stable hook)
function setInput(input, v) {
  input.value = String(v);
  input.setAttribute("value", String(v));
}
function setMute(strip, on) {
  strip.mute.value = on ? "1" : "0";
  strip.mute.classList.toggle("on", !!on);
  strip.el.classList.toggle("muted", !!on);
}

// ---- rendering state ---------------------------------------------------------------------------
function renderChannel(ch) {
  const strip = S.strips[ch.channel - 1];
  if (!strip) return;
  const p = ch.params, own = ch.owner;
  strip.el.style.setProperty("--colour", ch.colour);
  strip.name.textContent = ch.name;
  const rec = ch.recognised_role;
  strip.role.textContent = rec || ch.role;
  strip.role.title = rec ? "recognised by the model (session: " + ch.role + ")" : "session role";
  strip.prob.textContent = (rec && ch.role_probability !== null && ch.role_probability !== undefined)
    ? " " + Math.round(ch.role_probability * 100) + "%" : "";
  if (!strip.dragging) showFader(strip, p.fader_db);
  const person = own.fader_db === "person";
  strip.readout.classList.toggle("person", person);
  strip.own.textContent = person ? "MAN" : "AUTO";
  if (document.activeElement !== strip.pan || !S.pending.has(ch.channel + "/pan")) {
    setInput(strip.pan, p.pan);
    strip.panVal.textContent = fmtPan(p.pan);
  }
  strip.pan.classList.toggle("person", own.pan === "person");
  strip.pan.closest(".pan-row").classList.toggle("person", own.pan === "person");
  setMute(strip, p.mute_on >= 0.5);
  strip.mute.classList.toggle("person", own.mute_on === "person");
  if (!S.pending.has(ch.channel + "/automation")) {
    setInput(strip.auto, ch.automation);
    strip.autoVal.textContent = String(Math.round(ch.automation * 100));
  }
  strip.el.classList.toggle("automix", p.automix_on >= 0.5);
  const ex = ch.explanations || {};
  const why = ex.fader_db || ex.trim_db || Object.values(ex)[0] || "";
  strip.why.textContent = why;
  strip.why.title = why;
  const nPerson = Object.values(own).filter((o) => o === "person").length;
  strip.el.dataset.person = String(nPerson);
}
// ---- meters (one frame in flight: ack after it is drawn) --------------------------------------
function meterTo(m, value, lo, hi, fromTop) {
  if (!m) return;
  const key = value === null ? "-inf" : String(value);
  if (m.el.dataset.value === key) return;
  m.el.dataset.value = key;
  const v = value === null ? lo : value;
  const frac = Math.min(1, Math.max(0, (v - lo) / (hi - lo)));
  // peak/RMS: a dark cover over a coloured scale shrinks as the level rises;
  // gain reduction: a bar growing down from the top
  m.bar.style.transform = "scaleY(" + (fromTop ? frac : 1 - frac).toFixed(4) + ")";
}
function draw() {
  S.drawQueued = false;
  const m = S.meters;
  if (!m) return;
  const ch = m.channel;
  for (let i = 0; i < S.strips.length; i++) {
    const st = S.strips[i].meters;
    meterTo(st.peak_db, ch.peak_db[i], -60, 0, false);
    meterTo(st.rms_db, ch.rms_db[i], -60, 0, false);
    meterTo(st.gain_reduction_db, ch.gain_reduction_db[i], 0, 24, true);
    const am = ch.automix_gain_db[i];
    meterTo(st.automix_gain_db, am === null ? null : -am, 0, 30, true);
  }
  const ms = m.master;
  for (const k of ["momentary_lufs", "short_term_lufs", "integrated_lufs", "true_peak_dbtp"]) {
    const el = document.querySelector('#loudness [data-meter="' + k + '"]');
    const v = ms[k];
    const key = dataValue(v);
    if (el.dataset.value !== key) {
      el.dataset.value = key;
      el.textContent = fmtDb(v);
      el.classList.toggle("over", k === "true_peak_dbtp" && v !== null && v > -1.0);
    }
  }
  document.body.dataset.meterFrames = String(+(document.body.dataset.meterFrames || 0) + 1);
  send({ type: "ack", n: m.n });
}

// ---- sending moves (coalesced: at most one message per control per frame) --------------------
function queueSet(channel, param, value) {
  S.pending.set(channel + "/" + param, { channel, param, value });
  if (!S.flushQueued) { S.flushQueued = true; setTimeout(flush, 16); }
}
function flush() {
  S.flushQueued = false;
  for (const [key, m] of S.pending) {
    if (!send({ type: "set", channel: m.channel, param: m.param, value: m.value })) break;
    S.pending.delete(key);
  }
}

// ---- the channel sheet: every group, its owner and its "auto" button, the explanations ------
function openDetail(channel) {
  S.detail = channel;
  renderDetail();
  const d = $("#detail");
  if (!d.open) d.showModal();
}
function renderDetail() {
  const ch = S.state && S.state.channels[S.detail - 1];
  if (!ch) return;
  if (S.detailBusy) { S.detailStale = true; return; }  // not under a finger
  $("#detail-title").textContent = ch.channel + "  " + ch.name;
  const body = $("#detail-body");
  body.textContent = "";
  const groups = new Map();
  for (const s of S.schema.channel) {
    if (!groups.has(s.group)) groups.set(s.group, []);
    groups.get(s.group).push(s);
  }
  const head = document.createElement("p");
  head.className = "detail-role";
  head.textContent = "role " + ch.role + (ch.recognised_role ? " \u00b7 heard as " + ch.recognised_role
    + (ch.role_probability !== null ? " (" + Math.round(ch.role_probability * 100) + "%)" : "") : "")
    + " \u00b7 automation " + Math.round(ch.automation * 100) + "%";
  body.appendChild(head);
  // the automation level (also on the strip; the only place for it in landscape)
  const auto = document.createElement("label");
  auto.className = "detail-auto";
  auto.textContent = "automation";
  const range = document.createElement("input");
  range.type = "range"; range.min = "0"; range.max = "1"; range.step = "0.05";
  setInput(range, ch.automation);
  range.addEventListener("input", () => queueSet(ch.channel, "automation", +range.value));
  range.addEventListener("change", () => flush());
  auto.appendChild(range);
  body.appendChild(auto);
  for (const [group, specs] of groups) {
    const person = specs.some((s) => ch.owner[s.name] === "person");
    const row = document.createElement("div");
    row.className = "group" + (person ? " person" : "");
    const title = document.createElement("div");
    title.className = "group-head";
    const name = document.createElement("b");
    name.textContent = group;
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "tool" + (person ? " primary" : "");
    btn.textContent = person ? "Hand back" : "Auto";
    btn.disabled = !person;
    btn.dataset.release = group;
    btn.addEventListener("click", () => request({ type: "release", channel: ch.channel, what: group }));
    title.append(name, btn);
    row.appendChild(title);
    const list = document.createElement("dl");
    for (const s of specs) {
      const dt = document.createElement("dt");
      dt.textContent = s.name;
      const dd = document.createElement("dd");
      const v = ch.params[s.name];
      dd.textContent = (s.scale === "bool" ? (v >= 0.5 ? "on" : "off") : (+v.toFixed(2)).toString())
        + (ch.owner[s.name] === "person" ? "  (yours)" : "");
      const why = (ch.explanations || {})[s.name];
      if (why) {
        const w = document.createElement("small");
        w.textContent = why;
        dd.appendChild(w);
      }
      list.append(dt, dd);
    }
    row.appendChild(list);
    body.appendChild(row);
  }
}

// ---- scenes --------------------------------------------------------------------------------------
function renderScenes() {
  const ul = $("#scene-list");
  ul.textContent = "";
  for (const name of S.scenes) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = name;
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "tool";
    btn.textContent = "Recall";
    btn.dataset.scene = name;
    btn.addEventListener("click", () => {
      const fade = +$("#scene-fade").value || 0;
      request({ type: "scene_recall", name, fade_s: fade });
      toast("recalling " + name + (fade ? " over " + fade + " s" : ""));
    });
    li.append(label, btn);
    ul.appendChild(li);
  }
}

let toastTimer = null;
function toast(text, bad = false) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.toggle("bad", bad);
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 4000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#scenes-open").addEventListener("click", () => {
    request({ type: "scene_list" });
    $("#scenes").showModal();
  });
  $("#scene-save").addEventListener("click", () => {
    const name = $("#scene-name").value.trim();
    if (!name) { toast("name the scene first", true); return; }
    request({ type: "scene_save", name });
    toast("saved " + name);
  });
  const sheet = $("#detail");
  sheet.addEventListener("close", () => { S.detail = null; });
  sheet.addEventListener("pointerdown", () => { S.detailBusy = true; });
  const settle = () => {
    S.detailBusy = false;
    if (S.detailStale) { S.detailStale = false; renderDetail(); }
  };
  sheet.addEventListener("pointerup", settle);
  sheet.addEventListener("pointercancel", settle);
  connect();
});
