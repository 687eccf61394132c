// Actions: POST with the X-W365-Action header (the CSRF guard, docs/ui.md), same-origin cookie.
(function () {
  // Airflow's UI shows times in the zone kept under its localStorage key "timezone" (its user
  // menu sets it; by default the browser's zone). Until someone picks one, make it the tenant's,
  // the zone every w365 date is in (issue 13). Same origin as Airflow's UI: one storage.
  var tenantTz = document.body.dataset.tenantTz;
  try {
    if (tenantTz && window.localStorage.getItem("timezone") === null) {
      window.localStorage.setItem("timezone", JSON.stringify(tenantTz));
    }
  } catch (e) { /* storage unavailable: Airflow keeps the browser's zone */ }
  var flash = document.getElementById("flash");
  function show(kind, text) {
    flash.className = "flash " + kind;
    flash.textContent = text;
    flash.hidden = false;
  }
  var kept = sessionStorage.getItem("w365-flash");
  if (kept) {
    sessionStorage.removeItem("w365-flash");
    try { kept = JSON.parse(kept); show(kept.kind, kept.text); } catch (e) { /* ignore */ }
  }
  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("[data-action]");
    if (!el) return;
    ev.preventDefault();
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    el.disabled = true;
    fetch(el.dataset.action, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-W365-Action": "1"},
      body: el.dataset.json || "{}"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) { return {ok: r.ok, status: r.status, data: data}; });
    }).then(function (res) {
      if (res.ok) {
        sessionStorage.setItem("w365-flash", JSON.stringify({kind: "ok", text: res.data.message || "done"}));
        window.location.reload();
      } else {
        var d = res.data.detail;
        show("error", (typeof d === "string" ? d : JSON.stringify(d || "")) || ("refused (HTTP " + res.status + ")"));
        el.disabled = false;
      }
    }).catch(function (e) {
      show("error", "the request failed: " + e);
      el.disabled = false;
    });
  });
})();
