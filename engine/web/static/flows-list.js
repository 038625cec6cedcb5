/* Phoney: the flows page's form for a new flow from a template (POST /api/flows), then its editor. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("phoney-config").textContent);
  if (window.Phoney && window.Phoney.live) {  // the status pill: events from now on
    var feed = window.Phoney.live({ onEvent: function () {} });
    feed.ready.then(function () { return window.Phoney.api("/api/calls?limit=1"); })
      .then(function (answer) { feed.start(answer.last_event_id); });
  }
  var form = document.getElementById("new-flow");
  if (!form) { return; }  // a role that may not change flows
  var error = document.getElementById("new-flow-error");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    error.textContent = "";
    var flow = document.getElementById("new-flow-id").value.trim();
    var template = document.getElementById("new-flow-template").value;
    fetch("/api/flows", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": config.csrf_token },
      body: JSON.stringify({ flow: flow, template: template })
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error(body.error || ("HTTP " + response.status)); }
        window.location.href = "/flows/" + encodeURIComponent(flow);
      });
    }).catch(function (failure) { error.textContent = failure.message; });
  });
})();
