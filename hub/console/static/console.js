// The console's one script: copy buttons (a new key's secret). Pages work without it; the buttons stay hidden then.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(source.textContent || "").then(function () {
        button.textContent = "Copied";
      });
    });
  });
});
