/* topojax gallery script: view switches, training slider, hover read-out and
   neuron cards. No dependencies and no network access; every page is complete
   without it (all variants and frames are listed as plain HTML). Data comes from
   the layer's data.js (window.TOPOJAX_LAYER), loaded with <script src> so the
   site works from file://. All text from the data is inserted with textContent,
   never as HTML. */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  var data = null;
  var indexCache = {};
  var cursors = new WeakMap();
  var lastFocus = null;

  function byId(id) {
    return document.getElementById(id);
  }

  function svgNode(name, attributes) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", name);
    Object.keys(attributes || {}).forEach(function (key) {
      node.setAttribute(key, String(attributes[key]));
    });
    return node;
  }

  function htmlNode(name, className, text) {
    var node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatValue(value) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    if (value === 0) return "0";
    var text = Math.abs(value) >= 1e-3 && Math.abs(value) < 1e5
      ? value.toPrecision(3) : value.toExponential(2);
    return (value > 0 ? "+" : "") + text;
  }

  /* ---- Layout-method / rendering switch ---- */

  function checkedValue(form, name) {
    var input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : null;
  }

  function selectRadio(form, name, value) {
    var inputs = form.querySelectorAll('input[name="' + name + '"]');
    for (var k = 0; k < inputs.length; k++) {
      if (inputs[k].value === value) inputs[k].checked = true;
    }
  }

  function applyView(form, updateHash) {
    var method = checkedValue(form, "method");
    var style = checkedValue(form, "style");
    document.querySelectorAll(".variant").forEach(function (section) {
      var ok = (!method || !section.dataset.method || section.dataset.method === method) &&
        (!style || !section.dataset.style || section.dataset.style === style);
      section.hidden = !ok;
    });
    document.querySelectorAll("tr[data-method]").forEach(function (row) {
      row.classList.toggle("current", row.dataset.method === method);
    });
    if (updateHash) {
      var parts = [];
      if (method) parts.push("method=" + method);
      if (style) parts.push("style=" + style);
      try {
        history.replaceState(null, "", "#" + parts.join("&"));
      } catch (error) {
        /* Some file:// contexts refuse history changes; the view still works. */
      }
    }
  }

  function initSwitch() {
    var form = byId("view-controls");
    if (!form) return;
    var hash = window.location.hash.replace(/^#/, "");
    var target = hash ? byId(hash) : null;
    if (target && target.classList.contains("variant")) {
      selectRadio(form, "method", target.dataset.method);
      selectRadio(form, "style", target.dataset.style);
    } else {
      hash.split("&").forEach(function (pair) {
        var kv = pair.split("=");
        if (kv.length === 2) selectRadio(form, kv[0], kv[1]);
      });
    }
    form.hidden = false;
    form.addEventListener("submit", function (event) { event.preventDefault(); });
    form.addEventListener("change", function () { applyView(form, true); });
    applyView(form, false);
  }

  /* ---- Training slider ---- */

  function initTraining() {
    var form = byId("training-controls");
    if (!form) return;
    var slider = byId("training-frame");
    var label = byId("training-frame-label");
    var play = byId("training-play");
    var frames = Array.prototype.slice.call(document.querySelectorAll(".frame"));
    var titles = frames.map(function (frame) {
      var heading = frame.querySelector(".frame-title");
      return heading ? heading.textContent : String(frame.dataset.frame);
    });
    var timer = null;

    function show(index) {
      frames.forEach(function (frame, k) { frame.hidden = k !== index; });
      slider.value = String(index);
      label.textContent = titles[index];
      slider.setAttribute("aria-valuetext", titles[index]);
    }

    function stop() {
      if (timer !== null) window.clearInterval(timer);
      timer = null;
      play.textContent = "Play";
      play.setAttribute("aria-pressed", "false");
    }

    form.hidden = false;
    form.addEventListener("submit", function (event) { event.preventDefault(); });
    slider.addEventListener("input", function () { show(Number(slider.value)); });
    play.addEventListener("click", function () {
      if (timer !== null) { stop(); return; }
      play.textContent = "Pause";
      play.setAttribute("aria-pressed", "true");
      if (Number(slider.value) >= frames.length - 1) show(0);
      timer = window.setInterval(function () {
        var next = Number(slider.value) + 1;
        if (next >= frames.length) { stop(); return; }
        show(next);
      }, 700);
    });
    show(Number(slider.value));
  }

  /* ---- Per-pixel neuron index and hover read-out ---- */

  function decodeRuns(runs) {
    /* [value + 1, run, value + 1, run, ...] -> Int32Array of values. */
    var image = new Int32Array(data.resolution * data.resolution);
    for (var k = 0, pos = 0; k < runs.length; k += 2) {
      image.fill(runs[k] - 1, pos, pos + runs[k + 1]);
      pos += runs[k + 1];
    }
    return image;
  }

  function indexImage(method, style) {
    /* Neuron index per pixel for one layout and render style, -1 where the map
       is transparent: the layout's nearest neuron, masked by the style. */
    var key = method + "/" + style;
    if (key in indexCache) return indexCache[key];
    var entry = data.nearest[method];
    var image = null;
    if (entry && entry.drawn[style]) {
      image = decodeRuns(entry.index);
      var drawn = decodeRuns(entry.drawn[style]);
      for (var k = 0; k < image.length; k++) {
        if (drawn[k] < 0) image[k] = -1;
      }
    }
    indexCache[key] = image;
    return image;
  }

  function pixelAt(map, clientX, clientY) {
    var rect = map.querySelector("img").getBoundingClientRect();
    var size = data.resolution;
    var j = Math.floor((clientX - rect.left) / rect.width * size);
    var i = Math.floor((clientY - rect.top) / rect.height * size);
    return {
      i: Math.min(size - 1, Math.max(0, i)),
      j: Math.min(size - 1, Math.max(0, j))
    };
  }

  function neuronAt(map, pixel) {
    var image = indexImage(map.dataset.method, map.dataset.style);
    return image ? image[pixel.i * data.resolution + pixel.j] : -1;
  }

  function groupOf(map) {
    var g = Number(map.dataset.group);
    if (map.dataset.frame !== undefined && data.training) {
      var frame = Number(map.dataset.frame);
      return {
        name: data.training.groups[g],
        context: data.training.labels[frame],
        values: data.training.values[frame][g]
      };
    }
    var set = data.sets[map.dataset.set];
    return { name: set.groups[g], context: set.name, values: set.values[g] };
  }

  function showReadout(map, pixel, x, y) {
    var tip = byId("readout");
    var neuron = neuronAt(map, pixel);
    var group = groupOf(map);
    tip.dataset.neuron = String(neuron);
    if (neuron < 0) {
      tip.textContent = data.layer + " · no neuron here";
    } else {
      tip.textContent = data.layer + " · neuron " + neuron + " · " + group.name +
        " (" + group.context + "): " + formatValue(group.values[neuron]);
    }
    tip.hidden = false;
    var left = Math.min(x + 14, window.innerWidth - tip.offsetWidth - 4);
    var top = y + 18 + tip.offsetHeight > window.innerHeight ? y - tip.offsetHeight - 10 : y + 18;
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
    return neuron;
  }

  function hideReadout() {
    var tip = byId("readout");
    if (tip) tip.hidden = true;
  }

  function placeCursor(map, pixel) {
    var cursor = map.querySelector(".cursor");
    if (!cursor) {
      cursor = htmlNode("span", "cursor");
      cursor.setAttribute("aria-hidden", "true");
      map.appendChild(cursor);
    }
    cursor.hidden = false;
    cursor.style.left = ((pixel.j + 0.5) / data.resolution * 100) + "%";
    cursor.style.top = ((pixel.i + 0.5) / data.resolution * 100) + "%";
    cursors.set(map, pixel);
    var rect = map.getBoundingClientRect();
    showReadout(map, pixel, rect.left + (pixel.j + 0.5) / data.resolution * rect.width,
      rect.top + (pixel.i + 0.5) / data.resolution * rect.height);
  }

  function onKey(event) {
    var map = event.currentTarget;
    var pixel = cursors.get(map);
    if (!pixel) return;
    var step = Math.max(1, Math.round(data.resolution / (event.shiftKey ? 8 : 32)));
    var moves = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] };
    if (moves[event.key]) {
      event.preventDefault();
      var size = data.resolution;
      placeCursor(map, {
        i: Math.min(size - 1, Math.max(0, pixel.i + moves[event.key][0])),
        j: Math.min(size - 1, Math.max(0, pixel.j + moves[event.key][1]))
      });
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      var neuron = neuronAt(map, pixel);
      if (neuron >= 0) openCard(map, neuron);
    }
  }

  function initReadout() {
    document.querySelectorAll(".map").forEach(function (map) {
      map.addEventListener("pointermove", function (event) {
        showReadout(map, pixelAt(map, event.clientX, event.clientY), event.clientX, event.clientY);
      });
      map.addEventListener("pointerleave", hideReadout);
      map.addEventListener("click", function (event) {
        var neuron = neuronAt(map, pixelAt(map, event.clientX, event.clientY));
        if (neuron >= 0) openCard(map, neuron);
      });
      map.addEventListener("focus", function () {
        var half = Math.floor(data.resolution / 2);
        placeCursor(map, cursors.get(map) || { i: half, j: half });
      });
      map.addEventListener("blur", function () {
        var cursor = map.querySelector(".cursor");
        if (cursor) cursor.hidden = true;
        hideReadout();
      });
      map.addEventListener("keydown", onKey);
    });
  }

  /* ---- Neuron card ---- */

  var MAX_LABEL = 24;
  var MAX_FEATURE_BARS = 64;

  function shortName(name) {
    return name.length > MAX_LABEL ? name.slice(0, MAX_LABEL - 1) + "…" : name;
  }

  function barChart(labels, values, highlight, caption) {
    var longest = 1;
    labels.forEach(function (name) { longest = Math.max(longest, shortName(name).length); });
    /* About 7.5 px per character of 12 px (bold) text. */
    var rowHeight = 16, labelWidth = 12 + Math.ceil(7.5 * longest), barWidth = 240, valueWidth = 64;
    var width = labelWidth + barWidth + valueWidth;
    var height = rowHeight * labels.length + 6;
    var svg = svgNode("svg", {
      "class": "bars", viewBox: "0 0 " + width + " " + height,
      width: width, height: height, role: "img", "aria-label": caption
    });
    var title = svgNode("title");
    title.textContent = caption;
    svg.appendChild(title);
    var largest = 0;
    values.forEach(function (v) { if (isFinite(v)) largest = Math.max(largest, Math.abs(v)); });
    largest = largest > 0 ? largest : 1;
    var zero = labelWidth + barWidth / 2;
    labels.forEach(function (name, k) {
      var y = 3 + k * rowHeight;
      var value = values[k];
      var row = svgNode("g", { "class": k === highlight ? "current" : "row" });
      if (k === highlight) {
        row.appendChild(svgNode("rect", { "class": "hl", x: 0, y: y, width: width, height: rowHeight }));
      }
      var label = svgNode("text", { x: labelWidth - 6, y: y + 12, "text-anchor": "end" });
      label.textContent = shortName(name);
      var full = svgNode("title");
      full.textContent = name + ": " + formatValue(value);
      label.appendChild(full);
      row.appendChild(label);
      var length = isFinite(value) ? Math.abs(value) / largest * (barWidth / 2 - 2) : 0;
      row.appendChild(svgNode("rect", {
        "class": value >= 0 ? "pos" : "neg",
        x: value >= 0 ? zero : zero - length, y: y + 3, width: length, height: rowHeight - 6
      }));
      var number = svgNode("text", { x: labelWidth + barWidth + 6, y: y + 12 });
      number.textContent = formatValue(value);
      row.appendChild(number);
      svg.appendChild(row);
    });
    svg.appendChild(svgNode("line", { x1: zero, x2: zero, y1: 0, y2: height }));
    return svg;
  }

  function cardSection(title) {
    var section = htmlNode("section", "card-section");
    section.appendChild(htmlNode("h3", null, title));
    return section;
  }

  function openCard(map, neuron) {
    var dialog = byId("neuron-card");
    var body = byId("neuron-card-body");
    if (!dialog || !body) return;
    byId("neuron-card-title").textContent = "Neuron " + neuron;
    body.replaceChildren();
    body.appendChild(htmlNode("p", "card-meta",
      "Layer " + data.layer + " of " + data.model + " (" + data.n_neurons + " neurons)"));
    var frame = map.dataset.frame !== undefined ? Number(map.dataset.frame) : null;
    if (frame !== null && data.training) {
      var training = cardSection("At " + data.training.labels[frame]);
      var tValues = data.training.values[frame].map(function (row) { return row[neuron]; });
      training.appendChild(barChart(data.training.groups, tValues, Number(map.dataset.group),
        "Values of neuron " + neuron + " for each group at " + data.training.labels[frame]));
      body.appendChild(training);
    }
    Object.keys(data.sets).forEach(function (setId) {
      var set = data.sets[setId];
      var section = cardSection(set.name);
      var labels = set.order.map(function (g) {
        return set.counts[g] === 0 ? set.groups[g] + " (empty)" : set.groups[g];
      });
      var values = set.order.map(function (g) { return set.values[g][neuron]; });
      var highlight = setId === map.dataset.set ? set.order.indexOf(Number(map.dataset.group)) : -1;
      section.appendChild(barChart(labels, values, highlight,
        "Values of neuron " + neuron + " for each group of " + set.name));
      body.appendChild(section);
    });
    if (data.top_inputs) {
      var inputs = cardSection("Top-activating inputs");
      var list = htmlNode("ol", "inputs");
      data.top_inputs[neuron].forEach(function (index, rank) {
        var item = htmlNode("li");
        var image = htmlNode("img");
        image.src = data.inputs_prefix + index + ".png";
        image.alt = "Input " + index + " (rank " + (rank + 1) + ")";
        image.width = 56;
        image.height = 56;
        item.appendChild(image);
        list.appendChild(item);
      });
      inputs.appendChild(list);
      body.appendChild(inputs);
    }
    if (data.features) {
      var features = cardSection("Profile features");
      var row = data.features[neuron];
      if (row.length <= MAX_FEATURE_BARS) {
        var names = row.map(function (_, k) { return "feature " + k; });
        features.appendChild(barChart(names, row, -1, "Profile features of neuron " + neuron));
      } else {
        features.appendChild(htmlNode("p", null, row.length + " features (too many to draw)."));
      }
      body.appendChild(features);
    }
    lastFocus = map;
    hideReadout();
    if (!dialog.open) dialog.showModal();
    byId("neuron-card-close").focus();
  }

  function initCard() {
    var dialog = byId("neuron-card");
    if (!dialog) return;
    byId("neuron-card-close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("click", function (event) {
      /* A click on the backdrop (outside the card's box) closes it. */
      var box = dialog.getBoundingClientRect();
      var outside = event.clientX < box.left || event.clientX > box.right ||
        event.clientY < box.top || event.clientY > box.bottom;
      if (event.target === dialog && outside) dialog.close();
    });
    dialog.addEventListener("close", function () {
      if (lastFocus) lastFocus.focus();
    });
  }

  function init() {
    data = window.TOPOJAX_LAYER || null;
    initSwitch();
    initTraining();
    if (data) {
      initReadout();
      initCard();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
