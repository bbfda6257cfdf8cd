// The console's only script (the CSP allows no inline script): charts from the page's JSON data
// block with the vendored Chart.js, copy buttons, and the environment selector.
(function () {
  "use strict";
  function micros(text) { return Number(text); }  // "1.234500" -> 1.2345 (display only)
  // As the pages format money for people: two decimals, more (up to six) only below a cent.
  function money(currency) {
    var c = currency.toUpperCase();
    var cents = new Intl.NumberFormat(undefined, { style: "currency", currency: c });
    var fine = new Intl.NumberFormat(undefined, { style: "currency", currency: c, maximumFractionDigits: 6 });
    return function (v) { return (v !== 0 && Math.abs(v) < 0.01 ? fine : cents).format(v); };
  }
  var data = document.getElementById("chart-data");
  if (data && window.Chart) {
    var d = JSON.parse(data.textContent);
    var fmt = money(d.currency);
    var opts = { responsive: true, maintainAspectRatio: false, animation: false,
      scales: { y: { beginAtZero: true, ticks: { callback: fmt } } } };
    var el = document.getElementById("chart-money");
    if (el) new Chart(el, { type: "line", options: opts, data: { labels: d.days, datasets: [
      { label: "Revenue", data: d.revenue.map(micros) },
      { label: "Provider cost", data: d.provider_cost.map(micros) },
      { label: "Profit", data: d.profit.map(micros) }] } });
    el = document.getElementById("chart-requests");
    if (el) new Chart(el, { type: "bar", options: { responsive: true, maintainAspectRatio: false, animation: false },
      data: { labels: d.days, datasets: [{ label: "Requests", data: d.requests }] } });
    el = document.getElementById("chart-models");
    if (el) new Chart(el, { type: "bar", options: opts, data: { labels: d.models,
      datasets: [{ label: "Revenue", data: d.model_revenue.map(micros) }] } });
    el = document.getElementById("chart-user");
    if (el) new Chart(el, { type: "bar", options: opts, data: { labels: d.days,
      datasets: [{ label: "Spend", data: d.spend.map(micros) }] } });
  }
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      field.select();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      else { document.execCommand("copy"); done(); }
    });
  });
  document.querySelectorAll("[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
