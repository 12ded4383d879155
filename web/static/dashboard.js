// Hải Đăng dashboard: character counts, the area picker, cron preview, live progress.
// Plain JavaScript on purpose: no build step, and every form works without it.
(function () {
  "use strict";
  var base = document.body.getAttribute("data-base") || "";

  function codePoints(text) { return Array.from(text).length; }

  // How many messages a text makes on a platform (a rough mirror of the server's split).
  function partsFor(length, limit) { return Math.max(1, Math.ceil(length / limit)); }

  // One counts line under a title + body pair: the characters as sent and the number of
  // messages on each platform (each <strong class="count-part"> carries its limit).
  function watchCounts(counts, title, body) {
    var config = document.getElementById("count-config");
    function update() {
      var urgent = document.getElementById("priority-urgent");
      var mark = config ? config.getAttribute(urgent && urgent.checked ? "data-mark-urgent" : "data-mark-routine") : "";
      var length = codePoints(mark + " " + title.value.trim() + "\n\n" + body.value.trim());
      counts.querySelector(".count-chars").textContent = String(length);
      counts.querySelectorAll(".count-part").forEach(function (el) {
        var limit = parseInt(el.getAttribute("data-limit"), 10);
        el.textContent = String(partsFor(length, limit));
        el.classList.toggle("over", length > limit);
      });
    }
    ["input", "change"].forEach(function (name) {
      title.addEventListener(name, update);
      body.addEventListener(name, update);
      document.querySelectorAll("input[name=priority]").forEach(function (el) { el.addEventListener(name, update); });
    });
    update();
  }

  function watchTranslation(row) {
    var counts = row.querySelector(".counts");
    if (counts) watchCounts(counts, row.querySelector(".tr-title"), row.querySelector(".tr-body"));
    var remove = row.querySelector(".tr-remove");
    if (remove) remove.addEventListener("click", function () {
      var rows = document.querySelectorAll("#translation-rows .translation");
      if (rows.length > 1) { row.remove(); return; }
      // The last row stays as the blank one the form offers without JavaScript.
      row.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; el.dispatchEvent(new Event("input")); });
      row.querySelector("select").value = "";
    });
  }

  function setupCounts() {
    var counts = document.getElementById("counts");
    var title = document.getElementById("title");
    var body = document.getElementById("body");
    if (counts && title && body) watchCounts(counts, title, body);
    var rows = document.getElementById("translation-rows");
    var add = document.getElementById("add-translation");
    if (!rows) return;
    rows.querySelectorAll(".translation").forEach(watchTranslation);
    if (!add) return;
    add.addEventListener("click", function () {
      var all = rows.querySelectorAll(".translation");
      var template = all[all.length - 1];
      var row = template.cloneNode(true);
      var index = all.length;
      while (document.getElementById("tr-count-" + index + "s")) index += 1;
      row.setAttribute("data-index", String(index));
      row.querySelectorAll("[id]").forEach(function (el) {
        el.id = el.id.replace(/^tr-count-\d+/, "tr-count-" + index);
      });
      row.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; });
      row.querySelector("select").value = "";
      rows.appendChild(row);
      watchTranslation(row);
      row.querySelector("select").focus();
    });
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

  function formatRate(rate) { return rate === null ? "—" : (rate * 100).toFixed(1).replace(".", ",") + " %"; }

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
          document.getElementById("ack-rate").textContent = formatRate(p.ack_rate);
        }
        (p.queues || []).forEach(function (q) {
          var row = document.querySelector('tr.bot-queue[data-bot-id="' + q.bot_id + '"]');
          if (!row) return;
          var backlog = q.broadcast_backlog === null ? q.broadcast_waiting : q.broadcast_backlog;
          var values = { replies_waiting: formatNumber(q.replies_waiting),
            broadcast_backlog: formatNumber(backlog),
            rate_limited_last_hour: formatNumber(q.rate_limited_last_hour),
            paused_for: String(q.paused_for) + " giây" };
          Object.keys(values).forEach(function (field) {
            var cell = row.querySelector('[data-field="' + field + '"]');
            if (cell) cell.textContent = values[field];
          });
        });
        updateBots(p);
        box.setAttribute("data-finished", p.finished ? "true" : "false");
        ticks += 1;
        if (ticks % 5 === 0 || p.finished) {
          document.getElementById("progress-chart").src = chartUrl + "?t=" + Date.now();
          refreshTables();
        }
        if (!p.finished) setTimeout(poll, 2000);
      }).catch(function () { setTimeout(poll, 5000); });
    }
    // Each bot's share: its row's counters like the ones above. A bot with no row yet (the
    // page was opened before the fan-out) brings a fresh copy of the tables.
    var botBox = document.getElementById("bot-shares");
    function updateBots(p) {
      if (!botBox) return;
      var bots = p.bots || [];
      var missing = false;
      bots.forEach(function (bot) {
        var row = botBox.querySelector('tr.bot-share[data-bot-id="' + bot.bot_id + '"]');
        if (!row) { missing = true; return; }
        Object.keys(bot.counts).forEach(function (state) {
          var cell = row.querySelector('[data-state="' + state + '"]');
          if (cell) cell.textContent = formatNumber(bot.counts[state]);
        });
        var acks = row.querySelector('[data-field="acknowledgements"]');
        if (acks && bot.acknowledgements !== null) acks.textContent = formatNumber(bot.acknowledgements);
        var rate = row.querySelector('[data-field="ack_rate"]');
        if (rate) rate.textContent = formatRate(bot.ack_rate);
      });
      var unattributed = botBox.querySelector('[data-field="acknowledgements_unattributed"]');
      if (unattributed) unattributed.textContent = formatNumber(p.acknowledgements_unattributed);
      else if (p.acknowledgements_unattributed && document.getElementById("ack-count")) missing = true;
      if (bots.length) botBox.hidden = false;
      if (missing) refreshTables();
    }
    // The per-commune table and the failure reasons can gain rows (a page opened before
    // the fan-out shows none), so they are taken from a fresh copy of this page, rendered
    // and escaped by the server, less often than the counters.
    var refreshing = false;
    function refreshTables() {
      if (refreshing) return;
      refreshing = true;
      fetch(window.location.href, { credentials: "same-origin" }).then(function (r) {
        return r.ok ? r.text() : Promise.reject(r.status);
      }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ["#commune-table tbody", "#failure-reasons", "#bot-table tbody"].forEach(function (selector) {
          var now = document.querySelector(selector), next = fresh.querySelector(selector);
          if (now && next) now.innerHTML = next.innerHTML;
        });
      }).catch(function () { /* the next refresh tries again */ }).then(function () { refreshing = false; });
    }
    if (box.getAttribute("data-finished") !== "true") setTimeout(poll, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCounts(); setupAreaPicker(); setupCron(); setupConfirm(); setupProgress();
  });
})();
