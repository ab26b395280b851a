/* Reunite pages: small progressive enhancements. Every page works without this file.
 *
 * Behaviours are switched on by data- attributes, never by inline script (the
 * Content-Security-Policy forbids it):
 *   input[type=file][data-preview=ID]  shows the chosen photo in figure#ID before upload
 *   button[data-busy=TEXT]             on submit: disabled, TEXT and a progress bar shown
 *   [data-poll-url=URL]                fetches URL (JSON {done, message}) until done, then reloads
 *   [data-focus]                       receives focus when the page loads (error summaries)
 *   select[data-local-offset]          a UTC-offset choice (+HH:MM) set to this computer's, if untouched
 */
"use strict";

(function () {
  function formatSize(bytes) {
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1) + " MB";
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function setUpPreview(input) {
    var figure = document.getElementById(input.getAttribute("data-preview"));
    if (!figure) return;
    var image = figure.querySelector("img");
    var caption = figure.querySelector("figcaption");
    var current = null;
    input.addEventListener("change", function () {
      if (current) { URL.revokeObjectURL(current); current = null; }
      var file = input.files && input.files[0];
      if (!file) { figure.hidden = true; return; }
      figure.hidden = false;
      if (file.type && file.type.indexOf("image/") !== 0) {
        image.hidden = true;
        caption.textContent = file.name + " (" + formatSize(file.size) + ") does not look like a photo; " +
          "it will probably be refused.";
        return;
      }
      current = URL.createObjectURL(file);
      image.hidden = false;
      image.src = current;
      caption.textContent = file.name + " (" + formatSize(file.size) + "). Check that this is the right photo.";
    });
  }

  function setUpBusy(form) {
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) return;
      var button = form.querySelector("button[data-busy]");
      if (!button) return;
      var progress = form.querySelector(".progress");
      window.setTimeout(function () {  // after the browser has taken the form's values
        button.disabled = true;
        button.setAttribute("aria-disabled", "true");
        if (progress) {
          progress.hidden = false;
          progress.querySelector("span").textContent = button.getAttribute("data-busy");
        }
      }, 0);
    });
  }

  function setUpPoll(element) {
    var url = element.getAttribute("data-poll-url");
    var every = parseInt(element.getAttribute("data-poll-every") || "2000", 10);
    var message = element.querySelector("[data-poll-message]");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
        .then(function (response) {
          if (response.status === 401 || response.status === 403 || response.redirected) {
            window.location.reload();  // the page itself signs in again or explains
            return null;
          }
          return response.ok ? response.json() : null;
        })
        .then(function (state) {
          if (state && state.done) { window.location.reload(); return; }
          if (state && message && state.message) message.textContent = state.message;
          every = Math.min(every * 1.2, 10000);
          window.setTimeout(tick, every);
        })
        .catch(function () { window.setTimeout(tick, 10000); });
    }
    window.setTimeout(tick, every);
  }

  function setLocalOffset(select) {
    if (select.value && select.value !== "+00:00") return;  // chosen already (or returned by the server)
    var minutes = -new Date().getTimezoneOffset();
    var sign = minutes < 0 ? "-" : "+";
    minutes = Math.abs(minutes);
    var text = sign + String(Math.floor(minutes / 60)).padStart(2, "0") + ":" + String(minutes % 60).padStart(2, "0");
    if (select.querySelector("option[value='" + text + "']")) select.value = text;
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[type=file][data-preview]").forEach(setUpPreview);
    document.querySelectorAll("form").forEach(setUpBusy);
    document.querySelectorAll("[data-poll-url]").forEach(setUpPoll);
    document.querySelectorAll("select[data-local-offset]").forEach(setLocalOffset);
    var focus = document.querySelector("[data-focus]");
    if (focus) focus.focus();
  });
})();

/* === reviews, organisation admin, platform admin, audit === */
/* Face boxes on the review page: each [data-face-frame] carries the photo's size and the
 * compared face's box in the photo's own pixels (data-width, data-height, data-box-top,
 * -right, -bottom, -left). The photo is shown scaled to fit its frame (object-fit: contain),
 * so the box is placed over the picture from those numbers, again on every resize. The CSP
 * forbids style attributes in the markup; setting element.style from this file is allowed.
 * Also: form[data-confirm=QUESTION] asks before submitting, and form[data-download] shows its
 * .progress while a download is prepared (the page stays, so it is hidden again after). */
(function () {
  function numbersOf(frame) {
    var names = ["width", "height", "box-top", "box-right", "box-bottom", "box-left"];
    var values = {};
    for (var i = 0; i < names.length; i += 1) {
      var value = parseFloat(frame.getAttribute("data-" + names[i]));
      if (!isFinite(value)) return null;
      values[names[i]] = value;
    }
    return values.width > 0 && values.height > 0 ? values : null;
  }

  function placeBox(frame) {
    var image = frame.querySelector("img");
    var box = frame.querySelector(".face-box");
    var n = numbersOf(frame);
    if (!image || !box || !n || !image.complete || !image.naturalWidth) return;
    var shownWidth = image.clientWidth, shownHeight = image.clientHeight;
    var scale = Math.min(shownWidth / n.width, shownHeight / n.height);
    var left = image.offsetLeft + (shownWidth - n.width * scale) / 2;
    var top = image.offsetTop + (shownHeight - n.height * scale) / 2;
    box.style.left = (left + n["box-left"] * scale) + "px";
    box.style.top = (top + n["box-top"] * scale) + "px";
    box.style.width = Math.max(4, (n["box-right"] - n["box-left"]) * scale) + "px";
    box.style.height = Math.max(4, (n["box-bottom"] - n["box-top"]) * scale) + "px";
    box.hidden = false;
  }

  function placeAll() {
    document.querySelectorAll("[data-face-frame]").forEach(placeBox);
  }

  function setUpConfirm(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  function setUpDownload(form) {
    form.addEventListener("submit", function () {
      var progress = form.querySelector(".progress");
      if (!progress) return;
      progress.hidden = false;
      window.setTimeout(function () { progress.hidden = true; }, 4000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-face-frame] img").forEach(function (image) {
      image.addEventListener("load", placeAll);
    });
    placeAll();
    window.addEventListener("resize", placeAll);
    document.querySelectorAll("form[data-confirm]").forEach(setUpConfirm);
    document.querySelectorAll("form[data-download]").forEach(setUpDownload);
  });
})();

/* === invitations === */
/* button[data-copy=ID] (hidden in the markup, shown here) copies the value of input#ID and says so
 * in [data-copy-status=ID]; input[data-select-on-focus] selects its whole value when focused, so the
 * link can be copied by hand where the clipboard is not available. */
(function () {
  function say(id, text) {
    var status = document.querySelector('[data-copy-status="' + id + '"]');
    if (status) status.textContent = text;
  }

  function copyByHand(field) {
    field.focus();
    field.select();
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  function setUpCopy(button) {
    var id = button.getAttribute("data-copy");
    var field = document.getElementById(id);
    if (!field) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { say(id, "Link copied. Paste it into your message to your colleague."); };
      var failed = function () {
        if (copyByHand(field)) done();
        else say(id, "Copying did not work here: the link is selected, copy it with your keyboard.");
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, failed);
      } else {
        failed();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(setUpCopy);
    document.querySelectorAll("input[data-select-on-focus]").forEach(function (field) {
      field.addEventListener("focus", function () { field.select(); });
    });
  });
})();
