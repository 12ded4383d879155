// Hải Đăng dashboard: character counts, the area picker, cron preview, live progress.
// Plain JavaScript on purpose: no build step, and every form works without it.
(function () {
  "use strict";
  var base = document.body.getAttribute("data-base") || "";

  function codePoints(text) { return Array.from(text).length; }

  // How many messages a text makes on a platform (a rough mirror of the server's split).
  function partsFor(length, limit) { return Math.max(1, Math.ceil(length / limit)); }

  function setupCounts() {
    var counts = document.getElementById("counts");
    var title = document.getElementById("title");
    var body = document.getElementById("body");
    if (!counts || !title || !body) return;
    var tgLimit = parseInt(counts.getAttribute("data-telegram-limit"), 10);
    var zaloLimit = parseInt(counts.getAttribute("data-zalo-limit"), 10);
    function update() {
      var urgent = document.getElementById("priority-urgent");
      var mark = counts.getAttribute(urgent && urgent.checked ? "data-mark-urgent" : "data-mark-routine");
      var length = codePoints(mark + " " + title.value.trim() + "\n\n" + body.value.trim());
      document.getElementById("count-chars").textContent = String(length);
      var tg = document.getElementById("count-telegram");
      var zalo = document.getElementById("count-zalo");
      tg.textContent = String(partsFor(length, tgLimit));
      zalo.textContent = String(partsFor(length, zaloLimit));
      tg.classList.toggle("over", length > tgLimit);
      zalo.classList.toggle("over", length > zaloLimit);
    }
    ["input", "change"].forEach(function (name) {
      title.addEventListener(name, update);
      body.addEventListener(name, update);
      document.querySelectorAll("input[name=priority]").forEach(function (el) { el.addEventListener(name, update); });
    });
    update();
  }

  function addChip(code, label) {
    var chosen = document.getElementById("chosen-areas");
    if (chosen.querySelector('input[value="' + CSS.escape(code) + '"]')) return;
    var chip = document.createElement("span");
    chip.className = "chip";
    var hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = "areas"; hidden.value = code;
    var remove = document.createElement("button");
    remove.type = "button"; remove.className = "chip-remove"; remove.textContent = "×";
    remove.setAttribute("aria-label", "Bỏ");
    chip.appendChild(hidden);
    chip.appendChild(document.createTextNode(label + " (" + code + ") "));
    chip.appendChild(remove);
    chosen.appendChild(chip);
  }

  function setupAreaPicker() {
    var search = document.getElementById("area-search");
    var results = document.getElementById("area-results");
    var chosen = document.getElementById("chosen-areas");
    if (!search || !results || !chosen) return;
    chosen.addEventListener("click", function (event) {
      if (event.target.classList.contains("chip-remove")) event.target.parentNode.remove();
    });
    var timer = null;
    search.addEventListener("keydown", function (event) { if (event.key === "Enter") event.preventDefault(); });
    search.addEventListener("input", function () {
      clearTimeout(timer);
      var q = search.value.trim();
      if (!q) { results.textContent = ""; return; }
      timer = setTimeout(function () {
        fetch(base + "/api/areas?q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (data) {
            results.textContent = "";
            (data.results || []).forEach(function (item) {
              var li = document.createElement("li");
              var button = document.createElement("button");
              button.type = "button"; button.className = "area-result";
              button.setAttribute("data-code", item.code);
              button.textContent = item.label + " · " + item.code;
              button.addEventListener("click", function () {
                addChip(item.code, item.name);
                results.textContent = ""; search.value = "";
              });
              li.appendChild(button);
              results.appendChild(li);
            });
          });
      }, 200);
    });
  }

  function setupCron() {
    var cron = document.getElementById("schedule-cron");
    var until = document.getElementById("schedule-until");
    var out = document.getElementById("cron-preview");
    if (!cron || !out) return;
    var timer = null;
    function update() {
      clearTimeout(timer);
      var expr = cron.value.trim();
      if (!expr) { out.textContent = ""; return; }
      var cronRadio = document.getElementById("mode-cron");
      if (cronRadio) cronRadio.checked = true;
      timer = setTimeout(function () {
        var url = base + "/api/cron?expr=" + encodeURIComponent(expr) + "&until=" + encodeURIComponent(until ? until.value : "");
        fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
          out.textContent = data.error ? data.error : "Các lần gửi tới: " + data.runs.join("; ");
        });
      }, 250);
    }
    cron.addEventListener("input", update);
    if (until) until.addEventListener("change", update);
    var at = document.getElementById("schedule-at");
    if (at) at.addEventListener("change", function () { var r = document.getElementById("mode-at"); if (r) r.checked = true; });
  }

  function setupConfirm() {
    document.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  function formatNumber(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "."); }

  function setupProgress() {
    var box = document.getElementById("progress");
    if (!box) return;
    var url = box.getAttribute("data-json-url");
    var chartUrl = box.getAttribute("data-chart-url");
    var ticks = 0;
    function poll() {
      if (document.hidden) { setTimeout(poll, 2000); return; }
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (p) {
        Object.keys(p.counts).forEach(function (state) {
          var el = document.getElementById("count-" + state);
          if (el) el.textContent = formatNumber(p.counts[state]);
        });
        document.getElementById("progress-total").textContent = formatNumber(p.total);
        document.getElementById("progress-done").textContent = formatNumber(p.done_count);
        var bar = document.getElementById("progress-bar");
        bar.max = Math.max(p.total, 1); bar.value = p.done_count;
        document.getElementById("progress-state").textContent = p.state_label;
        document.getElementById("progress-runs").textContent = String(p.runs);
        var ack = document.getElementById("ack-count");
        if (ack) {
          ack.textContent = formatNumber(p.acknowledgements);
          document.getElementById("ack-sent").textContent = formatNumber(p.sent);
          document.getElementById("ack-rate").textContent =
            p.ack_rate === null ? "—" : (p.ack_rate * 100).toFixed(1).replace(".", ",") + " %";
        }
        box.setAttribute("data-finished", p.finished ? "true" : "false");
        ticks += 1;
        if (ticks % 5 === 0 || p.finished) {
          document.getElementById("progress-chart").src = chartUrl + "?t=" + Date.now();
        }
        if (!p.finished) setTimeout(poll, 2000);
      }).catch(function () { setTimeout(poll, 5000); });
    }
    if (box.getAttribute("data-finished") !== "true") setTimeout(poll, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCounts(); setupAreaPicker(); setupCron(); setupConfirm(); setupProgress();
  });
})();
