// Upload progress for the photo form. Without this script the form posts as usual.
(function () {
  var form = document.querySelector("form[data-upload]");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var bar = form.querySelector("progress");
  var status = form.querySelector("[data-status]");
  var button = form.querySelector("button");
  var input = form.querySelector("input[type=file]");
  var maxBytes = Number(form.getAttribute("data-max-bytes"));
  function fail(message) {
    status.textContent = message;
    button.disabled = false;
    bar.hidden = true;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    // Refused before a byte is sent: no waiting minutes on 3G for a photo the server would turn away.
    if (maxBytes && input.files[0] && input.files[0].size > maxBytes) {
      fail(status.getAttribute("data-too-large"));
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || location.href);
    xhr.responseType = "document";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = function () {
      if (xhr.status < 400) {
        location.href = xhr.responseURL || location.href;
      } else if (xhr.response && xhr.response.documentElement) {
        // The page with the error beside the field, as the plain form would show it.
        document.replaceChild(document.importNode(xhr.response.documentElement, true), document.documentElement);
      } else {
        fail(status.getAttribute(xhr.status === 413 ? "data-too-large" : "data-retry"));
      }
    };
    xhr.onerror = xhr.ontimeout = xhr.onabort = function () {
      // The same form, with the same key: sending again cannot add the photo twice.
      fail(status.getAttribute("data-retry"));
    };
    status.textContent = "";
    bar.value = 0;
    bar.hidden = false;
    button.disabled = true;
    xhr.send(new FormData(form));
  });
})();
