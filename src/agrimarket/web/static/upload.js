// Upload progress for the photo form. Without this script the form posts as usual.
(function () {
  var form = document.querySelector("form[data-upload]");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var bar = form.querySelector("progress");
  var status = form.querySelector("[data-status]");
  var button = form.querySelector("button");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || location.href);
    xhr.responseType = "document";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = function () {
      if (xhr.status < 400) {
        location.href = xhr.responseURL || location.href;
      } else if (xhr.response) {
        // The page with the error beside the field, as the plain form would show it.
        document.replaceChild(document.importNode(xhr.response.documentElement, true), document.documentElement);
      }
    };
    xhr.onerror = xhr.ontimeout = xhr.onabort = function () {
      // The same form, with the same key: sending again cannot add the photo twice.
      status.textContent = status.getAttribute("data-retry");
      button.disabled = false;
      bar.hidden = true;
    };
    status.textContent = "";
    bar.value = 0;
    bar.hidden = false;
    button.disabled = true;
    xhr.send(new FormData(form));
  });
})();
