// Live progress of a product file being checked or saved; without this script the page reloads itself.
(function () {
  var bar = document.querySelector("progress[data-poll]");
  if (!bar || !window.fetch) return;
  var refresh = document.querySelector("meta[http-equiv=refresh]");
  if (refresh) refresh.parentNode.removeChild(refresh);
  function poll() {
    fetch(bar.getAttribute("data-poll"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (job) {
        bar.value = job.progress.percent;
        var p = document.querySelector("[data-processed]"), t = document.querySelector("[data-total]");
        if (p) p.textContent = job.progress.processed;
        if (t) t.textContent = job.progress.total;
        if (job.progress.phase === "done") location.reload();
        else setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
