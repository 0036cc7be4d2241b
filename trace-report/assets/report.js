"use strict";
(function () {
  var records = JSON.parse(document.getElementById("records").textContent);
  var tip = document.getElementById("tip");

  // Legend: one swatch per outcome present in the address map.
  var counts = {};
  document.querySelectorAll("#addrmap .mark").forEach(function (m) {
    var o = m.getAttribute("data-outcome");
    counts[o] = (counts[o] || 0) + Number(m.getAttribute("data-count"));
  });
  var legend = document.getElementById("legend");
  Object.keys(counts).sort().forEach(function (o) {
    var probe = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    probe.setAttribute("class", "mark o-" + o);
    document.getElementById("addrmap").appendChild(probe);
    var colour = getComputedStyle(probe).fill;
    probe.remove();
    var s = document.createElement("span");
    var i = document.createElement("i");
    i.style.background = colour;
    s.appendChild(i);
    s.appendChild(document.createTextNode(o + " " + counts[o]));
    legend.appendChild(s);
  });

  // Hover: the record's fields (or a bin's count).
  function describe(el) {
    var d = el.dataset;
    if (d.i !== undefined && records[Number(d.i)]) {
      var r = records[Number(d.i)];
      return Object.keys(r).map(function (k) { return k + ": " + JSON.stringify(r[k]); }).join("\n");
    }
    var lines = [];
    ["seq", "transfer", "dir", "outcome", "t", "req", "eff", "len", "count", "lo", "hi", "t0", "t1", "addr"].forEach(function (k) {
      if (d[k] !== undefined) { lines.push(k + ": " + d[k]); }
    });
    // A timeline tick or fault marker: the address map's mark has the fields.
    var twin = d.seq !== undefined ? document.getElementById("mark-" + d.seq) : null;
    if (twin && twin !== el) { return describe(twin); }
    return lines.join("\n");
  }
  document.querySelectorAll("svg").forEach(function (svg) {
    svg.addEventListener("mousemove", function (e) {
      var el = e.target;
      if (!el.dataset || (el.dataset.seq === undefined && el.dataset.count === undefined && el.dataset.addr === undefined && el.dataset.transfer === undefined)) {
        tip.hidden = true;
        return;
      }
      tip.textContent = describe(el);
      tip.style.left = (e.clientX + 14) + "px";
      tip.style.top = (e.clientY + 10) + "px";
      tip.hidden = false;
    });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; });
  });

  // Fault list -> its marks.
  var lit = [];
  function highlight(seq) {
    lit.forEach(function (el) { el.classList.remove("hl"); });
    lit = Array.prototype.slice.call(document.querySelectorAll('[data-seq="' + seq + '"]'))
      .filter(function (el) { return el.tagName !== "A"; });
    lit.forEach(function (el) { el.classList.add("hl"); });
  }
  document.querySelectorAll("a.fault-link").forEach(function (a) {
    a.addEventListener("click", function () { highlight(a.dataset.seq); });
  });
  if (location.hash.indexOf("#mark-") === 0) { highlight(location.hash.slice(6)); }

  // Timeline zoom and pan: x recomputed from each element's time.
  var tl = document.getElementById("timeline");
  var x0 = Number(tl.dataset.x0), w = Number(tl.dataset.w);
  var tmin = Number(tl.dataset.tmin), tmax = Number(tl.dataset.tmax);
  var view = { from: tmin, to: tmax };
  var timed = Array.prototype.slice.call(tl.querySelectorAll("[data-t], [data-t0]"));
  var ticks = tl.querySelector(".t-ticks");
  var axisY = Number(ticks.dataset.y);
  function sx(t) { return x0 + w * (t - view.from) / (view.to - view.from); }
  // In the unit of the view's end, with as many decimals as the step needs.
  function label(ns, step) {
    var units = [[1e9, " s"], [1e6, " ms"], [1e3, " µs"], [1, " ns"]];
    var u = units.find(function (p) { return view.to >= p[0]; }) || units[3];
    var digits = Math.max(0, Math.ceil(-Math.log10(step / u[0]) - 1e-9));
    return (ns / u[0]).toFixed(Math.min(digits, 6)) + u[1];
  }
  function draw() {
    timed.forEach(function (el) {
      var d = el.dataset;
      if (d.t !== undefined) {
        el.setAttribute("x", (sx(Number(d.t)) - 1).toFixed(2));
      } else {
        var a = sx(Number(d.t0)), b = sx(Number(d.t1));
        el.setAttribute("x", a.toFixed(2));
        el.setAttribute("width", Math.max(el.classList.contains("bin") ? 1 : 2, b - a).toFixed(2));
      }
    });
    while (ticks.firstChild) { ticks.removeChild(ticks.firstChild); }
    var span = view.to - view.from;
    var step = Math.pow(10, Math.floor(Math.log10(span / 6)));
    [1, 2, 5, 10].some(function (m) { if (span / (step * m) <= 8) { step *= m; return true; } return false; });
    for (var t = Math.ceil(view.from / step) * step; t <= view.to; t += step) {
      var x = sx(t);
      var line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      line.setAttribute("class", "tick");
      line.setAttribute("x1", x); line.setAttribute("x2", x);
      line.setAttribute("y1", axisY); line.setAttribute("y2", axisY + 5);
      var text = document.createElementNS("http://www.w3.org/2000/svg", "text");
      text.setAttribute("class", "tick-label");
      text.setAttribute("x", x); text.setAttribute("y", axisY + 18);
      text.textContent = label(t, step);
      ticks.appendChild(line); ticks.appendChild(text);
    }
  }
  function timeAt(clientX) {
    var box = tl.getBoundingClientRect();
    var px = (clientX - box.left) * (Number(tl.getAttribute("width")) / box.width);
    return view.from + (px - x0) / w * (view.to - view.from);
  }
  tl.addEventListener("wheel", function (e) {
    e.preventDefault();
    var at = timeAt(e.clientX);
    var k = e.deltaY < 0 ? 0.8 : 1.25;
    var from = at - (at - view.from) * k, to = at + (view.to - at) * k;
    if (to - from < 10) { return; }
    view.from = Math.max(tmin, from); view.to = Math.min(tmax, to);
    draw();
  }, { passive: false });
  var drag = null;
  tl.addEventListener("mousedown", function (e) { drag = { x: e.clientX, from: view.from, to: view.to }; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (e) {
    if (!drag) { return; }
    var box = tl.getBoundingClientRect();
    var dt = (e.clientX - drag.x) * (Number(tl.getAttribute("width")) / box.width) / w * (drag.to - drag.from);
    var from = Math.max(tmin, drag.from - dt), len = drag.to - drag.from;
    view.from = Math.min(from, Math.max(tmin, tmax - len)); view.to = view.from + len;
    draw();
  });
  tl.addEventListener("dblclick", function () { view = { from: tmin, to: tmax }; draw(); });
  draw();

  document.body.setAttribute("data-ready", "1");
  document.body.setAttribute("data-marks", String(document.querySelectorAll("#addrmap .mark").length));
})();
